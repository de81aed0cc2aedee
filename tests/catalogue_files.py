"""Builders of bad (and awkward but valid) inputs for the catalogue, tests/test_catalogue.py.

Each builder takes the test's folder and the module's `Shared` artefacts and writes
what a row of the catalogue needs, returning the placeholders its command line uses
(``{"file": "/tmp/.../bad.yaml"}``). `Shared` builds the expensive things once per
module, lazily: the toy dataset, a trained run, the hostile model files.

>>> shared = Shared(tmp_path)                                  # doctest: +SKIP
>>> yaml_file("lr: [1, 2\\n")(tmp_path, shared)                 # doctest: +SKIP
{'file': '/tmp/.../bad.yaml'}
"""

from __future__ import annotations

import struct
import textwrap
import zlib
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import hostile
import numpy as np
import trainkit
from PIL import Image

Builder = Callable[[Path, "Shared"], dict]


class Shared:
    """Artefacts built once per test module, on first use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._hostile: dict[str, tuple[str, Path]] = {}

    @cached_property
    def npz(self) -> Path:
        """The toy dataset: 8x8 grey images, 3 classes (a bright band per class)."""
        return trainkit.make_npz(self.folder)

    @cached_property
    def run(self) -> Path:
        """A run folder trained on the toy dataset well enough to tell the bands apart."""
        from cnncli import config
        from cnncli.run import train as training

        folder = self.folder / "trained"
        folder.mkdir()
        path = trainkit.write_config(folder, epochs=4)
        return training.train(config.load(path), config_file=str(path)).run

    @cached_property
    def small_model(self) -> Path:
        """A sound model file whose input is a vector of 4 numbers, not an image."""
        return hostile.save_small_model(self.folder / "vector_input.keras")

    @cached_property
    def image(self) -> Path:
        """A good 8x8 PNG of class 0."""
        return save_image(band_image(0), self.folder / "good.png")

    def hostile(self, name: str) -> tuple[str, Path]:
        """(path, marker) of the hostile model `name` of tests/hostile.py."""
        if name not in self._hostile:
            folder = self.folder / "hostile" / name
            folder.mkdir(parents=True)
            marker = folder / "marker"
            self._hostile[name] = (hostile.CASES[name].build(folder, marker), marker)
        return self._hostile[name]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --------------------------------------------------------------------------- YAML


def yaml_file(text: str, name: str = "bad.yaml") -> Builder:
    """A builder writing `text` (dedented) to `name`; ``{marker}`` in it is filled in."""

    def build(folder: Path, shared: Shared) -> dict:
        marker = folder / "marker"
        return {"file": str(write(folder, name, text.replace("{marker}", str(marker)))),
                "marker": str(marker)}

    return build


def alias_bomb(folder: Path, shared: Shared) -> dict:
    """"Billion laughs": 9 levels of 9 aliases expand to 9**9 (387 million) strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("model: linear")
    return {"file": str(write(folder, "bomb.yaml", "\n".join(lines) + "\n"))}


def huge_yaml(folder: Path, shared: Shared) -> dict:
    """A 100 MB config: a real first line, then a sparse hole (costs no disk space)."""
    path = folder / "huge.yaml"
    with open(path, "w") as f:
        f.write("model: linear\n")
        f.truncate(100 * 1000**2)
    return {"file": str(path)}


def run_config(model: str = "linear", data: str = "{npz}", train: str = "{epochs: 1}",
               data_extra: str = "") -> Builder:
    """A run config on lines 1-4 (model, data, train, output), the output in the test's
    folder; `data` may be {npz}, the toy dataset; `data_extra` adds keys to `data:`."""

    def build(folder: Path, shared: Shared) -> dict:
        name = str(shared.npz) if data == "{npz}" else data
        text = (f"model: {model}\ndata: {{name: '{name}', offline: true{data_extra}}}\n"
                f"train: {train}\noutput: {{dir: '{folder / 'runs'}'}}\n")
        return {"file": str(write(folder, "run.yaml", text))}

    return build


# --------------------------------------------------------------------------- data

#: An inline spec for 8x8 grey images; `classes` is left to the data unless given.
TINY_SPEC = """\
  input: [8, 8, 1]
  layers:
    - Conv2D: {filters: 2, kernel_size: 3, padding: same, activation: relu}
    - Flatten
    - Dense: {units: $classes, activation: softmax}
"""


