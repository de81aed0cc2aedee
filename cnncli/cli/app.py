"""The command line: parse, call library functions, show their results.

Heavy libraries (TensorFlow, Keras, NumPy, pydantic) are imported inside the
commands, so ``cnncli --help`` starts fast (ruff's TID253 keeps it so).
Errors are turned into messages and exit codes in one place: `main`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from typing import Annotated, NoReturn

import typer

from cnncli import __version__
from cnncli.cli import (
    export_commands,
    infer_commands,
    spec_commands,
    system_commands,
    train_commands,
    viz_commands,
)
from cnncli.errors import (
    EXIT_SIGINT,
    EXIT_SIGPIPE,
    EXIT_SIGTERM,
    CnnError,
    Stopped,
    Terminated,
    stopped_by,
)

app = typer.Typer(
    name="cnncli",
    help="Describe convolutional networks in YAML; build, train, evaluate and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"cnncli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and TensorFlow's "
                                        "own messages.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    if debug:
        os.environ["CNNCLI_DEBUG"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"



for command in (spec_commands.summary, spec_commands.check, spec_commands.schema,
                spec_commands.models, infer_commands.predict, train_commands.train,
                infer_commands.evaluate, export_commands.export, system_commands.doctor,
                train_commands.runs, viz_commands.explain):
    app.command()(command)
app.add_typer(viz_commands.visualize, name="visualize")
app.add_typer(system_commands.datasets_app, name="datasets")


def main() -> None:
    """Entry point: run the app; map our errors to one-paragraph messages and exit codes.

    Typer itself handles usage errors (exit 2) and ``--help``; Ctrl-C exits 130 and
    SIGTERM 143, at once (`_leave`), after what cleans up after either has run (SIGTERM
    is raised as `Terminated`, a `KeyboardInterrupt`; training and export route it
    themselves).
    """
    import warnings

    _open_standard_streams()
    _whole_writes()
    _escape_unencodable()

    def show(message, category, filename, lineno, file=None, line=None):
        from cnncli.cli import render

        render.warn(str(message))

    warnings.showwarning = show
    previous = signal.signal(signal.SIGTERM, _terminate)
    stop_watching = _watch_sigterm()
    try:
        _run()
    except SystemExit as exc:  # the command is done (its code said): out at once, as
        # after an error (`_leave`). TensorFlow's shutdown took 0.6 s more, in which a
        # SIGTERM turned a finished training into exit 143 with nothing said (README: a
        # signal after the last step lets the run finish, exit 0): nothing is left to stop.
        if EXIT_AT_ONCE and "tensorflow" in sys.modules and isinstance(exc.code, int | None):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _leave(exc.code or 0)
        raise
    finally:  # main() called in a process that goes on (tests): as it was
        stop_watching()
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _open_standard_streams() -> None:
    """A standard stream closed when the command started (``2>&-``, ``>&-``) is the null
    device: what would be written there is dropped, and the command works as it would
    otherwise (its exit code, its other stream). Without it, the next file opened would
    get the closed stream's number, and text meant for the terminal, TensorFlow's
    included, would go into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd`
    for name in ("stdin", "stdout", "stderr"):
        if getattr(sys, name) is None:  # Python found it closed when it started
            setattr(sys, name, open(os.devnull, "r" if name == "stdin" else "w"))


def _whole_writes() -> None:
    """Make every write to stdout and stderr whole, or an error. With PYTHONUNBUFFERED (set
    by many CI and Docker images) Python writes them unbuffered, and a write a pipe took
    only part of lost the rest without a word: a ``--json`` document cut at 64 KiB, exit
    0, when its reader stopped (``| head``) or when the program that started cnncli left
    the pipe non-blocking (Node's child_process). A buffered writer writes the rest, or
    fails (a closed pipe: exit 141); a non-blocking stream is made blocking."""
    import io

    for fd, name in ((1, "stdout"), (2, "stderr")):
        with contextlib.suppress(OSError):
            os.set_blocking(fd, True)
        stream = getattr(sys, name)
        if isinstance(getattr(stream, "buffer", None), io.FileIO):  # unbuffered
            setattr(sys, name, io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
                encoding=stream.encoding, errors=stream.errors, line_buffering=True))


def _escape_unencodable() -> None:
    """Write a character the output's encoding lacks (``PYTHONIOENCODING=ascii``, a
    latin-1 console) as its escape (``caf\\xe9``), as error messages show such names,
    instead of failing half-way through the results. JSON is ASCII whatever the
    encoding (``\\u00e9``)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def debug_first(args: list[str]) -> list[str]:
    """`args` with a ``--debug`` given after the command moved before it, where the
    option belongs (``cnncli check x.yaml --debug``: what was meant is clear); one after
    ``--`` is an argument and stays.

    >>> debug_first(["check", "x.yaml", "--debug"]), debug_first(["predict", "--", "--debug"])
    (['--debug', 'check', 'x.yaml'], ['predict', '--', '--debug'])
    """
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[1:end]:
        return args
    return ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]


def _run() -> None:
    sys.argv[1:] = debug_first(sys.argv[1:])
    try:
        app()
    except CnnError as exc:
        _traceback_if_debugging()
        _fail(exc)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except SystemExit as exc:  # Typer turns Ctrl-C into a silent exit 130
        if interrupt := _caused_by_ctrl_c(exc):
            _interrupted(interrupt)
        if _output_closed(exc.__context__):  # click's exit 1 for a closed pipe
            _leave_output_closed()
        _usage_error_as_json(exc)
        raise
    except Exception as exc:  # a bug, ours or a library's: say so in one paragraph
        if _output_closed(exc):
            _leave_output_closed()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            _no_space(exc)
        _traceback_if_debugging()
        from cnncli.errors import InternalError

        if type(exc).__module__.startswith("tensorflow"):  # (importing nothing else here:
            from cnncli.devices import failed_on_a_gpu  # the bug may be a failed import)

            if on_gpu := failed_on_a_gpu(exc):
                _fail(on_gpu)
        if unwritable := _no_place_for_temporary_files(exc):
            _fail(unwritable)
        bug = InternalError(f"unexpected {type(exc).__name__}: {exc}",
                            hint="this is a bug in cnncli or a library it uses; run again "
                                 "with --debug for the traceback, and report it")
        _fail(bug, said=f"{bug.message}. Hint: {bug.hint}")  # a library's lines kept


def _no_place_for_temporary_files(exc: BaseException):
    """The error to say for a library that found no folder it can write its temporary
    files to (a container's read-only root, TMPDIR a folder that is not there), or None.
    TensorFlow's absl and matplotlib need one as they start: said as a bug, it was."""
    from cnncli.errors import WriteError

    if isinstance(exc, FileNotFoundError) and "No usable temporary directory" in str(exc):
        return WriteError("no folder for temporary files can be written to (TMPDIR, /tmp, "
                          "/var/tmp, the working folder): TensorFlow needs one",
                          hint="set TMPDIR to a folder that can be written to")
    if isinstance(exc, OSError) and "Matplotlib requires access to a writable" in str(exc):
        return WriteError("matplotlib finds no folder it can write its cache to",
                          hint="set MPLCONFIGDIR (or TMPDIR) to a folder that can be "
                               "written to")
    return None


def _fail(exc: CnnError, said: str | None = None) -> NoReturn:
    """Say `exc` on stderr (`said`: as this text, each of its lines an error line), and on
    stdout as JSON when the command line asks for JSON (a script always reads JSON), then
    exit with its code."""
    from cnncli.cli import render

    with contextlib.suppress(OSError):  # a full or closed stderr: the exit code says it
        render.error(exc if said is None else said)
        if _wants_json(sys.argv[1:]):
            _print_json(exc.to_dict())
    _leave(exc.exit_code)


def _output_closed(exc: BaseException | None) -> bool:
    """Whether `exc` says the command's output was closed before it was all written (a
    pipe into ``head``)."""
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno == errno.EPIPE)


def _leave_output_closed() -> NoReturn:
    """Exit 141, silently, as a program killed by SIGPIPE does: the reader of the output
    stopped reading (``cnncli models | head -1``), which is no failure of the command's;
    a script with ``set -o pipefail`` sees the same code as for any such program."""
    _to_null(sys.stdout)  # nothing more is written to the closed pipe
    _remove_temporary_files()
    os._exit(EXIT_SIGPIPE)


def _no_space(exc: OSError) -> NoReturn:
    """A full device under a file the command wrote (`exc.filename`), or under its output
    (``> /dev/full``: no file name): said, exit 3 as for any file cnncli could not
    write."""
    from cnncli.errors import WriteError

    what = exc.filename or "the output"
    _fail(WriteError(f"cannot write {what}: {exc.strerror or exc}",
                     hint=f"free some space where {what} goes, or send it elsewhere"))


def _wants_json(args: list[str]) -> bool:
    """True if the command line asks for JSON: ``--json``, or predict's ``--format json``
    or ``jsonl``.

    >>> _wants_json(["runs", "--json"]), _wants_json(["predict", "--format", "json"])
    (True, True)
    >>> _wants_json(["predict", "--format=jsonl"])
    True
    >>> _wants_json(["export", "run", "--format", "json"])
    False
    """
    return "--json" in args or _predict_format(args) in ("json", "jsonl")


def _predict_format(args: list[str]) -> str | None:
    """The ``--format`` of a ``predict`` command line, else None."""
    from itertools import pairwise

    if "predict" not in args:
        return None
    given = [b for a, b in pairwise(args) if a == "--format"]
    given += [a.removeprefix("--format=") for a in args if a.startswith("--format=")]
    return given[-1] if given else None


def _print_json(data: dict) -> None:
    """An error as JSON on stdout: one document, or with ``--format jsonl`` one line (a
    reader of lines reads it as it reads the results)."""
    from cnncli.cli import render

    render.print_json(data, one_line=_predict_format(sys.argv[1:]) == "jsonl"
                      and "--json" not in sys.argv[1:])


def _usage_error_as_json(exc: SystemExit) -> None:
    """With ``--json``, a command line Typer refused (it said why on stderr, exit 2) is a
    JSON error on stdout too, as cnncli's own errors are: a script always gets JSON.
    Typer ends every command with `SystemExit`; a refused command line is the one whose
    exit 2 comes while handling click's usage error (Typer's own copy of click since
    0.26, click itself before: matched by what it has, not by class)."""
    usage = exc.__context__
    if exc.code != 2 or not _wants_json(sys.argv[1:]) or not (
            hasattr(usage, "format_message") and getattr(usage, "exit_code", None) == 2):
        return
    from cnncli.errors import ConfigError

    command = usage.ctx.command_path if getattr(usage, "ctx", None) else "cnncli"
    error = ConfigError(usage.format_message(), hint=f"see {command} --help")
    try:
        _print_json({**error.to_dict(), "error": "UsageError", "exit_code": 2})
    except OSError:  # a full or closed stdout: stderr said it, exit 2
        _flush_or_drop(sys.stdout)


def _traceback_if_debugging() -> None:
    """With ``--debug``, the traceback of the error being handled, on stderr: the message
    and the exit code that follow are the same as without."""
    if os.environ.get("CNNCLI_DEBUG"):
        import traceback

        traceback.print_exc()


def _caused_by_ctrl_c(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM: `Terminated`) in `exc`'s chain, if there is one."""
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _terminate(signum, frame) -> NoReturn:
    raise Terminated()


#: Seconds a command has to clean up after SIGTERM before the process exits anyway.
SIGTERM_GRACE = 10.0


def _watch_sigterm():
    """Make sure SIGTERM ends the process: Python runs `_terminate` only when the main
    thread runs Python code, and it may be blocked in TensorFlow (building a model,
    waiting for the other machines of a cluster). A thread woken by the signal (Python's
    wake-up file descriptor) exits 143 after `SIGTERM_GRACE` seconds if the process is
    still there. Not while training or exporting: they handle SIGTERM their own way
    (a backup first; the files being renamed) with their own handler. Returns the
    function that stops watching."""
    import threading
    import time

    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        before = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: no watching
        os.close(read)
        os.close(write)
        return lambda: None

    def watch():
        while data := os.read(read, 64):
            if signal.SIGTERM in data and signal.getsignal(signal.SIGTERM) is _terminate:
                time.sleep(SIGTERM_GRACE)
                sys.stderr.write("Terminated (the command did not stop by itself).\n")
                _remove_temporary_files()
                os._exit(EXIT_SIGTERM)
        os.close(read)

    threading.Thread(target=watch, name="cnncli-sigterm", daemon=True).start()

    def stop():
        signal.set_wakeup_fd(before)
        os.close(write)  # the thread reads the end of the pipe and returns

    return stop


def _interrupted(interrupt: KeyboardInterrupt) -> NoReturn:
    terminated = isinstance(interrupt, Terminated)
    stopped = Stopped(f"{stopped_by(terminated)}: the command stopped "
                      "before it finished", hint="run it again", terminated=terminated)
    with contextlib.suppress(OSError, KeyboardInterrupt):  # (a second Ctrl-C: out at once)
        from cnncli.cli import render

        render.error(stopped)  # "stopped: ...", as any command stopped as asked
    if _wants_json(sys.argv[1:]):  # a script reads JSON, however early the command stopped
        with contextlib.suppress(OSError):  # its reader stopped too (Ctrl-C in `... | jq`)
            _print_json(stopped.to_dict())
    _leave(stopped.exit_code)


#: After an error, or a command done, with TensorFlow loaded, end the process at once
#: (`_leave`; `main`). Tests that run `main()` inside their own process turn it off
#: (tests/conftest.py).
EXIT_AT_ONCE = True


def _leave(code: int) -> NoReturn:
    """Exit with `code`; at once after Ctrl-C or SIGTERM, and after an error or a command
    done once TensorFlow is loaded. Python's shutdown would free a TensorFlow input pipeline stopped
    mid-batch, whose threads wait for the interpreter lock that a shutting-down Python no
    longer gives: the process hung for good after a second Ctrl-C in training (1 run in
    12 on 2 cores), and after an error mid-epoch on a folder of photos (a backup the full
    disk refused: the error was said, then no exit; 1 run in 3 on 200 JPEGs, every run on
    2,000). Nothing is left to write then: the run's files and backups are written whole
    before their rename."""
    for stream in (sys.stdout, sys.stderr):
        _flush_or_drop(stream)
    if code in (EXIT_SIGINT, EXIT_SIGTERM) or (EXIT_AT_ONCE and "tensorflow" in sys.modules):
        _remove_temporary_files()
        os._exit(code)
    sys.exit(code)


def _remove_temporary_files() -> None:
    """What libraries remove from the temporary folder as Python exits, which `os._exit`
    skips: TensorFlow's file of each Python function it converts into a graph (AutoGraph;
    each a module in `sys.modules` named so, and its compiled ``.pyc``: every command left
    9 to 12), and the configuration folder matplotlib makes there when the home folder
    cannot be written to (``matplotlib-*``, one a command in a container)."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("__autograph_generated_file"):
            continue
        source, compiled = getattr(module, "__file__", None), getattr(module, "__cached__", None)
        for path in filter(None, (source, compiled)):
            with contextlib.suppress(OSError):
                os.remove(path)
        if compiled:
            with contextlib.suppress(OSError):  # (only if nothing else is in it)
                os.rmdir(os.path.dirname(compiled))
    if "matplotlib" in sys.modules:
        import shutil
        import tempfile
        from pathlib import Path

        with contextlib.suppress(Exception):  # (its folders are known once it started)
            folder = Path(sys.modules["matplotlib"].get_configdir())
            if folder.name.startswith("matplotlib-") and \
                    folder.parent == Path(tempfile.gettempdir()):
                shutil.rmtree(folder, ignore_errors=True)


def _flush_or_drop(stream) -> None:
    """Write out what `stream` holds; if it cannot be (a closed pipe, a full device: the
    exit code says so), drop it, the stream now the null device: Python's own last flush
    would fail too, and turn the exit code into 120 with a message."""
    try:
        stream.flush()
    except (OSError, ValueError):
        _to_null(stream)
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _to_null(stream) -> None:
    """Point `stream`'s file descriptor at the null device."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
