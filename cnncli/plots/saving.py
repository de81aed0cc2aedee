"""Writing pictures: the format a name asks for, the checks made before the work
that draws one, and the atomic write (a reader never sees half a picture)."""

from __future__ import annotations

import errno
import io
import re
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from cnncli.errors import ConfigError, WriteError
from cnncli.files import (
    missing_folders,
    remove_empty,
    writable_folder,
    write_atomic,
)

DPI = 110


#: The formats a picture can be written in, by the output's suffix.
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def picture_format(path: str | Path) -> str:
    """The format `path`'s suffix asks for, or a `ConfigError` for a suffix that is not a
    picture's (a picture named ``x.jpg`` must be JPEG data, not PNG bytes under that name).

    >>> picture_format("maps/conv1.JPG")
    'jpeg'
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        what = f"as '{suffix}'" if suffix else "without a suffix saying its format"
        raise ConfigError(f"cannot write a picture {what}", file=str(path),
                          hint="end the name in " + ", ".join(FORMATS))
    return FORMATS[suffix]


def picture_path(path: str | Path, option: str) -> str:
    """`path` (``~`` expanded), given to `option` as the picture to write, once its
    format and its folder are checked: before the work that draws it (seconds for a
    VGG16). A folder there, an unknown suffix, a file in the way of its folder or a
    read-only one are `ConfigError`s."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} is the picture to write, and this is a folder",
                          file=str(path), hint=f"give the picture's name, e.g. {option} "
                                               f"{path / 'picture.png'}")
    picture_format(path)
    made = missing_folders(path.parent)
    writable_folder(path.parent)  # a file in the way, a read-only folder
    remove_empty(made)  # made again with the picture: none is left if the work fails
    return str(path)


def check_picture_folder(path: str | Path, option: str) -> None:
    """A `ConfigError` if `path`, given to `option` as the folder to write pictures into,
    is a picture's name (``heat.png``) and no folder yet: it would become a folder.

    >>> check_picture_folder("cams", "--output")
    """
    if Path(path).suffix.lower() in FORMATS and not Path(path).is_dir():
        raise ConfigError(f"{option} is the folder to write the pictures into (one per "
                          "image), and this is a picture's name", file=str(path),
                          hint=f"give a folder, e.g. {option} {Path(path).with_suffix('')}")


#: Matplotlib's warning for a character its font lacks (one per character and drawing).
NO_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")


def save(fig: Figure, path: str | Path) -> Path:
    """Render `fig` in the format of `path`'s suffix, then write it to `path` atomically.
    Characters the font lacks (class names in Chinese: matplotlib's fonts have no CJK)
    are drawn as boxes and said in one warning naming them and the picture, not in one
    of matplotlib's per character and drawing."""
    path = Path(path)
    kind = picture_format(path)
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(buffer, format=kind, dpi=DPI)
    lacking = []
    for w in caught:
        found = NO_GLYPH.search(str(w.message))
        if found is None:  # another warning: as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif chr(int(found[1])) not in lacking:
            lacking.append(chr(int(found[1])))
    if lacking:
        warnings.warn(f"{path}: the picture's font has no {''.join(lacking)!r}: those "
                      "characters are drawn as boxes (the text and JSON output have them)",
                      stacklevel=2)
    try:
        writable_folder(path.parent)
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        message = f"cannot write the plot: {exc.strerror or exc}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk's, not the command's
            raise WriteError(message, file=str(path), hint="free some disk space, or "
                             "choose another output folder") from None
        raise ConfigError(message, file=str(path),  # a folder in the way, no permission
                          hint="choose a writable output folder") from None
    return path

