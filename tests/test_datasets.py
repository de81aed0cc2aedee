"""Tests of cnncli.data.datasets: every source, the resolution order, the bundled
sample and each kind of bad data, on tiny files written to tmp_path."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli import config
from cnncli.data import checks, datasets, folder, idx, known
from cnncli.data.dataset import DataWarning, SampleDataWarning
from cnncli.data.loader import ImageLoader
from cnncli.errors import ConfigError, DataError
from cnncli.run import train as training

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- #
# Helpers and fixtures (kept here: no shared conftest for data)
# --------------------------------------------------------------------------- #


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` (uint8) as an IDX file, gzipped if the name ends in .gz."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def tiny_arrays(n_train=20, n_test=10, classes=10, size=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, *size), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, *size), dtype=np.uint8)
    y_train = np.arange(n_train) % classes
    y_test = np.arange(n_test) % classes
    return x_train, y_train, x_test, y_test


def write_idx_set(folder: Path, *, gz=True, prefix="", test="t10k", seed=0, **kw) -> Path:
    x_train, y_train, x_test, y_test = tiny_arrays(seed=seed, **kw)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}train-images-idx3-ubyte{ext}", x_train)
    write_idx(folder / f"{prefix}train-labels-idx1-ubyte{ext}", y_train)
    write_idx(folder / f"{prefix}{test}-images-idx3-ubyte{ext}", x_test)
    write_idx(folder / f"{prefix}{test}-labels-idx1-ubyte{ext}", y_test)
    return folder


def write_npz(path: Path, n_train=20, n_test=10, **extra) -> Path:
    x_train, y_train, x_test, y_test = tiny_arrays(n_train, n_test)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    arrays.update(extra)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_image(path: Path, size=(8, 8), mode="RGB", value=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size[1], size[0]), value if mode == "L" else (value, 0, 255 - value)
              ).save(path)
    return path


def image_folder(root: Path, classes=("cat", "dog"), per_class=5, size=(8, 8),
                 ext=".png") -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{i}{ext}", size=size, value=40 * c + i)
    return root


def snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*")}


KERAS_DOWNLOAD = known._keras_download  # `isolated` replaces it in every test


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real Keras cache, system folder, data-dir variable or network in any test."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(known.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(known, "SYSTEM_DIRS", (tmp_path / "system",))
    calls = []

    def no_network(name):
        calls.append(name)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(known, "_keras_download", no_network)
    return calls


# --------------------------------------------------------------------------- #
# Sources by path
# --------------------------------------------------------------------------- #


def test_npz_source_gives_uint8_nhwc_images_and_int64_labels(tmp_path):
    ds = datasets.load(write_npz(tmp_path / "digits.npz"))
    assert ds.train.images.shape == (20, 28, 28, 1) and ds.train.images.dtype == np.uint8
    assert ds.train.labels.dtype == np.int64 and ds.train.labels.ndim == 1
    assert ds.test.images.shape == (10, 28, 28, 1)
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.name == "digits" and ds.sample is False


def test_npz_class_names_array_names_the_classes(tmp_path):
    names = np.array([f"c{i}" for i in range(10)])
    ds = datasets.load(write_npz(tmp_path / "d.npz", class_names=names))
    assert ds.class_names == [f"c{i}" for i in range(10)]


def test_npz_class_names_saved_as_latin1_bytes_are_named_with_the_odd_byte_shown(tmp_path):
    """Bytes that are not UTF-8 (np.array([b'caf\\xe9'])): named as a folder of them is."""
    names = np.array([b"caf\xe9"] + [f"c{i}".encode() for i in range(1, 10)])
    ds = datasets.load(write_npz(tmp_path / "d.npz", class_names=names))
    assert ds.class_names[:2] == ["caf\\xe9", "c1"]


def test_npz_class_names_as_one_string_is_refused_not_read_letter_by_letter(tmp_path):
    path = write_npz(tmp_path / "d.npz", class_names=np.array("c0 c1 c2"))
    with pytest.raises(DataError, match="class_names is not a list of names"):
        datasets.load(path)


def test_npz_labels_of_shape_n_by_1_are_flattened(tmp_path):
    x_train, y_train, x_test, y_test = tiny_arrays()
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=y_train[:, None],
             x_test=x_test, y_test=y_test[:, None])
    assert datasets.load(tmp_path / "d.npz").train.labels.shape == (20,)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_is_read_gzipped_or_plain(tmp_path, gz):
    folder = write_idx_set(tmp_path / "idx", gz=gz)
    ds = datasets.load(folder)
    expected = tiny_arrays()
    assert ds.train.images.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(ds.train.images[..., 0], expected[0])
    np.testing.assert_array_equal(ds.test.labels, expected[3])
    assert ds.class_names == [str(i) for i in range(10)]


def test_idx_emnist_names_are_found_and_turned_upright(tmp_path):
    folder = write_idx_set(tmp_path / "emnist", prefix="emnist-digits-", test="test")
    ds = datasets.load(folder)
    assert ds.name == "emnist-digits"
    np.testing.assert_array_equal(ds.train.images[..., 0], tiny_arrays()[0].transpose(0, 2, 1))


def test_idx_emnist_mapping_file_gives_class_names(tmp_path):
    folder = write_idx_set(tmp_path / "emnist", prefix="emnist-balanced-", test="test")
    (folder / "emnist-balanced-mapping.txt").write_text(
        "".join(f"{i} {65 + i}\n" for i in range(10)))
    assert datasets.load(folder).class_names[:3] == ["A", "B", "C"]


@pytest.mark.parametrize("stray", ["1000 69", "40000 69", "3 99999999999"])
def test_idx_mapping_file_with_a_stray_line_is_refused_or_left_out_not_a_huge_model(
        tmp_path, stray):
    """A label far beyond the mapping's own lines would make a model of thousands of
    outputs (and hang checking them); a code no character has leaves the file out."""
    folder = write_idx_set(tmp_path / "emnist", prefix="emnist-balanced-", test="test")
    (folder / "emnist-balanced-mapping.txt").write_text(
        "".join(f"{i} {65 + i}\n" for i in range(4)) + stray + "\n")
    if stray.startswith("3 "):
        assert datasets.load(folder).class_names == [str(i) for i in range(10)]
        return
    with pytest.raises(DataError, match=f"names the class {stray.split()[0]} among 5 "
                                        "classes: a stray line") as err:
        datasets.load(folder)
    assert err.value.file.endswith("emnist-balanced-mapping.txt")


def test_idx_folder_with_several_emnist_splits_is_chosen_by_prefix_path(tmp_path):
    folder = tmp_path / "emnist"
    write_idx_set(folder, prefix="emnist-digits-", test="test", classes=10)
    write_idx_set(folder, prefix="emnist-letters-", test="test", classes=3)
    with pytest.raises(DataError, match="several IDX datasets"):
        datasets.load(folder)
    assert datasets.load(folder / "emnist-letters").num_classes == 3


def pixels(split, shape=(8, 8, 3), resize="stretch"):
    """The images of a streamed split as a model of `shape` gets them."""
    return ImageLoader(split, shape, resize, cache="none").batch(np.arange(len(split)))[0]


def test_image_folder_lists_files_and_labels_and_splits_seeded_per_class(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=10)
    ds = datasets.load(root, test_fraction=0.2, seed=3)
    assert ds.class_names == ["cat", "dog"] and ds.train.kind == "files"
    assert len(ds.train) == 16 and all(p.endswith(".png") for p in ds.train.images)
    assert np.bincount(ds.test.labels).tolist() == [2, 2]
    assert datasets.load(root, test_fraction=0.2, seed=3).test.images == ds.test.images


def test_images_without_an_extension_are_read_and_other_files_are_not(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=3)
    for k, path in enumerate(sorted((root / "dog").iterdir())):
        path.rename(root / "dog" / f"IMG_{k}")  # the same PNGs, with no extension
    (root / "dog" / "README").write_text("photos of dogs")
    (root / "dog" / "notes.dat").write_bytes((root / "dog" / "IMG_0").read_bytes())
    ds = datasets.load(root, test_fraction=1 / 3)
    dogs = [p for split in (ds.train, ds.test) for p, label in
            zip(split.images, split.labels, strict=True) if label == 1]
    assert sorted(os.path.basename(p) for p in dogs) == ["IMG_0", "IMG_1", "IMG_2"]
    assert pixels(ds.train).shape == (4, 8, 8, 3)


def test_a_pattern_gives_images_without_an_extension_as_a_folder_does(tmp_path):
    from cnncli.data.inputs import expand_inputs

    root = image_folder(tmp_path / "pets", per_class=1)
    (root / "cat" / "0.png").rename(root / "cat" / "IMG_0")
    (root / "cat" / "notes").write_text("not an image")
    assert expand_inputs([str(root / "cat" / "*")]) == [str(root / "cat" / "IMG_0")]


def test_a_macos_archives_folder_and_hidden_ones_are_no_classes(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=4)
    image_folder(root / "__MACOSX", classes=("cat",), per_class=2)  # unzipped on a Mac
    image_folder(root / ".ipynb_checkpoints", classes=("x",), per_class=2)
    assert datasets.load(root).class_names == ["cat", "dog"]


def test_image_folder_split_differs_with_another_seed(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=10)
    assert datasets.load(root, seed=1).test.images != datasets.load(root, seed=2).test.images


def test_image_folder_train_and_test_subfolders_are_used_as_the_split(tmp_path):
    image_folder(tmp_path / "set" / "train", per_class=4)
    image_folder(tmp_path / "set" / "test", per_class=2)
    ds = datasets.load(tmp_path / "set")
    assert (len(ds.train), len(ds.test)) == (8, 4)
    assert "train/ and test/" in ds.source


def test_a_folder_beside_train_and_test_is_said_to_be_left_out(tmp_path):
    image_folder(tmp_path / "set" / "train", per_class=4)
    image_folder(tmp_path / "set" / "test", per_class=2)
    image_folder(tmp_path / "set" / "extra", per_class=2)
    (tmp_path / "set" / ".git").mkdir()  # hidden: nobody's class
    with pytest.warns(DataWarning, match=r"the folder\(s\) beside them \(extra/\) are not "
                                         "read"):
        ds = datasets.load(tmp_path / "set")
    assert (len(ds.train), len(ds.test)) == (8, 4)


@pytest.mark.parametrize("others", [("val",), ("validation", "test")])
def test_a_train_folder_beside_a_val_folder_is_refused_not_read_as_two_classes(tmp_path,
                                                                              others):
    for split in ("train", *others):
        image_folder(tmp_path / "set" / split, per_class=2)
    with pytest.raises(DataError, match=f"has train/ and {others[0]}/ folders") as err:
        datasets.load(tmp_path / "set")
    assert err.value.hint.startswith("rename val/ to test/" if len(others) == 1 else "move")
    with pytest.raises(DataError, match=f"has train/ and {others[0]}/ folders"):
        folder.class_names(tmp_path / "set")  # `check`'s class count, without the files
    assert datasets.class_count(tmp_path / "set") is None  # not 2 classes: train and val


@pytest.mark.parametrize("lone", ["test", "train"])
def test_a_folder_holding_only_test_or_train_says_so_not_one_class_of_that_name(tmp_path,
                                                                               lone):
    image_folder(tmp_path / "set" / lone, per_class=2)
    (tmp_path / "set" / lone / "._0.jpg").write_bytes(b"\0")  # macOS' own: not an image
    for read in (datasets.load, folder.class_names):
        with pytest.raises(DataError, match=f"has a {lone}/ folder but no ") as err:
            read(tmp_path / "set")
        assert err.value.hint.startswith(f"point at {tmp_path / 'set' / lone} itself")
    assert ("--all-images" in err.value.hint) == (lone == "test")


def test_a_lone_folder_named_test_with_images_right_inside_is_a_class(tmp_path):
    image_folder(tmp_path / "set", classes=("test",), per_class=2)
    (tmp_path / "set" / "test" / "more").mkdir()  # and a sub-folder: still a class
    ds = datasets.load(tmp_path / "set", test_fraction=1.0)  # evaluate --all-images
    assert ds.class_names == ["test"] and len(ds.test) == 2


def test_the_current_folder_holding_only_test_is_named_by_its_name(tmp_path, monkeypatch):
    image_folder(tmp_path / "set" / "test", per_class=2)
    monkeypatch.chdir(tmp_path / "set")
    with pytest.raises(DataError) as err:
        datasets.load(".")
    assert err.value.message.startswith("set has a test/ folder but no train/")


@pytest.mark.parametrize("ext", [".jpg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".webp",
                                 ".tif"])
def test_image_folder_reads_each_image_format(tmp_path, ext):
    ds = datasets.load(image_folder(tmp_path / "f", per_class=3, ext=ext))
    assert len(ds.train) + len(ds.test) == 6
    assert pixels(ds.train).shape == (len(ds.train), 8, 8, 3)


def test_grey_images_reach_an_rgb_model_as_three_equal_channels(tmp_path):
    for i in range(3):
        write_image(tmp_path / "m" / "a" / f"{i}.png", mode="L", value=100)
        write_image(tmp_path / "m" / "b" / f"{i}.png", mode="RGB")
    ds = datasets.load(tmp_path / "m")
    grey = pixels(ds.train)[ds.train.labels == 0]
    assert (grey == 100).all()


def test_images_of_mixed_sizes_reach_the_model_at_its_size(tmp_path):
    write_image(tmp_path / "f" / "a" / "1.png", size=(10, 12))
    write_image(tmp_path / "f" / "a" / "2.png", size=(20, 20))
    write_image(tmp_path / "f" / "b" / "1.png", size=(7, 9))
    write_image(tmp_path / "f" / "b" / "2.png", size=(16, 16))
    ds = datasets.load(tmp_path / "f")
    assert pixels(ds.train, (16, 16, 3)).shape == (len(ds.train), 16, 16, 3)


def test_a_file_in_two_class_folders_keeps_its_first_label(tmp_path):
    root = image_folder(tmp_path / "f", classes=("cat", "dog", "zebra"), per_class=3)
    for i in range(3):
        os.link(root / "cat" / f"{i}.png", root / "zebra" / f"cat{i}.png")  # hard links
    with pytest.warns(DataWarning, match="3 file.* are the same file as one already used"):
        ds = datasets.load(root)
    assert len(ds.train) + len(ds.test) == 9
    files = [os.path.realpath(p) for p in [*ds.train.images, *ds.test.images]]
    assert len(set(files)) == 9


@pytest.mark.parametrize("link,target", [
    ("cat/more", "../dog"),  # a folder link
    ("cat/dog1.png", "../dog/1.png"),  # a file link
    ("cat/deeper", "../dog/sub"),  # into a folder inside another class
])
def test_a_link_into_another_class_folder_is_skipped_not_relabelled(tmp_path, link, target):
    root = image_folder(tmp_path / "f", per_class=3)
    write_image(root / "dog" / "sub" / "9.png")
    (root / link).symlink_to(target)
    with pytest.warns(DataWarning, match=rf"skipped 1 link from one class folder into "
                                         rf"another .*{link} leads into dog"):
        ds = datasets.load(root)
    labels = np.concatenate([ds.train.labels, ds.test.labels])
    assert np.bincount(labels).tolist() == [3, 4]  # the dogs stay dogs


def test_a_link_from_train_into_a_test_class_is_skipped(tmp_path):
    image_folder(tmp_path / "set" / "train", per_class=2)
    image_folder(tmp_path / "set" / "test", per_class=2)
    (tmp_path / "set" / "train" / "cat" / "more").symlink_to("../../test/dog")
    with pytest.warns(DataWarning, match="leads into test/dog"):
        ds = datasets.load(tmp_path / "set")
    assert ds.train.labels.tolist() == [0, 0, 1, 1] and ds.test.labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("link,target,how", [
    ("zebra", "cat", "the same folder as class folder cat"),
    ("animal", "cat", "the same folder as class folder cat"),  # the link sorts first
    ("bird", "dog/sub", "a folder inside class folder dog"),
    ("all", ".", "a folder holding class folder cat"),
])
def test_a_class_folder_that_is_a_link_to_another_class_is_refused_naming_the_link(
        tmp_path, link, target, how):
    root = image_folder(tmp_path / "f", per_class=3)
    write_image(root / "dog" / "sub" / "9.png")
    (root / link).symlink_to(target)
    with pytest.raises(DataError, match=f"class folder {link} is a link to {how}: its images "
                                        f"would be learnt as {link}") as err:
        datasets.load(root)
    assert err.value.file == str(root / link) and f"remove the link {link}" in err.value.hint


def test_test_images_that_are_the_training_images_through_a_link_are_refused(tmp_path):
    image_folder(tmp_path / "set" / "train", per_class=2)
    (tmp_path / "set" / "test").mkdir()
    (tmp_path / "set" / "test" / "cat").mkdir()
    write_image(tmp_path / "set" / "test" / "cat" / "x.png")
    (tmp_path / "set" / "test" / "dog").symlink_to("../train/dog")
    with pytest.raises(DataError, match="class folder test/dog is a link to the same folder "
                                        "as class folder train/dog: the same images would "
                                        "be training and test images"):
        datasets.load(tmp_path / "set")
    shutil.rmtree(tmp_path / "set" / "test")
    (tmp_path / "set" / "test").symlink_to("train")
    with pytest.raises(DataError, match="class folder test/cat is reached through the link "
                                        "test, to the same folder as class folder "
                                        "train/cat") as err:
        datasets.load(tmp_path / "set")
    assert err.value.hint.startswith("remove the link test,")


def test_photos_cnncli_cannot_read_are_counted_and_said_not_skipped_silently(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "iphone").mkdir()
    for name in ("IMG_1.HEIC", "IMG_2.heic", "notes.txt"):
        (root / "iphone" / name).write_bytes(b"\0\0\0\x18ftypheic")
    (root / sorted(p.name for p in root.iterdir())[0] / "raw.CR2").write_bytes(b"II*\0")
    with pytest.warns(DataWarning) as said:
        datasets.load(root)
    said = [str(w.message) for w in said]
    assert "skipped 3 photos in formats cnncli cannot read (2 HEIC, 1 RAW; e.g. " in said[0]
    assert said[0].endswith("convert them to JPEG or PNG")
    assert f"class folder {root / 'iphone'} holds no image files cnncli reads: 2 photos " \
           "in formats cnncli cannot read (2 HEIC; e.g." in said[1]
    with pytest.raises(DataError, match="holds 3 photos in formats cnncli cannot read") as e:
        datasets.load(root, strict=True)  # as an unreadable image file is
    assert e.value.hint == "convert them, or turn strict mode off (data.strict: false) to " \
        "skip them"  # (it began "or ...")


def test_a_class_folder_with_no_image_is_a_warning_and_training_refuses_it(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "empty").mkdir()
    with pytest.warns(DataWarning, match=f"class folder {root / 'empty'} holds no image files"):
        ds = datasets.load(root)  # evaluate, export and pack may still read it
    with pytest.raises(DataError, match=r"1 of the 3 classes has no training image \(empty\): "
                                        "a model would never learn it"):
        checks.check_every_class_trains(ds, str(root))
    (tmp_path / "run.yaml").write_text(f"""
