"""``.npz`` files holding x_train, y_train, x_test, y_test (and maybe class_names), read
without pickle.

>>> read_npz("toy.npz").class_names          # doctest: +SKIP
['0', '1', '2']
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from cnncli.data import loader
from cnncli.data.checks import from_arrays, looks_like
from cnncli.data.dataset import Dataset
from cnncli.errors import DataError
from cnncli.text import as_text

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes of an .npz file, from the .npy headers (no array is read)."""
    shapes = {name: shape for name, (shape, _) in _headers(path).items()}
    missing = [k for k in ("x_train", "x_test") if k not in shapes]
    if missing:
        raise _missing_arrays(path, missing)
    return shapes


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype of each array of an .npz file, from the .npy headers."""
    found = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                found[member.removesuffix(".npy")] = (tuple(shape), dtype)
    except Exception as err:
        raise DataError(f"{path.name} is not a readable .npz file ({err})", file=str(path),
                        hint="re-create it with numpy.savez") from err
    return found


def _missing_arrays(path: Path, missing: list[str]) -> DataError:
    return DataError(
        f"{path.name} has no array named {', '.join(missing)}", file=str(path),
        hint="save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")


def read_npz(path: str | os.PathLike, *, class_names: list[str] | None = None,
             name: str | None = None) -> Dataset:
    """Read an .npz holding x_train, y_train, x_test, y_test (and maybe class_names).

    Loaded with ``allow_pickle=False``: an .npz that holds Python objects is refused.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path) and looks_like(path) == " (a zip archive)":
        raise DataError(f"{path.name} is not a readable .npz file: its zip archive is "
                        "truncated or damaged", file=str(path),
                        hint="copy it again, or re-create it with numpy.savez")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path.name} is not an .npz file: an .npz is the zip archive "
                        "numpy.savez writes" + looks_like(path), file=str(path),
                        hint="save the four arrays with numpy.savez(path, x_train=..., "
                             "y_train=..., x_test=..., y_test=...)")
    loader.refuse_beyond_memory(sum(math.prod(shape) * dtype.itemsize for shape, dtype
                                    in _headers(path).values()), path)
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:
        raise DataError(f"{path.name} is not a readable .npz file ({err})", file=str(path),
                        hint="check that the file is complete, or re-create it with "
                             "numpy.savez") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path.name} holds a single array, not an .npz archive",
                        file=str(path), hint="save the four arrays with numpy.savez")
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise _missing_arrays(path, missing)
        try:
            arrays = {k: npz[k] for k in NPZ_KEYS}
            stored_names = npz["class_names"] if "class_names" in npz.files else None
        except Exception as err:  # truncated member, bad CRC, object array
            raise DataError(f"{path.name} cannot be read ({err})", file=str(path),
                            hint="check that the file is complete and holds no Python "
                                 "objects (it is read with allow_pickle=False)") from err
    if stored_names is not None and stored_names.ndim != 1:  # "cat dog": 7 classes
        raise DataError(f"{path.name}'s class_names is not a list of names (shape "
                        f"{stored_names.shape})", file=str(path),
                        hint="save it as an array of names: class_names=np.array(['cat', "
                             "'dog'])")
    if class_names is None and stored_names is not None:
        class_names = [as_text(c.decode("utf-8", "surrogateescape"))  # (Latin-1:
                       if isinstance(c, bytes) else str(c)  # caf\xe9, as a folder's)
                       for c in stored_names.tolist()]
    return from_arrays(name or path.stem, arrays["x_train"], arrays["y_train"],
                    arrays["x_test"], arrays["y_test"], class_names, str(path),
                    file=str(path))
