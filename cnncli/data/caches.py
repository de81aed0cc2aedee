"""The disk caches of decoded images (``data.cache: disk``, `cnncli.data.loader`): one
folder each in `loader.cache_dir`, named by a hash of the files and the size they were
decoded at, holding ``images.u8`` and ``filled.bool``. They stay for later runs on the
same files; `found` lists them, `clear` removes them (a run then decodes its images
again in its first epoch; nothing else is lost).

Only folders that are such caches are listed or removed: a ``CNNCLI_CACHE_DIR`` set to a
folder that holds other things keeps them.

>>> [(c.images, c.filled) for c in found()]       # doctest: +SKIP
[(48000, 48000), (12000, 3200)]
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from cnncli.data import loader
from cnncli.errors import WriteError
from cnncli.text import count, some

#: A cache folder's name (`loader.ImageLoader._key`) and what it may hold (its files,
#: and those files half made, under `loader._open_store`'s temporary names).
_NAME = re.compile(f"[0-9a-f]{{{loader.KEY_LENGTH}}}")
_FILES = {loader.IMAGES_FILE, loader.FILLED_FILE}
_TEMPORARY = re.compile(r"\.(" + "|".join(map(re.escape, _FILES)) + r")\.\d+\.tmp")


@dataclass(frozen=True)
class Cache:
    """One disk cache: its folder, its images (and how many are decoded into it yet),
    its size on disk, and when it was last written."""

    path: Path
    images: int
    filled: int
    bytes: int
    modified: float  # seconds since the epoch

    def to_dict(self) -> dict:
        return {"path": str(self.path), "images": self.images, "filled": self.filled,
                "bytes": self.bytes, "modified": self.modified}


def found(root: Path | None = None) -> list[Cache]:
    """The caches in `root` (default `loader.cache_dir`), newest first."""
    root = Path(root) if root is not None else loader.cache_dir()
    if not root.is_dir():
        return []
    caches = [_read(folder) for folder in root.iterdir() if _is_cache(folder)]
    return sorted(caches, key=lambda c: c.modified, reverse=True)


def clear(root: Path | None = None) -> list[Cache]:
    """Remove every cache in `root`; the ones removed. A run using one meanwhile keeps
    reading it (its files stay open until it ends). A `WriteError` naming those that
    could not be removed (another user's, in a folder a team shares), once the others
    are."""
    removed, failed = [], []
    for cache in found(root):
        try:
            shutil.rmtree(cache.path)
            removed.append(cache)
        except OSError as exc:
            failed.append(f"{cache.path.name} ({exc.strerror or exc})")
    if failed:
        done = f"; {count(len(removed), 'other')} removed" if removed else ""
        raise WriteError(f"{count(len(failed), 'image cache')} could not be removed: "
                         f"{some(failed)}{done}", file=str(root or loader.cache_dir()),
                         hint=f"remove them as the user who made them, or set "
                         f"{loader.CACHE_DIR_ENV} to a folder of your own")
    return removed


def _is_cache(folder: Path) -> bool:
    if folder.is_symlink() or not folder.is_dir() or not _NAME.fullmatch(folder.name):
        return False
    names = {p.name for p in folder.iterdir()}
    return _FILES <= names and all(n in _FILES or _TEMPORARY.fullmatch(n) for n in names)


def _read(folder: Path) -> Cache:
    import numpy as np

    filled = folder / loader.FILLED_FILE
    files = [folder / name for name in _FILES]
    return Cache(folder, images=filled.stat().st_size,
                 filled=int(np.count_nonzero(np.fromfile(filled, np.bool_))),
                 bytes=sum(f.stat().st_size for f in files),
                 modified=max(f.stat().st_mtime for f in files))
