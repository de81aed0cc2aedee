"""Tests for cnncli.data.images: reading real image files of every common kind, and resizing."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from cnncli.data import images
from cnncli.data.images import MAX_PIXELS, RESIZE_MODES, load_image, resize
from cnncli.errors import ConfigError, DataError

RED = (255, 0, 0)


def write_png(path, width, height, bit_depth, color_type, rows):
    """Write a PNG chunk by chunk; `rows` yields raw scanlines (without filter byte).

    Lets the tests make 16-bit RGB PNGs (Pillow cannot write them) and huge but tiny
    PNGs without holding the pixels in memory.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    compressor = zlib.compressobj(9)
    parts = [compressor.compress(b"\x00" + row) for row in rows]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))
    return path


def blank_rows(width, height, bits_per_pixel, block=2000):
    """All-zero scanlines, `block` rows per item (one compress call each)."""
    row = bytes((width * bits_per_pixel + 7) // 8)
    for start in range(0, height, block):
        count = min(block, height - start)
        yield (row + b"\x00") * (count - 1) + row  # filter bytes between rows


def saved(tmp_path, img: Image.Image, name: str, **params) -> str:
    path = tmp_path / name
    img.save(path, **params)
    return str(path)


# --- formats --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.png", "a.bmp", "a.gif", "a.webp", "a.tiff"])
def test_lossless_formats_read_back_exactly(tmp_path, name):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    if name.endswith(".gif"):  # GIF is palette-based: use few colours
        pixels = (pixels // 128) * 255
    params = {"lossless": True} if name.endswith(".webp") else {}
    path = saved(tmp_path, Image.fromarray(pixels), name, **params)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, pixels)


def test_jpeg_reads_close_to_its_colour(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (16, 8), RED), "a.jpg", quality=95)
    out = load_image(path)
    assert out.shape == (8, 16, 3)
    assert np.abs(out.astype(int) - RED).max() <= 3


def test_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in (RED, (0, 0, 255))]
    path = str(tmp_path / "anim.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert tuple(load_image(path)[0, 0]) == RED


def test_bytes_are_read_like_a_file(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (3, 2), RED), "a.png")
    with open(path, "rb") as f:
        out = load_image(f.read(), name="http://host/a.png")
    assert out.shape == (2, 3, 3) and tuple(out[0, 0]) == RED


def test_one_pixel_image_works(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (1, 1), RED), "dot.png")
    out = load_image(path)
    assert out.shape == (1, 1, 3)
    assert resize(out, (224, 224)).shape == (224, 224, 3)


# --- modes ----------------------------------------------------------------------------


def test_grey_becomes_three_equal_channels(tmp_path):
    path = saved(tmp_path, Image.new("L", (2, 2), 77), "g.png")
    assert load_image(path).tolist() == [[[77, 77, 77]] * 2] * 2


def test_one_bit_image_becomes_black_and_white(tmp_path):
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    out = load_image(saved(tmp_path, img, "b.png"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]


def test_rgba_transparency_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 255))
    out = load_image(saved(tmp_path, img, "t.png"))
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent: white
    assert out[0, 1].tolist() == [255, 0, 0]


def test_half_transparent_black_becomes_mid_grey(tmp_path):
    img = Image.new("LA", (1, 1), (0, 128))
    out = load_image(saved(tmp_path, img, "la.png"))
    assert abs(int(out[0, 0, 0]) - 127) <= 1


def test_palette_with_transparent_index_is_composited_on_white(tmp_path):
    img = Image.new("P", (2, 1), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 0), 1)
    path = saved(tmp_path, img, "p.png", transparency=0)
    out = load_image(path)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 255, 0]


def test_palette_gif_with_transparency_is_composited_on_white(tmp_path):
    img = Image.new("P", (2, 1), 0)
    img.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    img.putpixel((1, 0), 1)
    out = load_image(saved(tmp_path, img, "p.gif", transparency=0))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [200, 0, 0]


def test_grey_png_with_transparent_colour_is_composited_on_white(tmp_path):
    img = Image.new("L", (2, 1), 5)
    img.putpixel((1, 0), 60)
    out = load_image(saved(tmp_path, img, "lt.png", transparency=5))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [60, 60, 60]