def data_config(folder: Path, data: Path | str, *, classes: int | None = None,
                strict: bool = False, name: str = "run.yaml") -> Path:
    """A one-epoch run config of `TINY_SPEC` on `data`, offline, output in `folder`/runs."""
    spec = TINY_SPEC + (f"  classes: {classes}\n" if classes else "")
    text = (f"model:\n{spec}data:\n  name: '{data}'\n  offline: true\n"
            f"  strict: {'true' if strict else 'false'}\n  validation_split: 0.2\n"
            f"train: {{epochs: 1, batch_size: 4}}\noutput: {{dir: '{folder / 'runs'}'}}\n")
    return write(folder, name, text)


def band_image(label: int, size: int = 8, seed: int = 0) -> np.ndarray:
    """An image of the toy dataset's class `label` (a bright band of rows), uint8 HxW."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 60, (8, 8))
    small[1 + 3 * label: 3 + 3 * label, :] += 180
    return np.kron(small, np.ones((size // 8, size // 8))).astype(np.uint8)


def save_image(array: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def image_folder(folder: Path, classes: dict[str, int], size: int = 8) -> Path:
    """`folder` with one sub-folder per class holding that many PNGs, `size` x `size`
    (8: the toy dataset's bands; any other size: plain grey)."""
    for i, (name, count) in enumerate(classes.items()):
        for k in range(count):
            pixels = (band_image(i % 3, seed=k) if size == 8
                      else np.full((size, size), 40 * i, np.uint8))
            save_image(pixels, folder / name / f"{k}.png")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_builder(make_data: Callable[[Path, Shared], Path | str], *, classes: int | None = None,
                 strict: bool = False) -> Builder:
    """A builder of a run config whose data is what `make_data(folder, shared)` returns."""

    def build(folder: Path, shared: Shared) -> dict:
        data = make_data(folder, shared)
        return {"file": str(data_config(folder, data, classes=classes, strict=strict))}

    return build


def empty_folder(folder: Path, shared: Shared) -> Path:
    (folder / "photos").mkdir()
    return folder / "photos"


def one_class_folder(folder: Path, shared: Shared) -> Path:
    return image_folder(folder / "photos", {"cat": 4})


def mixed_sizes_folder(folder: Path, shared: Shared) -> Path:
    root = image_folder(folder / "photos", {"cat": 8})
    image_folder(root, {"dog": 8}, size=10)
    return root


def folder_with_undecodable_pngs(folder: Path, shared: Shared) -> Path:
    """Three classes of 8 PNGs, 6 of them cut short after a PNG's first bytes: they pass
    the up-front check and fail when the pipeline decodes them."""
    root = image_folder(folder / "photos", {"a": 8, "b": 8, "c": 8})
    for name in "abc":
        for i in range(2):
            (root / name / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def folder_mostly_undecodable(folder: Path, shared: Shared) -> Path:
    """Three classes of 8 PNGs, 5 of each cut short: most images fail to decode."""
    root = image_folder(folder / "photos", {"a": 8, "b": 8, "c": 8})
    for name in "abc":
        for i in range(5):
            (root / name / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def folder_with_non_images(folder: Path, shared: Shared) -> Path:
    """Three classes of 8 PNGs, plus a text file named .png (refused up front) and a broken
    .png beside them (its header is a PNG's: skipped when the pipeline decodes it)."""
    root = image_folder(folder / "photos", {"a": 8, "b": 8, "c": 8})
    (root / "a" / "notes.png").write_text("taken on holiday\n")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def npz_with(**arrays) -> Callable[[Path, Shared], Path]:
    """An .npz of 8x8 images: the toy arrays, with `arrays` replacing some of them."""

    def make(folder: Path, shared: Shared) -> Path:
        with np.load(shared.npz) as toy:
            data = {k: toy[k] for k in toy.files}
        data.update(arrays)
        path = folder / "data.npz"
        np.savez(path, **data)
        return path

    return make


def truncated_npz(folder: Path, shared: Shared) -> Path:
    raw = shared.npz.read_bytes()
    path = folder / "cut.npz"
    path.write_bytes(raw[: len(raw) // 2])
    return path


def truncated_idx_folder(folder: Path, shared: Shared) -> Path:
    """MNIST-style IDX files from the toy data, the training images cut short."""
    root = folder / "idx"
    root.mkdir()
    with np.load(shared.npz) as toy:
        for split, prefix in (("train", "train"), ("test", "t10k")):
            x, y = toy[f"x_{split}"][..., 0], toy[f"y_{split}"].astype(np.uint8)
            for what, array in (("images", x), ("labels", y)):
                header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I",
                                                                     *array.shape)
                raw = header + array.tobytes()
                if split == "train" and what == "images":
                    raw = raw[: len(raw) - 100]
                name = f"{prefix}-{what}-idx{array.ndim}-ubyte"
                (root / name).write_bytes(raw)
    return root


# --------------------------------------------------------------------------- models


def hostile_model(name: str) -> Builder:
    """One of tests/hostile.py's model files (built once per module) and its marker."""

    def build(folder: Path, shared: Shared) -> dict:
        path, marker = shared.hostile(name)
        return {"file": path, "marker": str(marker)}

    return build


# --------------------------------------------------------------------------- images


def image_file(make: Callable[[Path], Path]) -> Builder:
    def build(folder: Path, shared: Shared) -> dict:
        return {"file": str(make(folder))}

    return build


def zero_byte_image(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def truncated_jpeg(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    full = save_image(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), folder / "full.jpg")
    raw = full.read_bytes()
    path = folder / "cut.jpg"
    path.write_bytes(raw[: len(raw) // 2])
    return path


def text_named_jpeg(folder: Path) -> Path:
    path = folder / "photo.jpg"
    path.write_text("Dear diary, today I took a photo.\n")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb(folder: Path, side: int = 30_000) -> Path:
    """A valid `side` x `side` 1-bit PNG: 900 million pixels in about 100 kB.

    Written row block by row block through zlib, so building it needs little memory.
    """
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(side // 1000)]
    parts.append(compressor.compress(row * (side % 1000)) + compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path = folder / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b""))
    return path


def one_pixel(folder: Path) -> Path:
    return save_image(np.array([[200]], np.uint8), folder / "dot.png")


def animated_gif(folder: Path) -> Path:
    """Three frames of 64x64: class 0 first, then class 2 twice (only the first counts)."""
    frames = [Image.fromarray(band_image(label, 64)) for label in (0, 2, 2)]
    path = folder / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def cmyk_jpeg(folder: Path) -> Path:
    """A CMYK JPEG of class 1 (Pillow writes Adobe's inverted CMYK, as Photoshop does)."""
    grey = band_image(1, 64)
    rgb = Image.fromarray(np.stack([grey] * 3, axis=2))
    path = folder / "cmyk.jpg"
    rgb.convert("CMYK").save(path, quality=95)
    return path


def png_16bit(folder: Path) -> Path:
    """A 16-bit grey PNG of class 1: clipping to 8 bits instead of scaling makes it white."""
    values = band_image(1, 64).astype(np.uint16) * 257
    path = folder / "deep.png"
    Image.fromarray(values).save(path)  # uint16 -> mode I;16
    return path


def exif_rotated_jpeg(folder: Path) -> Path:
    """A JPEG stored sideways (a bright column) with EXIF orientation 6 (turn clockwise):
    shown upright it has a bright band of rows at the top, class 0."""
    upright = band_image(0, 64)
    stored = np.rot90(upright, k=1)  # counter-clockwise; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    return save_image(np.ascontiguousarray(stored), folder / "rotated.jpg", exif=exif,
                      quality=95)


# --------------------------------------------------------------------------- command line


def regular_file(folder: Path, shared: Shared) -> dict:
    """A plain file, for paths that put a folder under it."""
    path = folder / "plain.txt"
    path.write_text("just a file\n")
    return {"file": str(path)}


def config_with_output(output_dir: str) -> Builder:
    """A valid toy run config whose output folder is `output_dir` ({plain}: under a file)."""

    def build(folder: Path, shared: Shared) -> dict:
        plain = regular_file(folder, shared)["file"]
        path = data_config(folder, shared.npz)
        text = path.read_text().replace(f"'{folder / 'runs'}'",
                                        f"'{output_dir.replace('{plain}', plain)}'")
        path.write_text(text)
        return {"file": str(path), "plain": plain}

    return build


def files_under(folder: Path) -> set[str]:
    """Every file and folder below `folder`, relative, for before/after comparisons."""
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def temp_leftovers(folder: Path) -> list[str]:
    """Temporary files a writer left behind (``.name.xxxx`` and ``*.tmp*`` files; a run's
    ``.lock`` stays on purpose: removing a lock file another process may have opened would
    let two writers in)."""
    return [str(p) for p in Path(folder).rglob("*")
            if p.name.startswith(".") and p.name not in (".latest", ".lock")
            or ".tmp" in p.name]

