"""The tuned plain-Keras way: a tf.data pipeline (map, cache, shuffle, batch, prefetch).

The input pipeline of TensorFlow Datasets' "Training a neural network on MNIST with
Keras" guide, which is what a competent Keras user writes: uint8 arrays ->
``map(normalize, AUTOTUNE)`` -> ``cache()`` -> ``shuffle(all)`` -> ``batch(128)`` ->
``prefetch(AUTOTUNE)``, then ``model.fit(ds)``. Adam 1e-3 (``--network``: the network's
optimizer, `_common.OPTIMIZERS`). Thread settings:
TensorFlow's defaults. ``--precision mixed_bfloat16`` sets
``keras.mixed_precision.set_global_policy`` first: what a Keras user who knows about the
CPU's bfloat16 units writes (the last layer stays float32).

    .venv/bin/python bench/contenders/keras_tuned.py --epochs 2 --json-out /tmp/k.json
    .venv/bin/python bench/contenders/keras_tuned.py --limit 1000 --epochs 2   # smoke
    .venv/bin/python bench/contenders/keras_tuned.py --network cifar_vgg --npz c.npz
"""

from __future__ import annotations

import _common


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__.splitlines()[0], batch_size=128, epochs=2)
    p.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    args = p.parse_args(argv)

    x_train, y_train, source = _common.load_training_data(args)
    _common.quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)

    def normalize(image, label):
        return tf.cast(image, tf.float32) / 255.0, label

    ds = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    ds = ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    ds = ds.shuffle(len(x_train))
    ds = ds.batch(args.batch_size)
    ds = ds.prefetch(tf.data.AUTOTUNE)

    model = _common.keras_model(keras, args.network)
    model.compile(optimizer=_common.keras_optimizer(keras, args.network),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = _common.keras_epoch_timer(keras, len(x_train))
    model.fit(ds, epochs=args.epochs, callbacks=[timer])

    epochs = timer.rows
    result = {
        "name": "tuned" if args.precision == "float32" else "tuned-bf16",
        "precision": args.precision, "batch_size": args.batch_size, "data": source,
        "network": args.network,
        "train_images": len(x_train), "epochs": epochs,
        "steady_images_per_s": _common.steady_images_per_s(epochs),
        "script_start": _common.SCRIPT_START, "peak_rss_mb": _common.peak_rss_mb(),
        "threads": _common.keras_threads(tf),
        "recipe": "tf.data map/cache/shuffle/batch/prefetch(AUTOTUNE), "
                  + _common.optimizer_text(args.network),
        "versions": _common.versions(tensorflow=tf.__version__, keras=keras.__version__),
    }
    _common.write_json(args.json_out, result)
    print(_common.report_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
