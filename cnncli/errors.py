"""The one error hierarchy of cnncli, and the exit codes it maps to.

Every error a user can cause is a `CnnError`. The CLI turns it into one
paragraph on stderr and the exit code of its class; only `--debug` shows a
traceback. Library code raises these and never calls `sys.exit`.

Example:

>>> err = ConfigError("unknown layer 'Conv2d'", file="net.yaml", line=4,
...                   where="layer 2", hint="did you mean 'Conv2D'?")
>>> print(err)
net.yaml:4: layer 2: unknown layer 'Conv2d'. Hint: did you mean 'Conv2D'?
>>> err.exit_code
2
"""

from __future__ import annotations

import re

#: Documented exit codes, used by every command (README: "Exit codes").
EXIT_OK = 0
EXIT_BELOW_THRESHOLD = 1  # evaluate --fail-under, or some inputs failed in predict
EXIT_USAGE = 2  # bad command line, spec or run config
EXIT_DATA_OR_MODEL = 3  # data, model file, device or runtime failure
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_SIGPIPE = 141  # the output was closed (a pipe into `head`): as when killed by SIGPIPE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's `KeyboardInterrupt` is (the CLI's
    handler: `cnncli.cli.app.main`), so that whatever cleans up after Ctrl-C (a
    half-packed folder, a staged file) cleans up after SIGTERM too; the process then
    exits `EXIT_SIGTERM`. Training and export handle SIGTERM themselves."""


class CnnError(Exception):
    """Base of every error cnncli reports to a user.

    Args:
        message: what is wrong, as one sentence.
        file: the file concerned (spec, config, image, model), if any.
        line: 1-based line in `file`, if known.
        where: the place inside the file, e.g. ``layer 3 'conv2_1' (Conv2D)``.
        hint: how to fix it.
    """

    exit_code = EXIT_DATA_OR_MODEL
    #: The `error` of its JSON, when not its class's name: a class that lets code tell one
    #: case from others (`ConfigChanged`) reports as the class it is a case of.
    reported_as: str | None = None
    #: What the command warned of before it stopped, for its JSON (``train --json``
    #: promises `warnings`: its error's document keeps them); None: not given.
    warnings: list[str] | None = None

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        where: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.where = where
        self.hint = hint or None  # (`suggest` finding nothing gives "")
        super().__init__(str(self))

    def location(self) -> str:
        """``file:line: where`` (only the parts that are known)."""
        parts = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.where:
            parts.append(self.where)
        return ": ".join(parts)

    def __str__(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text = f"{text.rstrip('.')}. Hint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {
            "error": self.reported_as or type(self).__name__,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "where": self.where,
            "hint": self.hint or None,  # one "no hint" in JSON, however it was set
            "exit_code": self.exit_code,
        } | ({} if self.warnings is None else {"warnings": self.warnings})


def stopped_by(terminated: bool) -> str:
    """How people call what stops a command: Ctrl-C (SIGINT), or SIGTERM."""
    return "SIGTERM" if terminated else "Ctrl-C"


class Stopped(CnnError):
    """A command stopped by Ctrl-C or by SIGTERM (`terminated`), as asked: whichever
    command it was, it exits 130 or 143, says ``stopped:`` on stderr, and in JSON is
    ``"error": "Interrupted"`` or ``"Terminated"``.

    >>> Stopped("Ctrl-C: the command stopped").exit_code
    130
    >>> Stopped("SIGTERM: the command stopped", terminated=True).to_dict()["error"]
    'Terminated'
    """

    def __init__(self, *args, terminated: bool = False, **kwargs) -> None:
        self.terminated = terminated
        super().__init__(*args, **kwargs)

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.terminated else EXIT_SIGINT

    def to_dict(self) -> dict:
        return {**super().to_dict(), "error": "Terminated" if self.terminated else "Interrupted"}


class ConfigError(CnnError):
    """A bad spec, run config or command line (exit code 2)."""

    exit_code = EXIT_USAGE


class ConfigChanged(ConfigError):
    """A resume whose config differs from the run's; `ways`: what to do instead, said as
    the hint (``--force`` for what it may apply, else ``NEW_RUN``), which a caller may
    reword.

    >>> ConfigChanged("differs", ways=["resume without changing it", "start a new run"]).hint
    'resume without changing it, or start a new run'
    """

    reported_as = "ConfigError"
    NEW_RUN = "start a new run"

    def __init__(self, message: str, *, file: str | None = None, ways: list[str]) -> None:
        self.ways = list(ways)
        super().__init__(message, file=file, hint=", or ".join(ways))


class InputTooSmall(ConfigError):
    """A layer whose filter or pooling window is larger than what reaches it: the spec's
    `input` is too small for its layers (`cnncli.model.builder.smallest_input`)."""

    reported_as = "ConfigError"


class DataError(CnnError):
    """A dataset or image that cannot be found, read or used (exit code 3)."""


class ModelError(CnnError):
    """A model file that cannot be loaded safely, or a model that does not fit (exit 3)."""


class DeviceError(CnnError):
    """A device that is missing, or that ran out of memory (exit code 3)."""


class NoSuchDevice(DeviceError):
    """A device asked for (`asked`: ``--device gpu:1``) that this machine does not have;
    `seen`: what it has (``TensorFlow sees no GPU``)."""

    reported_as = "DeviceError"

    def __init__(self, asked: str, seen: str, *, hint: str | None = None) -> None:
        self.asked, self.seen = asked, seen
        super().__init__(f"{asked} was asked for, but {seen}", hint=hint)


class TrainingError(CnnError):
    """Training that had to stop, e.g. on a NaN loss (exit code 3)."""


class WriteError(CnnError):
    """A file that could not be written: a full disk, a folder made read-only since it was
    checked (exit code 3). Training turns it into how to resume (`cnncli.run.train`)."""


class InternalError(CnnError):
    """An exception cnncli did not expect: a bug, its own or a library's (exit code 3)."""


