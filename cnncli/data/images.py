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

import io
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnncli.errors import DataError

#: Images with more pixels are refused (decompression bombs). This is Pillow's own
#: warning threshold (``PIL.Image.MAX_IMAGE_PIXELS``): about 9459 x 9459.
MAX_PIXELS = 89_478_485

#: Pillow decoders cnncli lets run (the JPEG one also opens camera MPO files). Other
#: formats Pillow knows (EPS, which runs Ghostscript, PSD, ICNS, ...) are never tried.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")

#: `resize` modes: "bilinear" stretches to the target size (what Keras'
#: ``image_dataset_from_directory`` and ``Resizing`` do by default, with the same
#: bilinear interpolation); "center_crop" scales the shorter side to the target and
#: cuts the middle out (the torchvision / ResNet evaluation recipe, no distortion).
RESIZE_MODES = ("bilinear", "center_crop")

_BYTES_NAME = "<bytes>"


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
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened, formats=FORMATS) as img:
                _check_size(img, label)
                img.load()
                rgb_or_grey = _to_8bit(_upright(img, label))
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
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
    finally:
        if not isinstance(opened, str):
            opened.close()
    target = "L" if channels == 1 else "RGB"
    array = np.asarray(rgb_or_grey.convert(target), dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


def _check_path(path: str, label: str) -> str:
    if not os.path.exists(path):
        raise DataError("the image does not exist", file=label,
                        hint="check the path and its spelling")
    if os.path.isdir(path):
        raise DataError("this is a folder, not an image", file=label,
                        hint="pass the folder to 'cnncli predict' to use every image in it")
    if os.path.getsize(path) == 0:
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
        if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
            kind = "text, not an image"
    what = f"the file is {kind}" if kind else "the file is not an image cnncli can read"
    return DataError(f"{what} (it reads JPEG, PNG, BMP, GIF, WebP and TIFF)", file=label,
                     hint=hint)


def _upright(img: Image.Image, label: str) -> Image.Image:
    """`img` turned as its EXIF orientation says; as it is if the EXIF data is broken."""
    try:
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


def resize(image: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8 image (C = 1 or 3) to ``size = (height, width)``.

    Modes (`RESIZE_MODES`):

    - ``"bilinear"``: stretch to exactly ``height x width`` with bilinear interpolation,
      like Keras' default (``image_dataset_from_directory``, ``layers.Resizing``). The
      aspect ratio is not kept. Pillow's filter also smooths when shrinking, so a large
      photo does not alias (TensorFlow's ``tf.image.resize`` does not by default).
    - ``"center_crop"``: scale so the image covers the target (for a square target: the
      shorter side becomes the target size), then cut out the centre; what torchvision
      and the ResNet papers do for evaluation. Nothing is stretched.

    >>> resize(np.zeros((10, 20, 3), np.uint8), (4, 4), "center_crop").shape
    (4, 4, 3)
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")
    height, width = int(size[0]), int(size[1])
    channels = image.shape[2] if image.ndim == 3 else 1
    pil = Image.fromarray(image.reshape(image.shape[0], image.shape[1], channels).squeeze(2)
                          if channels == 1 else image)
    if mode == "bilinear":
        out = pil.resize((width, height), Image.Resampling.BILINEAR)
    else:
        out = ImageOps.fit(pil, (width, height), method=Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8).reshape(height, width, channels)