def test_adobe_inverted_cmyk_jpeg_becomes_rgb(tmp_path):
    """Photoshop writes inverted CMYK with an Adobe marker; Pillow undoes the inversion."""
    path = saved(tmp_path, Image.new("RGB", (8, 8), RED).convert("CMYK"), "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert b"Adobe" in open(path, "rb").read()  # Pillow writes the APP14 Adobe segment too
    out = load_image(path)
    assert out.shape == (8, 8, 3) and np.abs(out.astype(int) - RED).max() <= 4


def test_cmyk_tiff_becomes_rgb(tmp_path):
    path = saved(tmp_path, Image.new("CMYK", (2, 2), (0, 255, 255, 0)), "c.tif")
    assert load_image(path)[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path, suffix):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    path = saved(tmp_path, Image.fromarray(values), f"g16.{suffix}")
    assert Image.open(path).mode == "I;16"
    assert Image.open(path).convert("RGB").getpixel((2, 0)) == (255, 255, 255)  # Pillow clips
    out = load_image(path)
    assert out[..., 0].tolist() == [[0, 1, 128, 255]]
    assert (out[..., 0] == out[..., 2]).all()


def test_16_bit_big_endian_tiff_is_scaled(tmp_path):
    values = np.array([[0, 32896, 65535]], dtype=">u2")
    img = Image.fromarray(values)
    assert img.mode == "I;16B"
    out = load_image(saved(tmp_path, img, "g16b.tif"))
    assert out[..., 0].tolist() == [[0, 128, 255]]


def test_32_bit_integer_tiff_holding_16_bit_values_is_scaled(tmp_path):
    img = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32))
    assert img.mode == "I"
    out = load_image(saved(tmp_path, img, "i32.tif"))
    assert out[..., 0].tolist() == [[0, 128, 255]]


def test_float_tiff_in_unit_range_is_scaled(tmp_path):
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert img.mode == "F"
    out = load_image(saved(tmp_path, img, "f.tif"))
    assert out[..., 0].tolist() == [[0, 128, 255]]


def test_32_bit_integer_tiff_beyond_16_bits_is_scaled_over_0_to_2_31(tmp_path):
    img = Image.fromarray(np.array([[0, 2**30, 2**31 - 1]], dtype=np.int32))
    assert img.mode == "I"
    out = load_image(saved(tmp_path, img, "i32big.tif"))
    assert out[..., 0].tolist() == [[0, 128, 255]]


def test_float_tiff_in_0_to_255_is_scaled_over_that_range(tmp_path):
    img = Image.fromarray(np.array([[0.0, 128.0, 255.0]], dtype=np.float32))
    out = load_image(saved(tmp_path, img, "f255.tif"))
    assert out[..., 0].tolist() == [[0, 128, 255]]


def test_nan_in_a_float_tiff_becomes_black_without_a_warning(tmp_path):
    img = Image.fromarray(np.array([[np.nan, 0.5, 1.0]], dtype=np.float32))
    path = saved(tmp_path, img, "fnan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's "invalid value encountered in cast"
        out = load_image(path)
    assert out[..., 0].tolist() == [[0, 128, 255]]


def test_16_bit_rgb_png_keeps_its_colours(tmp_path):
    pixel = np.array([65535, 32896, 0], dtype=">u2")
    path = write_png(tmp_path / "rgb16.png", 1, 1, 16, 2, [pixel.tobytes()])
    assert load_image(str(path))[0, 0].tolist() == [255, 128, 0]


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), RED)  # 20 wide, 10 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = saved(tmp_path, img, "phone.jpg", exif=exif)
    assert load_image(path).shape == (20, 10, 3)


@pytest.mark.parametrize("orientation", [
    3,  # "rotate 180 degrees"
    2,  # "mirror horizontally"
])
def test_exif_orientation_turns_the_pixels_not_only_the_shape(tmp_path, orientation):
    img = Image.new("RGB", (20, 10), (0, 0, 0))
    img.paste(RED, (0, 0, 10, 10))  # left half red as stored: either way it ends on the right
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(saved(tmp_path, img, "turned.png", exif=exif))
    assert out.shape == (10, 20, 3)
    assert out[5, 18].tolist() == list(RED) and out[5, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("orientation", [None, 1])
def test_an_upright_image_is_decoded_without_a_copy(tmp_path, monkeypatch, orientation):
    # a copy of the pixels cost a sixth of a photo's decode (bench/STREAM_RESULTS.md)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    path = saved(tmp_path, Image.new("RGB", (20, 10), RED), "a.jpg", exif=exif)

    def no_copy(self):
        raise AssertionError("the decoded image was copied")

    monkeypatch.setattr(Image.Image, "copy", no_copy)
    assert load_image(path).shape == (10, 20, 3)
    assert images.load_resized(path, (5, 5)).shape == (5, 5, 3)


def test_channels_1_gives_grey_luma(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (3, 2), RED), "a.png")
    out = load_image(path, channels=1)
    assert out.shape == (2, 3, 1)
    assert out[0, 0, 0] == Image.new("RGB", (1, 1), RED).convert("L").getpixel((0, 0))


