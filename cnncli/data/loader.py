"""Images of a split as a model takes them: uint8, at its size, by index. Decoded (with the
one decoder, `cnncli.data.images`) and resized (the one resize, in the model's mode) the
first time an index is asked for, and kept in a cache so later epochs only read them.

The cache (``data.cache``) holds the decoded, resized uint8 images: ``memory``, ``disk``
(a file in the cache folder, reused by later runs on the same files at the same size),
``none`` (decode every epoch), or ``auto``: memory when they take under a quarter of the
memory available, else disk. A file that cannot be decoded gives a black image with
weight 0 (training skips it; `failures` counts it), never a crash; nor does a disk error
writing the cache mid-epoch (its space is reserved up front; if it still fails, images
are decoded every epoch from then on, and `cache_error` says why).

>>> loader = ImageLoader(split, (28, 28, 1), "stretch", cache="memory")   # doctest: +SKIP
>>> images, weights = loader.batch(np.array([0, 5, 9]))                  # doctest: +SKIP
>>> images.shape, weights.tolist()                                       # doctest: +SKIP
((3, 28, 28, 1), [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnncli import parallel
from cnncli.data import images
from cnncli.data.dataset import Split
from cnncli.errors import CnnError, DataError
from cnncli.files import umask
from cnncli.text import dims_text, size

#: `auto` keeps the cache in memory up to this share of the memory available.
MEMORY_SHARE = 0.25
#: Environment variable naming the folder of disk caches.
CACHE_DIR_ENV = "CNNCLI_CACHE_DIR"
#: A disk cache is a folder named by `KEY_LENGTH` hex digits of a hash of its files and
#: size, holding the images and which are filled in (`cnncli.data.caches` lists them).
KEY_LENGTH = 24
IMAGES_FILE, FILLED_FILE = "images.u8", "filled.bool"


def cache_dir() -> Path:
    """``$CNNCLI_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnncli``, else ``~/.cache/cnncli``;
    without a home folder (a container's user with neither ``HOME`` nor an entry in
    /etc/passwd) ``/tmp/.cache/cnncli``, as Keras falls back to ``/tmp/.keras``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "cnncli"
    try:
        return Path.home() / ".cache" / "cnncli"
    except RuntimeError:  # ("Could not determine home directory")
        return Path("/tmp/.cache/cnncli")


#: Where Linux says how much memory is available.
MEMINFO = "/proc/meminfo"


def available_memory() -> int:
    """Bytes of memory available: Linux's ``MemAvailable``; elsewhere (macOS) half the
    machine's memory, which its file caches give back as needed; a pessimistic 2 GiB if
    neither is known."""
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):  # (no such name here; Windows)
        return 2 * 2**30


#: Arrays read whole (an .npz, IDX files) may take at most this share of the memory
#: available: a file whose header declares more is refused before it is read (a small
#: compressed file of zeros can declare gigabytes).
ARRAYS_SHARE = 0.5


def refuse_beyond_memory(nbytes: int, path: Path) -> None:
    """A `DataError` naming `path` if `nbytes`, what its header declares, would take more
    than `ARRAYS_SHARE` of the memory available (it is read whole)."""
    available = available_memory()
    limit = ARRAYS_SHARE * available
    if nbytes > limit:
        declared, allowed, free = (size(n, memory=True) for n in (nbytes, limit, available))
        raise DataError(
            f"{path.name} declares {declared} of images and labels, and such a file is read "
            f"whole: more than the {allowed} it may take (half the {free} of memory available "
            "now)", file=str(path), hint="free some memory, or use a smaller file, or the "
            "images as files in class folders or a CSV (read as they are used)")


def choose_cache(mode: str, count: int, shape: tuple[int, int, int],
                 memory: int | None = None) -> str:
    """What ``auto`` becomes for `count` images of `shape`.

    >>> choose_cache("auto", 60_000, (28, 28, 1), memory=8 * 2**30)
    'memory'
    >>> choose_cache("auto", 1_281_167, (224, 224, 3), memory=24 * 2**30)
    'disk'
    """
    if mode != "auto":
        return mode
    size = count * int(np.prod(shape))
    return "memory" if size < MEMORY_SHARE * (memory or available_memory()) else "disk"