class ManyErrors(ConfigError):
    """Several independent problems found in one pass (all reported, not only the first).
    Its exit code is the largest of theirs: a data problem among spec problems exits 3.
    Problems all at lines of one file are listed in the file's order, whichever check
    found them first.

    >>> ManyErrors([ConfigError("bad layer"), DataError("no images")]).exit_code
    3
    """

    def __init__(self, errors: list[CnnError]) -> None:
        self.errors = [one for e in errors  # (another's problems are among these)
                       for one in (e.errors if isinstance(e, ManyErrors) else [e])]
        if all(e.line is not None and e.file == self.errors[0].file for e in self.errors):
            self.errors.sort(key=lambda e: e.line)
        first = self.errors[0]
        super().__init__(
            f"{len(self.errors)} problems found" if len(self.errors) > 1 else first.message,
            file=first.file,
        )
        self.exit_code = max(e.exit_code for e in self.errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def to_dict(self) -> dict:
        return super().to_dict() | {"errors": [e.to_dict() for e in self.errors]}


LONG_LIST = 12  # `suggest` shows no longer list after a close match



def none_done(errors: list[CnnError]) -> CnnError:
    """The error of a command none of whose inputs could be done (no image could be read):
    its one error, or all of them; reported as any error is (``--json``: the error's
    document, not an empty list of results).

    >>> none_done([DataError("a.png: cannot be read"), DataError("b.png: empty")]).exit_code
    3
    """
    return errors[0] if len(errors) == 1 else ManyErrors(errors)


def suggest(word: object, choices, listing: str | None = None) -> str:
    """The hint for a name that is not one of `choices`: the closest one, and the list.

    The one "did you mean" of cnncli. A match ignoring case wins, else the closest by
    spelling (difflib, cutoff 0.6), one that begins with the word first; `listing` names
    the list shown after it (a long list is left out when a close match was found).

    >>> suggest("Conv2d", ["Conv2D", "Dense"])
    "did you mean 'Conv2D'?"
    >>> suggest("adamm", ["adam", "sgd"], listing="optimizers")
    "did you mean 'adam'? optimizers: adam, sgd"
    >>> suggest("zzz", ["adam", "sgd"], listing="optimizers")
    'optimizers: adam, sgd'
    >>> suggest("conv1", ["conv2_1", "conv1_1", "conv3_1"])
    "did you mean 'conv1_1'?"
    >>> suggest("dense", ["dense_10", "dense_1", "dens"])
    "did you mean 'dens'?"
    >>> suggest("crop", ["stretch", "center_crop", "pad"])
    "did you mean 'center_crop'?"
    >>> suggest("back", ["backup_every", "batch_size"])
    ''
    """
    import difflib

    names = [str(c) for c in choices]
    text = str(word)
    lower = {n.lower(): n for n in names}
    close = lower.get(text.lower()) if text not in names else None
    if close is None:  # of the closest few, one the word begins (conv1: conv1_1), unless
        found = difflib.get_close_matches(text, names, n=5, cutoff=0.6)  # far behind
        best = difflib.SequenceMatcher(None, text, found[0]).ratio() if found else 0
        close = next((n for n in found if n.lower().startswith(text.lower())
                      and difflib.SequenceMatcher(None, text, n).ratio() > best - 0.05),
                     found[0] if found else None)
    if close is None and len(text) >= 3:  # crop: center_crop, the one name with it as a part
        holding = [n for n in names if text.lower() in re.split(r"[_.\-]", n.lower())]
        close = holding[0] if len(holding) == 1 else None
    parts = [f"did you mean '{close}'?"] if close else []
    if listing and not (close and len(names) > LONG_LIST):
        parts.append(f"{listing}: {', '.join(names)}")
    return " ".join(parts)


def raise_all(errors: list[CnnError]) -> None:
    """Raise nothing, the one error, or a `ManyErrors` holding all of them."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ManyErrors(errors)
