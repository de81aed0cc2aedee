"""Read the images people actually have into uint8 arrays, and resize them for a model.

`load_image` returns an ``H x W x 3`` RGB (or ``H x W x 1`` grey) ``uint8`` array
from a JPEG, PNG, BMP, GIF (first frame), WebP or TIFF file, whatever its mode:
grey, palette, CMYK, transparency (composited on white), 16-bit (scaled, not
clipped), with its EXIF orientation applied. Anything else, a truncated file, or
an image over `MAX_PIXELS` is a `DataError` naming the file.

>>> image = load_image("cat.jpg")                          # doctest: +SKIP
>>> resize(image, (224, 224), "center_crop").shape         # doctest: +SKIP
(224, 224, 3)
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnncli import config
from cnncli.errors import DataError

#: Images with more pixels are refused (decompression bombs). This is Pillow's own
#: warning threshold (``PIL.Image.MAX_IMAGE_PIXELS``): about 9459 x 9459.
MAX_PIXELS = 89_478_485

#: Pillow decoders cnncli lets run (the JPEG one also opens camera MPO files). Other
#: formats Pillow knows (EPS, which runs Ghostscript, PSD, ICNS, ...) are never tried.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")

#: `resize` modes (``data.resize`` in a run config, stored with the model): "stretch"
#: scales to the target size, aspect ratio lost (what Keras'
#: ``image_dataset_from_directory`` and ``Resizing`` do by default, with the same
#: bilinear interpolation); "center_crop" scales the shorter side to the target and
#: cuts the middle out (the torchvision / ResNet evaluation recipe, no distortion);
#: "pad" scales the longer side to the target and fills the rest with black (the whole
#: image, undistorted). "bilinear" is the old name of "stretch".
RESIZE_MODES = config.RESIZE_MODES  # stretch, center_crop, pad
_ALIASES = {"bilinear": "stretch"}

_BYTES_NAME = "<bytes>"
#: RGB -> grey: ITU-R 601-2 luma, as Pillow's ``convert("L")``. One set of weights for
#: every path to a grey model: decoded files, arrays, the exported graph.
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)

#: The EXIF tag of an image's orientation (1 upright, 2..8 flipped or turned).
ORIENTATION = 0x0112


def load_image(
    source: str | os.PathLike | bytes, *, name: str | None = None, channels: int = 3
) -> np.ndarray:
    """Read an image file (or its bytes) into a ``uint8`` array of shape ``(H, W, channels)``.

    Args:
        source: a path, or the bytes of an image (e.g. from `cnncli.data.inputs.fetch_url`).
        name: how error messages call the image (default: the path, or ``<bytes>``).
        channels: 3 for RGB, 1 for grey (ITU-R 601-2 luma, as Pillow and
            ``keras.utils.load_img(color_mode="grayscale")`` compute it).

    Conversions: transparency is composited on white; palette, CMYK (Adobe's inverted
    CMYK JPEGs too), grey and 1-bit images become RGB; 16-bit images are scaled to 8 bits
    over their full range (value / 257; Pillow's ``convert`` and Keras' ``load_img``
    clip them instead, turning most of the image white); 32-bit integer images are
    scaled the same way if their values fit in 16 bits, else over 0..2**31-1; float
    images are scaled from 0..1 (or 0..255, or 0..65535, whichever holds the values).
    The EXIF orientation is applied, so a phone photo comes out upright.

    Raises:
        DataError: the file is missing, empty, truncated, not an image of `FORMATS`, or
            larger than `MAX_PIXELS`.

    >>> load_image(open("photo.png", "rb").read(), name="photo.png").dtype  # doctest: +SKIP
    dtype('uint8')
    """
    array = np.asarray(_decode(source, name, channels), dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


def load_resized(source: str | os.PathLike | bytes, size: tuple[int, int],
                 mode: str = "stretch", *, name: str | None = None,
                 channels: int = 3) -> np.ndarray:
    """`load_image` then `resize`, as one step: what every image a model sees goes through
    (training folders, evaluation, prediction), so all see the same pixels. A JPEG much
    larger than `size` is decoded at a reduced scale first (libjpeg's DCT scaling, never
    below `size`), which makes large photos several times faster to read.

    >>> load_resized("photo.jpg", (224, 224), "center_crop").shape   # doctest: +SKIP
    (224, 224, 3)
    """
    mode = resize_mode(mode)
    height, width = int(size[0]), int(size[1])
    image = _decode(source, name, channels, draft=(width, height))
    if image.size != (width, height):
        image = _resize_pil(image, (height, width), mode)
    return np.asarray(image, dtype=np.uint8).reshape(height, width, channels)


def _decode(source, name: str | None, channels: int, draft=None) -> Image.Image:
    """The decoded image as Pillow's "L" (channels 1) or "RGB" (3); see `load_image`."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or _BYTES_NAME
        data = bytes(source)
        if not data:
            raise DataError("the image is empty (0 bytes)", file=label)
        opened = io.BytesIO(data)
    else:
        label = name or os.fspath(source)
        opened = _check_path(os.fspath(source), label)
    target = "L" if channels == 1 else "RGB"
    try:
        with _bomb_warnings_ignored():  # (`_check_size` refuses what Pillow warns of)
            img = Image.open(opened, formats=FORMATS)
        with img:
            _check_size(img, label)
            if draft and img.format == "JPEG" and img.mode in ("L", "RGB"):
                img.draft(img.mode, _draft_size(img, draft))
            img.load()
            img = _to_8bit(_upright(img, label))
            # no copy when nothing changes: a copy cost a sixth of a photo's decode
            return img if img.mode == target else img.convert(target)
    except DataError:
        raise
    except Image.DecompressionBombError:  # (over twice the limit: Pillow's own refusal)
        raise DataError(
            f"the image has more than {MAX_PIXELS:,} pixels; refusing a possible "
            "decompression bomb", file=label, hint="scale the image down first",
        ) from None
    except UnidentifiedImageError:
        raise _not_an_image(opened, label) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        # Pillow reports truncated or corrupt data as OSError ("image file is
        # truncated"), SyntaxError ("broken PNG file"), ValueError or EOFError.
        raise DataError(
            f"the image is truncated or corrupt ({err})", file=label,
            hint="open it in an image viewer; download or copy it again",
        ) from None
    except Exception as err:  # a decoder bug on a strange file: this file fails, not the run
        raise DataError(
            f"the image could not be decoded ({type(err).__name__}: {err})", file=label,
            hint="open it in an image viewer and save it again as PNG or JPEG",
        ) from err
    finally:
        if not isinstance(opened, str):
            opened.close()