class ImageLoader:
    """uint8 images of a files or arrays `Split` at `shape` (H, W, C), by index.

    Args:
        split: the images (file paths or an array) and labels.
        shape: the model's input (height, width, channels).
        resize: how images of another size are brought to it (`images.RESIZE_MODES`).
        cache: ``auto``, ``memory``, ``disk`` or ``none`` (`data.cache`); ``auto`` is
            decided here (`choose_cache`).
        store: make the cache's store now (a disk cache's files); False for a plan that
            is only shown (``train --dry-run``): nothing is written, nothing is read.
    """

    def __init__(self, split: Split, shape, resize: str = "stretch", cache: str = "auto",
                 store: bool = True):
        self.split, self.shape = split, tuple(int(d) for d in shape)
        self.resize = images.resize_mode(resize)
        self.cache = choose_cache(cache, len(split), self.shape)
        self.failures: dict[int, CnnError] = {}  # index -> why it could not be decoded
        self.tried = 0  # how many different images a decode was tried on
        self._tried = np.zeros(len(split), bool)
        self.cache_error: str | None = None  # why the cache stopped mid-run, if it did
        #: files found changed on disk since the cache's key was made from them (`_key`):
        #: decoded as they are now, never stored under that key
        self.changed: set[int] = set()
        self._signatures: np.ndarray | None = None  # each file's, when the key was made
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(parallel.DECODE_THREADS)
        self._made: list[Path] = []  # the disk cache's files (and folder) made now
        self._path: Path | None = None  # the disk cache's folder, once made
        self._store, self._filled = self._make_store() if store else (None, None)
        if not store and self.cache == "disk":  # a plan only shown: would the cache fail?
            _check_cache_place()

    def describe(self) -> str:
        """For the Data line: ``decoded as they are used, at 32x32 (stretch), cached in
        memory``; arrays of another size say theirs (``28x28 images resized to 32x32``)."""
        where = {"memory": "cached in memory", "none": "not cached"}.get(self.cache) or \
            f"cached on disk ({self._path or cache_dir() / self._key()})"  # (made or not)
        size, how = dims_text(self.shape[:2]), f"({self.resize})"
        if self.split.kind == "arrays" and self.split.images.ndim == 4:
            own = dims_text(self.split.images.shape[1:3])
            if own != size:
                return f"{own} images resized to {size} {how} as they are used, {where}"
        return f"decoded as they are used, at {size} {how}, {where}"

    def _make_store(self):
        n, shape = len(self.split), (len(self.split), *self.shape)
        if self.cache == "none":
            return None, None
        if self.cache == "memory":
            # np.empty takes no memory until written: the cache grows as images are decoded
            return np.empty(shape, np.uint8), np.zeros(n, bool)
        folder = cache_dir() / self._key()
        self._path = folder
        try:
            return _open_store(folder, shape, self._made)
        except OSError as exc:
            first = "free some disk space, " if exc.errno not in (errno.EACCES, errno.EPERM, \
                errno.EROFS, errno.ENOTDIR, errno.EEXIST) else ""  # (someone else's cache, a
            # read-only disk, a file in the way: not room)
            raise DataError(f"cannot make the image cache: {exc.strerror or exc}",
                            file=str(folder), hint=f"{first}set {CACHE_DIR_ENV} to a folder "
                            "you can write to, with room, or use data.cache: memory or "
                            "none") from None

    def _key(self) -> str:
        """A name for the disk cache of these files at this size: files that changed (size,
        modification or status change time: rewritten with their old modification time
        set back, as `tar` and `touch -r` do) or another size or resize mode get another
        cache."""
        digest = hashlib.sha256(f"{self.shape} {self.resize}\n".encode())
        if self.split.kind == "arrays":
            digest.update(hashlib.sha256(np.ascontiguousarray(self.split.images)).digest())
            return digest.hexdigest()[:KEY_LENGTH]
        paths = self.split.images.shards if self.split.kind == "records" else self.split.images
        signatures = np.zeros(len(paths), np.int64)
        for k, path in enumerate(paths):
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\n"
                          .encode("utf-8", "surrogateescape"))  # a name's bytes as on disk
            signatures[k] = _signature(stat)
        if self.split.kind == "files":
            self._signatures = signatures
        return digest.hexdigest()[:KEY_LENGTH]

    def batch(self, indices: np.ndarray, encoded=None) -> tuple[np.ndarray, np.ndarray]:
        """The images at `indices` (B, H, W, C) and their weights (1, or 0 for a file that
        could not be decoded: a black image the loss ignores). For TFRecords, `encoded`
        holds the images' bytes as read from the shards."""
        indices = np.asarray(indices)
        if isinstance(self._store, np.ndarray) and self._filled[indices].all():
            # in memory and all decoded (every epoch after the first): one copy, no loop
            return self._store[indices], np.ones(len(indices), np.float32)
        sources = {int(i): e for i, e in zip(indices, encoded, strict=True)} \
            if encoded is not None else {}
        out = np.zeros((len(indices), *self.shape), np.uint8)
        weights = np.ones(len(indices), np.float32)
        todo = []
        for k, i in enumerate(indices):
            if self._filled is not None and self._filled[i]:
                out[k] = self._store[i]
            else:
                todo.append((k, int(i)))
        # A task a core, each decoding every n-th image: a task an image cost more than a
        # small image's decoding (threads handing the interpreter lock over): 28x28 PNGs
        # decoded 1.3x as fast, 224x224 JPEGs 1.05x (bench/STREAM_RESULTS.md)
        cores = parallel.available_cpus()
        chunks = [todo[c::cores] for c in range(cores)]
        decoded = self._pool.map(lambda chunk: [self._decode(i, sources.get(i))
                                                for _, i in chunk], chunks)
        for chunk, found in zip(chunks, decoded, strict=True):
            for (k, i), image in zip(chunk, found, strict=True):
                if image is None:
                    weights[k] = 0.0
                    continue
                out[k] = image
                if self._store is not None and i not in self.changed:
                    try:
                        self._store[i] = image
                    except OSError as exc:  # e.g. a disk error writing the cache: train on,
                        self._store = self._filled = None  # uncached (and say so)
                        self.cache_error = (f"writing the image cache {self._path or ''} failed "
                                            f"({exc.strerror or exc})")
                        continue
                    self._filled[i] = True
        return out, weights

    def _decode(self, i: int, encoded: bytes | None = None) -> np.ndarray | None:
        size, channels = self.shape[:2], self.shape[-1]
        with self._lock:
            if not self._tried[i]:
                self._tried[i] = True
                self.tried += 1
        try:
            if encoded is not None:
                return images.load_resized(bytes(encoded), size, self.resize,
                                           name=self._record_name(i), channels=channels)
            if self.split.kind == "arrays":
                image = images.convert_channels(self.split.images[i], channels)
                return images.resize(image, size, self.resize)
            image = images.load_resized(self.split.images[i], size, self.resize,
                                        channels=channels)
            if self._signatures is not None and not self._unchanged(i):
                with self._lock:  # (a folder swapped for another mid-run, a file replaced)
                    self.changed.add(i)
            return image
        except CnnError as exc:
            with self._lock:
                self.failures[i] = exc
            return None

    def _unchanged(self, i: int) -> bool:
        """Whether file `i` is still the one the disk cache's key was made from: the
        cache is shared by every run on these files, and an image of another file stored
        under it would be given to each of them."""
        try:
            return _signature(os.stat(self.split.images[i])) == self._signatures[i]
        except OSError:
            return False

    def _record_name(self, i: int) -> str:
        return f"record {i} of {Path(self.split.images.shards[0]).parent}"

    def discard(self) -> None:
        """Remove the disk cache this loader made, before anything is read through it
        (the data it was for will not be trained on now: a full disk, the other split's
        cache refused, is not left fuller)."""
        self._store = self._filled = None  # (closes the file)
        for path in reversed(self._made):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        self._made = []

    def flush(self) -> None:
        """Write the disk cache out (the operating system would, later)."""
        if isinstance(self._filled, np.memmap):
            self._filled.flush()

    def close(self) -> None:
        """Let go of the decoding threads and the cache (written out, if on disk): a run
        that ended. TensorFlow's graph keeps `batch` (and so this loader) while the
        process lives; without this, each training in one process (a notebook) kept its
        threads and its decoded images."""
        with contextlib.suppress(OSError):
            self.flush()
        self._pool.shutdown(wait=True, cancel_futures=True)  # (a decode at most: ms)
        self._store = self._filled = None


