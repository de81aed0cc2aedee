"""tf.data input pipelines from uint8 arrays, and the one preprocessing code path.

Training, evaluation and prediction all turn uint8 images into model inputs with
`preprocess_batch`, so a model sees the same pixels in every command.

Example:

>>> ds = make_dataset(x_train, y_train, batch_size=128, input_shape=(32, 32, 3),
...                   training=True, seed=1, augment=AugmentSection(flip="horizontal"),
...                   repeat=True)                                # doctest: +SKIP
>>> model.fit(ds, steps_per_epoch=math.ceil(len(x_train) / 128), epochs=10)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnncli.config import AugmentSection
from cnncli.data import preprocessing
from cnncli.data.preprocessing import check_mode, normalise
from cnncli.errors import DataError, ModelError
from cnncli.runtime import import_keras, import_tf

keras = import_keras()
tf = import_tf()

#: Batches prefetched. Fixed on purpose: AUTOTUNE prefetch made Keras fit stall for
#: seconds at each epoch start on this (2-core) machine; 2 keeps one batch ready
#: while the next is prepared.
PREFETCH_BATCHES = 2


def untuned(ds):
    """`ds` with tf.data's autotuning off (``AUTOTUNE`` parallelism then means one call
    per core, at most 16). Every dataset of this module ends with it. The autotuner's
    thread sleeps in doubling periods (10 ms, 20 ms, ... up to 60 s) and an iterator
    being deleted waits for its wake-up (TensorFlow 2.21): measured on 2 cores, 4 of 5
    `fit` calls over 2,560 streamed JPEGs sat idle 3.5 s after their last step, and one
    validation pass in two took 5.1 s instead of 3.9 s; on a long run the wait can reach
    a minute at every validation pass and at the end. Untuned, none waited, and training
    ran as fast (bench/STREAM_RESULTS.md).

    >>> untuned(tf.data.Dataset.range(3)).options().autotune.enabled
    False
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _to_model_pixels(images, input_shape: Sequence[int | None]):
    """uint8 (N, H, W[, C]) -> float32 (N, H', W', C') with the model's size and
    channels, still 0..255. Resizes (bilinear) only when the size differs."""
    x = tf.cast(images, tf.float32)
    if x.shape.rank == 3:
        x = x[..., tf.newaxis]
    want_h, want_w, want_c = input_shape[-3:]
    have_c = x.shape[-1]
    if want_c not in (1, 3):
        raise ModelError(f"the model expects {want_c} input channels; cnncli feeds "
                         "grey (1) or RGB (3) images",
                         hint="give the model's Input 1 or 3 channels")
    x = preprocessing.channels(x, have_c, want_c)
    have_h, have_w = x.shape[1], x.shape[2]
    if want_h is not None and want_w is not None and (have_h, have_w) != (want_h, want_w):
        x = tf.image.resize(x, (want_h, want_w), method="bilinear")
    return x


def preprocess_batch(images_uint8, input_shape: Sequence[int | None], mode: str = "scale"):
    """Turn a batch of uint8 images into float32 model inputs (the shared code path).

    Casts, converts grey <-> RGB to the model's channels, resizes to its H, W if
    needed, then applies `mode` (see `PREPROCESSING_MODES`).

    >>> preprocess_batch(np.zeros((2, 28, 28, 1), np.uint8), (32, 32, 3)).shape
    TensorShape([2, 32, 32, 3])
    """
    check_mode(mode)
    return normalise(_to_model_pixels(images_uint8, input_shape), mode)


