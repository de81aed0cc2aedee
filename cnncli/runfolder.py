"""What a run folder holds that other parts read: its config, its model files, and the
``latest`` link in the folder of a run's name. `cnncli.run.rundir` makes and manages run
folders; this is only where things are, for the parts below it (a network started from a
run: `cnncli.model.backbone`; a run's config as a spec: `cnncli.model.architectures`).

>>> named("runs/mnist")     # doctest: +SKIP
PosixPath('runs/mnist/latest')
"""

from __future__ import annotations

import os
from pathlib import Path

#: The run's config, as trained (its `model:` section describes the network).
CONFIG = "config.yaml"
#: The model of the run's best epoch, and of its last.
BEST_MODEL, LAST_MODEL = "best.keras", "model.keras"
#: The model files of a run, in the order predict, evaluate and export use them.
MODELS = (BEST_MODEL, LAST_MODEL)
#: The link, in the folder of a run's name, to its newest run.
LATEST = "latest"


def is_run(path: str | os.PathLike) -> bool:
    """True if `path` is a run folder (it holds the run's config), not a file or the
    folder of a run's name."""
    return (Path(path) / CONFIG).is_file()


def named(path: str | os.PathLike) -> Path:
    """The run `path` names: `path` itself, or, for the folder of a run's name
    (``runs/mnist``, no config of its own), its ``latest`` run."""
    p = Path(path)
    if p.is_dir() and not is_run(p) and (p / LATEST).exists():
        return p / LATEST
    return p


def model_file(run: Path) -> Path | None:
    """The model of `run` that predict, evaluate and export use: its ``best.keras``,
    else its ``model.keras``; None if it has neither yet."""
    return next((run / n for n in MODELS if (run / n).exists()), None)


def own_folder(folder: Path, option: str = "--output DIR") -> Path:
    """`folder`, a folder inside a run that a command writes into (``export``,
    ``eval-<data>``), when it is the run's own: not a link. A run folder from someone else
    may hold ``export -> ~/models``: writing there would replace the user's files.

    Raises:
        WriteError: `folder` is a link; the hint names `option`, to write elsewhere.
    """
    from cnncli.errors import WriteError

    if folder.is_symlink():
        raise WriteError(f"{folder.name} is a link (to {os.readlink(folder)}); cnncli "
                         "writes into folders of its own only, not through links (a run "
                         "copied from someone else could point one at files of yours)",
                         file=str(folder),
                         hint=f"remove the link, or give {option} to write elsewhere")
    return folder
