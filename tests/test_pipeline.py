"""Tests of cnncli.data.pipeline: preprocessing modes, channel/size conversion,
seeded shuffling, validation split, augmentation and repeat, on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnncli import config
from cnncli.config import AugmentSection
from cnncli.data import feed, pipeline
from cnncli.errors import ConfigError
from cnncli.runtime import import_keras

keras = import_keras()

AUGMENT = AugmentSection(flip="horizontal", translate=0.1, rotate=0.05, zoom=0.1,
                         contrast=0.1)


def grey_images(n=12, size=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 1), dtype=np.uint8)


def rgb_images(n=4, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def labelled(n=12):
    """Images whose every pixel equals their label, to follow them through shuffles."""
    y = np.arange(n)
    x = np.broadcast_to(y[:, None, None, None], (n, 4, 4, 1)).astype(np.uint8)
    return x, y


def epoch_labels(ds) -> list[int]:
    return [int(v) for _x, y in ds for v in y.numpy()]


# --------------------------------------------------------------------------- #
# preprocess_batch
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("mode, low, high", [
    ("scale", 0.0, 1.0), ("none", 0.0, 255.0), ("tf", -1.0, 1.0)])
def test_preprocessing_mode_range_shape_and_dtype(mode, low, high):
    x = grey_images()
    out = pipeline.preprocess_batch(x, (28, 28, 1), mode).numpy()
    assert out.shape == (12, 28, 28, 1) and out.dtype == np.float32
    assert out.min() >= low and out.max() <= high
    np.testing.assert_allclose(out.min(), low + (high - low) * x.min() / 255, atol=1e-5)


def test_caffe_mode_is_bgr_minus_the_imagenet_mean():
    """What VGG's Caffe weights expect (Simonyan & Zisserman's mean pixel, in BGR)."""
    x = rgb_images()
    ours = pipeline.preprocess_batch(x, (8, 8, 3), "caffe").numpy()
    ref = x[..., ::-1].astype(np.float64) - [103.939, 116.779, 123.68]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_caffe_mode_flips_channels_with_a_reverse_not_a_negative_stride_slice():
    # a StridedSlice of stride -1 took 4% of a ResNet50 training step's work
    tf = pipeline.tf
    step = tf.function(lambda x: pipeline.preprocess_batch(x, (8, 8, 3), "caffe"))
    graph = step.get_concrete_function(tf.TensorSpec((None, 8, 8, 3), tf.uint8)).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "ReverseV2" in kinds and "StridedSlice" not in kinds


def test_torch_mode_uses_imagenet_mean_and_std():
    x = rgb_images()
    ours = pipeline.preprocess_batch(x, (8, 8, 3), "torch").numpy()
    ref = (x / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert ours.dtype == np.float32


@pytest.mark.parametrize("mode", ["scale", "tf", "torch"])  # (caffe divides by nothing)
def test_every_path_gives_a_model_the_same_bits_for_every_pixel_value(mode):
    """Training (tf.data), prediction and exports (a tf.function) and a plain call give
    the same float32 inputs, all 256 values of each channel: TensorFlow's graph optimizer
    rewrites a division by a constant in a tf.function, not in tf.data."""
    tf = pipeline.tf
    x = tf.constant(np.stack([np.arange(256, dtype=np.uint8)] * 3, -1).reshape(1, 16, 16, 3))

    def run(images):
        return pipeline.preprocess_batch(images, (16, 16, 3), mode)

    plain = run(x).numpy()
    in_function = tf.function(run)(x).numpy()
    in_data = next(iter(tf.data.Dataset.from_tensors(x).map(run))).numpy()
    assert plain.view(np.uint32).tolist() == in_function.view(np.uint32).tolist()
    assert plain.view(np.uint32).tolist() == in_data.view(np.uint32).tolist()


def test_caffe_mode_on_a_grey_model_is_a_config_error():
    with pytest.raises(ConfigError, match="needs a model with 3 input channels"):
        pipeline.preprocess_batch(grey_images(), (28, 28, 1), "caffe")


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preprocessing 'imagenet'"):
        pipeline.preprocess_batch(grey_images(), (28, 28, 1), "imagenet")


def test_grey_images_become_rgb_and_are_resized_28_to_32():
    out = pipeline.preprocess_batch(grey_images(), (32, 32, 3), "scale").numpy()
    assert out.shape == (12, 32, 32, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_rgb_images_become_grey_for_a_grey_model():
    out = pipeline.preprocess_batch(rgb_images(), (8, 8, 1), "none").numpy()
    assert out.shape == (4, 8, 8, 1)


def test_rgb_arrays_become_the_grey_the_decoder_gives_the_same_pixels():
    from PIL import Image

    colours = np.array([[[[255, 255, 255], [200, 0, 0], [0, 200, 0], [13, 77, 201]]]],
                       np.uint8)
    out = pipeline.preprocess_batch(colours, (1, 4, 1), "none").numpy()[0, 0, :, 0]
    pillow = np.asarray(Image.fromarray(colours[0]).convert("L"), np.float32)[0]
    np.testing.assert_allclose(out, pillow, atol=0.5)  # the decoder's grey, unrounded
    assert abs(out[0] - 255) < 1e-3  # white stays white: the weights sum to 1


def test_same_size_images_are_not_resampled():
    x = grey_images()
    out = pipeline.preprocess_batch(x, (28, 28, 1), "none").numpy()
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_images_without_a_channel_axis_get_one():
    out = pipeline.preprocess_batch(grey_images()[..., 0], (28, 28, 1), "scale")
    assert tuple(out.shape) == (12, 28, 28, 1)


# --------------------------------------------------------------------------- #
# split_validation
# --------------------------------------------------------------------------- #


def classes(n: int) -> np.ndarray:
    """The labels of `n` images of three classes."""
    return np.arange(n) % 3


def test_validation_split_sizes_are_disjoint_and_cover_everything():
    train, val = feed.validation_indices(classes(50), 0.2, seed=0)
    assert (len(train), len(val)) == (40, 10)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))


def test_validation_split_is_seeded():
    first = feed.validation_indices(classes(50), 0.2, seed=7)[1]
    np.testing.assert_array_equal(first, feed.validation_indices(classes(50), 0.2, seed=7)[1])
    assert not np.array_equal(first, feed.validation_indices(classes(50), 0.2, seed=8)[1])


def test_the_validation_images_keep_each_classs_share():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    by_class = {tuple(np.bincount(labels[feed.validation_indices(labels, 0.1, seed=seed)[1]],
                                  minlength=3)) for seed in range(20)}
    assert by_class == {(8, 2, 0), (8, 1, 1)}  # 8, 1.5 and 0.5: the last one drawn
    shares = {tuple(np.bincount(labels[feed.validation_indices(labels, 0.1, seed=seed,
                                                                stratify=False)[1]],
                                minlength=3)) for seed in range(20)}
    assert len(shares) > 1 and all(sum(s) == 10 for s in shares)  # random: 10, any classes


def test_a_class_of_one_image_keeps_it_to_train_on():
    labels = np.array([0] * 9 + [1])
    for seed in range(20):  # the split of 5 would take one of "1" in proportion (0.5: up)
        train, held = feed.validation_indices(labels, 0.5, seed=seed)
        assert 9 in train and len(held) == 5


def test_class_quotas_add_up_to_the_total_in_proportion():
    from cnncli.data.splits import share_quotas

    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts = rng.integers(1, 30, rng.integers(1, 8))
        total = int(rng.integers(1, counts.sum() + 1))
        quotas = share_quotas(counts, total, rng)
        assert quotas.sum() == total and (0 <= quotas).all() and (quotas <= counts).all()
        if total <= (counts - 1).sum():  # every class can keep one image: each does
            assert (quotas <= counts - 1).all()
        if (counts >= 2).all() and total <= counts.sum() / 2:  # no class near its last
            assert (np.abs(quotas - counts * total / counts.sum()) < 1).all()  # rounded


def test_classes_with_equal_shares_take_turns_across_seeds():
    """Ten classes of three photos, 6 to validate on: which six is drawn, not always the
    first six (those would be the only ones val_accuracy ever judged)."""
    labels = np.repeat(np.arange(10), 3)
    seen = set()
    for seed in range(20):
        held = feed.validation_indices(labels, 0.2, seed=seed)[1]
        assert sorted(np.bincount(labels[held], minlength=10)) == [0] * 4 + [1] * 6
        seen |= set(labels[held].tolist())
    assert seen == set(range(10))


def test_validation_fraction_zero_gives_an_empty_validation_set():
    assert len(feed.validation_indices(classes(10), 0.0, seed=0)[1]) == 0


@pytest.mark.parametrize("n, smallest, less", [(2, 0.26, 0.25), (30, 0.017, 0.016),
                                               (7, 0.072, 0.071)])
def test_a_validation_fraction_under_one_image_names_the_smallest_that_gives_one(n, smallest,
                                                                               less):
    with pytest.raises(ConfigError, match=f"0.01 of {n} images is not one image") as e:
        feed.validation_indices(classes(n), 0.01, seed=0)
    assert e.value.hint.startswith(f"use at least {smallest} ")
    assert len(feed.validation_indices(classes(n), smallest, seed=0)[1]) == 1
    with pytest.raises(ConfigError, match="is not one image"):  # the smallest: one less
        feed.validation_indices(classes(n), less, seed=0)


def test_one_image_cannot_be_split_whatever_the_fraction():
    with pytest.raises(ConfigError, match=r"0.3: 1 image cannot be split") as e:
        feed.validation_indices(classes(1), 0.3, seed=0)
    assert e.value.hint == "use more data, or 0 (no validation)"


def test_a_validation_fraction_taking_every_image_says_none_is_left_to_train_on():
    with pytest.raises(ConfigError, match="0.9 of 3 images leaves no image to train on"):
        feed.validation_indices(classes(3), 0.9, seed=0)


def test_validation_fraction_of_one_is_a_config_error():
    with pytest.raises(ConfigError, match="validation fraction"):
        feed.validation_indices(classes(10), 1.0, seed=0)


# --------------------------------------------------------------------------- #
# make_dataset
# --------------------------------------------------------------------------- #


def make(x, y, **kw):
    args = dict(batch_size=4, input_shape=x.shape[1:], training=True, seed=1)
    args.update(kw)
    return pipeline.make_dataset(x, y, **args)


def test_batches_have_model_shape_float32_and_int_labels():
    x = grey_images(10)
    ds = make(x, np.arange(10) % 3, input_shape=(32, 32, 3))
    xb, yb = next(iter(ds))
    assert tuple(xb.shape) == (4, 32, 32, 3) and xb.dtype.name == "float32"
    assert yb.dtype.is_integer and 0.0 <= float(xb.numpy().min()) <= 1.0
    assert [int(b[0].shape[0]) for b in ds] == [4, 4, 2]


def test_images_stay_paired_with_their_labels_after_shuffling():
    x, y = labelled()
    for xb, yb in make(x, y, preprocessing="none"):
        np.testing.assert_array_equal(xb.numpy()[:, 0, 0, 0], yb.numpy())


def test_shuffling_with_the_same_seed_gives_the_same_order():
    x, y = labelled()
    assert epoch_labels(make(x, y, seed=5)) == epoch_labels(make(x, y, seed=5))


def test_shuffling_with_another_seed_gives_another_order():
    x, y = labelled()
    a, b = epoch_labels(make(x, y, seed=5)), epoch_labels(make(x, y, seed=6))
    assert a != b and sorted(a) == sorted(b) == list(range(12))


def test_each_epoch_is_reshuffled():
    x, y = labelled()
    ds = make(x, y)
    assert epoch_labels(ds) != epoch_labels(ds)


def test_evaluation_data_keeps_its_order():
    x, y = labelled()
    assert epoch_labels(make(x, y, training=False)) == list(range(12))


def test_drop_remainder_drops_the_last_small_batch():
    x, y = labelled(10)
    assert len(list(make(x, y, drop_remainder=True))) == 2


def test_repeat_gives_more_than_one_epoch_of_batches():
    x, y = labelled(10)
    steps = math.ceil(10 / 4)
    batches = list(make(x, y, repeat=True).take(3 * steps))
    assert len(batches) == 3 * steps
    assert all(b[0].shape[0] == 4 for b in batches)  # full batches across epochs
    seen = [int(v) for _x, yb in batches for v in yb.numpy()]
    assert all(seen.count(label) >= 2 for label in range(10))


def test_without_repeat_the_dataset_ends_after_one_epoch():
    x, y = labelled(10)
    assert len(list(make(x, y))) == 3


def test_augmentation_changes_training_images():
    x = grey_images(8)
    y = np.arange(8)
    plain = make(x, y, training=False, preprocessing="none")
    augmented = make(x, y, training=True, preprocessing="none", augment=AUGMENT)
    a = np.concatenate([b[0].numpy() for b in augmented])
    a = a[np.argsort(np.concatenate([b[1].numpy() for b in augmented]))]
    assert not np.allclose(a, np.concatenate([b[0].numpy() for b in plain]))


def test_two_batches_of_a_run_never_share_a_random_draw():
    """Each layer's seed state is set per batch; RandomTranslation draws twice a batch
    (height, then width), so with batches one count apart batch n's horizontal shifts
    were batch n+1's vertical ones."""
    import tensorflow as tf

    layers = pipeline.augmentation_layers(AUGMENT, seed=3)
    augmenter = keras.Sequential(layers)
    x = tf.constant(grey_images(4), tf.float32)
    for number in (0, 1):
        pipeline._augmented(augmenter, tf.constant(number, tf.int64), (x, tf.zeros(4)),
                            "none")
        for layer in layers:
            drawn = int(layer.generator.state.numpy()[1]) - number * pipeline.DRAWS_PER_BATCH
            assert 0 < drawn < pipeline.DRAWS_PER_BATCH, type(layer).__name__
    assert pipeline.DRAWS_PER_BATCH > 1