_OPENING = threading.Lock()


@contextlib.contextmanager
def _bomb_warnings_ignored():
    """Pillow's warning of a decompression bomb (above ``MAX_IMAGE_PIXELS``, `MAX_PIXELS`;
    above twice that it raises) not said while a file is opened, where Pillow checks its
    size: `_check_size` refuses the image then, with the file's name. Warning filters are
    the process's, and decoding threads change them one at a time (at once, one put back
    what another had set, and the filter stayed: a user's own warning became an error
    after a prediction). Another thread's `warnings.catch_warnings` ending meanwhile
    can still keep the filter (Python's filters are not per thread before 3.14): it only
    hides Pillow's warning then, which cnncli's check says better."""
    with _OPENING, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _draft_size(img: Image.Image, target: tuple[int, int]) -> tuple[int, int]:
    """The size to ask libjpeg's draft mode for: the target, turned with the EXIF
    orientation still to come (a portrait photo is stored sideways), and covering it in
    every resize mode (center_crop scales the shorter side to the target)."""
    width, height = target
    if _rotated(img):
        width, height = height, width
    side = max(width, height)
    return (side, side)


def _orientation(img: Image.Image):
    """The EXIF orientation (1 when there is none); raises on broken EXIF data."""
    return img.getexif().get(ORIENTATION, 1)


def _rotated(img: Image.Image) -> bool:
    try:
        return _orientation(img) in (5, 6, 7, 8)
    except Exception:  # broken EXIF: `_upright` warns and leaves the image as it is
        return False