model: {{input: [8, 8, 3], layers: [Flatten, {{Dense: {{units: $classes}}}}]}}
data: {{name: {root}}}
train: {{epochs: 1, batch_size: 2}}
""")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="no training image"):
        training.plan(config.load(tmp_path / "run.yaml"))


def test_an_empty_class_folder_packed_is_refused_in_training_as_the_folder_is(tmp_path):
    from cnncli.data import packing

    root = image_folder(tmp_path / "f", per_class=3)
    (root / "empty").mkdir()
    with pytest.warns(DataWarning):
        packing.pack(datasets.load(root), tmp_path / "packed")
    packed = datasets.load(tmp_path / "packed")
    with pytest.raises(DataError, match=r"1 of the 3 classes has no training image \(empty\)"):
        checks.check_every_class_trains(packed, str(tmp_path / "packed"))
    packing.pack(packed, tmp_path / "again")  # packed again: still the folder's classes
    with pytest.raises(DataError, match="no training image"):
        checks.check_every_class_trains(datasets.load(tmp_path / "again"), "again")


def test_packed_arrays_with_a_gap_in_their_labels_still_train(tmp_path):
    from cnncli.data import packing
    from cnncli.data.dataset import Dataset, Split

    x = np.zeros((3, 8, 8, 1), np.uint8)
    letters = Dataset("emnist-letters", Split(x, np.array([1, 2, 3])),  # labels from 1
                      Split(x, np.array([1, 2, 3])), ["0", "a", "b", "c"], "idx")
    packing.pack(letters, tmp_path / "packed")
    checks.check_every_class_trains(datasets.load(tmp_path / "packed"), "packed")


def test_a_gap_in_array_labels_trains_but_a_class_only_in_test_does_not():
    from cnncli.data.dataset import Dataset, Split

    x = np.zeros((3, 8, 8, 1), np.uint8)
    letters = Dataset("emnist-letters", Split(x, np.array([1, 2, 3])),  # labels from 1
                      Split(x, np.array([1, 2, 3])), ["0", "a", "b", "c"], "idx")
    checks.check_every_class_trains(letters, "emnist")  # class 0 has no image at all
    only_in_test = Dataset("toy", Split(x, np.array([0, 1, 1])), Split(x, np.array([0, 1, 2])),
                           ["a", "b", "c"], "toy.npz")
    with pytest.raises(DataError, match=r"1 of the 3 classes has no training image \(c\)"):
        checks.check_every_class_trains(only_in_test, "toy.npz")


def test_two_classes_without_training_images_are_both_named_in_the_plural():
    from cnncli.data.dataset import Dataset, Split

    x = np.zeros((4, 8, 8, 1), np.uint8)
    toy = Dataset("toy", Split(x, np.array([0, 1, 0, 1])), Split(x, np.array([0, 1, 2, 3])),
                  ["a", "b", "c", "d"], "toy.npz")
    with pytest.raises(DataError) as err:
        checks.check_every_class_trains(toy, "toy.npz")
    assert err.value.message == ("2 of the 4 classes have no training image (c, d): a model "
                                 "would never learn them")


def test_six_classes_without_training_images_name_five_and_count_the_rest():
    from cnncli.data.dataset import Dataset, Split

    x = np.zeros((8, 8, 8, 1), np.uint8)
    toy = Dataset("toy", Split(x, np.array([0, 1] * 4)), Split(x, np.arange(8)),
                  list("abcdefgh"), "toy.npz")
    with pytest.raises(DataError) as err:
        checks.check_every_class_trains(toy, "toy.npz")
    assert err.value.message.startswith(
        "6 of the 8 classes have no training image (c, d, e, f, g and 1 more): ")


def test_two_class_folders_that_print_alike_are_refused_naming_both(tmp_path):
    """'café' as one character and as 'e' and an accent (macOS' way): two folders on
    Linux, which would be two classes no one can tell apart in a result."""
    image_folder(tmp_path / "set", classes=("caf\u00e9", "cafe\u0301", "tea"), per_class=2)
    with pytest.raises(DataError, match="have the same name in other Unicode characters"
                       ) as err:
        datasets.load(tmp_path / "set")
    assert err.value.message.startswith("the class folders 'cafe\u0301' and 'caf\u00e9' ")
    assert err.value.file == str(tmp_path / "set")


def test_classes_that_differ_only_in_case_are_warned_of_once(tmp_path):
    image_folder(tmp_path / "set", classes=("Dog", "cat", "dog"), per_class=2)
    with pytest.warns(DataWarning) as caught:
        ds = datasets.load(tmp_path / "set")
    said = [str(w.message) for w in caught if "differ only in case" in str(w.message)]
    assert said == ["the classes 'Dog' and 'dog' differ only in case: each is a class of "
                    "its own (if they are one, name them alike)"]
    assert ds.class_names == ["Dog", "cat", "dog"]


def test_a_test_class_folder_without_images_is_a_warning(tmp_path):
    image_folder(tmp_path / "set" / "train", classes=("cat", "dog", "owl"), per_class=2)
    image_folder(tmp_path / "set" / "test", classes=("cat",), per_class=2)
    (tmp_path / "set" / "test" / "dog").mkdir()
    with pytest.warns(DataWarning) as caught:
        ds = datasets.load(tmp_path / "set")
    said = [str(w.message) for w in caught]
    assert any(m.endswith("test/dog holds no image files") for m in said)
    assert any(m.endswith("test/owl is missing") for m in said)
    assert ds.test.labels.tolist() == [0, 0]


def test_many_class_folders_without_images_are_one_warning_a_way(tmp_path):
    """A test/ folder with 3 of train/'s 200 classes gave 197 lines, in every command."""
    classes = [f"c{i:02d}" for i in range(12)]
    image_folder(tmp_path / "set" / "train", classes=classes, per_class=1)
    image_folder(tmp_path / "set" / "test", classes=classes[:3], per_class=1)
    for name in classes[3:6]:
        (tmp_path / "set" / "test" / name).mkdir()
        (tmp_path / "set" / "test" / name / "IMG.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.warns(DataWarning) as caught:
        datasets.load(tmp_path / "set")
    said = [str(w.message) for w in caught if "class folders" in str(w.message)]
    test = tmp_path / "set" / "test"
    assert said == [f"3 class folders of {test} hold no image files cnncli reads: c03, c04, "
                    "c05 (3 photos in formats cnncli cannot read (3 HEIC; e.g. "
                    f"{test / 'c03' / 'IMG.HEIC'}): convert them to JPEG or PNG)",
                    f"6 class folders of {test} are missing: c06, c07, c08 and 3 more"]


def test_a_link_back_up_inside_a_class_folder_does_not_relabel_the_other_classes(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "cat" / "loop").symlink_to("..", target_is_directory=True)  # a loop
    (root / "dog" / "again").symlink_to(".", target_is_directory=True)  # itself
    ds = datasets.load(root)
    labels = np.concatenate([ds.train.labels, ds.test.labels])
    assert np.bincount(labels).tolist() == [3, 3]  # the dogs stay dogs


def test_a_file_in_train_and_test_is_used_once(tmp_path):
    image_folder(tmp_path / "set" / "train", per_class=4)
    (tmp_path / "set" / "test" / "cat").mkdir(parents=True)
    (tmp_path / "set" / "test" / "dog").mkdir(parents=True)
    os.link(tmp_path / "set" / "train" / "cat" / "0.png",
            tmp_path / "set" / "test" / "cat" / "x.png")
    write_image(tmp_path / "set" / "test" / "dog" / "y.png")
    with pytest.warns(DataWarning, match="same file as one already used"), \
            pytest.warns(DataWarning, match="test/cat is left with no image: its 1 image"):
        ds = datasets.load(tmp_path / "set")
    assert ds.test.images == [str(tmp_path / "set" / "test" / "dog" / "y.png")]


def test_a_folder_with_one_image_per_class_says_why_there_is_no_test_set(tmp_path):
    root = image_folder(tmp_path / "f", per_class=1)
    with pytest.raises(DataError, match="each class has a single image") as err:
        datasets.load(root)
    assert "at least 2 images" in err.value.hint


def write_cifar_batch(path: Path, n: int, label_key: bytes, classes: int, seed=0):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: [i % classes for i in range(n)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=4)  # numpy arrays via _reconstruct, as Keras allows


def test_cifar10_batch_folder_is_read_with_keras_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 4, b"labels", 10, seed=i)
    write_cifar_batch(folder / "test_batch", 3, b"labels", 10)
    ds = datasets.load(folder)
    assert ds.train.images.shape == (20, 32, 32, 3) and ds.test.images.shape == (3, 32, 32, 3)
    assert ds.class_names[:2] == ["airplane", "automobile"]


def test_cifar100_folder_uses_the_fine_labels_and_names(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar_batch(folder / "train", 6, b"fine_labels", 100)
    write_cifar_batch(folder / "test", 2, b"fine_labels", 100)
    (folder / "meta").write_bytes(b"")
    ds = datasets.load(folder)
    assert ds.num_classes == 100 and len(set(ds.class_names)) == 100
    assert ds.class_names[0] == "apple" and ds.class_names[-1] == "worm"


def test_unknown_name_that_is_no_path_says_which_names_exist(tmp_path):
    with pytest.raises(DataError, match="neither a dataset name") as err:
        datasets.load(tmp_path / "nope")
    assert "fashion_mnist" in err.value.hint
    for source in datasets.SOURCES:  # every kind of path, from the one registry
        assert source.said in err.value.hint, source.name


def test_known_names_accept_common_spellings():
    assert datasets.known_name("Fashion-MNIST") == "fashion_mnist"
    assert datasets.known_name("CIFAR-100") == "cifar100"
    assert datasets.known_name("./mnist") is None


# --------------------------------------------------------------------------- #
# Resolution order of named datasets
# --------------------------------------------------------------------------- #


def keras_cache(tmp_path: Path) -> Path:
    return tmp_path / "keras_home" / "datasets"


def three_mnists(tmp_path: Path) -> Path:
    """mnist.npz in a data dir (20 train), the Keras cache (30) and a system dir (40)."""
    write_npz(tmp_path / "data" / "mnist.npz", n_train=20)
    write_npz(keras_cache(tmp_path) / "mnist.npz", n_train=30)
    write_npz(tmp_path / "system" / "mnist" / "mnist.npz", n_train=40)
    return tmp_path / "data"


def test_data_dir_beats_keras_cache_and_system_folder(tmp_path):
    ds = datasets.load("mnist", data_dir=three_mnists(tmp_path), offline=True)
    assert len(ds.train.images) == 20 and ds.source.startswith("--data-dir")


def test_keras_cache_beats_system_folder(tmp_path):
    three_mnists(tmp_path)
    ds = datasets.load("mnist", offline=True)
    assert len(ds.train.images) == 30 and ds.source.startswith("Keras cache")


def test_system_folder_is_used_when_nothing_else_has_the_data(tmp_path):
    write_idx_set(tmp_path / "system" / "fashion-mnist")
    ds = datasets.load("fashion_mnist", offline=True)
    assert ds.source.startswith("system folder") and ds.class_names[0] == "T-shirt/top"


def test_environment_data_dir_is_searched_first(tmp_path, monkeypatch):
    data = three_mnists(tmp_path)
    monkeypatch.setenv(known.DATA_DIR_ENV, str(data))
    ds = datasets.load("mnist", offline=True)
    assert len(ds.train.images) == 20 and "CNNCLI_DATA_DIR" in ds.source


def test_data_dir_argument_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(known.DATA_DIR_ENV, str(three_mnists(tmp_path)))
    write_npz(tmp_path / "other" / "mnist.npz", n_train=50)
    assert len(datasets.load("mnist", data_dir=tmp_path / "other").train.images) == 50


def test_keras_cache_fashion_mnist_folder_of_idx_files_is_found(tmp_path):
    write_idx_set(keras_cache(tmp_path) / "fashion-mnist")
    ds = datasets.load("fashion-mnist", offline=True)
    assert ds.name == "fashion_mnist" and len(ds.train.images) == 20


def test_keras_3_cifar10_cache_layout_is_found(tmp_path):
    folder = keras_cache(tmp_path) / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 2, b"labels", 10)
    write_cifar_batch(folder / "test_batch", 2, b"labels", 10)
    assert datasets.locate("cifar10", offline=True).path == str(folder)


def test_data_dir_name_subfolder_and_bare_idx_files_are_found(tmp_path):
    write_idx_set(tmp_path / "d1" / "fashion_mnist")
    assert datasets.locate("fashion_mnist", data_dir=tmp_path / "d1").path.endswith(
        "fashion_mnist")
    write_idx_set(tmp_path / "d2")
    assert datasets.locate("mnist", data_dir=tmp_path / "d2").path == str(tmp_path / "d2")


def test_missing_data_dir_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        datasets.load("mnist", data_dir=tmp_path / "missing")
    assert err.value.file == str(tmp_path / "missing")


def test_not_found_error_lists_every_place_searched_and_how_to_supply(tmp_path):
    with pytest.raises(DataError) as err:
        datasets.load("fashion_mnist", data_dir=tmp_path, offline=True)
    text = str(err.value)
    assert str(tmp_path / "fashion-mnist") in text
    assert str(keras_cache(tmp_path) / "fashion-mnist") in text
    assert str(tmp_path / "system" / "fashion-mnist") in text
    assert "skipped (offline)" in text and "--data-dir" in err.value.hint


def test_offline_never_calls_the_downloader(isolated):
    with pytest.raises(DataError):
        datasets.load("cifar100", offline=True)
    with pytest.warns(SampleDataWarning):
        datasets.load("mnist", offline=True)
    assert isolated == []


def test_failed_download_is_reported_and_the_search_moves_on(isolated):
    with pytest.raises(DataError, match="download: failed") as err:
        datasets.load("fashion_mnist")
    assert isolated == ["fashion_mnist"] and "network disabled" in str(err.value)


def test_successful_download_is_used_when_nothing_local(monkeypatch):
    x_train, y_train, x_test, y_test = tiny_arrays(size=(32, 32, 3))
    monkeypatch.setattr(known, "_keras_download", lambda name: (
        (x_train, y_train[:, None]), (x_test, y_test[:, None])))
    ds = datasets.load("cifar10")
    assert ds.source.startswith("Keras download") and ds.image_shape == (32, 32, 3)


def test_keras_download_messages_go_to_stderr_not_to_stdout(monkeypatch, capsys):
    import keras

    x_train, y_train, x_test, y_test = tiny_arrays(size=(32, 32, 3))

    def load_data():
        print("Downloading data from https://www.cs.toronto.edu/cifar-10-python.tar.gz")
        return (x_train, y_train[:, None]), (x_test, y_test[:, None])

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", load_data)
    monkeypatch.setattr(known, "_keras_download", KERAS_DOWNLOAD)
    datasets.load("cifar10")
    out, err = capsys.readouterr()
    assert out == "" and "Downloading data from" in err  # stdout holds results (--json)


def test_a_keras_download_waits_for_the_network_thirty_seconds_at_most(monkeypatch):
    """A network that drops packets kept every command silent for 140 s (the system's
    connection timeout): Keras' downloads set none."""
    import socket

    import keras

    x_train, y_train, x_test, y_test = tiny_arrays(size=(32, 32, 3))
    seen = []

    def load_data():
        seen.append(socket.getdefaulttimeout())  # what urllib's sockets are made with
        return (x_train, y_train[:, None]), (x_test, y_test[:, None])

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", load_data)
    monkeypatch.setattr(known, "_keras_download", KERAS_DOWNLOAD)
    datasets.load("cifar10")
    assert seen == [30] and socket.getdefaulttimeout() is None  # (put back)


def test_a_download_that_fails_at_once_prints_nothing_before_the_fallback(monkeypatch,
                                                                          capsys):
    """Offline, Keras says "Downloading data from URL" and fails (no network): the line
    would say it downloads; the bundled MNIST sample's warning says what happens."""
    import keras

    def load_data():
        print("Downloading data from https://storage.googleapis.com/mnist.npz")
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", load_data)
    monkeypatch.setattr(known, "_keras_download", KERAS_DOWNLOAD)
    with pytest.warns(UserWarning, match="USING THE BUNDLED MNIST SAMPLE"):
        datasets.load("mnist")
    assert "Downloading" not in capsys.readouterr().err


def test_incomplete_idx_set_in_cache_is_named_in_the_not_found_error(tmp_path):
    folder = keras_cache(tmp_path) / "fashion-mnist"
    write_idx_set(folder)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks the IDX file"):
        datasets.load("fashion_mnist", offline=True)


# --------------------------------------------------------------------------- #
# The bundled sample and describe_all
# --------------------------------------------------------------------------- #


def test_bundled_sample_is_used_for_mnist_with_a_loud_warning():
    with pytest.warns(SampleDataWarning, match="BUNDLED MNIST SAMPLE"):
        ds = datasets.load("mnist")  # download fails (no network in tests)
    assert ds.sample is True and ds.name == "mnist"
    assert ds.train.images.shape == (4000, 28, 28, 1) and ds.test.images.shape == (1000, 28, 28, 1)
    labels = np.concatenate([ds.train.labels, ds.test.labels])
    assert np.bincount(labels).tolist() == [500] * 10
    assert ds.train.images.dtype == np.uint8 and ds.train.images.max() == 255


def test_bundled_sample_file_is_under_one_megabyte():
    assert known.SAMPLE_PATH.stat().st_size < 1_000_000
    assert (known.SAMPLE_PATH.parent / "NOTICE-mnist.txt").is_file()


def test_describe_all_reads_counts_from_headers(tmp_path):
    write_idx_set(tmp_path / "system" / "fashion-mnist")
    write_npz(keras_cache(tmp_path) / "mnist.npz", n_train=30)
    rows = {r.name: r for r in datasets.describe_all(offline=True)}
    assert list(rows) == ["mnist", "fashion_mnist", "cifar10", "cifar100"]
    assert (rows["mnist"].kind, rows["mnist"].train) == ("keras_cache", 30)
    assert rows["fashion_mnist"].kind == "system"
    assert (rows["fashion_mnist"].train, rows["fashion_mnist"].test) == (20, 10)
    assert rows["fashion_mnist"].image_shape == (28, 28, 1)
    assert rows["cifar10"].where == "not found" and not rows["cifar10"].found


def test_fashion_mnist_files_in_a_data_dir_are_not_listed_as_mnist(tmp_path):
    # The two share file names; the test labels (1,000 per class) tell them apart.
    folder = tmp_path / "fashion"
    labels = np.arange(10_000) % 10
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((20, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte", labels[:20])
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((10_000, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte", labels)
    rows = {r.name: r for r in datasets.describe_all(data_dir=folder, offline=True)}
    assert "they look like fashion_mnist" in rows["mnist"].problem
    assert rows["fashion_mnist"].problem is None and rows["fashion_mnist"].found
    with pytest.raises(DataError, match="they look like fashion_mnist"):
        datasets.load("mnist", data_dir=folder)  # what training says: the same


def test_an_mnist_npz_of_other_images_is_not_taken_for_mnist(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 255, (6, 16, 16, 3), np.uint8),
             y_train=np.arange(6) % 3, x_test=rng.integers(0, 255, (3, 16, 16, 3), np.uint8),
             y_test=np.arange(3))
    rows = {r.name: r for r in datasets.describe_all(data_dir=tmp_path, offline=True)}
    says = "the files found for mnist are not mnist: their images are 16x16x3, mnist's 28x28x1"
    assert rows["mnist"].problem == says
    with pytest.raises(DataError, match=says) as e:
        datasets.load("mnist", data_dir=tmp_path)  # what training says: the same
    file = tmp_path / "mnist.npz"
    assert e.value.hint.startswith(f"give these files by their path (--data {file})")


def test_describe_all_online_says_how_much_will_be_downloaded(isolated):
    rows = {r.name: r for r in datasets.describe_all()}
    assert rows["cifar10"].where == "will download 170 MB (Keras)"
    assert rows["mnist"].num_classes == 10 and isolated == []


def test_describe_all_with_a_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        datasets.describe_all(data_dir=tmp_path / "missing")


def test_describe_all_offline_mnist_falls_back_to_the_sample():
    row = datasets.describe_all(offline=True)[0]
    assert row.kind == "sample" and (row.train, row.test) == (4000, 1000)


# --------------------------------------------------------------------------- #
# Bad data: one DataError naming the file
# --------------------------------------------------------------------------- #


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders") as err:
        datasets.load(tmp_path / "empty")
    assert err.value.file == str(tmp_path / "empty")


def test_folder_with_one_class_is_an_error(tmp_path):
    root = image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="only one class folder") as err:
        datasets.load(root)
    assert str(root) in str(err.value)


def test_class_folders_without_files_are_an_error(tmp_path):
    (tmp_path / "f" / "a").mkdir(parents=True)
    (tmp_path / "f" / "b").mkdir()
    with pytest.raises(DataError, match="f holds no readable images"):
        datasets.load(tmp_path / "f")


def test_mismatched_image_and_label_counts_are_an_error(tmp_path):
    x_train, y_train, x_test, y_test = tiny_arrays()
    np.savez(tmp_path / "bad.npz", x_train=x_train, y_train=y_train[:-1],
             x_test=x_test, y_test=y_test)
    with pytest.raises(DataError, match="20 training images but 19 labels") as err:
        datasets.load(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_mismatched_idx_counts_name_the_file(tmp_path):
    folder = write_idx_set(tmp_path / "idx")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz has 10 test images"):
        datasets.load(folder)


def test_negative_labels_are_an_error(tmp_path):
    x_train, y_train, x_test, y_test = tiny_arrays()
    y_train = y_train.copy()
    y_train[3] = -1
    np.savez(tmp_path / "neg.npz", x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    with pytest.raises(DataError, match="y_train in neg.npz has a negative label"):
        datasets.load(tmp_path / "neg.npz")


def test_labels_out_of_range_for_a_known_dataset_are_an_error(tmp_path):
    x_train, y_train, x_test, y_test = tiny_arrays()
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test + 5)
    with pytest.raises(DataError, match="mnist.npz has label 14, out of range for 10"):
        datasets.load("mnist", data_dir=tmp_path)


def test_unreadable_image_is_skipped_with_a_count_in_a_warning(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "dog" / "notes.txt").write_text("hello")  # not an image name: not listed
    with pytest.warns(DataWarning, match="skipped 1 unreadable file.*broken.jpg"):
        ds = datasets.load(root)
    assert len(ds.train) + len(ds.test) == 6


def test_files_checked_in_chunks_are_each_checked_once(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "SNIFF_CHUNK", 7)  # many chunks, the last one short
    root = image_folder(tmp_path / "f", classes=("a", "b", "c"), per_class=10)
    (root / "b" / "5.png").write_bytes(b"not a png")
    with pytest.warns(DataWarning, match="skipped 1 unreadable file.*b/5.png"):
        ds = datasets.load(root, test_fraction=1.0)
    named = [Path(p).parent.name for p in ds.test.images]
    assert len(named) == 29 and named == [ds.class_names[k] for k in ds.test.labels]
    assert str(root / "b" / "5.png") not in ds.test.images


@pytest.mark.timeout(60)  # reading a FIFO waits for a writer: before the fix, for ever
def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    from cnncli.data import images

    root = image_folder(tmp_path / "f", per_class=3)
    os.mkfifo(root / "dog" / "fifo.png")
    with pytest.warns(DataWarning, match="fifo.png: this is not a regular file"):
        ds = datasets.load(root)
    assert len(ds.train) + len(ds.test) == 6
    with pytest.raises(DataError, match="not a regular file"):
        images.load_image(root / "dog" / "fifo.png")


def test_unreadable_image_is_an_error_when_strict(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="the file is text, not an image") as err:
        datasets.load(root, strict=True)
    assert err.value.file == str(root / "cat" / "broken.jpg")


def test_a_file_that_fails_to_decode_later_gets_weight_zero_not_a_crash(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "cat" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    ds = datasets.load(root, test_fraction=0.5)
    split = ds.train if any("cut" in p for p in ds.train.images) else ds.test
    loader = ImageLoader(split, (8, 8, 3), cache="none")
    images, weights = loader.batch(np.arange(len(split)))
    broken = [i for i, p in enumerate(split.images) if "cut" in p][0]
    assert weights[broken] == 0 and (images[broken] == 0).all()
    assert weights.sum() == len(split) - 1 and list(loader.failures) == [broken]


def test_a_decoder_bug_on_one_file_gets_weight_zero_not_a_crash(tmp_path, monkeypatch):
    from cnncli.data import images

    root = image_folder(tmp_path / "f", per_class=3)
    ds = datasets.load(root, test_fraction=0.5)
    real = images._upright

    def upright(img, label):
        if label == ds.train.images[1]:
            raise ZeroDivisionError("division by zero")
        return real(img, label)

    monkeypatch.setattr(images, "_upright", upright)
    loader = ImageLoader(ds.train, (8, 8, 3), cache="none")
    images_, weights = loader.batch(np.arange(len(ds.train)))
    assert weights.tolist() == [1.0, 0.0] + [1.0] * (len(ds.train) - 2)
    assert "ZeroDivisionError" in loader.failures[1].message


def test_truncated_npz_is_an_error(tmp_path):
    path = write_npz(tmp_path / "cut.npz")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="cut.npz is not a readable .npz") as err:
        datasets.load(path)
    assert err.value.file == str(path)


def test_npz_missing_arrays_is_an_error_naming_them(tmp_path):
    path = write_npz(tmp_path / "half.npz", x_test=None, y_test=None)
    with pytest.raises(DataError, match="half.npz has no array named x_test, y_test"):
        datasets.load(path)


def test_npz_with_an_empty_split_says_both_are_needed(tmp_path):
    path = write_npz(tmp_path / "empty.npz", n_train=0)
    with pytest.raises(DataError, match="empty.npz has no training images") as err:
        datasets.load(path)
    assert "needs images in both splits, to evaluate too" in err.value.hint


def test_npz_with_float_images_is_an_error_with_a_conversion_hint(tmp_path):
    x_train, y_train, x_test, y_test = tiny_arrays()
    np.savez(tmp_path / "f.npz", x_train=x_train / 255.0, y_train=y_train,
             x_test=x_test, y_test=y_test)
    with pytest.raises(DataError, match="x_train in f.npz has dtype float64") as err:
        datasets.load(tmp_path / "f.npz")
    assert "astype('uint8')" in err.value.hint


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_file_is_an_error(tmp_path, gz):
    folder = write_idx_set(tmp_path / "idx", gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = folder / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=f"{name} is truncated") as err:
        datasets.load(folder)
    assert err.value.file == str(path)


def test_an_npz_declaring_more_than_half_the_memory_is_refused_before_it_is_read(
        tmp_path, monkeypatch):
    """A small compressed file of zeros can declare gigabytes (here 64 MB in 70 kB)."""
    from cnncli.data import loader

    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x_train=np.zeros((65_536, 32, 32), np.uint8),
                        y_train=np.zeros(65_536, np.uint8), x_test=np.zeros((1, 32, 32),
                                                                            np.uint8),
                        y_test=np.zeros(1, np.uint8))
    monkeypatch.setattr(loader, "available_memory", lambda: 100_000_000)  # 100 MB
    with pytest.raises(DataError, match=r"bomb.npz declares 64.1 MiB of images and labels, "
                                        r"and such a file is read whole: more than the 47.7 "
                                        r"MiB it may take \(half the 95.4 MiB of memory "
                                        r"available now\)"):
        datasets.load(path)


def test_memory_available_is_linux_figure_else_half_the_machines_memory(tmp_path,
                                                                       monkeypatch):
    """Without /proc/meminfo (macOS) it was 2 GiB on any machine: a 5,000-photo folder
    went to a disk cache, VGG16 was warned of and a 1.4 GB npz refused."""
    from cnncli.data import loader

    (tmp_path / "meminfo").write_text("MemTotal: 8000 kB\nMemAvailable: 3000 kB\n")
    monkeypatch.setattr(loader, "MEMINFO", str(tmp_path / "meminfo"))
    assert loader.available_memory() == 3000 * 1024
    monkeypatch.setattr(loader, "MEMINFO", str(tmp_path / "none"))
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert loader.available_memory() == physical // 2


def test_a_gzipped_idx_file_declaring_more_than_half_the_memory_is_refused_unread(
        tmp_path, monkeypatch):
    from cnncli.data import idx, loader

    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 0x08, 3]) + np.array([65_536, 32, 32], ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(65_536 * 32 * 32))
    monkeypatch.setattr(loader, "available_memory", lambda: 100_000_000)
    with pytest.raises(DataError, match="declares 64.0 MiB of images and labels"):
        idx.read_idx(path)


def test_an_idx_file_longer_than_declared_says_by_how_much(tmp_path):
    from cnncli.data import idx

    path = write_idx(tmp_path / "x-idx1-ubyte", np.arange(10))
    path.write_bytes(path.read_bytes() + bytes(3))
    with pytest.raises(DataError, match="has 3 bytes more than its header declares"):
        idx.read_idx(path)


def test_a_gzipped_idx_file_with_megabytes_beyond_its_data_is_refused_unread(tmp_path):
    """A gzip bomb: gigabytes of zeros after the declared data were all decompressed
    to count them; the error comes after the first megabyte beyond."""
    import gzip

    from cnncli.data import idx

    path = write_idx(tmp_path / "x-idx1-ubyte", np.arange(10))
    packed = tmp_path / "x-idx1-ubyte.gz"
    with gzip.open(packed, "wb") as f:
        f.write(path.read_bytes() + bytes(3 << 20))
    read = []
    real_read = gzip.GzipFile.read
    def counting(self, size=-1):
        data = real_read(self, size)
        read.append(len(data))
        return data
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gzip.GzipFile, "read", counting)
        with pytest.raises(DataError, match="has over 1 MB more than its header declares"):
            idx.read_idx(packed)
    assert sum(read) < 2 << 20