def test_augmentation_changes_each_epoch_of_a_dataset_iterated_anew():
    """make_dataset without repeat starts a new iteration each epoch: its random changes
    go on from the draws before (numbered from each iteration's start, every epoch drew
    the same)."""
    x = np.repeat(grey_images(1), 8, axis=0)  # one picture: only the draws differ
    ds = make(x, np.zeros(8, np.int64), augment=AUGMENT, preprocessing="none")
    first, second = (np.concatenate([b[0].numpy() for b in ds]) for _ in range(2))
    assert not np.allclose(first, second)


def test_augmentation_is_not_applied_to_evaluation_data():
    x = grey_images(8)
    ds = make(x, np.arange(8), training=False, preprocessing="none", augment=AUGMENT)
    out = np.concatenate([b[0].numpy() for b in ds])
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_augmentation_is_seeded():
    x = grey_images(8)
    runs = [np.concatenate([b[0].numpy() for b in make(x, np.arange(8), augment=AUGMENT)])
            for _ in range(2)]
    np.testing.assert_allclose(runs[0], runs[1])


def test_augmented_batches_are_normalised_after_augmenting():
    x = grey_images(8)
    ds = make(x, np.arange(8), preprocessing="tf", augment=AugmentSection(contrast=0.5))
    out = np.concatenate([b[0].numpy() for b in ds])
    assert out.min() >= -1.0 and out.max() <= 1.0 and out.min() < 0