def test_channels_1_of_16_bit_grey_is_scaled(tmp_path):
    img = Image.fromarray(np.array([[32896]], dtype=np.uint16))
    assert load_image(saved(tmp_path, img, "g.png"), channels=1).tolist() == [[[128]]]


# --- refusals -------------------------------------------------------------------------


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    path = str(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match="does not exist") as err:
        load_image(path)
    assert err.value.file == path


def test_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="folder"):
        load_image(str(tmp_path))


def test_zero_byte_file_is_a_data_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as err:
        load_image(str(path))
    assert err.value.file == str(path)


def test_zero_bytes_are_a_data_error():
    with pytest.raises(DataError, match="empty"):
        load_image(b"", name="http://x/a.png")


def test_text_file_named_jpg_is_a_data_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n")
    with pytest.raises(DataError, match="text, not an image") as err:
        load_image(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("start", "kind"), [(b"GIF89a", "GIF"), (b"II*\x00", "TIFF")])
def test_a_file_with_only_an_image_formats_first_bytes_is_called_cut_short(start, kind):
    """Six bytes `GIF89a` are printable, but the file is a GIF cut short, not text."""
    with pytest.raises(DataError) as err:
        load_image(start, name="a.gif")
    assert err.value.message == f"the file is the start of a {kind} image, cut short or damaged"
    assert "copy or download it again" in err.value.hint


def test_unknown_binary_format_is_a_data_error(tmp_path):
    path = tmp_path / "blob.png"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="not an image cnncli can read"):
        load_image(str(path))


def test_heic_photo_gets_a_conversion_hint(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    with pytest.raises(DataError, match="HEIC") as err:
        load_image(str(path))
    assert "JPEG" in err.value.hint


def test_formats_outside_the_list_are_not_decoded(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (2, 2), RED), "a.ppm")  # Pillow reads PPM
    with pytest.raises(DataError, match="not an image cnncli can read"):
        load_image(path)


def test_truncated_jpeg_is_a_data_error(tmp_path):
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = saved(tmp_path, noise, "full.jpg", quality=90)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_image(str(cut))
    assert err.value.file == str(cut)


def test_an_unexpected_decoder_exception_is_a_data_error_naming_the_file(tmp_path,
                                                                         monkeypatch):
    """A decoder bug on one strange file (any exception, not only Pillow's usual ones)
    fails that file with a DataError, which training skips and counts; it must not stop
    a run, nor reach tf.data as an unknown error."""
    def broken(img, label):
        raise IndexError("tile index out of range")

    monkeypatch.setattr(images, "_upright", broken)
    path = saved(tmp_path, Image.new("RGB", (4, 4), RED), "odd.png")
    with pytest.raises(DataError, match=r"could not be decoded \(IndexError: tile index") as err:
        load_image(path)
    assert err.value.file == path


def test_truncated_png_is_a_data_error(tmp_path):
    rng = np.random.default_rng(2)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = open(saved(tmp_path, noise, "full.png"), "rb").read()
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2], name="cut.png")


def test_decompression_bomb_png_is_refused(tmp_path):
    """30000 x 30000 (900 Mpixels, ten times the limit) in a file of about 100 kB."""
    path = write_png(tmp_path / "bomb.png", 30000, 30000, 1, 0, blank_rows(30000, 30000, 1))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DataError, match="decompression bomb") as err:
        load_image(str(path))
    assert err.value.file == str(path)


def test_decoding_in_threads_leaves_the_processs_warning_filters_as_they_were(tmp_path):
    """Threads each setting and putting back the bomb filter at once left it set: after a
    prediction, a user's own DecompressionBombWarning was an exception."""
    from concurrent.futures import ThreadPoolExecutor

    path = saved(tmp_path, Image.new("RGB", (4, 4)), "small.png")
    before = list(warnings.filters)
    for _ in range(20):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: load_image(str(path)), range(400)))
        assert warnings.filters == before


def test_image_just_over_the_pixel_limit_is_refused(tmp_path):
    """Pillow only warns between MAX_PIXELS and twice that; cnncli refuses."""
    side = int(MAX_PIXELS**0.5) + 1
    path = write_png(tmp_path / "big.png", side, side, 1, 0, blank_rows(side, side, 1))
    with pytest.raises(DataError, match="decompression bomb"):
        load_image(str(path))


def test_the_pixel_limit_is_cnncli_s_own_not_only_pillow_s(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)  # Pillow's own limit is far above 400
    path = saved(tmp_path, Image.new("RGB", (20, 20), RED), "a.png")
    with pytest.raises(DataError, match=r"20 x 20 pixels, more than the 100 cnncli reads; "
                                        "refusing a possible decompression bomb") as err:
        load_image(path)
    assert err.value.file == path