#: The first bytes of each format in `FORMATS` (what `sniff` checks).
_MAGIC = (("JPEG", b"\xff\xd8\xff"), ("PNG", b"\x89PNG\r\n\x1a\n"), ("GIF", b"GIF8"),
          ("BMP", b"BM"), ("TIFF", b"II*\x00"), ("TIFF", b"MM\x00*"))


#: Said of a FIFO, socket or device found where an image file was expected.
NOT_A_FILE = "this is not a regular file (a FIFO, socket or device), not an image"
#: Said of a folder found where an image file was expected.
A_FOLDER = "this is a folder, not an image"


def sniff(path: str | os.PathLike) -> str | None:
    """The problem with an image file found from its first bytes, or None: the cheap check
    a training folder gets before training starts (the full decode comes later, in the
    pipeline). Catches empty, unreadable and non-image files, not truncated ones.

    >>> sniff(__file__)
    'the file is text, not an image (it reads JPEG, PNG, BMP, GIF, WebP and TIFF)'
    >>> sniff(os.path.dirname(__file__))
    'this is a folder, not an image'
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):  # e.g. a CSV row naming a folder
            return A_FOLDER
        if not stat.S_ISREG(mode):  # opening a FIFO would wait forever
            return NOT_A_FILE
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        return f"the file cannot be read ({err.strerror or err})"
    if not head:
        return "the image is empty (0 bytes)"
    if any(head.startswith(magic) for _, magic in _MAGIC) or (
            head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return None
    return _not_an_image(io.BytesIO(head), os.fspath(path)).message


def _check_path(path: str, label: str) -> str:
    try:
        info = os.stat(path)  # one system call for all the checks below
    except FileNotFoundError:
        raise DataError("the image does not exist", file=label,
                        hint="check the path and its spelling") from None
    except OSError as err:
        raise DataError(f"the image cannot be read ({err.strerror or err})",
                        file=label) from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(A_FOLDER, file=label,
                        hint="give the image files in it (predict and explain take a "
                             "folder and use every image in it)")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(NOT_A_FILE, file=label)
    if info.st_size == 0:
        raise DataError("the image is empty (0 bytes)", file=label,
                        hint="the copy or download probably failed; get the file again")
    if not os.access(path, os.R_OK):
        raise DataError("the image cannot be read (permission denied)", file=label)
    return path


def _check_size(img: Image.Image, label: str) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"the image is {width} x {height} pixels, more than the {MAX_PIXELS:,} "
            "cnncli reads; refusing a possible decompression bomb",
            file=label, hint="scale the image down first",
        )
    if width == 0 or height == 0:
        raise DataError(f"the image is {width} x {height} pixels", file=label)


def _head(opened: str | io.BytesIO) -> bytes:
    if isinstance(opened, io.BytesIO):
        return opened.getvalue()[:64]
    try:
        with open(opened, "rb") as f:
            return f.read(64)
    except OSError:
        return b""


#: The first bytes of formats cnncli reads, where they cannot be the start of text (BMP's
#: ``BM`` can) and Pillow does not say "truncated" itself (it does for a WebP cut short):
#: `_not_an_image` calls a file starting so cut short.
_SIGNATURES = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x89PNG\r\n\x1a\n", "PNG"),
               (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _not_an_image(opened: str | io.BytesIO, label: str) -> DataError:
    """The error for a file Pillow cannot identify, with a guess at what it is."""
    head = _head(opened)
    kind = ""
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        kind = "HEIC (an iPhone photo format), which cnncli cannot read"
        hint = "convert it to JPEG or PNG first"
    elif head[4:12] in (b"ftypavif", b"ftypavis"):
        kind = "AVIF, which cnncli cannot read"
        hint = "convert it to JPEG or PNG first"
    else:
        hint = "check that the file is a complete image; open it in an image viewer"
        started = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
        if started:
            return DataError(f"the file is the start of a {started} image, cut short or "
                             "damaged", file=label,
                             hint="copy or download it again; open it in an image viewer")
        if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
            kind = "text, not an image"
            hint = "give image files (JPEG, PNG, BMP, GIF, WebP or TIFF)"
    what = f"the file is {kind}" if kind else "the file is not an image cnncli can read"
    return DataError(f"{what} (it reads JPEG, PNG, BMP, GIF, WebP and TIFF)", file=label,
                     hint=hint)


def _upright(img: Image.Image, label: str) -> Image.Image:
    """`img` turned as its EXIF orientation says (a new image), or `img` itself when it
    is upright already or its EXIF data is broken (with a warning)."""
    try:
        if _orientation(img) not in range(2, 9):
            return img  # exif_transpose would return a copy: a sixth of a decode's time
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error) as err:
        warnings.warn(f"{label}: ignoring unreadable EXIF orientation ({err})", stacklevel=3)
        return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """An "RGB" or "L" image with 8 bits per channel, transparency on white."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode), mode="L")
    if mode == "1":
        return img.convert("L")
    if mode in ("L", "RGB") and "transparency" not in img.info:
        return img
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # P, CMYK (Pillow undoes Adobe's inversion), YCbCr, LAB, HSV


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16-bit, 32-bit or float grey image onto 0..255 over its bit depth's range."""
    values = values.astype(np.float64)
    if mode.startswith("I;16"):
        top = 65535.0
    elif mode == "I":
        top = 65535.0 if values.max(initial=0) <= 65535 else float(2**31 - 1)
    else:  # "F"
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        peak = values.max(initial=0)
        top = next((t for t in (1.0, 255.0, 65535.0) if peak <= t), peak)
    return np.round(np.clip(values, 0, top) * (255.0 / top)).astype(np.uint8)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 images (..., C) with C = 1 or 3 given `channels`: grey repeated into RGB, or
    RGB to grey by ITU-R 601-2 luma (as `load_image` and Pillow compute it).

    >>> convert_channels(np.full((1, 1, 3), [255, 0, 0], np.uint8), 1).tolist()
    [[[76]]]
    """
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    luma = images[..., :3].astype(np.float32) @ GREY_WEIGHTS
    return np.round(luma).clip(0, 255)[..., None].astype(np.uint8)


def resize_mode(mode: str) -> str:
    """The `RESIZE_MODES` name of `mode` (``bilinear`` -> ``stretch``), or a ConfigError.

    >>> resize_mode("bilinear"), resize_mode("pad")
    ('stretch', 'pad')
    """
    mode = _ALIASES.get(mode, mode)
    if mode not in RESIZE_MODES:
        from cnncli.errors import ConfigError, suggest

        raise ConfigError(f"unknown resize mode '{mode}'",
                          hint=suggest(mode, RESIZE_MODES, listing="use one of"))
    return mode


def resize(image: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8 image (C = 1 or 3) to ``size = (height, width)``.

    The one resize of cnncli: training, evaluation and prediction all use it, in the mode
    the model was trained with (`RESIZE_MODES`). An image already at `size` is returned
    as it is. Pillow's bilinear filter also smooths when shrinking, so a large photo does
    not alias (TensorFlow's ``tf.image.resize`` does not by default).

    >>> resize(np.zeros((10, 20, 3), np.uint8), (4, 4), "center_crop").shape
    (4, 4, 3)
    >>> resize(np.full((10, 20, 1), 255, np.uint8), (4, 4), "pad")[:, :, 0].tolist()[0]
    [0, 0, 0, 0]
    """
    mode = resize_mode(mode)
    height, width = int(size[0]), int(size[1])
    channels = image.shape[2] if image.ndim == 3 else 1
    if image.shape[:2] == (height, width):
        return image.reshape(height, width, channels)
    pil = Image.fromarray(image.reshape(image.shape[0], image.shape[1], channels).squeeze(2)
                          if channels == 1 else image)
    out = _resize_pil(pil, (height, width), mode)
    return np.asarray(out, dtype=np.uint8).reshape(height, width, channels)


def _resize_pil(pil: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """The one resize, on a Pillow image (see `resize`)."""
    height, width = size
    if mode == "stretch":
        return pil.resize((width, height), Image.Resampling.BILINEAR)
    if mode == "center_crop":
        return ImageOps.fit(pil, (width, height), method=Image.Resampling.BILINEAR)
    return ImageOps.pad(pil, (width, height), method=Image.Resampling.BILINEAR, color=0)
