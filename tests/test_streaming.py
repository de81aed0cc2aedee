"""Your own photos (GitHub issue 13): one decoder for training and prediction, folders
streamed (never decoded whole up front), cached, packed into TFRecords, CSV labels."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli import config, files, parallel
from cnncli.data import checks, datasets, images, inputs, loader, packing, records
from cnncli.data.dataset import DataWarning
from cnncli.data.feed import Feed, split_batches
from cnncli.data.loader import ImageLoader
from cnncli.errors import ConfigError, DataError, WriteError
from cnncli.run import train as training

SHAPE = (16, 16, 3)


def photo_folder(root, per_class=6):
    """Two classes of photos of the kinds people have: mixed sizes, EXIF-rotated, 16-bit
    grey, CMYK, RGBA; class b is bright at the top, class a at the bottom."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("a", "b")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(12, 40, 2)
            x = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            x[(h // 2 if label == 0 else 0):(h if label == 0 else h // 2)] += 180
            kind = i % 5
            if kind == 0:
                Image.fromarray(x).save(folder / f"{i}.jpg", quality=95)
            elif kind == 1:  # stored sideways, with an EXIF orientation (as phones do)
                exif = Image.Exif()
                exif[0x0112] = 6
                Image.fromarray(np.rot90(x, 1).copy()).save(folder / f"{i}.jpg", exif=exif)
            elif kind == 2:  # 16-bit grey
                grey = (x.mean(axis=2).astype(np.uint16) * 257)
                Image.fromarray(grey).save(folder / f"{i}.png")  # mode I;16
            elif kind == 3:
                Image.fromarray(x).convert("CMYK").save(folder / f"{i}.jpg")
            else:
                rgba = np.dstack([x, np.full((h, w), 200, np.uint8)])
                Image.fromarray(rgba, "RGBA").save(folder / f"{i}.png")
    return root


def test_training_sees_exactly_the_pixels_prediction_sees(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    for mode in images.RESIZE_MODES:
        seen = ImageLoader(ds.train, SHAPE, mode, cache="none").batch(np.arange(len(ds.train)))
        for k, path in enumerate(ds.train.images):
            np.testing.assert_array_equal(seen[0][k], inputs.read_image(path, SHAPE, mode))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    sixteen = [i for i, p in enumerate(ds.train.images) if p.endswith("2.png")]
    pixels = ImageLoader(ds.train, SHAPE, cache="none").batch(np.array(sixteen))[0]
    assert 20 < pixels.mean() < 200  # clipped, almost every pixel would be 255


def test_exif_rotated_photos_reach_the_model_upright(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"), test_fraction=0.5)
    split = ds.train if any(p.endswith("/1.jpg") for p in ds.train.images) else ds.test
    rotated = np.array([i for i, p in enumerate(split.images) if p.endswith("/1.jpg")])
    pixels = ImageLoader(split, (16, 16, 1), cache="none").batch(rotated)[0].astype(float)
    top, bottom = pixels[:, :8].mean(axis=(1, 2, 3)), pixels[:, 8:].mean(axis=(1, 2, 3))
    expected = np.where(split.labels[rotated] == 1, 1, -1)  # b is bright at the top
    assert ((top - bottom) * expected > 60).all()


def test_a_folder_is_not_decoded_before_training_starts(tmp_path, monkeypatch):
    decoded = count_decodes(monkeypatch)  # the one decoder under load_image, load_resized
    ds = datasets.load(photo_folder(tmp_path / "photos", per_class=20))
    feed = Feed.of(ds, SHAPE, validation_split=0.2, seed=0, cache="none")
    assert decoded == []  # listed and checked (first bytes), not decoded
    batch = next(iter(feed.training(batch_size=4, seed=0, epochs=1)))
    assert batch[0].shape == (4, 16, 16, 3) and 4 <= len(decoded) < len(ds.train)


def test_a_cached_epoch_decodes_nothing_again(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    for mode in ("memory", "disk"):
        cached = ImageLoader(ds.train, SHAPE, cache=mode)
        first = cached.batch(np.arange(len(ds.train)))[0]
        monkeypatch.setattr(images, "_decode", lambda *a, **k: 1 / 0)
        np.testing.assert_array_equal(cached.batch(np.arange(len(ds.train)))[0], first)
        monkeypatch.undo()
        monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    assert list((tmp_path / "cache").glob("*/images.u8"))


def test_auto_cache_is_memory_for_small_data_and_disk_for_large():
    assert loader.choose_cache("auto", 20_000, (224, 224, 3), memory=24 * 2**30) == "memory"
    assert loader.choose_cache("auto", 60_000, (224, 224, 3), memory=24 * 2**30) == "disk"


def test_packed_shards_give_the_folders_images_and_labels(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packing.pack(ds, tmp_path / "packed", shard_mb=0.002)
    packed = datasets.load(tmp_path / "packed")
    assert packed.class_names == ds.class_names and packed.train.kind == "records"
    assert len(packed.train.images.shards) > 1
    for folder_split, packed_split in ((ds.train, packed.train), (ds.test, packed.test)):
        pairs = []  # (label, pixels) of every image, in the order each gives them
        for split in (folder_split, packed_split):
            batches = list(split_batches(split, SHAPE))
            x = np.concatenate([x for x, _, _ in batches])
            y = np.concatenate([y for _, y, _ in batches])
            np.testing.assert_array_equal(y, split.labels)
            pairs.append([(int(label), image.tobytes()) for label, image in
                          zip(y, x, strict=True)])
        assert sorted(pairs[0]) == sorted(pairs[1])  # the same images with their labels
        if folder_split is ds.train:  # packed in a seeded random order, not class by class
            assert pairs[0] != pairs[1]


def test_pack_decodes_several_images_at_the_same_time(tmp_path, monkeypatch):
    """Decoding, resizing and compressing run in `parallel.DECODE_THREADS` threads: the first two
    images meet at a barrier, which only two images decoded at once can pass."""
    meet, calls, lock, resized = threading.Barrier(2, timeout=10), [], threading.Lock(), \
        packing._resized

    def two_at_once(*args, **kw):
        with lock:
            calls.append(threading.get_ident())
            first_two = len(calls) <= 2
        if first_two:
            meet.wait()  # BrokenBarrierError after 10 s if the images come one by one
        return resized(*args, **kw)

    monkeypatch.setattr(parallel, "DECODE_THREADS", 2)
    monkeypatch.setattr(packing, "_resized", two_at_once)
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packed = packing.pack(ds, tmp_path / "packed", image_size=(8, 8))
    assert sum(packed.counts.values()) == len(calls) == 12
    assert len(set(calls[:2])) == 2


def test_packed_records_are_shuffled_so_a_window_holds_every_class(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos", per_class=10))
    assert ds.train.labels.tolist() == sorted(ds.train.labels.tolist())  # class by class
    packing.pack(ds, tmp_path / "packed")
    labels = datasets.load(tmp_path / "packed").train.labels
    assert sorted(labels.tolist()) == sorted(ds.train.labels.tolist())
    for window in np.array_split(labels, 3):  # each third holds both classes
        assert len(set(window.tolist())) == 2, labels


def test_pack_force_refuses_a_folder_of_the_users_that_has_a_dataset_json(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    mine = tmp_path / "project"
    (mine / "sub").mkdir(parents=True)
    (mine / "dataset.json").write_text('{"name": "my annotations"}')
    (mine / "sub" / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match="is not a packed dataset"):
        packing.pack(ds, mine, force=True)
    packing.pack(ds, tmp_path / "packed")
    (tmp_path / "packed" / "notes.txt").write_text("added to a pack: kept too")
    (tmp_path / "packed" / ".DS_Store").write_text("added by a file browser")
    (tmp_path / "packed" / "backup.tfrecord").mkdir()  # named like a shard, a folder
    with pytest.raises(ConfigError, match=r"holds files a pack did not write \(.DS_Store, "
                                          r"backup.tfrecord, notes.txt\)"):
        packing.pack(ds, tmp_path / "packed", force=True)
    assert (mine / "sub" / "notes.txt").read_text() == "precious"
    assert (tmp_path / "packed" / "notes.txt").exists()
    assert (tmp_path / "packed" / "backup.tfrecord").is_dir()


def test_packed_training_batches_are_seeded_per_epoch_and_resume_exactly(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos", per_class=10))
    packing.pack(ds, tmp_path / "packed", shard_mb=0.003)
    feed = Feed.of(datasets.load(tmp_path / "packed"), SHAPE, validation_split=0.2, seed=1)

    def labels(**kw):
        batches = feed.training(batch_size=4, seed=1, epochs=2, preprocessing="none", **kw)
        return [y.tolist() for _, y, _ in batches.as_numpy_iterator()]

    whole = labels()
    assert len(whole) == 2 * (len(feed.train) // 4) and whole == labels()
    assert labels(start_epoch=1, start_step=1) == whole[len(whole) // 2 + 1:]


@pytest.mark.parametrize("source", ["arrays", "folder", "packed"])
def test_augmented_batches_of_a_resumed_run_are_those_of_a_run_never_stopped(tmp_path, source):
    """Each batch's random changes come from its number in the run: a resume drew them
    from the run's first draws again (its weights ended elsewhere)."""
    from cnncli.config import AugmentSection

    ds = datasets.load(photo_folder(tmp_path / "photos", per_class=10))
    if source == "packed":
        packing.pack(ds, tmp_path / "packed", shard_mb=0.003)
        ds = datasets.load(tmp_path / "packed")
    elif source == "arrays":
        pixels = ImageLoader(ds.train, SHAPE, cache="none").batch(np.arange(len(ds.train)))[0]
        ds = checks.from_arrays("a", pixels, ds.train.labels, pixels,
                                ds.train.labels, None, "a", file="a")
    feed = Feed.of(ds, SHAPE, validation_split=0.2, seed=1)
    augment = AugmentSection(flip="horizontal", translate=0.2, rotate=0.1, zoom=0.2,
                             contrast=0.3)

    def images(**kw):
        batches = feed.training(batch_size=4, seed=1, epochs=2, preprocessing="none",
                                augment=augment, **kw)
        return [x for x, *_ in batches.as_numpy_iterator()]

    whole = images()
    resumed = images(start_epoch=1, start_step=1)
    assert len(resumed) == len(whole) // 2 - 1
    for a, b in zip(resumed, whole[len(whole) // 2 + 1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_truncated_shard_is_an_error_naming_it(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed",
                 shard_mb=0.002)
    shard = sorted((tmp_path / "packed").glob("train-*.tfrecord"))[1]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"the shard {shard.name} is truncated") as err:
        datasets.load(tmp_path / "packed")
    assert err.value.file == str(shard)


def test_a_shard_damaged_in_place_stops_training_with_an_error_naming_it(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed",
                 shard_mb=0.002)
    shard = sorted((tmp_path / "packed").glob("train-*.tfrecord"))[1]
    data = bytearray(shard.read_bytes())
    data[100:110] = bytes(b ^ 0xFF for b in data[100:110])  # same size: passes the size check
    shard.write_bytes(bytes(data))
    cfg = config.parse({"model": {"input": [16, 16, 3], "layers": [
        "Flatten", {"Dense": {"units": "$classes", "activation": "softmax"}}]},
        "data": {"name": str(tmp_path / "packed"), "validation_split": 0},
        "train": {"epochs": 1, "batch_size": 2}, "output": {"dir": str(tmp_path / "runs")}})
    with pytest.raises(DataError, match=f"the shard {shard.name} is damaged \\(") as err:
        training.train(cfg)
    assert err.value.file == str(shard) and "pack the data again" in err.value.hint
    with pytest.raises(DataError, match=f"the shard {shard.name} is damaged"):
        list(split_batches(datasets.load(tmp_path / "packed").train, SHAPE))  # evaluate's
    with pytest.raises(DataError, match=f"the shard {shard.name} is damaged") as err:
        packing.pack(datasets.load(tmp_path / "packed"), tmp_path / "again")  # packed again
    assert err.value.file == str(shard) and not (tmp_path / "again").exists()


def _rewrite_records(shard, change) -> None:
    """`shard` written again (valid checksums) with `change(k, example)` applied."""
    import tensorflow as tf

    found = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for k, raw in enumerate(found):
            example = tf.train.Example.FromString(raw)
            change(k, example)
            writer.write(example.SerializeToString())


@pytest.mark.parametrize("feature,value", [("label", "the other class"), ("label", 7),
                                           ("index", 10_000)])
def test_a_record_that_disagrees_with_its_packs_labels_stops_training_saying_so(
        tmp_path, feature, value):
    """Shards edited, or another pack's shards beside these labels: checksums pass, so the
    record's label (beyond the classes) or index (beyond the records) crashed mid-epoch
    in TensorFlow; the error names the pack, the record and what to do."""
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    [shard] = (tmp_path / "packed").glob("train-*.tfrecord")

    def change(k, example):
        if k == 0:
            values = example.features.feature[feature].int64_list.value
            values[0] = 1 - values[0] if value == "the other class" else value  # (silently
            # trained on, before: a label the model has)

    _rewrite_records(shard, change)
    index = json.loads((tmp_path / "packed" / "dataset.json").read_text())
    index["splits"]["train"]["shards"][0]["bytes"] = shard.stat().st_size
    (tmp_path / "packed" / "dataset.json").write_text(json.dumps(index))
    cfg = config.parse({"model": {"input": [16, 16, 3], "layers": [
        "Flatten", {"Dense": {"units": "$classes", "activation": "softmax"}}]},
        "data": {"name": str(tmp_path / "packed"), "validation_split": 0},
        "train": {"epochs": 1, "batch_size": 2}, "output": {"dir": str(tmp_path / "runs")}})
    said = (r"a record of packed \(index 0, label \d\) disagrees with its train-labels.npy"
            if feature == "label" else r"a record of packed \(index 10000, label \d\) "
            "disagrees with its train-labels.npy")
    with pytest.raises(DataError, match=said) as err:
        training.train(cfg)
    assert err.value.file == str(tmp_path / "packed") and "pack the data again" in \
        err.value.hint
    with pytest.raises(DataError, match=said):
        list(split_batches(datasets.load(tmp_path / "packed").train, SHAPE))  # evaluate's


def test_pack_refuses_an_existing_folder_and_leaves_nothing_half_written(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="exists"):
        packing.pack(ds, tmp_path / "packed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "photos"]
    assert [p.name for p in (tmp_path / "packed").iterdir()] == ["notes.txt"]


def test_pack_writes_into_an_empty_folder_made_for_it(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "packed").mkdir()
    packing.pack(ds, tmp_path / "packed")
    assert len(datasets.load(tmp_path / "packed").train) == len(ds.train)


def _mount_point(out: Path, monkeypatch) -> Path:
    """`out` made a folder that, as a mount point (a Docker volume), can be neither
    renamed over nor removed (EBUSY)."""
    import errno

    out.mkdir(exist_ok=True)
    replace, rmtree = packing.os.replace, packing.shutil.rmtree

    def busy(path) -> None:
        if Path(path) == out:
            raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(packing.os, "replace", lambda src, dst: busy(dst) or replace(src, dst))
    monkeypatch.setattr(packing.shutil, "rmtree", lambda path, **kw: busy(path) or rmtree(
        path, **kw))
    return out


def test_pack_into_an_empty_mount_point_is_written_inside_it(tmp_path, monkeypatch):
    """A Docker volume or a mounted disk cannot be renamed over (EBUSY), and is where the
    user wants the bytes: the pack is staged inside it and moved into place."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    out = _mount_point(tmp_path / "volume", monkeypatch)
    packing.pack(ds, out)
    assert len(datasets.load(out).train) == len(ds.train)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "volume"]


def test_pack_force_onto_a_mount_point_replaces_the_earlier_pack_in_place(tmp_path,
                                                                          monkeypatch):
    """A volume holding an earlier pack can be neither renamed over nor removed: the new
    pack is staged inside it and the earlier one's files make way for it."""
    out = tmp_path / "volume"
    out.mkdir()
    packing.pack(datasets.load(photo_folder(tmp_path / "few", per_class=3)), out)
    _mount_point(out, monkeypatch)
    ds = datasets.load(photo_folder(tmp_path / "more", per_class=6))
    packing.pack(ds, out, force=True)
    assert len(datasets.load(out).train) == len(ds.train)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_pack_whose_folder_is_made_meanwhile_by_someone_else_says_so(tmp_path,
                                                                       monkeypatch):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    out = tmp_path / "packed"
    real = packing._write_split

    def another_pack_first(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / "theirs.txt").write_text("keep me")
        return real(*args, **kwargs)

    monkeypatch.setattr(packing, "_write_split", another_pack_first)
    with pytest.raises(WriteError, match="packed was made while packing, with something in "
                                         "it; it was left as it is"):
        packing.pack(ds, out)
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "photos"]


def test_a_killed_pack_into_an_empty_folder_leaves_it_packable_again(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    out = tmp_path / "packed"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (out / f"{packing.STAGED}x1y2z3w4").mkdir(parents=True)
    (out / f"{packing.STAGED}x1y2z3w4" / files.PID_FILE).write_text(dead)  # process: gone
    packing.pack(ds, out)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_pack_never_writes_over_its_source(tmp_path):
    root = photo_folder(tmp_path / "photos")
    before = sorted(p.name for p in root.rglob("*"))
    ds = datasets.load(root)
    for out in (root, root / "a" / "packed", tmp_path):
        with pytest.raises(ConfigError, match="the data folder|inside the data|holding the"):
            packing.pack(ds, out, force=True, source=root)
    assert sorted(p.name for p in root.rglob("*")) == before


def test_pack_force_replaces_an_earlier_pack_but_no_other_folder(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a packed dataset"):
        packing.pack(ds, tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError) as e:  # not told to pass --force, which refuses it
        packing.pack(ds, tmp_path / "mine")
    assert e.value.hint == "give another folder (--force replaces only an earlier pack)"
    packing.pack(ds, tmp_path / "packed")
    (tmp_path / "packed" / "stale.tfrecord").write_bytes(b"old")
    packing.pack(ds, tmp_path / "packed", force=True)
    assert not (tmp_path / "packed" / "stale.tfrecord").exists()


def test_a_packed_dataset_packs_again_resized_with_the_same_labels(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packing.pack(ds, tmp_path / "packed", shard_mb=0.002)
    packed = datasets.load(tmp_path / "packed")
    packing.pack(packed, tmp_path / "again", image_size=(16, 16))
    again = datasets.load(tmp_path / "again")
    assert again.image_shape == (16, 16, 3)
    np.testing.assert_array_equal(again.train.labels, packed.train.labels)  # in its order
    np.testing.assert_array_equal(np.concatenate([x for x, _, _ in split_batches(
        again.train, SHAPE)]), np.concatenate([x for x, _, _ in split_batches(
            packed.train, SHAPE)]))  # 16x16 either way: the same resize, the same pixels


def test_pack_keeps_file_names_that_are_not_utf8(tmp_path):
    root = photo_folder(tmp_path / "photos")
    odd = root / "a" / "bad\udcff.jpg"  # the name of a file whose bytes are not UTF-8
    (root / "a" / "0.jpg").rename(odd)
    packing.pack(datasets.load(root), tmp_path / "packed")
    assert datasets.load(tmp_path / "packed").train.kind == "records"


def test_damaged_labels_of_a_packed_dataset_are_an_error_naming_the_file(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    (tmp_path / "packed" / "train-labels.npy").write_text("garbage")
    with pytest.raises(DataError, match="train-labels.npy cannot be read") as err:
        datasets.load(tmp_path / "packed")
    assert err.value.file.endswith("train-labels.npy") and "pack the data again" in err.value.hint


def test_a_pack_without_its_index_is_said_as_such_not_taken_for_a_photo_folder(tmp_path):
    """Shards and labels copied without dataset.json: not "no class sub-folders"."""
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    (tmp_path / "packed" / "dataset.json").unlink()
    with pytest.raises(DataError, match="packed holds packed shards and labels but not "
                                        "their index, dataset.json") as err:
        datasets.load(tmp_path / "packed")
    assert "pack the data again" in err.value.hint


def test_a_negative_packed_label_is_an_error_naming_the_index_not_a_crash(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    file = tmp_path / "packed" / "train-labels.npy"
    np.save(file, np.where(np.arange(len(np.load(file))) == 0, -1, np.load(file)))
    with pytest.raises(DataError, match="the labels hold -1, and a label is a class's number "
                                        "from 0") as err:
        datasets.load(tmp_path / "packed")
    assert err.value.file == str(tmp_path / "packed" / "dataset.json")


def test_a_pack_whose_index_is_a_device_is_an_error_not_a_hang(tmp_path):
    """A pack from someone else with dataset.json linked to /dev/zero: reading it whole
    would fill the memory."""
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    (tmp_path / "packed" / "dataset.json").unlink()
    (tmp_path / "packed" / "dataset.json").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="dataset.json is not a file"):
        datasets.load(tmp_path / "packed")


def test_packed_labels_fewer_than_the_records_are_an_error_naming_the_counts(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    file = tmp_path / "packed" / "train-labels.npy"
    labels = np.load(file)
    np.save(file, labels[:-1])
    with pytest.raises(DataError, match=f"train-labels.npy has {len(labels) - 1} labels for "
                                        f"{len(labels)} records") as err:
        datasets.load(tmp_path / "packed")
    assert err.value.file == str(tmp_path / "packed") and err.value.hint == "pack the data again"


def test_pack_refuses_an_image_size_no_model_takes(tmp_path):
    with pytest.raises(ConfigError, match="larger than 16384 pixels a side"):
        packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed",
                     image_size=(100_000, 100_000))
    assert not (tmp_path / "packed").exists()


def test_a_csv_of_paths_and_labels_is_a_dataset(tmp_path):
    root = photo_folder(tmp_path / "photos")
    rows = ["path,label,split"] + [f"photos/{c}/{i}.{'png' if i % 5 in (2, 4) else 'jpg'},"
                                   f"{c},{'test' if i == 0 else 'train'}"
                                   for c in "ab" for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = datasets.load(tmp_path / "labels.csv")
    assert ds.class_names == ["a", "b"] and (len(ds.train), len(ds.test)) == (10, 2)
    assert ds.test.images == [str(root / "a" / "0.jpg"), str(root / "b" / "0.jpg")]


def test_packing_images_from_outside_the_sources_folder_is_said(tmp_path):
    """A CSV from someone else naming a photo of the user's (``../``, absolute), or a
    link in a class folder: the pack would carry a copy to whoever it is given to."""
    (tmp_path / "data").mkdir()
    photo_folder(tmp_path / "data" / "photos")
    private = photo_folder(tmp_path / "private")
    rows = ["path,label"] + [f"photos/{c}/{i}.jpg,{c}" for c in "ab" for i in (0, 1, 3)]
    rows += [f"{private / 'a' / '0.jpg'},a", "../private/b/0.jpg,b"]
    (tmp_path / "data" / "labels.csv").write_text("\n".join(rows) + "\n")
    source = tmp_path / "data" / "labels.csv"
    [note] = packing.outside_note(datasets.load(source), source)
    assert note.startswith(f"2 images of {source} lie outside its folder {tmp_path / 'data'}")
    assert str(private / "a" / "0.jpg") in note
    folder = photo_folder(tmp_path / "mine")
    assert packing.outside_note(datasets.load(folder), folder) == []
    (folder / "a" / "link.jpg").symlink_to(private / "b" / "1.jpg")
    [note] = packing.outside_note(datasets.load(folder), folder)
    assert note.startswith(f"1 image of {folder} lies outside") and "link.jpg" in note


def _photos_config(tmp_path, root, *, cache: str, batch_size: int):
    """tmp_path/photos.yaml: a tiny network, one epoch on the photos in `root`, half
    of them for validation."""
    (tmp_path / "photos.yaml").write_text(textwrap.dedent(f"""
        model:
          input: [16, 16, 3]
          layers:
            - Conv2D: {{filters: 2, kernel_size: 3, activation: relu}}
            - GlobalAveragePooling2D
            - Dense: {{units: $classes, activation: softmax}}
        data: {{name: {root}, validation_split: 0.5, cache: {cache}}}
        train: {{epochs: 1, batch_size: {batch_size}, precision: float32, seed: 0}}
        output: {{dir: {tmp_path / "runs"}, name: photos}}
        """))


def test_a_training_on_photos_lets_go_of_its_threads_and_cache_when_it_ends(tmp_path):
    """Trainings in one process (a notebook): each kept its decoding threads and its
    decoded images for as long as the process lived."""

    root = photo_folder(tmp_path / "photos")
    _photos_config(tmp_path, root, cache="memory", batch_size=2)
    seen = []
    real_init = ImageLoader.__init__

    def recording(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        seen.append(self)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ImageLoader, "__init__", recording)
        for _ in range(2):
            training.train(config.load(tmp_path / "photos.yaml"))
    assert len(seen) >= 4 and all(loader._store is None for loader in seen)
    threads = [t for loader in seen for t in loader._pool._threads]  # (the pool's own)
    assert threads and not any(t.is_alive() for t in threads)


def _csv_of(tmp_path, folder: str):
    """labels.csv listing 12 photos, a/1 (training) and b/0 (test) in `folder`, the
    others under photos/."""
    photo_folder(tmp_path / "photos")
    rows = ["path,label,split"] + [
        f"{folder if (c, i) in (('a', 1), ('b', 0)) else 'photos'}/{c}/{i}."
        f"{'png' if i % 5 in (2, 4) else 'jpg'},{c},{'test' if i == 0 else 'train'}"
        for c in "ab" for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def test_a_csv_row_whose_image_cannot_be_read_is_skipped_and_said_once(tmp_path):
    with pytest.warns(DataWarning) as said:
        ds = datasets.load(_csv_of(tmp_path, "gone"))
    assert [str(w.message).split(" in ")[0] for w in said] == ["skipped 2 unreadable files"]
    assert (len(ds.train), len(ds.test)) == (9, 1)


def test_a_csv_most_of_whose_images_cannot_be_read_is_refused_not_trained_on(tmp_path):
    """The wrong folder: 7 of 12 images are missing (more than half)."""
    path = _csv_of(tmp_path, "photos")
    path.write_text(path.read_text().replace("photos/a/", "gone/a/").replace(
        "photos/b/1", "gone/b/1"))
    with pytest.raises(DataError, match=f"7 of the 12 image files in {path} cannot be "
                                        "read, e.g. ") as e:
        datasets.load(path)
    assert e.value.hint.startswith("more than half: the wrong folder")
    assert e.value.hint.endswith("(the CSV's paths are relative to it)")


def test_images_that_fail_to_decode_while_training_count_in_no_figure(tmp_path):
    """A file whose header is good but whose data is cut short is found only when decoded:
    a black image of weight 0. The loss left it out; accuracy counted it, right or wrong."""
    from cnncli.infer import classifier

    root = photo_folder(tmp_path / "photos", per_class=24)
    for broken in sorted((root / "b").glob("*.png"))[:8]:  # 8 of b's 24: cut short
        broken.write_bytes(broken.read_bytes()[:60])
    _photos_config(tmp_path, root, cache="none", batch_size=4)
    cfg = config.load(tmp_path / "photos.yaml")
    result = training.train(cfg)
    val = training.plan(cfg).feed.val
    images_, labels, weights = next(split_batches(val, SHAPE, batch_size=len(val)))
    probs = classifier.load(str(result.run / "model.keras")).probabilities(images_)
    right = (probs.argmax(axis=1) == labels)
    assert 0 < (weights == 0).sum() and result.history[-1]["unreadable_images"] > 0
    assert right[weights > 0].mean() != right.mean()  # (the test can tell them apart)
    assert result.history[-1]["val_accuracy"] == pytest.approx(right[weights > 0].mean())


def test_runs_are_not_written_inside_the_folder_of_photos_they_train_on(tmp_path,
                                                                        monkeypatch):
    """There, a second run would read the first's folder as a class of images."""
    root = photo_folder(tmp_path / "photos")
    path = tmp_path / "photos.yaml"
    path.write_text(f"model: {{input: [16, 16, 3], layers: [Flatten, Dense: {{units: "
                    f"$classes, activation: softmax}}]}}\ndata: {{name: {root}}}\n"
                    "train: {epochs: 1, batch_size: 4}\n")
    monkeypatch.chdir(root)  # `output.dir: runs` (the default) is photos/runs
    for overrides in ([], [f"output.dir={root / 'a'}"]):
        with pytest.raises(ConfigError, match="`output.dir`: the output folder .* is inside "
                                              "the data folder") as err:
            training.train(config.load(path, overrides), config_file=str(path))
        assert err.value.hint.startswith("give `output.dir` (--set output.dir=DIR) a folder")
        assert err.value.where == (f"--set {overrides[0]}" if overrides else None)
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]  # nothing written there
    assert len(list((root / "a").iterdir())) == 6


def test_photos_decoded_in_grey_for_a_one_channel_network_are_said_so(tmp_path):
    """Colour photos into mnist_net: their colour is gone; the Data line says why."""
    root = photo_folder(tmp_path / "photos")
    path = tmp_path / "photos.yaml"
    for channels, said in ((1, ["decoded in grey: the model takes 1 channel"]), (3, [])):
        path.write_text(f"model: {{input: [16, 16, {channels}], layers: [Flatten, Dense: "
                        f"{{units: $classes, activation: softmax}}]}}\ndata: {{name: {root}}}"
                        f"\ntrain: {{epochs: 1, batch_size: 4}}\n")
        assert training.plan(config.load(path)).data_notes == said


def test_a_few_photos_most_of_them_damaged_are_skipped_not_refused(tmp_path):
    """4 of 6: not the wrong folder, a few damaged files (evaluate --all-images)."""
    root = photo_folder(tmp_path / "photos", per_class=3)
    for broken in [*sorted((root / "a").iterdir())[:2], *sorted((root / "b").iterdir())[:2]]:
        broken.write_bytes(b"")
    with pytest.warns(DataWarning, match="skipped 4 unreadable"):
        assert len(datasets.load(root, test_fraction=1).test) == 2


def test_a_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    photo_folder(tmp_path / "photos")
    rows = ["path,label"] + [f"photos/{c}/{i}.{'png' if i % 5 in (2, 4) else 'jpg'},{c}"
                             for c in "ab" for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    assert datasets.load(tmp_path / "labels.csv").class_names == ["a", "b"]


def test_a_csv_saved_on_windows_with_backslashed_paths_is_read(tmp_path):
    photo_folder(tmp_path / "photos")
    rows = ["path,label"] + [f"photos\\{c}\\{i}.{'png' if i % 5 in (2, 4) else 'jpg'},{c}"
                             for c in "ab" for i in range(6)]
    (tmp_path / "labels.csv").write_text("\r\n".join(rows) + "\r\n")
    ds = datasets.load(tmp_path / "labels.csv")
    assert len(ds.train) + len(ds.test) == 12
    assert all("\\" not in p for p in ds.train.images)


@pytest.mark.parametrize("written, on_disk", [("NFC", "NFD"), ("NFD", "NFC")])
def test_a_csv_names_its_files_whichever_unicode_form_each_side_writes_accents_in(
        tmp_path, written, on_disk):
    """A CSV written on Linux (é one character), the photos copied from a Mac (é two):
    "No such file" for every row."""
    import unicodedata

    folder = tmp_path / unicodedata.normalize(on_disk, "café")
    folder.mkdir()
    for k in range(4):
        Image.new("RGB", (8, 8), (60 * k, 0, 0)).save(folder / f"{k}.png")
    rows = [f"{unicodedata.normalize(written, 'café')}/{k}.png,{'ab'[k % 2]}" for k in range(4)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = datasets.load(tmp_path / "labels.csv", test_fraction=0.5)
    assert sorted(ds.train.images + ds.test.images) == [str(folder / f"{k}.png")
                                                        for k in range(4)]


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_csv_separated_otherwise_than_by_commas_is_told_so(tmp_path, separator):
    (tmp_path / "labels.csv").write_text(f"path{separator}label\nx.png{separator}a\n")
    with pytest.raises(DataError, match="has no column path, label") as err:
        datasets.load(tmp_path / "labels.csv")
    assert err.value.hint == (f"cnncli reads comma-separated CSVs, and this one's columns "
                              f"are separated by {separator!r}: save it with commas")


def test_a_csv_that_is_not_utf8_names_its_first_line_that_is_not(tmp_path):
    (tmp_path / "labels.csv").write_bytes("path,label\nx.png,a\ny.png,caf\u00e9\n"
                                          .encode("latin-1"))
    with pytest.raises(DataError, match="labels.csv is not UTF-8 text") as err:
        datasets.load(tmp_path / "labels.csv")
    assert err.value.line == 3


@pytest.mark.parametrize("text,message", [
    ("file,label\nx.png,a\n", "has no column path"),
    ("path,label,split\nx.png,a,Validation\n", "split 'Validation' is neither train nor test"),
    ("path,label\nx.png,\n", "a row without a path or a label"),
    ("path,label,Label \nx.png,a,b\n", "names the column label 2 times"),  # which one?
    ("path,label\nx\0.png,a\n", "the path holds a NUL character"),
])
def test_a_bad_csv_names_the_line(tmp_path, text, message):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=message) as err:
        datasets.load(tmp_path / "labels.csv")
    assert err.value.line in (1, 2)


@pytest.mark.parametrize("rows,message,line", [
    (["a/0.jpg,a,train", "b/0.jpg,b,", "a/1.jpg,a,test"],
     "a row without a split, where other rows have one", 3),
    (["a/0.jpg,a,train", "a/x,y.png,b,test"], "a row with more fields than the 3 columns", 3),
    (["a/0.jpg,a,train", "b/0.jpg,b,test", "./a/../a/0.jpg,b,train"],
     "a/0.jpg is listed on line 2 as a \\(train split\\) and on line 4 as b", 4),
    (["a/0.jpg,a,train", "b/0.jpg,b,test", "a/0.jpg,a,test"],
     "listed on line 2 as a \\(train split\\) and on line 4 as a \\(test split\\)", 4),
    (["", "a/0.jpg,a,train", "", "", "b/0.jpg,b,validation"],  # blank lines count too
     "split 'validation' is neither train nor test", 6),
    (["a/0.jpg,a,train", '"b/0.jpg,b,train', "b/1.jpg,b,test"],  # the quote runs to the end
     "a quoted field opened on this line runs on to line 4: a closing quote is probably", 3),
    (["a/0.jpg,a,train", '"b/0.jpg,b,train', "", ""], "runs on to line 5", 3),
    (['a/0.jpg,"a,train', "b/1.jpg,b,test"], "runs on to line 3", 2),  # into the label
    (['a/0.jpg,"a', 'big",train', "b/1.jpg,b,test"],  # closed: a label of two lines
     "a quoted label on this line holds a line break \\(its quote closes on line 3\\)", 2),
    (["a/0.jpg,a,train", 'b/1.jpg,"b', "b/2.jpg"], "runs on to line 4", 3),  # to the end
])
def test_a_csv_read_wrongly_without_a_word_is_refused_naming_the_line(tmp_path, rows,
                                                                       message, line):
    photo_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("\n".join(["path,label,split", *rows]) + "\n")
    with pytest.raises(DataError, match=message) as err:
        datasets.load(tmp_path / "labels.csv")
    assert err.value.line == line


def test_a_csv_label_typed_in_two_unicode_forms_is_one_class(tmp_path):
    """'café' typed as one character on one row and as 'e' and an accent on another
    (two editors): they print alike, so they are one class, not two."""
    photo_folder(tmp_path / "photos")
    typed = ("cafe\u0301", "caf\u00e9")
    rows = [f"photos/a/{i}.jpg,{typed[i % 2]}" for i in range(6)]
    rows += [f"photos/b/{i}.{'png' if i % 5 in (2, 4) else 'jpg'},tea" for i in range(6)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert datasets.load(tmp_path / "labels.csv").class_names == ["caf\u00e9", "tea"]


def test_a_csv_with_one_label_only_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label\na/0.jpg,a\na/1.jpg,a\n")
    with pytest.raises(DataError, match=r"labels.csv has only one label \(a\)") as err:
        datasets.load(tmp_path / "labels.csv")
    assert err.value.hint.startswith("a classifier needs at least two classes (to evaluate a "
                                     "model on images of one: cnncli evaluate RUN --data CSV "
                                     "--all-images)")


@pytest.mark.parametrize("split,missing", [("train", "test"), ("test", "training")])
def test_a_csv_split_column_with_every_row_alike_is_refused(tmp_path, split, missing):
    photo_folder(tmp_path)
    rows = [f"{c}/{i}.jpg,{c},{split}" for c in "ab" for i in (0, 1)]
    (tmp_path / "labels.csv").write_text("\n".join(["path,label,split", *rows]) + "\n")
    with pytest.raises(DataError, match=f"labels.csv has no {missing} images") as err:
        datasets.load(tmp_path / "labels.csv")
    assert "mark some rows `train` and some `test`" in err.value.hint


def test_a_csv_image_listed_twice_alike_is_used_once_with_a_warning(tmp_path):
    from cnncli.data.dataset import DataWarning

    photo_folder(tmp_path)
    rows = [f"{c}/{i}.jpg,{c},{'test' if i == 0 else 'TRAIN'}" for c in "ab" for i in (0, 1)]
    (tmp_path / "labels.csv").write_text("\n".join(["path,label,split", *rows, rows[1]]))
    with pytest.warns(DataWarning, match="1 row of .* lists an image listed before"):
        ds = datasets.load(tmp_path / "labels.csv")
    assert (len(ds.train), len(ds.test)) == (2, 2)  # TRAIN is train


def _listing(folder):
    return {(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def test_a_photo_folder_trains_and_predicts_from_the_command_line(tmp_path):
    photo_folder(tmp_path / "photos")
    before = _listing(tmp_path / "photos")  # the data folder is only read (may be read-only)
    (tmp_path / "run.yaml").write_text(textwrap.dedent("""
        model:
          input: [16, 16, 3]
          layers:
            - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
            - GlobalAveragePooling2D
            - Dense: {units: $classes, activation: softmax}
        data: {name: photos, validation_split: 0.2, resize: pad}
        train: {epochs: 2, batch_size: 2}
        output: {dir: runs}
    """))
    done = subprocess.run([sys.executable, "-m", "cnncli", "train", "run.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "decoded as they are used, at 16x16 (pad), cached in memory" in done.stderr
    run = tmp_path / "runs" / "run" / "1"
    assert json.loads((run / "metrics.json").read_text())["dataset"]["train"] == 8
    from cnncli.model import modelfile

    assert modelfile.read_meta(run / "best.keras").resize == "pad"
    assert config.load(run / "config.yaml").data.resize == "pad"
    done = subprocess.run([sys.executable, "-m", "cnncli", "predict", "photos/a/1.jpg",
                           "--model", str(run), "--format", "json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["top"][0]["class"] in ("a", "b")
    assert _listing(tmp_path / "photos") == before


def test_a_class_folder_whose_name_is_not_utf8_trains_and_evaluates_named_as_its_bytes(
        tmp_path):
    """A folder named on an old system (Latin-1 ``café``): Python holds its byte as a lone
    surrogate, which neither UTF-8 (a run's digests, model files) nor a font (the
    confusion matrix) takes; the class is named ``caf\\xe9`` everywhere instead. A photo
    named so is read as it is."""
    root = photo_folder(tmp_path / "photos")
    (root / "a").rename(root / os.fsdecode(b"caf\xe9"))
    (root / "b" / "0.jpg").rename(root / "b" / os.fsdecode(b"\xff.jpg"))  # and a photo's
    assert datasets.load(root).class_names == ["b", "caf\\xe9"]
    (tmp_path / "run.yaml").write_text("model: {from: linear, input: [16, 16, 3]}\n"
                                       "data: {name: photos}\n"
                                       "train: {epochs: 1, batch_size: 2}\n")
    for command in (["train", "run.yaml"], ["evaluate", "runs/run/latest"]):
        done = subprocess.run([sys.executable, "-m", "cnncli", *command], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert "caf\\xe9" in done.stdout
    report = json.loads((tmp_path / "runs/run/1/evaluation.json").read_text())
    assert [c["class"] for c in report["per_class"]] == ["b", "caf\\xe9"]


def test_a_run_on_streamed_files_is_planned_without_decoding_them(tmp_path, monkeypatch):
    photo_folder(tmp_path / "photos")
    (tmp_path / "run.yaml").write_text(f"""
model: {{input: [16, 16, 3], layers: [Flatten, {{Dense: {{units: $classes}}}}]}}
data: {{name: {tmp_path / 'photos'}}}
train: {{epochs: 1, batch_size: 2}}
""")
    p = training.plan(config.load(tmp_path / "run.yaml"))
    assert p.feed.train_loader is not None and p.feed.train.kind == "files"


def count_decodes(monkeypatch) -> list:
    """A list that grows by one each time the one decoder opens an image."""
    decoded, real = [], images._decode
    monkeypatch.setattr(images, "_decode", lambda *a, **k: (decoded.append(1),
                                                            real(*a, **k))[1])
    return decoded


def assert_two_workers_split_the_decoding(feed, monkeypatch) -> None:
    """Worker w of 2 decodes only its half of each batch of 4, and the two halves side
    by side are the batches one machine makes (images, labels and weights)."""
    common = dict(batch_size=4, seed=0, epochs=2, preprocessing="none")
    whole = list(feed.training(**common).as_numpy_iterator())
    assert len(whole) == 2 * (len(feed.train) // 4)
    decoded = count_decodes(monkeypatch)
    parts = []
    for worker in (0, 1):
        decoded.clear()
        parts.append(list(feed.training(**common, part=(worker, 1, 2)).as_numpy_iterator()))
        assert len(decoded) == len(whole) * 2  # 2 of each batch's 4 images
    for full, first, second in zip(whole, *parts, strict=True):
        for k in range(len(full)):
            np.testing.assert_array_equal(np.concatenate([first[k], second[k]]), full[k])


def test_each_worker_reads_only_its_part_of_every_batch(tmp_path, monkeypatch):
    """Several machines: worker w makes only its replicas' images."""
    ds = datasets.load(photo_folder(tmp_path / "photos", per_class=8), test_fraction=0.25)
    assert_two_workers_split_the_decoding(
        Feed.of(ds, SHAPE, validation_split=0, seed=0, cache="none"), monkeypatch)


def test_each_worker_decodes_only_its_part_of_every_packed_batch(tmp_path, monkeypatch):
    """TFRecord shards on several machines: every worker reads the records' bytes, but
    decodes only its replicas' images."""
    packing.pack(datasets.load(photo_folder(tmp_path / "photos", per_class=8)),
                 tmp_path / "packed", shard_mb=0.003)
    assert_two_workers_split_the_decoding(
        Feed.of(datasets.load(tmp_path / "packed"), SHAPE, validation_split=0, seed=0,
                cache="none"), monkeypatch)


def test_a_disk_cache_is_reused_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    first = ImageLoader(ds.train, SHAPE, cache="disk")
    seen = first.batch(np.arange(len(ds.train)))[0]
    first.flush()
    monkeypatch.setattr(images, "_decode", lambda *a, **k: 1 / 0)
    again = ImageLoader(ds.train, SHAPE, cache="disk")  # as a later process would
    np.testing.assert_array_equal(again.batch(np.arange(len(ds.train)))[0], seen)


def test_a_disk_cache_takes_file_names_whose_bytes_are_not_utf8(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    photo_folder(tmp_path / "photos")
    b = tmp_path / "photos" / "b"
    b.rename(os.fsdecode(bytes(b) + b"\xe9"))  # a Latin-1 name: "bé"
    ds = datasets.load(tmp_path / "photos")
    cached = ImageLoader(ds.train, SHAPE, cache="disk").batch(np.arange(len(ds.train)))[0]
    plain = ImageLoader(ds.train, SHAPE, cache="none").batch(np.arange(len(ds.train)))[0]
    np.testing.assert_array_equal(cached, plain)


def test_a_disk_cache_of_one_resize_mode_is_never_given_to_another(tmp_path, monkeypatch):
    """A pad run after a stretch run on the same files and size read the stretched
    pictures from the cache."""
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    everything = np.arange(len(ds.train))
    stretched = ImageLoader(ds.train, SHAPE, "stretch", cache="disk")
    stretched.batch(everything)
    stretched.flush()
    padded = ImageLoader(ds.train, SHAPE, "pad", cache="disk").batch(everything)[0]
    expected = ImageLoader(ds.train, SHAPE, "pad", cache="none").batch(everything)[0]
    np.testing.assert_array_equal(padded, expected)


def test_a_folder_swapped_for_another_mid_run_never_fills_the_shared_cache(tmp_path,
                                                                           monkeypatch):
    """The disk cache is keyed by the files as a run found them: images decoded after
    the data folder was swapped for another (a link pointed elsewhere, folders renamed)
    are trained on as they are, and never stored under that key, where every later run
    on the first files would be given them."""
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    photo_folder(tmp_path / "v1")
    (tmp_path / "v2").mkdir()
    for path in (tmp_path / "v1").rglob("*.*"):  # the same names, other (white) pictures
        (tmp_path / "v2" / path.parent.name).mkdir(exist_ok=True)
        Image.new("RGB", (20, 20), "white").save(tmp_path / "v2" / path.parent.name / path.name,
                                                 format=Image.open(path).format)
    (tmp_path / "data").symlink_to("v1")
    ds = datasets.load(tmp_path / "data")
    everything = np.arange(len(ds.train))
    original = ImageLoader(ds.train, SHAPE, cache="none").batch(everything)[0]
    running = ImageLoader(ds.train, SHAPE, cache="disk")  # its key: the files of v1
    running.batch(everything[:3])
    (tmp_path / "data").unlink()
    (tmp_path / "data").symlink_to("v2")
    swapped = running.batch(everything)[0]
    assert (swapped[3:] == 255).all() and running.changed == set(everything[3:].tolist())
    running.flush()
    (tmp_path / "data").unlink()
    (tmp_path / "data").symlink_to("v1")
    later = ImageLoader(ds.train, SHAPE, cache="disk")  # the same key: v1's files again
    np.testing.assert_array_equal(later.batch(everything)[0], original)
    assert later.changed == set()
    feed = Feed(ds.train, ds.train, SHAPE, running)
    assert feed.changed_note.startswith(f"{len(everything) - 3} image files changed on disk "
                                        "since the run began (e.g. ")


def test_a_disk_cache_is_made_as_the_umask_says_so_a_team_can_share_it(tmp_path, monkeypatch):
    """A cache folder shared by a group (umask 002): another member's training opens
    the cache files for writing; made 0644 whatever the umask, they refused it."""
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    old = os.umask(0o002)
    try:
        made = ImageLoader(ds.train, SHAPE, cache="disk")
    finally:
        os.umask(old)
    modes = {path.name: path.stat().st_mode & 0o777 for path in made._path.iterdir()}
    assert modes == {loader.IMAGES_FILE: 0o664, loader.FILLED_FILE: 0o664}


def test_a_cache_that_cannot_be_written_for_want_of_rights_is_not_said_a_full_disk(
        tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    monkeypatch.setattr(loader, "_open_store", lambda *a: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(DataError) as caught:
        ImageLoader(ds.train, SHAPE, cache="disk")
    assert caught.value.message == "cannot make the image cache: Permission denied"
    assert caught.value.hint == f"set {loader.CACHE_DIR_ENV} to a folder you can write to, " \
        "with room, or use data.cache: memory or none"


def test_disk_caches_are_listed_and_cleared_and_nothing_else_in_their_folder(
        tmp_path, monkeypatch):
    from cnncli.data import caches

    root = tmp_path / "cache"
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(root))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    used = ImageLoader(ds.train, SHAPE, cache="disk")
    used.batch(np.arange(3))
    used.flush()
    (root / "notes").mkdir()  # a CNNCLI_CACHE_DIR shared with other things
    (root / "0123456789abcdef01234567").mkdir()  # named like a cache, and not one
    (root / "0123456789abcdef01234567" / "mine.txt").write_text("keep")
    [cache] = caches.found()
    assert (cache.images, cache.filled) == (len(ds.train), 3)
    assert cache.bytes == len(ds.train) * (int(np.prod(SHAPE)) + 1)
    done = subprocess.run([sys.executable, "-m", "cnncli", "datasets", "caches", "--clear",
                           "--json"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, loader.CACHE_DIR_ENV: str(root)})
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert [c["path"] for c in said["caches"]] == [str(cache.path)] and said["removed"]
    assert sorted(p.name for p in root.iterdir()) == ["0123456789abcdef01234567", "notes"]
    assert caches.found() == []


def test_caches_that_could_not_be_removed_are_named_not_said_removed(tmp_path, monkeypatch):
    """Another user's caches in a folder a team shares: --clear said "removed 2 caches"
    and left both."""
    from cnncli.data import caches

    root = tmp_path / "cache"
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(root))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    for shape in ((8, 8, 3), (12, 12, 3)):
        ImageLoader(ds.train, shape, cache="disk").flush()
    theirs, mine = sorted(caches.found(), key=lambda c: c.path.name)
    rmtree = shutil.rmtree

    def refused(path, *args, **kwargs):
        if Path(path) == theirs.path:
            raise PermissionError(errno.EACCES, "Permission denied")
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(caches.shutil, "rmtree", refused)
    with pytest.raises(WriteError) as caught:
        caches.clear()
    assert caught.value.message == f"1 image cache could not be removed: {theirs.path.name} " \
        "(Permission denied); 1 other removed"
    assert [c.path for c in caches.found()] == [theirs.path] and not mine.path.exists()


def test_a_file_rewritten_with_its_old_modification_time_is_not_read_from_the_cache(
        tmp_path, monkeypatch):
    import os

    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "b").mkdir()
    for name, colour in (("a/0.bmp", (255, 0, 0)), ("b/0.bmp", (0, 255, 0))):
        Image.new("RGB", (4, 4), colour).save(tmp_path / "photos" / name)
    split = datasets.load(tmp_path / "photos", test_fraction=1).test
    first = ImageLoader(split, (4, 4, 3), cache="disk")
    assert first.batch(np.arange(2))[0][0, 0, 0].tolist() == [255, 0, 0]
    first.flush()
    red = tmp_path / "photos" / "a" / "0.bmp"
    when = red.stat().st_mtime_ns
    Image.new("RGB", (4, 4), (0, 0, 255)).save(red)  # the same size, other pixels
    os.utime(red, ns=(when, when))  # as tar and touch -r set it back
    again = ImageLoader(split, (4, 4, 3), cache="disk")
    assert again.batch(np.arange(2))[0][0, 0, 0].tolist() == [0, 0, 255]


def made_disk_cache(tmp_path, monkeypatch):
    """The images file of a disk cache made for a photo folder's training images, and how
    many bytes it must hold."""
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    ImageLoader(ds.train, SHAPE, cache="disk")
    [path] = (tmp_path / "cache").glob("*/images.u8")
    return path, len(ds.train) * np.prod(SHAPE)


def test_a_disk_cache_reserves_its_space_up_front(tmp_path, monkeypatch):
    """Not a sparse file: on a disk that fills up, writing a page of one would kill the
    process (SIGBUS) mid-epoch."""
    path, size = made_disk_cache(tmp_path, monkeypatch)
    stat = path.stat()
    assert stat.st_size == size and stat.st_blocks * 512 >= stat.st_size


def test_a_disk_cache_reserves_its_space_where_there_is_no_posix_fallocate(tmp_path,
                                                                           monkeypatch):
    """macOS has no `os.posix_fallocate`: the zeros are written instead."""
    monkeypatch.delattr(os, "posix_fallocate")
    path, size = made_disk_cache(tmp_path, monkeypatch)
    stat = path.stat()
    assert stat.st_size == size and stat.st_blocks * 512 >= stat.st_size
    assert not any(path.read_bytes())


def test_a_disk_cache_is_not_mapped_into_memory(tmp_path, monkeypatch):
    """Mapped pages count in the process's resident memory as they are touched (6 GB for
    40,000 photos at 224x224); read and written in place, they stay the OS's page cache."""
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    cached = ImageLoader(ds.train, SHAPE, cache="disk")
    first = cached.batch(np.arange(len(ds.train)))[0]
    np.testing.assert_array_equal(cached.batch(np.arange(len(ds.train)))[0], first)
    with open("/proc/self/maps") as maps:
        assert "images.u8" not in maps.read()


def test_a_disk_error_writing_the_cache_mid_epoch_is_not_a_crash(tmp_path, monkeypatch):
    import errno
    import os

    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    cached = ImageLoader(ds.train, SHAPE, cache="disk")
    expected = ImageLoader(ds.train, SHAPE, cache="none").batch(np.arange(len(ds.train)))[0]

    def failing(fd, data, offset):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "pwrite", failing)
    for _ in range(2):  # the epoch goes on, and the next one decodes again
        images_, weights = cached.batch(np.arange(len(ds.train)))
        np.testing.assert_array_equal(images_, expected)
        assert weights.tolist() == [1.0] * len(ds.train)


def test_a_run_whose_cache_writes_fail_says_so_once_and_trains_on(tmp_path, monkeypatch):
    import errno
    import os

    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    photo_folder(tmp_path / "photos")
    (tmp_path / "run.yaml").write_text(f"""
model: {{input: [16, 16, 3], layers: [Flatten, {{Dense: {{units: $classes}}}}]}}
data: {{name: {tmp_path / 'photos'}, cache: disk, validation_split: 0}}
train: {{epochs: 2, batch_size: 4}}
output: {{dir: {tmp_path / 'runs'}}}
""")
    real, notes = os.pwrite, []

    def failing(fd, data, offset):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("images.u8"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, data, offset)

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    monkeypatch.setattr(os, "pwrite", failing)
    result = training.train(config.load(tmp_path / "run.yaml"), reporter=Notes())
    assert len(result.history) == 2
    assert notes == [f"writing the image cache {tmp_path / 'cache'}/"
                     f"{os.listdir(tmp_path / 'cache')[0]} failed (Input/output error); "
                     "images are decoded every epoch from now on (slower, nothing lost)"]


def test_a_full_cache_disk_is_an_error_before_training_that_leaves_nothing(tmp_path,
                                                                          monkeypatch):
    import errno
    import os

    (tmp_path / "cache").mkdir()
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DataError, match="cannot make the image cache: No space left on "
                       "device") as err:
        ImageLoader(ds.train, SHAPE, cache="disk")
    assert err.value.file.startswith(str(tmp_path / "cache"))
    assert "data.cache: memory or none" in err.value.hint
    assert list((tmp_path / "cache").iterdir()) == []


def test_no_room_for_the_validation_cache_leaves_no_training_cache_either(tmp_path,
                                                                          monkeypatch):
    """The training images' cache, made and reserved, stayed on the disk the error asks
    to free."""
    import errno
    import os

    (tmp_path / "cache").mkdir()
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    real, calls = os.posix_fallocate, []

    def full_at_the_third(fd, offset, length):  # the training images' two files fit
        calls.append(length)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full_at_the_third)
    with pytest.raises(DataError, match="cannot make the image cache: No space left"):
        Feed.of(ds, SHAPE, validation_split=0.2, seed=0, cache="disk")
    assert len(calls) == 3 and list((tmp_path / "cache").iterdir()) == []


def test_a_read_only_cache_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    import errno
    import os

    cache = tmp_path / "cache"
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(cache))
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # root may write anywhere: pretend a mount
        if str(path).startswith(str(cache)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(DataError, match="cannot make the image cache: Read-only file "
                       "system") as err:
        ImageLoader(ds.train, SHAPE, cache="disk")
    assert f"set {loader.CACHE_DIR_ENV}" in err.value.hint


@pytest.fixture(params=[False, True], ids=["folder", "shards"])
def streamed(request, tmp_path):
    """`photo_folder` as a dataset, as it is or packed into shards."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    if request.param:
        packing.pack(ds, tmp_path / "packed", shard_mb=0.003)
        ds = datasets.load(tmp_path / "packed")
    return ds


def test_streamed_batches_run_without_tf_data_autotuning(streamed):
    # the autotuner's thread sleeps in doubling periods (up to 60 s) and a finished
    # iterator can wait for its wake-up: validation passes and runs ended idle
    feed = Feed.of(streamed, SHAPE, validation_split=0.25, seed=1)
    made = [feed.training(batch_size=2, seed=1, epochs=1),
            feed.validation(batch_size=2, seed=1)]
    assert [d.options().autotune.enabled for d in made] == [False, False]


def test_streamed_training_batches_have_a_known_size_as_arrays_batches_do(streamed):
    # one spec for every source: the model's step is traced for the same shapes
    feed = Feed.of(streamed, SHAPE, validation_split=0, seed=1)
    images, labels, weights = feed.training(batch_size=4, seed=1, epochs=1).element_spec
    assert [images.shape, labels.shape, weights.shape] == [(4, *SHAPE), (4,), (4,)]


def _feed_with_broken(tmp_path, broken: int, total: int = 10):
    """A feed over `total` PNGs, the first `broken` cut short, all of them decoded once."""
    root = tmp_path / "photos"
    for part, count in (("train", total), ("test", 2)):
        for i in range(count):
            folder = root / part / "ab"[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 40 * (i % 2), np.uint8)).save(folder / f"{i}.png")
            if part == "train" and i < broken:
                (folder / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    feed = Feed.of(datasets.load(root), (8, 8, 1), validation_split=0, seed=0, cache="none")
    feed.train_loader.batch(np.arange(total))
    return feed


def test_training_goes_on_while_at_most_half_the_images_fail_to_decode(tmp_path):
    assert _feed_with_broken(tmp_path, 5).unreadable_error(epoch_end=True) is None


def test_more_than_half_failing_to_decode_stops_training_at_the_epochs_end(tmp_path):
    feed = _feed_with_broken(tmp_path, 6)
    assert feed.unreadable_error() is None  # 10 images tried: too few to judge mid-epoch
    error = feed.unreadable_error(epoch_end=True)
    assert "6 of the 10 images read so far could not be decoded" in error.message
    assert error.message.count("the image is truncated or corrupt") == 2  # two examples


def test_more_than_half_failing_after_a_hundred_images_stops_training_mid_epoch(tmp_path,
                                                                                monkeypatch):
    from cnncli.data import feed as feeds

    monkeypatch.setattr(feeds, "UNREADABLE_AFTER", 10)
    assert "6 of the 10" in _feed_with_broken(tmp_path, 6).unreadable_error().message


def test_with_strict_the_first_image_that_fails_to_decode_stops_training(tmp_path):
    error = _feed_with_broken(tmp_path, 1).unreadable_error(strict=True)
    assert error.file.endswith("0.png") and "data.strict: false" in error.hint


def test_the_data_line_says_arrays_of_another_size_are_resized_and_how():
    from cnncli.data.dataset import Split

    arrays = Split(np.zeros((4, 28, 28, 1), np.uint8), np.arange(4))
    assert ImageLoader(arrays, (32, 32, 1), "pad", cache="memory").describe() == \
        "28x28 images resized to 32x32 (pad) as they are used, cached in memory"


def test_a_limit_on_a_folder_takes_a_seeded_sample_of_every_class_not_the_first_files():
    from cnncli.data.dataset import Split

    files = Split([f"{c}/{i}.png" for c in "ab" for i in range(50)], np.repeat([0, 1], 50))
    feed = Feed.of(letters_dataset(files), SHAPE, validation_split=0.25, seed=3, limit=20)
    taken = np.concatenate([feed.train.labels, feed.val.labels])
    assert len(taken) == 20 and set(taken.tolist()) == {0, 1}  # the first 20 are all 'a'
    again = Feed.of(letters_dataset(files), SHAPE, validation_split=0.25, seed=3, limit=20)
    assert again.train.images == feed.train.images  # seeded


def letters_dataset(train):
    from cnncli.data.dataset import Dataset

    return Dataset("letters", train, train, ["a", "b"], "a list")


def _wide_photos(folder):
    """Two classes of 8x24 photos: red, green, blue thirds; class b brighter."""
    for label, name in enumerate(("a", "b")):
        for i in range(4):
            x = np.zeros((8, 24, 3), np.uint8)
            for third in range(3):
                x[:, third * 8:(third + 1) * 8, third] = 120 + 100 * label + i
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(folder / name / f"{i}.png")
    return folder


def _dense_config(tmp_path, data, input, resize="stretch"):
    return config.parse({"model": {"input": input, "layers": [
        "Flatten", {"Dense": {"units": "$classes", "activation": "softmax"}}]},
        "data": {"name": str(data), "validation_split": 0, "resize": resize},
        "train": {"epochs": 1, "batch_size": 2}, "output": {"dir": str(tmp_path / "runs")}})


def test_a_pack_resized_one_way_trains_only_with_that_resize_mode(tmp_path):
    packing.pack(datasets.load(_wide_photos(tmp_path / "wide")), tmp_path / "packed",
                 image_size=(8, 8), resize="center_crop")
    packed = datasets.load(tmp_path / "packed")
    assert packed.resized == "center_crop"
    x = next(iter(split_batches(packed.train, (8, 8, 3))))[0][0]
    assert (x[..., 1] > 100).all() and (x[..., [0, 2]] == 0).all()  # the green middle only
    cfg = _dense_config(tmp_path, tmp_path / "packed", [8, 8, 3])
    with pytest.raises(ConfigError, match="`data.resize` is stretch, and the packed images "
                                          "were resized with center_crop"):
        training.train(cfg)
    assert not (tmp_path / "runs").exists()
    cfg.data.resize = "center_crop"
    run = training.train(cfg).run
    from cnncli.model import modelfile

    assert modelfile.read_meta(run / "model.keras").resize == "center_crop"  # as predict


def test_a_pack_cropped_to_one_shape_does_not_train_a_network_of_another(tmp_path):
    packing.pack(datasets.load(_wide_photos(tmp_path / "wide")), tmp_path / "packed",
                 image_size=(8, 8), resize="center_crop")
    cfg = _dense_config(tmp_path, tmp_path / "packed", [8, 16, 3], resize="center_crop")
    with pytest.raises(ConfigError, match="the packed images of .*packed are not the pictures "
                                          "this model gets from photos: "
                                          "they were cropped to 8x8 when packed, and 8x16 is "
                                          "another shape: they would be cropped twice, "
                                          "photos once. Hint: pack the original images with "
                                          "--image-size 8 16 --resize center_crop"):
        training.train(cfg)
    assert not (tmp_path / "runs").exists()
    cfg.model["input"] = [16, 16, 3]  # the same shape, larger: as the photos cropped once
    assert training.train(cfg).metrics.epochs == 1


def test_a_pack_packed_again_keeps_how_its_images_were_resized(tmp_path):
    packing.pack(datasets.load(_wide_photos(tmp_path / "wide")), tmp_path / "packed",
                 image_size=(8, 8), resize="pad")
    packing.pack(datasets.load(tmp_path / "packed"), tmp_path / "again", shard_mb=0.001)
    assert datasets.load(tmp_path / "again").resized == "pad"
    packing.pack(datasets.load(tmp_path / "packed"), tmp_path / "larger", image_size=(16, 16),
                 resize="pad")
    assert datasets.load(tmp_path / "larger").resized == "pad"
    with pytest.raises(ConfigError, match="cannot be packed again at --image-size 8 16 "
                                          "--resize pad: they were padded to 8x8 when packed"):
        packing.pack(datasets.load(tmp_path / "packed"), tmp_path / "wider",
                     image_size=(8, 16), resize="pad")
    with pytest.raises(ConfigError, match="they were resized with pad when packed, not "
                                          "stretch"):
        packing.pack(datasets.load(tmp_path / "packed"), tmp_path / "wider",
                     image_size=(8, 8))
    assert not (tmp_path / "wider").exists()


def test_evaluating_on_a_pack_resized_otherwise_than_the_model_is_refused(tmp_path):
    from cnncli.export.exporter import export
    from cnncli.infer import evaluate

    wide = _wide_photos(tmp_path / "wide")
    run = training.train(_dense_config(tmp_path, wide, [8, 8, 3])).run  # stretched
    packing.pack(datasets.load(wide), tmp_path / "padded", image_size=(8, 8), resize="pad")
    with pytest.raises(DataError, match="the packed images of .*padded are not the pictures "
                                        "this model gets from photos: they were resized with "
                                        "pad when packed, not stretch"):
        evaluate.evaluate(run, data=str(tmp_path / "padded"))
    with pytest.raises(DataError, match="resized with pad when packed, not stretch"):
        export(run, formats=["onnx"], data=str(tmp_path / "padded"), output=tmp_path / "exports")
    assert not (tmp_path / "exports").exists()
    packing.pack(datasets.load(wide), tmp_path / "stretched", image_size=(8, 8))
    assert evaluate.evaluate(run, data=str(tmp_path / "stretched")).result.accuracy >= 0


@pytest.mark.parametrize("where", ["", "train"])
def test_images_lying_beside_the_class_folders_are_said_not_to_be_read(tmp_path, where):
    photos = photo_folder(tmp_path / "photos" / where)
    if where:
        photo_folder(tmp_path / "photos" / "test", per_class=2)
    Image.new("RGB", (8, 8)).save(photos / "loose.png")
    (photos / "._loose.png").write_bytes(b"\0\5\26\7")  # macOS' own: not an image of yours
    with pytest.warns(DataWarning, match=rf"1 image directly in .*photos/?{where} "
                                         r"\(loose.png\) is not read: an image's class is "
                                         "the folder it is in"):
        ds = datasets.load(tmp_path / "photos")
    assert len(ds.train) + len(ds.test) == (16 if where else 12)


def test_large_jpegs_packed_resized_are_the_pixels_training_from_the_files_sees(tmp_path):
    rng = np.random.default_rng(0)
    for name in "ab":
        (tmp_path / "big" / name).mkdir(parents=True)
        for i in range(3):  # 800x600: libjpeg decodes it at a reduced scale for 32x32
            Image.fromarray(rng.integers(0, 255, (600, 800, 3), np.uint8)).save(
                tmp_path / "big" / name / f"{i}.jpg", quality=90)
    ds = datasets.load(tmp_path / "big")
    packing.pack(ds, tmp_path / "packed", image_size=(32, 32))
    [(packed, _, _)] = split_batches(datasets.load(tmp_path / "packed").train, (32, 32, 3))
    from_files = [images.load_resized(path, (32, 32)) for path in ds.train.images]
    assert sorted(x.tobytes() for x in packed) == sorted(x.tobytes() for x in from_files)


def test_packed_arrays_keep_their_place_in_the_arrays_as_their_id(tmp_path):
    import io

    from trainkit import make_npz

    from cnncli.runtime import import_tf

    tf = import_tf()
    path = make_npz(tmp_path, n_train=20, n_test=12)
    packing.pack(datasets.load(path), tmp_path / "packed")
    x_test = np.load(path)["x_test"]
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "id": tf.io.FixedLenFeature([], tf.string)}
    shards = sorted(str(p) for p in (tmp_path / "packed").glob("test-*.tfrecord"))
    ids = []
    for record in tf.data.TFRecordDataset(shards):
        example = tf.io.parse_single_example(record, spec)
        ids.append(int(example["id"].numpy()))
        pixels = np.asarray(Image.open(io.BytesIO(example["image"].numpy())))
        np.testing.assert_array_equal(pixels, x_test[ids[-1], ..., 0])
    assert sorted(ids) == list(range(12)) and ids != sorted(ids)  # shuffled, ids kept


def test_a_test_class_folder_named_in_other_unicode_characters_is_said_to_be_so(tmp_path):
    photo_folder(tmp_path / "photos" / "train")
    photo_folder(tmp_path / "photos" / "test", per_class=2)
    (tmp_path / "photos" / "train" / "a").rename(tmp_path / "photos" / "train" / "caf\u00e9")
    (tmp_path / "photos" / "test" / "a").rename(tmp_path / "photos" / "test" / "cafe\u0301")
    with pytest.raises(DataError, match="that the train folder lacks") as e:
        datasets.load(tmp_path / "photos")
    assert e.value.hint.startswith("caf\u00e9 in train/ is the same name in other Unicode "
                                   "characters")


def test_evaluate_on_packed_photos_names_the_worst_mistakes_as_on_the_photos(tmp_path):
    import shutil

    from cnncli.infer import evaluate

    run = training.train(_dense_config(tmp_path, photo_folder(tmp_path / "mine"),
                                       [8, 8, 3])).run
    photos = shutil.copytree(tmp_path / "mine", tmp_path / "photos")
    for old, new in (("a", "x"), ("b", "a"), ("x", "b")):  # mislabelled: mistakes to name
        (photos / old).rename(photos / new)
    packing.pack(datasets.load(photos), tmp_path / "packed")
    on_photos = evaluate.evaluate(run, data=str(photos), output=tmp_path / "a")
    on_pack = evaluate.evaluate(run, data=str(tmp_path / "packed"), output=tmp_path / "b")
    assert on_pack.result.misclassified, "no mistakes to name"
    assert sorted(m.id for m in on_pack.result.misclassified) == sorted(
        m.id for m in on_photos.result.misclassified)


def test_a_photo_folder_with_a_dataset_json_of_its_own_is_read_as_photos(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    (photos / "dataset.json").write_text('{"description": "my photos"}')
    ds = datasets.load(photos)
    assert ds.class_names == ["a", "b"] and ds.resized is None


@pytest.mark.parametrize("edit,message", [
    (lambda index: index["splits"].pop("test"), "no 'test' split"),
    (lambda index: index.update(class_names=["a"]), "names 1 classes, and the labels go up to 1"),
    (lambda index: index.update(class_names="a b"), "class_names is not a list of names"),
    (lambda index: index["splits"]["test"]["shards"][0].update(file="../../secret.tfrecord"),
     "the shard '../../secret.tfrecord' is not a shard file name in the pack's folder"),
    (lambda index: index["splits"]["train"]["shards"][0].update(file="/etc/passwd"),
     "the shard '/etc/passwd' is not a shard file name in the pack's folder"),
])
def test_a_hand_edited_index_is_an_error_naming_it_not_a_crash(tmp_path, edit, message):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    path = tmp_path / "packed" / "dataset.json"
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))
    with pytest.raises(DataError, match=message) as err:
        datasets.load(tmp_path / "packed")
    assert err.value.file == str(path)


def test_a_shard_record_declaring_more_bytes_than_its_file_holds_is_refused_unread(tmp_path):
    """TensorFlow allocates what a record's length says: a terabyte ended the process."""
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    shard = next((tmp_path / "packed").glob("test-*.tfrecord"))
    shard.write_bytes((1 << 40).to_bytes(8, "little") + bytes(104))
    index = json.loads((tmp_path / "packed" / "dataset.json").read_text())
    index["splits"]["test"]["shards"][0]["bytes"] = 112  # as a hand-made pack would say
    (tmp_path / "packed" / "dataset.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=f"the shard {shard.name} is damaged: its record 1 "
                                        "declares 1,099,511,627,776 bytes, past its end"):
        datasets.load(tmp_path / "packed")


def test_a_shard_ending_inside_a_record_header_is_refused(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    shard = next((tmp_path / "packed").glob("train-*.tfrecord"))
    shard.write_bytes(shard.read_bytes() + bytes(5))
    path = tmp_path / "packed" / "dataset.json"
    index = json.loads(path.read_text())
    index["splits"]["train"]["shards"][0]["bytes"] += 5
    path.write_text(json.dumps(index))
    held = index["splits"]["train"]["count"]
    with pytest.raises(DataError, match=f"it ends inside the header of record {held + 1} "
                                        r"\(5 stray bytes\)"):
        datasets.load(tmp_path / "packed")


def test_shards_holding_other_than_the_indexed_count_of_records_are_refused(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    path = tmp_path / "packed" / "dataset.json"
    index = json.loads(path.read_text())
    held = index["splits"]["train"]["count"]
    index["splits"]["train"]["count"] = held + 1
    path.write_text(json.dumps(index))
    with pytest.raises(DataError, match=f"the 'train' shards hold {held} records and the "
                                        f"index says {held + 1}"):
        datasets.load(tmp_path / "packed")


def test_an_index_nested_too_deeply_is_a_damaged_index_not_a_crash(tmp_path):
    packing.pack(datasets.load(photo_folder(tmp_path / "photos")), tmp_path / "packed")
    (tmp_path / "packed" / "dataset.json").write_text("[" * 100_000)
    with pytest.raises(DataError, match=r"dataset.json cannot be read \(it is nested too "
                                        r"deeply to be read\)"):  # not a RecursionError
        datasets.load(tmp_path / "packed")


def test_a_record_is_the_same_bytes_from_every_process():
    """A pack made twice is the same files (a checksum of the data stays the same):
    protobuf draws the order of a record's named features anew in each process."""
    script = ("import hashlib; from cnncli.runtime import import_tf; "
              "from cnncli.data.packing import _record; "
              "print(hashlib.sha256(b''.join(_record(import_tf(), bytes([k]) * 9, k, k, "
              "f'a/{k}.png') for k in range(20))).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, timeout=300).stdout for _ in range(3)}
    assert len(digests) == 1


def test_pack_resizing_leaves_out_an_image_that_cannot_be_decoded_and_says_so(tmp_path):
    root = photo_folder(tmp_path / "photos")
    broken = root / "a" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # cut short
    result = subprocess.run([sys.executable, "-m", "cnncli", "datasets", "pack", str(root),
                             str(tmp_path / "packed"), "--image-size", "8", "8", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 1 and summary["train_images"] + summary["test_images"] == 11
    assert f"1 image could not be read and is left out, e.g. {broken}" in result.stderr
    assert summary["warnings"][0].startswith("1 image could not be read and is left out")
    packed = datasets.load(tmp_path / "packed")
    assert len(packed.train) + len(packed.test) == 11  # labels match the records kept
    assert len(np.concatenate([x for x, _, _ in split_batches(packed.train, SHAPE)])) == \
        len(packed.train)


def test_pack_without_resizing_leaves_out_an_image_that_cannot_be_decoded_too(tmp_path):
    """Packed as they are, the images are still decoded once: one training could not
    decode is left out and counted here, not skipped in every epoch."""
    root = photo_folder(tmp_path / "photos")
    broken = root / "a" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # the first bytes of a JPEG
    done = packing.pack(datasets.load(root), tmp_path / "packed")
    assert done.skipped == 1 and str(broken) in done.examples[0]
    packed = datasets.load(tmp_path / "packed")
    assert len(packed.train) + len(packed.test) == 11


def test_pack_refuses_data_most_of_which_cannot_be_decoded_as_training_would(tmp_path):
    root = photo_folder(tmp_path / "photos")
    for photo in datasets.load(root).train.images[:7]:  # 7 of 12 cut to their first bytes
        Path(photo).write_bytes(Path(photo).read_bytes()[:200])
    with pytest.raises(DataError, match="7 of the 12 images could not be decoded, e.g. "):
        packing.pack(datasets.load(root), tmp_path / "packed")
    assert not (tmp_path / "packed").exists() and [p.name for p in tmp_path.iterdir()] == [
        "photos"]


def test_repacking_resized_leaves_out_a_record_that_cannot_be_decoded_naming_it(tmp_path,
                                                                                 monkeypatch):
    root = photo_folder(tmp_path / "photos")
    broken = root / "a" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    with monkeypatch.context() as m:  # packed as it is, unchecked (as cnncli before 12/2026)
        m.setattr(packing, "_resized", lambda encoded, *args, **kw: encoded)
        packing.pack(datasets.load(root), tmp_path / "packed")
    done = packing.pack(datasets.load(tmp_path / "packed"), tmp_path / "again",
                        image_size=(8, 8))
    assert done.skipped == 1
    example = done.examples[0]
    assert example.startswith(f"{tmp_path / 'packed'}, record ") and f"({broken})" in example
    again = datasets.load(tmp_path / "again")
    assert len(again.train) + len(again.test) == 11


def test_a_split_none_of_whose_images_can_be_read_is_an_error_not_an_empty_pack(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=2)
    for path in root.rglob("*.*"):
        path.write_bytes(path.read_bytes()[:200])  # the first bytes of an image, no more
    with pytest.raises(DataError, match="none of the 2 train images could be read, e.g. "):
        packing.pack(datasets.load(root), tmp_path / "packed", image_size=(8, 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_options_given_before_pack_are_packs_options(tmp_path):
    """`cnncli datasets --json pack ...` printed text: the group took --json, and pack
    never saw it."""
    from typer.testing import CliRunner

    from cnncli.cli.app import app

    root = photo_folder(tmp_path / "photos", per_class=2)
    (root / "a" / "IMG_1.heic").write_bytes(b"x")  # not read: the data's warning says so
    result = CliRunner().invoke(app, ["datasets", "--json", "--offline", "pack", str(root),
                                      str(tmp_path / "packed")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["train_images"] > 0
    assert any("HEIC" in w for w in summary["warnings"]), summary["warnings"]


def test_pack_resize_without_an_image_size_is_refused_not_ignored(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=2)
    result = subprocess.run([sys.executable, "-m", "cnncli", "datasets", "pack", str(root),
                             str(tmp_path / "packed"), "--resize", "pad"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "--resize says how --image-size resizes, and no --image-size was given" in \
        result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "packed").exists()
    ds = datasets.load(root)
    with pytest.raises(ConfigError, match="--resize says how --image-size resizes"):
        packing.pack(ds, tmp_path / "packed", resize="stretch")
    with pytest.raises(ConfigError, match="resize"):
        packing.pack(ds, tmp_path / "packed", image_size=(8, 8), resize="")


def test_a_failed_pack_leaves_no_folder_it_made(tmp_path, monkeypatch):
    ds = datasets.load(photo_folder(tmp_path / "photos"))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packing, "_name_shards", full_disk)
    with pytest.raises(WriteError, match="No space left on device"):
        packing.pack(ds, tmp_path / "new" / "deeper" / "packed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.parametrize("name", ["packed", "data[1]"])  # (a glob's brackets)
def test_a_killed_packs_staging_folder_goes_with_the_next_pack_and_none_lands_in_it(
        tmp_path, name):
    """`kill -9` of a pack left its hidden staging folder (tens of MB) for good."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".{name}.x1y2z3w4"  # (as tempfile.mkdtemp names it)
    stale.mkdir()
    (stale / files.PID_FILE).write_text(str(dead.pid))
    (stale / "train-00001.tfrecord").write_bytes(b"half")
    packing.pack(ds, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "photos"])
    assert files.PID_FILE not in [p.name for p in (tmp_path / name).iterdir()]


def test_a_pack_into_a_folder_another_pack_is_writing_into_says_so(tmp_path):
    """Two packs into one existing folder: the second said "exists" (or that the other's
    staging folder was a file of the user's, and to remove the folder)."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "packed").mkdir()
    files.staging_folder(tmp_path / "packed", packing.STAGED)  # the other pack, live
    with pytest.raises(ConfigError, match="another `cnncli datasets pack` is writing into "
                                          ".*packed now"):
        packing.pack(ds, tmp_path / "packed")


def test_a_pack_a_training_reads_is_not_replaced_under_it(tmp_path):
    """`pack --force` into the pack a training read from replaced it mid-run: the
    training went on with the new images (another data set), finished, and said nothing."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packing.pack(ds, tmp_path / "packed")
    feed = Feed.of(datasets.load(tmp_path / "packed"), SHAPE, validation_split=0, seed=0,
                   cache="none")  # a training's
    with pytest.raises(ConfigError, match="packed is read by a training now: replaced, its "
                                          "data would change mid-run"):
        packing.pack(ds, tmp_path / "packed", force=True)
    Feed.of(datasets.load(tmp_path / "packed"), SHAPE, validation_split=0, seed=0,
            cache="none").close()  # another training reads it too: the lock is shared
    feed.close()
    packing.pack(ds, tmp_path / "packed", force=True)  # no training reads it now
    with records.held(tmp_path / "packed", replacing=True):  # a pack replacing it now
        with pytest.raises(DataError, match="packed is being replaced now"):
            Feed.of(datasets.load(tmp_path / "packed"), SHAPE, validation_split=0, seed=0,
                    cache="none")


def test_a_pack_replaced_between_reading_its_labels_and_locking_it_is_said(tmp_path):
    """The lock is taken when the feed is made, after the labels were read: a pack
    --force finishing in between gave the old labels to the new shards, silently."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packing.pack(ds, tmp_path / "packed")
    read = datasets.load(tmp_path / "packed")  # a training reads its index and labels...
    packing.pack(ds, tmp_path / "packed", force=True)  # ...and another pack replaces it
    with pytest.raises(DataError, match="packed was replaced while the training started"):
        Feed.of(read, SHAPE, validation_split=0, seed=0, cache="none")
    packing.pack(ds, tmp_path / "packed", force=True)  # (no lock was left held)


def test_a_pack_on_a_file_system_without_locks_trains_and_is_replaced_as_before(
        tmp_path, monkeypatch):
    """Some NFS mounts have no locks (ENOLCK): a training from a pack there failed at
    once where it worked before packs were locked."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packing.pack(ds, tmp_path / "packed")

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(records.fcntl, "flock", no_locks)
    feed = Feed.of(datasets.load(tmp_path / "packed"), SHAPE, validation_split=0, seed=0,
                   cache="none")
    packing.pack(ds, tmp_path / "packed", force=True)
    feed.close()


def test_a_training_refused_while_planned_lets_go_of_its_pack(tmp_path):
    """A plan that goes no further (a batch larger than the data) held the pack's lock
    for as long as the process lived (a notebook): --force was refused after it."""
    from cnncli.run.plan import plan

    ds = datasets.load(photo_folder(tmp_path / "photos"))
    packing.pack(ds, tmp_path / "packed")
    with pytest.raises(ConfigError, match="fewer than one batch") as caught:
        plan(config.parse({"model": "lenet5", "data": {"name": str(tmp_path / "packed")},
                           "train": {"batch_size": 1000}}))
    packing.pack(ds, tmp_path / "packed", force=True)  # (its traceback kept, as a notebook's
    assert caught.value  # sys.last_traceback keeps it: the plan's frames, its feed too)


def test_a_folder_of_the_users_named_like_a_staging_folder_is_left_alone(tmp_path):
    """`.packed.backup` beside `packed`, even holding a number of a process that died,
    is the user's: only folders cnncli made are cleared."""
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    theirs = tmp_path / ".packed.backup"
    theirs.mkdir()
    (theirs / files.PID_FILE).write_text(str(dead.pid))
    (theirs / "pid").write_text(str(dead.pid))
    older = tmp_path / ".packed.abcd1234"  # left by a cnncli of before the marker's name
    older.mkdir()
    (older / "pid").write_text(str(dead.pid))
    packing.pack(ds, tmp_path / "packed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".packed.backup", "packed",
                                                         "photos"]


def test_a_pack_that_cannot_make_its_staging_folder_leaves_no_folder_it_made(tmp_path,
                                                                            monkeypatch):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    real = files.tempfile.mkdtemp

    def no_staging(*args, prefix="", **kwargs):  # the write check's probe still works
        if prefix.startswith(".packed."):
            raise OSError(28, "No space left on device")
        return real(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkdtemp", no_staging)
    with pytest.raises(OSError, match="No space left"):
        packing.pack(ds, tmp_path / "new" / "deeper" / "packed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_a_csv_image_that_cannot_be_read_in_strict_mode_names_the_csv_line(tmp_path):
    photo_folder(tmp_path)
    (tmp_path / "a" / "1.jpg").write_bytes(b"not an image")
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"{c}/{i}.jpg,{c}\n" for c in "ab" for i in range(3)))
    with pytest.raises(DataError, match="1.jpg: ") as err:
        datasets.load(tmp_path / "labels.csv", strict=True)
    assert err.value.file == str(tmp_path / "labels.csv") and err.value.line == 3
    assert "remove its row" in err.value.hint


def test_sigterm_while_packing_leaves_nothing_half_written_and_exits_143(tmp_path):
    import signal
    import time

    root = photo_folder(tmp_path / "photos")
    # records are written slowly, so the signal comes while shards are being written
    script = textwrap.dedent(f"""
        import sys, time
        from cnncli.data import packing
        real = packing._record
        def slow(*args, **kwargs):
            time.sleep(0.2)
            return real(*args, **kwargs)
        packing._record = slow
        sys.argv = ["cnncli", "datasets", "pack", {str(root)!r}, {str(tmp_path / "packed")!r}]
        from cnncli.cli.app import main
        main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".packed.*/*.tfrecord")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(tmp_path.glob(".packed.*/*.tfrecord")), "packing never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped: SIGTERM: the command stopped" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_pack_onto_an_existing_file_does_not_offer_force_that_would_refuse(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ConfigError, match="afile exists") as err:
        packing.pack(ds, tmp_path / "afile")
    assert err.value.hint == "give another folder (--force replaces only an earlier pack)"
    assert (tmp_path / "afile").read_text() == "mine"


def test_pack_on_a_full_disk_is_a_write_error_naming_the_output_leaving_nothing(
        tmp_path, monkeypatch):
    """TensorFlow's shard writer says a full disk in its own error type: it was "an
    unexpected ResourceExhaustedError ... a bug in cnncli", naming the hidden folder."""
    from cnncli.runtime import import_tf

    tf = import_tf()
    ds = datasets.load(photo_folder(tmp_path / "photos"))

    class FullDisk:
        def __init__(self, path):
            self.path = path

        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None,
                                                   f"{self.path}; No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDisk)
    with pytest.raises(WriteError) as err:
        packing.pack(ds, tmp_path / "out" / "packed")
    assert err.value.message == "cannot write the packed dataset: No space left on device"
    assert err.value.file == str(tmp_path / "out" / "packed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_pack_into_a_path_under_a_file_is_a_clear_error_leaving_nothing(tmp_path):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "file.txt").write_text("hi")
    for out in (tmp_path / "file.txt" / "out", tmp_path / "file.txt" / "deeper" / "out"):
        with pytest.raises(ConfigError, match="is a file") as err:
            packing.pack(ds, out)
        assert "file.txt" in err.value.file or "file.txt" in err.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "photos"]


def test_a_file_put_into_the_empty_folder_while_packing_is_not_deleted(tmp_path,
                                                                       monkeypatch):
    ds = datasets.load(photo_folder(tmp_path / "photos"))
    (tmp_path / "packed").mkdir()
    real = packing._write_split

    def someone_writes_meanwhile(*args, **kwargs):
        (tmp_path / "packed" / "theirs.txt").write_text("keep me")
        return real(*args, **kwargs)

    monkeypatch.setattr(packing, "_write_split", someone_writes_meanwhile)
    with pytest.raises(WriteError, match=r"packed is no longer empty: .*\(theirs.txt\)"):
        packing.pack(ds, tmp_path / "packed")
    assert [p.name for p in (tmp_path / "packed").iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "photos"]