def augmentation_layers(augment: AugmentSection | None, seed: int) -> list:
    """Seeded Keras preprocessing layers for `data.augment` (its ranges are checked by
    `cnncli.config.AugmentSection`, the one place that says what is valid).

    >>> [type(l).__name__ for l in augmentation_layers(
    ...     AugmentSection(flip="horizontal", zoom=0.1), seed=0)]
    ['RandomFlip', 'RandomZoom']
    """
    if augment is None:
        return []
    layers = []
    if augment.flip:
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed))
    # a distinct seed stream per layer
    if augment.translate:
        layers.append(keras.layers.RandomTranslation(augment.translate, augment.translate,
                                                     seed=seed + 1))
    if augment.rotate:
        layers.append(keras.layers.RandomRotation(augment.rotate, seed=seed + 2))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, augment.zoom, seed=seed + 3))
    if augment.contrast:  # works on 0..255 (value_range), so it runs before normalising
        layers.append(keras.layers.RandomContrast(augment.contrast, value_range=(0, 255),
                                                  seed=seed + 4))
    return layers


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    input_shape: Sequence[int | None],
    training: bool,
    seed: int,
    preprocessing: str = "scale",
    augment: AugmentSection | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    one_hot: int | None = None,
):
    """A `tf.data.Dataset` of (float32 images, labels) batches from uint8 arrays.

    Shuffles (seeded, a new order each epoch) and augments only when ``training``.
    ``repeat=True`` never ends: give Keras ``steps_per_epoch``.
    """
    check_mode(preprocessing)
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels",
                        hint="give one label per image")
    aug_layers = augmentation_layers(augment, seed) if (training and augment) else []

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    # Cache the uint8 elements (1 byte a pixel): every later step works on them,
    # and the float conversion happens per batch, so memory stays small.
    ds = ds.cache()
    if training:
        # A full-size buffer is a true shuffle; the seed makes the sequence of
        # epoch orders reproducible, and reshuffle gives each epoch a new order.
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        # One endless iterator for the whole fit: Keras tears down and rebuilds a
        # finite dataset's iterator at every epoch start, which measured 4-18 s
        # stalls per epoch on this machine. Repeating before batching also keeps
        # every batch full across epoch boundaries.
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    return _model_batches(ds, input_shape, preprocessing, aug_layers, one_hot)


