"""Turn the inputs of ``cnncli predict`` into a list of images, and fetch URLs.

An argument can be an image file, a folder (searched recursively for images),
a glob pattern (``photos/**/*.jpg``), ``@list.txt`` (one path per line), ``-``
(paths read from standard input) or an http(s) URL, kept as it is and fetched
later with `fetch_url`.

>>> expand_inputs(["https://example.com/cat.jpg"])
['https://example.com/cat.jpg']

This module is imported by the CLI, so it imports nothing heavy.
"""

from __future__ import annotations

import glob
import os
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections import Counter
from pathlib import Path
from typing import TextIO

from cnncli import __version__
from cnncli.data.dataset import DataWarning
from cnncli.errors import DataError, raise_all
from cnncli.text import as_list, count, some

#: File name endings taken from folders and glob patterns (compared lower-case).
#: Keras' own ``image_dataset_from_directory`` takes .bmp, .gif, .jpeg, .jpg and .png.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".jpe", ".jfif", ".png", ".webp", ".tif",
                    ".tiff")  # (.jfif: JPEGs a browser on Windows saves)
#: Photo formats people have that cnncli does not read, by file name ending: a folder's
#: are counted and said (skipped without a word, an iPhone's folder looked empty).
UNREAD_PHOTOS = {".heic": "HEIC", ".heif": "HEIC", ".avif": "AVIF", ".jxl": "JPEG XL",
                 ".psd": "Photoshop", **dict.fromkeys(
                     (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"), "RAW")}

#: Default cap on a downloaded image, in bytes.
MAX_URL_BYTES = 50 * 1024 * 1024

_GLOB_CHARS = ("*", "?", "[")


def is_url(text: str) -> bool:
    """True for ``http://...`` and ``https://...``.

    >>> is_url("https://example.com/a.png"), is_url("a.png")
    (True, False)
    """
    return text.lower().startswith(("http://", "https://"))


def _has_scheme(text: str) -> bool:
    """True for ``ftp://x``, ``file:///x``, ...: text that looks like a URL."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier()


def is_image_name(path: str) -> bool:
    """True if `path` ends in one of `IMAGE_EXTENSIONS` (any case).

    >>> is_image_name("IMG_001.JPG"), is_image_name("notes.txt")
    (True, False)
    """
    return path.lower().endswith(IMAGE_EXTENSIONS)


def is_unnamed_image(path: Path) -> bool:
    """True for a file with no extension whose first bytes are an image's (`IMG_0001`,
    as some cameras and apps export them): a CSV of labels reads it, and so does a
    folder (Keras' folders skip it). Files with another extension are not opened."""
    from cnncli.data import images

    return not os.path.splitext(path.name)[1] and images.sniff(path) is None


def unread_photos(paths: list[Path]) -> str:
    """How many of `paths` (photos cnncli cannot read: `UNREAD_PHOTOS`) there are of each
    format, and what to do, for a message; "" for none.

    >>> unread_photos([Path("a/IMG_1.HEIC"), Path("a/IMG_2.heic"), Path("b/x.CR2")])[:53]
    '3 photos in formats cnncli cannot read (2 HEIC, 1 RAW'
    """
    if not paths:
        return ""
    kinds = Counter(UNREAD_PHOTOS[p.suffix.lower()] for p in paths)
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    return (f"{count(len(paths), 'photo')} in formats cnncli cannot read ({counts}; e.g. "
            f"{paths[0]}): convert {'it' if len(paths) == 1 else 'them'} to JPEG or PNG")


def _images_in_folder(folder: str, passed_over: list[Path] | None = None) -> list[str]:
    """Image files under `folder`, recursively, sorted; hidden files and folders skipped,
    links followed as training follows them (`image_files`, as its `passed_over`)."""
    top = Path(folder)  # the paths as given (./photos/a.jpg stays so, not photos/a.jpg)
    return sorted(os.path.join(folder, p.relative_to(top))
                  for p in image_files(top, passed_over=passed_over)[0])


def image_files(folder: Path, classes: dict[Path, str] | None = None,
                passed_over: list[Path] | None = None) -> tuple[list[Path], list]:
    """Image files below `folder` (sub-folders included, like Keras), sorted; hidden ones
    and other extensions skipped (photos cnncli cannot read, `UNREAD_PHOTOS`, are added
    to `passed_over`; a file with no extension is read if it is an image). Links are
    followed, each folder once, except a link into another
    of the `classes` folders (it would give that class's images this label): those come
    back as ``(link, class folder)``. A link to `folder` or a folder above it (a loop)
    adds nothing."""
    classes = classes or {}
    found, elsewhere = [], []
    top = Path(os.path.realpath(folder))
    linked_to: dict[str, str | None] = {}  # a linked file's real folder -> its other class

    def of_another_class(dirpath: str, real: Path) -> bool:
        other = _other_class(real, top, classes)
        if other:
            elsewhere.append((Path(dirpath), other))
        return other is not None

    for dirpath, filenames in walk_once(folder, skip=of_another_class):
        for name in sorted(filenames):
            if name.startswith(".") or not (is_image_name(name) or
                                            is_unnamed_image(Path(dirpath) / name)):
                if passed_over is not None and not name.startswith(".") and \
                        os.path.splitext(name)[1].lower() in UNREAD_PHOTOS:
                    passed_over.append(Path(dirpath) / name)
                continue
            path = Path(dirpath) / name
            other = None
            if os.path.islink(path):  # (a farm of links: one look-up per folder they reach)
                there = os.path.dirname(os.path.realpath(path))
                if there not in linked_to:
                    linked_to[there] = _other_class(Path(there), top, classes)
                other = linked_to[there]
            if other:
                elsewhere.append((path, other))
            else:
                found.append(path)
    return found, elsewhere


def walk_once(folder, skip=None):
    """(folder, its file names) for `folder` and every folder below it, in sorted order:
    links followed, each real folder once, hidden folders skipped, and a link to a folder
    above (a loop: the folders beside it would be walked again, and again) not followed.
    `skip(dirpath, realpath)` may leave out a folder and what is below it."""
    walked: set[Path] = set()
    top = Path(os.path.realpath(folder))
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = Path(os.path.realpath(dirpath))
        if real in walked or real in top.parents or (skip and skip(dirpath, real)):
            dirnames[:] = []
            continue
        walked.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, filenames


def expand_pattern(pattern: str) -> list[str]:
    """What the glob `pattern` matches, sorted; ``**`` matches any folders below, walked
    as `walk_once` walks them. (Python's ``glob(recursive=True)`` follows a link to a
    folder above again and again: a folder holding two such links took longer than any
    wait.)

    >>> expand_pattern("/nonexistent/**/*.png")
    []
    """
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return sorted(glob.glob(pattern))
    at = parts.index("**")
    head, rest = os.sep.join(parts[:at]) or (os.sep if at else ""), os.sep.join(parts[at + 1:])
    roots = [head] if head and not glob.has_magic(head) else glob.glob(head or os.curdir)
    found: set[str] = set()
    for root in filter(os.path.isdir, roots):
        for dirpath, filenames in walk_once(root):
            if head == "":  # as glob writes them: a/b, not ./a/b
                dirpath = "" if dirpath == os.curdir else dirpath.removeprefix(os.curdir + os.sep)
            if rest:
                found.update(expand_pattern(os.path.join(glob.escape(dirpath), rest)
                                            if dirpath else rest))
            else:  # `**` last: the folders, and their files unless it ends in a `/`
                if dirpath:
                    found.add(dirpath)
                found.update(os.path.join(dirpath, name) for name in filenames
                             if not name.startswith(".") and not pattern.endswith(os.sep))
    return sorted(found)


def _other_class(real: Path, own: Path, classes: dict[Path, str]) -> str | None:
    """The class folder (of `classes`, not `own`) that `real` is in, if any."""
    for folder in (real, *real.parents):
        if folder == own:
            return None
        if folder in classes:
            return classes[folder]
    return None


def _read_list(lines: list[str], base_dir: str) -> list[tuple[int, str]]:
    """(line number, path) for each entry; blank lines and ``#`` comments are skipped."""
    entries = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not is_url(text) and not os.path.isabs(text):
            text = os.path.join(base_dir, text)
        entries.append((number, text))
    return entries


class _Expander:
    """Collects the expanded paths, in order, without duplicates, and the missing ones."""

    def __init__(self, empty: list[DataError] | None = None) -> None:
        self.paths: list[str] = []
        self.seen: set[str] = set()
        self.missing: list[tuple[str, str | None, int | None]] = []
        self.empty = empty  # collects the errors of folders and patterns with no images

    def nothing_in(self, error: DataError) -> None:
        """A folder or pattern that gives no images: `error` collected, or raised."""
        if self.empty is None:
            raise error
        self.empty.append(error)

    def add(self, path: str) -> None:
        if path not in self.seen:
            self.seen.add(path)
            self.paths.append(path)

    def expand(self, arg: str, *, source: str | None = None, line: int | None = None) -> None:
        """Expand one argument; `source`/`line` say where it came from (a list file)."""
        if is_url(arg):
            self.add(arg)
        elif _has_scheme(arg):
            raise DataError(
                f"'{arg}' is a URL cnncli cannot fetch: only http:// and https:// are supported",
                file=source, line=line, hint="download the file and pass its local path",
            )
        elif os.path.isdir(arg):
            unread: list[Path] = []
            images = _images_in_folder(arg, unread)
            if not images:
                self.nothing_in(DataError(
                    f"folder '{arg}' holds no images" + (
                        f" cnncli reads: {unread_photos(unread)}" if unread else ""),
                    file=source, line=line,
                    hint=f"cnncli looks for files ending in {', '.join(IMAGE_EXTENSIONS)} "
                         "(or with no extension, when an image's)",
                ))
            if unread:
                warnings.warn(f"skipped {unread_photos(unread)}", DataWarning, stacklevel=2)
            for path in images:
                self.add(path)
        elif os.path.exists(arg):
            self.add(arg)
        elif any(ch in arg for ch in _GLOB_CHARS):
            matches = expand_pattern(arg)
            files = [m for m in matches if os.path.isfile(m) and (
                is_image_name(m) or is_unnamed_image(Path(m)))]
            for folder in (m for m in matches if os.path.isdir(m)):
                files.extend(_images_in_folder(folder))
            if not files:
                self.nothing_in(DataError(
                    f"pattern '{arg}' matches no images",
                    file=source, line=line,
                    hint="check the pattern; '**' matches folders at any depth",
                ))
            for path in files:
                self.add(path)
        elif arg not in self.seen:  # (named once, however often given)
            self.missing.append((arg, source, line))
            self.add(arg)  # in its place, for `expand_inputs(missing_ok=True)`


def _text_of(stream: TextIO) -> str:
    """What `stream` holds, as `_names` reads it (a UTF-8 locale's stdin would refuse a
    name's bytes that are not UTF-8)."""
    raw = getattr(stream, "buffer", None)
    return stream.read() if raw is None else _names(raw.read())  # (a StringIO: text)


def _names(raw: bytes) -> str:
    """A list of paths' bytes as text: UTF-8, a name's bytes that are not UTF-8 as they
    are (`find` lists a Latin-1 file's name so), without the BOM Notepad starts with."""
    return raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def _lines_of_list_file(list_path: str) -> list[str]:
    try:
        with open(list_path, "rb") as f:
            return _names(f.read()).splitlines()
    except FileNotFoundError:
        raise DataError(
            f"list file '{list_path}' does not exist", file=list_path,
            hint="'@FILE' reads image paths from FILE, one per line",
        ) from None
    except IsADirectoryError:
        raise DataError(
            f"list file '{list_path}' is a folder", file=list_path,
            hint=f"pass the folder itself, without '@': {list_path}",
        ) from None
    except OSError as err:
        raise DataError(f"cannot read list file '{list_path}': {err}", file=list_path) from None


def expand_inputs(args: list[str], *, stdin: TextIO | None = None,
                  missing_ok: bool = False, empty: list[DataError] | None = None
                  ) -> list[str]:
    """Expand command-line inputs into image paths and URLs, in order, without duplicates.

    - an existing file is kept as given (whatever its name; the image loader checks it);
    - a folder gives its images (`IMAGE_EXTENSIONS`), recursively, sorted, hidden ones skipped;
    - a glob pattern (``*``, ``?``, ``[...]``; ``**`` for any depth) gives the images it
      matches, sorted (folders it matches are searched too);
    - ``@list.txt`` gives the entries of the list file, one per line; blank lines and
      ``#`` comments are skipped; relative entries are relative to the list file's folder;
      entries may themselves be folders, patterns or URLs;
    - ``-`` reads entries the same way from `stdin` (default `sys.stdin`), relative to
      the current folder;
    - ``http://`` and ``https://`` URLs are kept as they are (see `fetch_url`).

    Args:
        args: the arguments as typed.
        stdin: where ``-`` reads from.
        missing_ok: keep a path that does not exist in its place (reading it then says
            so, for that image alone) when others were found.
        empty: where to put the errors of folders and patterns that give no images, when
            others were found (one error line each, as a missing path's).

    Returns:
        The paths and URLs. An empty `args` gives an empty list.

    Raises:
        DataError: naming every path that does not exist (with `missing_ok`, when none
            was found), or a folder or pattern with no images (with `empty`, when no
            image was found), or a list file that cannot be read.

    >>> expand_inputs(["http://example.com/a.jpg", "http://example.com/a.jpg"])
    ['http://example.com/a.jpg']
    """
    expander = _Expander(empty)
    for arg in as_list(args):  # (one path given alone: that path, not its characters)
        arg = os.fspath(arg)
        if arg == "-":
            stream = sys.stdin if stdin is None else stdin
            if stream is None or stream.closed:
                raise DataError("'-' reads image paths from standard input, which is closed",
                                hint="pipe the paths in (ls *.jpg | cnncli predict - ...), "
                                     "or give the images as arguments")
            for number, entry in _read_list(_text_of(stream).splitlines(), ""):
                expander.expand(entry, source="<stdin>", line=number)
        elif arg.startswith("@") and len(arg) > 1:
            list_path = arg[1:]
            lines = _lines_of_list_file(list_path)
            for number, entry in _read_list(lines, os.path.dirname(list_path)):
                expander.expand(entry, source=list_path, line=number)
        else:
            expander.expand(arg)
    nothing = len(expander.missing) == len(expander.paths)  # no image found at all
    if empty and nothing:  # every problem said, as when every path is missing
        raise_all(empty + ([_missing(expander.missing)] if expander.missing else []))
    if expander.missing and (not missing_ok or nothing):
        raise _missing(expander.missing)
    return expander.paths


def _missing(missing: list[tuple[str, str | None, int | None]]) -> DataError:
    first_path, source, line = missing[0]
    what = "does not exist" if len(missing) == 1 else "do not exist"
    return DataError(
        "no such file or folder" if len(missing) == 1 and source is None  # file= names it
        else f"{some((repr(path) for path, _, _ in missing), shown=5)} {what}",
        file=source or first_path,
        line=line,
        hint=(
            f"check the spelling; relative paths are taken from {os.getcwd()}"
            + (" (entries of a list file: from the list file's folder)" if source else "")
        ),
    )


def read_image(source: str, shape, resize: str = "stretch"):
    """The image at `source` (a path or an http(s) URL) as a model of input `shape`
    (H, W, C) takes it: decoded by the one decoder, resized by the one resize.

    >>> read_image("cat.jpg", (224, 224, 3), "center_crop").shape   # doctest: +SKIP
    (224, 224, 3)
    """
    from pathlib import Path

    from cnncli.data import images

    data = fetch_url(source) if is_url(source) else Path(source)
    return images.load_resized(data, tuple(shape[:2]), resize, name=source,
                               channels=1 if shape[-1] == 1 else 3)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) (urllib would also follow ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not is_url(newurl):
            raise DataError(
                f"'{req.full_url}' redirects to '{newurl}', which is not http(s)",
                file=req.full_url,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, *, max_bytes: int = MAX_URL_BYTES, timeout: float = 30) -> bytes:
    """Download `url` (http or https only) and return its bytes.

    Refuses responses larger than `max_bytes`, both when the server announces the
    size and when it does not. `timeout` is for the whole download, not each read: a
    server sending a byte a second is stopped too.

    Raises:
        DataError: on another scheme, an HTTP error, a network error, a timeout, or a
            response over `max_bytes`; the message names the URL.

    >>> data = fetch_url("https://example.com/cat.jpg", timeout=10)  # doctest: +SKIP
    """
    if not is_url(url):
        raise DataError(
            "only http:// and https:// URLs can be fetched", file=url,
            hint="download the file and pass its local path",
        )
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"cnncli/{__version__}"})
    except ValueError as err:  # e.g. "http://[::1": an unclosed IPv6 address
        raise DataError(f"this is not a valid URL ({err})", file=url,
                        hint="check the URL; copy it again from the browser") from None
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                _too_big(url, max_bytes)
            data = _read_by(response, time.monotonic() + timeout, max_bytes + 1)
    except DataError:
        raise
    except urllib.error.HTTPError as err:
        raise DataError(f"the server answered HTTP {err.code} {err.reason}", file=url,
                        hint="check the URL in a browser") from None
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, TimeoutError):
            _timed_out(url, timeout)
        raise DataError(f"cannot fetch the URL: {reason}", file=url,
                        hint="check the URL and the network connection") from None
    except TimeoutError:
        _timed_out(url, timeout)
    except (OSError, ValueError) as err:  # connection reset, malformed URL, bad status line
        raise DataError(f"cannot fetch the URL: {err}", file=url,
                        hint="check the URL and the network connection") from None
    if len(data) > max_bytes:
        _too_big(url, max_bytes)
    return data


def _read_by(response, deadline: float, limit: int) -> bytes:
    """Read up to `limit` bytes, raising TimeoutError once `deadline` has passed (each
    read itself waits at most the socket's timeout, so a download ends by twice it)."""
    chunks, size = [], 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read1(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _too_big(url: str, max_bytes: int) -> None:
    raise DataError(
        f"the response is larger than {max_bytes / 1e6:g} MB, the limit for one image",
        file=url, hint="download it and pass a smaller local copy",
    )


def _timed_out(url: str, timeout: float) -> None:
    raise DataError(f"no answer within {timeout:g} s", file=url,
                    hint="try again later, or download the file and pass its local path")