def _check_cache_place() -> None:
    """The `DataError` making the disk cache would raise at once for its folder (a file
    in its way, no right to write), for a plan only shown (``train --dry-run``), which
    makes nothing."""
    folder = cache_dir()
    there = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if there is None or (there.is_dir() and os.access(there, os.W_OK | os.X_OK)):
        return
    why = f"{there} is a file" if not there.is_dir() else f"no right to write in {there}"
    raise DataError(f"cannot make the image cache: {why}", file=str(folder),
                    hint=f"set {CACHE_DIR_ENV} to a folder you can write to, with room, or use "
                         "data.cache: memory or none")


def _signature(stat: os.stat_result) -> int:
    """A file's identity and version as one number: which file (device, inode), its
    size and its modification and status change times."""
    return hash((stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


def _reserve(fd: int, size: int) -> None:
    """Give the file `fd` `size` bytes of zeros that the disk has room for (a full disk
    is an `OSError` now): `os.posix_fallocate` where the system has it (Linux), else
    (macOS) the zeros written."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    zeros, left = memoryview(bytes(1 << 20)), size
    while left:
        left -= os.write(fd, zeros[:min(left, len(zeros))])


def _open_store(folder: Path, shape: tuple[int, ...], made: list[Path]):
    """The disk cache in `folder`: the images (`FileImages`) and which are filled in;
    what it made is added to `made`.

    A file that is missing or of the wrong size is made anew, under a temporary name
    then renamed (a process that has the old one open keeps it), with its space
    reserved (`os.posix_fallocate`): a full disk is an error now, not a crash (SIGBUS)
    when a page of a sparse file is first written mid-epoch. On an error, what this call
    made is removed."""
    files = ((IMAGES_FILE, np.uint8, shape), (FILLED_FILE, np.bool_, shape[:1]))
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True)
            made.append(folder)
        fresh = False
        for name, dtype, dims in files:
            path = folder / name
            size = int(np.prod(dims)) * np.dtype(dtype).itemsize
            if fresh or not path.is_file() or path.stat().st_size != size:
                fresh = True  # new images: nothing is filled in
                tmp = folder / f".{name}.{os.getpid()}.tmp"
                made.append(tmp)
                # as the user's umask says (a cache folder a team shares: group-writable)
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                             0o666 & ~umask())
                try:
                    _reserve(fd, size)  # zeros
                finally:
                    os.close(fd)
                os.replace(tmp, path)
                made[-1] = path
        return (FileImages(folder / IMAGES_FILE, shape),
                np.memmap(folder / FILLED_FILE, np.bool_, "r+", shape=shape[:1]))
    except OSError:
        for path in reversed(made):
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except OSError:
                pass
        raise


class FileImages:
    """The images of a disk cache, read and written in place with ``pread``/``pwrite``.

    Not memory-mapped: every mapped page a process touches counts in its resident memory,
    so an epoch over 40,000 photos at 224x224 would show 6 GB. Read and written this
    way, the file's pages stay in the operating system's page cache, which it frees when
    memory is short, and the process stays small however large the data set.

    >>> images = FileImages(path, (1000, 224, 224, 3))   # doctest: +SKIP
    >>> images[7] = image; images[7].shape                # doctest: +SKIP
    (224, 224, 3)
    """

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.shape, self.item = tuple(shape[1:]), int(np.prod(shape[1:]))
        self._fd = os.open(path, os.O_RDWR)

    def __getitem__(self, i: int) -> np.ndarray:
        data = os.pread(self._fd, self.item, int(i) * self.item)
        return np.frombuffer(data, np.uint8).reshape(self.shape)

    def __setitem__(self, i: int, image: np.ndarray) -> None:
        os.pwrite(self._fd, np.ascontiguousarray(image, np.uint8).data, int(i) * self.item)

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


def needs_loader(split: Split, shape) -> bool:
    """True when the split's images cannot go to the model as they are: files (decoded
    when used), or arrays of another size (resized by the one resize)."""
    if split.kind != "arrays":
        return True
    return tuple(split.images.shape[1:3]) != tuple(shape[:2])