def test_unknown_augmentation_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown key 'data.augment.shear'"):
        config.parse({"model": "linear", "data": {"augment": {"shear": 0.1}}})


def test_augmentation_value_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="`data.augment.rotate`: input should be less than "
                                          "or equal to 1, got 30"):
        config.parse({"model": "linear", "data": {"augment": {"rotate": 30}}})


def test_every_augmentation_at_the_top_of_its_range_runs():
    """What the config accepts, the pipeline runs (one rule, in cnncli.config)."""
    top = config.parse({"model": "linear", "data": {"augment": {
        "flip": "horizontal_and_vertical", "translate": 1, "rotate": 1, "zoom": 1,
        "contrast": 1}}}).data.augment
    out = np.concatenate([b[0].numpy() for b in make(grey_images(8), np.arange(8),
                                                        augment=top)])
    assert out.shape == (8, 28, 28, 1) and np.isfinite(out).all()


@pytest.mark.timeout(30)
def test_training_batches_make_each_epochs_order_when_it_starts():
    """"Until early stopping" runs (epochs: 1000000) hold one epoch's order, not all."""
    x, y = grey_images(8, size=4), np.arange(8)
    ds = pipeline.training_batches(x, y, batch_size=4, input_shape=(4, 4, 1), seed=3,
                                   epochs=10**7, preprocessing="none")
    first = [b[1].numpy().tolist() for b in ds.take(4)]
    expected = [pipeline.epoch_order(8, 3, e)[:8].reshape(2, 4).tolist() for e in (0, 1)]
    assert first == [*expected[0], *expected[1]]