def test_idx_file_with_a_bad_magic_number_is_an_error(tmp_path):
    folder = write_idx_set(tmp_path / "idx", gz=False)
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is not an IDX file"):
        datasets.load(folder)


def test_loading_bad_data_writes_nothing(tmp_path):
    root = image_folder(tmp_path / "f", per_class=3)
    (root / "cat" / "broken.jpg").write_bytes(b"junk")
    before = snapshot(tmp_path)
    with pytest.raises(DataError):
        datasets.load(root, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets.load(root)
    assert snapshot(tmp_path) == before


def test_bad_test_fraction_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="test fraction"):
        datasets.load(image_folder(tmp_path / "f"), test_fraction=1.5)


# --------------------------------------------------------------------------- #
# Real data
# --------------------------------------------------------------------------- #


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_all_70000_fashion_mnist_images_read_through_the_idx_source():
    ds = idx.read_idx_folder(FASHION_DIR)
    assert ds.train.images.shape == (60000, 28, 28, 1)
    assert ds.test.images.shape == (10000, 28, 28, 1)
    assert ds.train.images.dtype == np.uint8
    assert np.bincount(ds.train.labels).tolist() == [6000] * 10
    assert np.bincount(ds.test.labels).tolist() == [1000] * 10
    assert os.fspath(FASHION_DIR) in ds.source


def test_class_count_reads_only_folder_names_or_the_index(tmp_path):
    """`check` and `summary` size the classifier from it: no image is opened."""
    from cnncli.data import packing

    photos = image_folder(tmp_path / "photos", classes=("a", "b", "c"))
    image_folder(tmp_path / "split" / "train", classes=("x", "y"))
    image_folder(tmp_path / "split" / "test", classes=("x", "y"))
    assert datasets.class_count(photos) == 3 and datasets.class_count(tmp_path / "split") == 2
    assert datasets.class_count("cifar100") == 100
    packing.pack(datasets.load(photos), tmp_path / "packed")
    assert datasets.class_count(tmp_path / "packed") == 3
    (tmp_path / "empty").mkdir()
    assert datasets.class_count(tmp_path / "empty") is None  # training says what is wrong
    assert datasets.class_count(tmp_path / "missing") is None
    from cnncli.run import checking

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: mnist_net\ndata: {{name: {photos}}}\n")
    assert checking.check(str(cfg)).model.output_shape[-1] == 3  # not the default 10