def test_an_image_just_over_the_limit_leaks_no_pillow_warning(tmp_path):
    side = int(MAX_PIXELS**0.5) + 1
    path = write_png(tmp_path / "big.png", side, side, 1, 0, blank_rows(side, side, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="decompression bomb"):
            load_image(str(path))
    assert [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


# --- resize ---------------------------------------------------------------------------


def test_bilinear_stretches_to_the_exact_size():
    out = resize(np.zeros((10, 40, 3), np.uint8), (7, 5), "bilinear")
    assert out.shape == (7, 5, 3) and out.dtype == np.uint8


def test_bilinear_keeps_a_flat_colour():
    image = np.full((30, 50, 3), (10, 200, 30), np.uint8)
    assert (resize(image, (8, 8)) == (10, 200, 30)).all()


def test_center_crop_keeps_the_middle_and_drops_the_sides():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 80:220] = 255  # white middle (wider than the crop), black sides
    out = resize(image, (50, 50), "center_crop")
    assert out.shape == (50, 50, 3)
    assert out.min() == 255  # only the middle survives
    stretched = resize(image, (50, 50), "bilinear")
    assert stretched.min() == 0  # a plain resize keeps the black sides


def test_center_crop_to_a_wide_target():
    out = resize(np.zeros((100, 100, 3), np.uint8), (20, 40), "center_crop")
    assert out.shape == (20, 40, 3)


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_resize_keeps_one_channel(mode):
    out = resize(np.full((9, 12, 1), 80, np.uint8), (4, 6), mode)
    assert out.shape == (4, 6, 1) and (out[:, :5] == 80).all()  # pad: a black last column
    assert (out[:, 5] == (0 if mode == "pad" else 80)).all()


def test_pad_keeps_the_whole_image_undistorted_on_black():
    image = np.full((10, 20, 3), 200, np.uint8)
    out = resize(image, (10, 10), "pad")
    assert (out[:2] == 0).all() and (out[-2:] == 0).all() and (out[3:7] == 200).all()


def test_unknown_resize_mode_is_refused():
    with pytest.raises(ConfigError, match="unknown resize mode 'nearest'.*center_crop"):
        resize(np.zeros((2, 2, 3), np.uint8), (1, 1), "nearest")


# ------------------------------------------------- examples/client.py: cnncli's pixels without it


def _client():
    """examples/client.py, the client of exported models that imports nothing of cnncli."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "client.py"
    import re

    assert not re.search(r"^\s*(import|from)\s+cnncli", path.read_text(), re.MULTILINE)
    spec = importlib.util.spec_from_file_location("client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kinds_of_images(tmp_path) -> list[str]:
    """Images of every kind a client meets: photos (large, EXIF-turned, CMYK), screenshots
    with transparency, palettes, 16-bit and one-bit scans."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (300, 420, 3), np.uint8)).resize(
        (840, 600), Image.Resampling.BICUBIC)  # smooth: draft mode's scale matters
    turned = photo.copy()
    exif = turned.getexif()
    exif[0x0112] = 6  # stored sideways, shown upright
    rgba = Image.fromarray(rng.integers(0, 255, (40, 60, 4), np.uint8), "RGBA")
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 3
    deep = Image.fromarray(rng.integers(0, 65535, (30, 50), np.uint16))
    wide = Image.fromarray(rng.integers(0, 2**31 - 1, (30, 50), np.int32), "I")
    unit = Image.fromarray(rng.random((30, 50), np.float32), "F")
    made = [saved(tmp_path, photo, "big.jpg", quality=90),
            saved(tmp_path, turned, "turned.jpg", exif=exif),
            saved(tmp_path, photo.convert("CMYK"), "cmyk.jpg"),
            saved(tmp_path, rgba, "screen.png"), saved(tmp_path, palette, "palette.png"),
            saved(tmp_path, deep, "deep.png"),
            saved(tmp_path, Image.fromarray(rng.integers(0, 2, (20, 30), bool)), "scan.png"),
            saved(tmp_path, photo.convert("L"), "grey.jpg"), saved(tmp_path, wide, "wide.tif"),
            saved(tmp_path, unit, "unit.tif")]
    assert Image.open(made[5]).mode.startswith("I")
    assert [Image.open(p).mode for p in made[-2:]] == ["I", "F"]
    return made


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("channels", [1, 3])
def test_the_example_client_reads_images_to_cnncli_pixels(tmp_path, mode, channels):
    client = _client()
    for path in _kinds_of_images(tmp_path):
        for height, width in ((28, 28), (96, 64)):
            ours = images.load_resized(path, (height, width), mode, channels=channels)
            theirs = client.read_image(path, height, width, channels, mode)
            np.testing.assert_array_equal(theirs, ours, err_msg=f"{path} {mode}")
