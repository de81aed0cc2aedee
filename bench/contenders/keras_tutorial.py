"""The tutorial way: numpy arrays (x / 255 as float32) straight into `model.fit`, batch 50.

What the Keras and TensorFlow beginner tutorials write: load the arrays, scale them,
`Sequential`, `compile(optimizer="adam", ...)` (Adam's default learning rate 1e-3),
`fit(x, y, batch_size=50, epochs=N)`. Thread settings: TensorFlow's defaults.

With ``--target-accuracy`` the test set is passed as ``validation_data`` (so Keras
evaluates it after every epoch) and training stops at the first epoch that reaches
it; the evaluation time is measured and reported apart from the training time.

    .venv/bin/python bench/contenders/keras_tutorial.py --epochs 2 --json-out /tmp/t.json
    .venv/bin/python bench/contenders/keras_tutorial.py --limit 1000 --epochs 2   # smoke
"""

from __future__ import annotations

import _common


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__.splitlines()[0], batch_size=50, epochs=2)
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="evaluate the test set after each epoch; stop once it is reached")
    args = p.parse_args(argv)

    x_train, y_train, x_test, y_test, source = _common.load_fashion_mnist(args.limit,
                                                                          args.data_dir)
    _common.quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255

    model = _common.lecture_keras_model(keras)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    timer = _common.keras_epoch_timer(keras, len(x_train), args.target_accuracy)
    validation = (x_test, y_test) if args.target_accuracy is not None else None
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_data=validation, callbacks=[timer])

    epochs = timer.rows
    result = {
        "name": "tutorial", "batch_size": args.batch_size, "data": source,
        "train_images": len(x_train), "epochs": epochs,
        "steady_images_per_s": _common.steady_images_per_s(epochs),
        "test_accuracy": epochs[-1].get("test_accuracy") if epochs else None,
        "target_accuracy": args.target_accuracy, "script_start": _common.SCRIPT_START,
        "peak_rss_mb": _common.peak_rss_mb(), "threads": _common.keras_threads(tf),
        "recipe": "numpy float32 arrays, fit(batch_size), Adam 1e-3",
        "versions": _common.versions(tensorflow=tf.__version__, keras=keras.__version__),
    }
    _common.write_json(args.json_out, result)
    print(_common.report_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