def _model_batches(ds, input_shape, preprocessing: str, aug_layers: list,
                   one_hot: int | None = None, first_batch: int | None = None):
    """uint8 (images, labels[, weights]) batches -> model inputs, augmented if
    `aug_layers`; labels one-hot over `one_hot` classes if given (what label smoothing in
    Keras needs). Weights (streamed data: 0 for an image that could not be decoded) pass
    through. `untuned`, as every dataset of this module.

    Each batch's random changes are drawn from its layers' seeds and its number in the
    run (`first_batch`: the number of the first batch given, a resume's), not from the
    draws before it: a resumed run, or a fine-tuning's second stage, draws what a run
    never stopped draws. Without `first_batch` (`make_dataset`, iterated anew each
    epoch) they go on from the draws before."""
    if one_hot:
        ds = ds.map(lambda xb, yb, *w: (xb, tf.one_hot(yb, one_hot), *w),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Work on whole batches (vectorised ops), in parallel but in order.
    if aug_layers:
        augmenter = keras.Sequential(aug_layers)
        ds = ds.map(lambda xb, yb, *w: (_to_model_pixels(xb, input_shape), yb, *w),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # Augmentation runs on pixels still in 0..255 (RandomContrast clips to its
        # value_range) and in ONE sequential call: Keras' random layers draw from a
        # stateful seed generator, set for each batch (`_augmented`), which parallel
        # calls would share.
        if first_batch is None:
            ds = ds.map(lambda xb, yb, *w: (normalise(augmenter(xb, training=True),
                                                       preprocessing), yb, *w))
        else:
            ds = ds.enumerate(start=first_batch).map(
                lambda number, batch: _augmented(augmenter, number, batch, preprocessing))
    else:
        ds = ds.map(lambda xb, yb, *w: (preprocess_batch(xb, input_shape, preprocessing),
                                        yb, *w),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return untuned(ds.prefetch(PREFETCH_BATCHES))


#: Draws each layer's seed state is set apart by from one batch to the next: a layer
#: draws several times a batch (RandomZoom: height, then width), each draw counting its
#: state's second number up by one. Set one apart, batch n's second draw was batch n+1's
#: first (one image's vertical shift the next batch's horizontal one).
DRAWS_PER_BATCH = 1_000


def _augmented(augmenter, number, batch, preprocessing: str):
    """`batch` (images in 0..255, labels[, weights]) through `augmenter`'s random layers,
    each drawing from its seed and the batch's `number` (the seed state of Keras' random
    layers, (seed, counter), set to (seed, number x `DRAWS_PER_BATCH`)), then
    normalised."""
    xb, yb, *w = batch
    for layer in augmenter.layers:
        state = layer.generator.state
        state.assign(tf.cast(tf.stack([tf.cast(layer.seed, tf.int64),
                                       number * DRAWS_PER_BATCH]), state.dtype))
    return (normalise(augmenter(xb, training=True), preprocessing), yb, *w)


def _loaded(index_batches, loader, labels: np.ndarray):
    """Index batches -> (uint8 images, labels, weights) through `loader` (decoded, resized
    and cached by the one decoder), in parallel and in order."""
    label_tensor = tf.constant(labels)

    def load(idx):
        images, weights = _through(loader, idx)
        return images, tf.gather(label_tensor, idx), weights

    return index_batches.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _through(loader, indices, encoded=None):
    """(uint8 images, weights) of the batch `indices` from `loader.batch` (Python, in a
    `tf.numpy_function`), shaped as the batch is: a full training batch has a known size,
    as the arrays path's batches do, so every source gives the model the same spec."""
    args = [indices] if encoded is None else [indices, encoded]
    images, weights = tf.numpy_function(loader.batch, args, (tf.uint8, tf.float32),
                                        stateful=False)
    images.set_shape((indices.shape[0], *loader.shape))
    weights.set_shape((indices.shape[0],))
    return images, weights


def eval_batches(loader, labels: np.ndarray, *, input_shape: Sequence[int | None],
                 batch_size: int, preprocessing: str, one_hot: int | None = None):
    """Validation or test batches of a streamed split, in order, through `loader`, for a
    model of `input_shape` (arrays' loaders keep their channels: converted here)."""
    check_mode(preprocessing)
    order = np.arange(len(labels), dtype=np.int32)
    index_batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    ds = _loaded(index_batches, loader, labels)
    return _model_batches(ds, input_shape, preprocessing, [], one_hot)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the `n` training images in `epoch`: a function of (seed, epoch) only,
    so a resumed run sees exactly the batches an uninterrupted one would have seen.

    >>> epoch_order(5, seed=0, epoch=3).tolist() == epoch_order(5, seed=0, epoch=3).tolist()
    True
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def training_batches(
    x: np.ndarray | None,
    y: np.ndarray,
    *,
    batch_size: int,
    input_shape: Sequence[int | None],
    seed: int,
    epochs: int,
    start_epoch: int = 0,
    start_step: int = 0,
    preprocessing: str = "scale",
    augment: AugmentSection | None = None,
    one_hot: int | None = None,
    loader=None,
    part: tuple[int, int, int] | None = None,
):
    """Every remaining training batch of a run, in one dataset (one iterator for the run).

    Each epoch has ``len(y) // batch_size`` full batches in `epoch_order`; the run
    starts at (`start_epoch`, `start_step`), which is how resuming works. Unlike
    `make_dataset`, the order does not depend on a tf.data shuffle buffer's state. Each
    epoch's order is made when the epoch starts, so a run of a million epochs holds one.
    Images come from the array `x`, or, streamed, from `loader` (`cnncli.data.loader`):
    then batches carry sample weights (0 for an image that could not be decoded).
    ``part=(first, count, replicas)`` makes only the part of each batch that replicas
    ``first .. first + count - 1`` of `replicas` train on (a worker of several machines).
    """
    check_mode(preprocessing)
    steps = len(y) // batch_size
    if steps < 1:
        raise DataError(f"{len(y)} training images are fewer than one batch of {batch_size}",
                        hint="use a smaller --batch-size")

    def order(epoch):  # this epoch's index batches (the part of each this worker makes)
        epoch = int(epoch)
        batches = epoch_order(len(y), seed, epoch)[: steps * batch_size]
        first = start_step if epoch == start_epoch else 0
        return batches.reshape(steps, batch_size)[first:, cut].astype(np.int32)

    def epoch_batches(epoch):
        batches = tf.numpy_function(order, [epoch], tf.int32, stateful=False)
        batches.set_shape((None, width))
        return tf.data.Dataset.from_tensor_slices(batches)

    cut = slice(0, batch_size)
    if part is not None:
        first_replica, count, replicas = part
        cut = slice(batch_size * first_replica // replicas,
                    batch_size * (first_replica + count) // replicas)
    width = cut.stop - cut.start
    # One numpy call per epoch, not a generator: with tf.data's from_generator, streamed
    # JPEGs decoded about 30% slower (950 against 1,250 images/s, 224x224, 2 cores).
    index_batches = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_batches)
    if loader is not None:
        ds = _loaded(index_batches, loader, y)
    else:
        images, labels = tf.constant(x), tf.constant(y)
        ds = index_batches.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    aug_layers = augmentation_layers(augment, _part_seed(seed, part)) if augment else []
    return _model_batches(ds, input_shape, preprocessing, aug_layers, one_hot,
                          first_batch=start_epoch * steps + start_step)


def _part_seed(seed: int, part: tuple[int, int, int] | None) -> int:
    """The augmentation's seed for a worker's `part` of each batch: its own stream (with
    the run's seed, each worker's k-th image would get the same flip or rotation as every
    other's), the run's seed for the first part (one machine's, too).

    >>> _part_seed(5, None), _part_seed(5, (0, 1, 2)), _part_seed(5, (1, 1, 2))
    (5, 5, 1000008)
    """
    return seed if part is None else seed + PART_SEEDS * part[0]


#: Between the augmentation seeds of two parts (each layer takes seed + 0 .. 4).
PART_SEEDS = 1_000_003


#: Records shuffled within a window (besides the shards' order, shuffled every epoch).
SHUFFLE_RECORDS = 10_000
#: Shards read at once.
INTERLEAVE_SHARDS = 4


def _window_shuffle(ds, seeds):
    """Records in a random order within windows of `SHUFFLE_RECORDS`, the order a function
    of `seeds` and each record's index (tf.data's shuffle takes no per-epoch tensor seed
    once a global seed is set)."""
    def keyed(e):
        return {**e, "key": tf.random.stateless_uniform([], seed=tf.stack(
            [seeds[0] * 1_000_003 + seeds[1], e["index"]]))}

    def sort(window):
        order = tf.argsort(window["key"])
        return {k: tf.gather(v, order) for k, v in window.items() if k != "key"}

    return ds.map(keyed).batch(SHUFFLE_RECORDS).map(sort).unbatch()


def record_batches(split, keep: np.ndarray, loader, *, batch_size: int, seed: int,
                   epochs: int = 1, start_epoch: int = 0, start_step: int = 0,
                   preprocessing: str = "scale", augment: AugmentSection | None = None,
                   one_hot: int | None = None, training: bool = True,
                   part: tuple[int, int, int] | None = None):
    """Batches of a split of TFRecord shards (`cnncli.data.records`), the records whose
    index is in `keep` (a boolean mask: the training or the validation part). Each record's
    index and label are checked against the pack's labels (`split.labels`, by which the
    parts and counts were made): one that disagrees stops the run with
    `records.MISMATCH` in TensorFlow's error (`records.read_error` says it); a record
    without its image is an image that cannot be decoded (skipped and counted). In
    training, each epoch reads the shards in an order and shuffles records in a window,
    both seeded by (seed, epoch), and has ``keep.sum() // batch_size`` full batches, so a
    resumed run sees the batches an uninterrupted one would. Images go through `loader`
    (the one decoder). ``part=(first, count, replicas)``: as in `training_batches`, only
    the images of that part of each batch are decoded (every worker reads the records'
    bytes, which is cheap; the decoding, which is not, is divided)."""
    from cnncli.data.records import MISMATCH

    check_mode(preprocessing)
    records = split.images
    shards, mask = tf.constant(list(records.shards)), tf.constant(keep)
    labels = tf.constant(np.asarray(split.labels, np.int64))
    count = int(keep.sum())
    spec = {"image": tf.io.FixedLenFeature([], tf.string, default_value=b""),
            "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            "index": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}

    def parse(record):
        e = tf.io.parse_single_example(record, spec)
        at = tf.clip_by_value(e["index"], 0, len(keep) - 1)
        fits = (e["index"] == at) & (tf.gather(labels, at) == e["label"])
        with tf.control_dependencies([tf.debugging.Assert(fits, [MISMATCH, e["index"],
                                                                 e["label"]])]):
            return {k: tf.identity(v) for k, v in e.items()}

    def read(files, cycle: int):
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=cycle, block_length=16,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.filter(lambda e: tf.gather(mask, e["index"]))

    if training:
        steps = count // batch_size

        def epoch(e):
            seeds = tf.stack([tf.constant(seed, tf.int64), e])
            order = tf.random.experimental.stateless_shuffle(tf.range(len(records.shards)),
                                                             seed=seeds)
            cycle = min(INTERLEAVE_SHARDS, len(records.shards))
            return _window_shuffle(read(tf.gather(shards, order), cycle), seeds).take(
                steps * batch_size)

        ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch)
        ds = ds.skip(start_step * batch_size).batch(batch_size, drop_remainder=True)
        if part is not None:
            first, count, replicas = part
            lo, hi = batch_size * first // replicas, batch_size * (first + count) // replicas
            ds = ds.map(lambda e: {k: v[lo:hi] for k, v in e.items()})
    else:
        ds = read(shards, 1).batch(batch_size)  # in record order
        # the count is known: say it, so Keras need not run past the end to find it
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))

    def load(e):
        images, weights = _through(loader, e["index"], e["image"])
        return images, e["label"], weights

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    aug_layers = augmentation_layers(augment, _part_seed(seed, part)) \
        if (training and augment) else []
    return _model_batches(ds, loader.shape, preprocessing, aug_layers, one_hot,
                          first_batch=start_epoch * steps + start_step if training else 0)
