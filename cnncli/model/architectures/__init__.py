"""The built-in architecture specs: one YAML file each, beside this file.

A name is accepted anywhere a spec path is (``cnncli summary vgg16``).

>>> "vgg16" in names()
True
>>> resolve("vgg16").name
'vgg16.yaml'
"""

from __future__ import annotations

from pathlib import Path

from cnncli import runfolder
from cnncli.errors import ConfigError, suggest
from cnncli.files import MODEL_FILES
from cnncli.text import shorten

HERE = Path(__file__).parent


def names() -> list[str]:
    """Names of the built-in specs, sorted."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to be a file name: not a file, then
        return False


def resolve(path_or_name: str | Path) -> Path:
    """The YAML file for a built-in name, a run folder's ``config.yaml``, or the given
    path if it is a file."""
    text = str(path_or_name)
    path = Path(text)
    run = runfolder.named(path)  # runs/mnist: its latest run
    if runfolder.is_run(run):  # runs/mnist/latest
        return run / runfolder.CONFIG
    if "/" not in text and not text.endswith((".yaml", ".yml")) and _exists(HERE / f"{text}.yaml"):
        return HERE / f"{text}.yaml"
    if _exists(path) and path.suffix.lower() in MODEL_FILES:  # summary best.keras
        run = path.parent if runfolder.is_run(path.parent) else None
        raise ConfigError(
            "this is a model file, not a spec or a run config", file=text,
            hint=f"give its run folder ({run}), whose config.yaml describes the network"
            if run else "give the spec or run config it was trained from, or the run "
            "folder; `cnncli predict` and `cnncli evaluate` run the model file itself")
    if path.is_dir():  # neither a run nor a built-in name
        raise ConfigError(f"'{text}' is a folder, not a spec file, a run folder or a "
                          "built-in network", hint="give a spec file (.yaml), a run folder "
                          "(it holds config.yaml) or a built-in name: " + ", ".join(names()))
    if _exists(path):
        return path
    shown = shorten(text, 120)
    if "/" in text or path.suffix.lower() in (".yaml", ".yml"):  # a path, not a name
        where = "" if path.is_absolute() else \
            f" (a path is read from the current folder, {Path.cwd()})"
        close = suggest(path.stem, names()) if path.suffix.lower() in (".yaml", ".yml") \
            and "/" not in text else ""  # mnist_net.yaml: the built-in is mnist_net
        raise ConfigError(f"there is no file or folder '{shown}'{where}",
                          hint=f"{close} (a built-in is named without .yaml)" if close
                          else "check the path")
    raise ConfigError(
        f"'{shown}' is neither a spec file nor a built-in architecture",
        hint=suggest(text, names(), listing="built-in"),
    )