def test_each_workers_part_of_a_batch_is_augmented_by_its_own_random_draws():
    """The same image at the same place of two workers' parts: with one seed for all,
    it was flipped on both or on neither, every time."""
    x = np.zeros((64, 4, 4, 1), np.uint8)
    x[:, :, 0, 0] = 255  # a bright left column: a flip moves it
    common = dict(batch_size=8, input_shape=(4, 4, 1), seed=0, epochs=1,
                  preprocessing="none", augment=AugmentSection(flip="horizontal"))
    parts = [np.concatenate([b[0].numpy() for b in pipeline.training_batches(
        x, np.zeros(64, np.int64), **common, part=(worker, 1, 2))]) for worker in (0, 1)]
    flipped = [part[:, 0, -1, 0] > 127 for part in parts]  # bright on the right now
    assert 0 < flipped[0].sum() < 32 and (flipped[0] != flipped[1]).any()


def test_array_batches_run_without_tf_data_autotuning():
    # see test_streaming: a finished iterator could wait up to a minute for the autotuner
    x, y = np.zeros((8, 4, 4, 1), np.uint8), np.arange(8) % 2
    made = [pipeline.make_dataset(x, y, batch_size=4, input_shape=(4, 4, 1), training=False,
                                  seed=0),
            pipeline.training_batches(x, y, batch_size=4, input_shape=(4, 4, 1), seed=0,
                                      epochs=1)]
    assert [d.options().autotune.enabled for d in made] == [False, False]
