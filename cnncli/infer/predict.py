"""Classifying images with a pretrained or a trained model, in batches.

Images are decoded in threads (`cnncli.data.images`: EXIF rotation, 16-bit, CMYK, ...),
resized as the model expects, preprocessed exactly as in training
(`cnncli.data.pipeline.preprocess_batch`), and predicted a batch at a time. A file that
cannot be read gets its own error; the others are still predicted.

>>> result = predict(["car.jpg"], model="vgg16", top=5)   # doctest: +SKIP
>>> result.images[0].top[0]                                # doctest: +SKIP
('convertible', 0.9809)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnncli.data import images, inputs, pipeline
from cnncli.errors import CnnError, ConfigError
from cnncli.infer.evaluate import image_input, resolve
from cnncli.model import imagenet, modelfile, pretrained

DECODE_THREADS = 4  # PIL releases the GIL while decoding


@dataclass
class Loaded:
    """A model ready to classify, and how to feed it."""

    name: str
    model: object
    input_shape: tuple[int, int, int]
    preprocessing: str
    class_names: list[str]


@dataclass
class ImageResult:
    file: str
    top: list[tuple[str, float]]  # (class name, probability), best first


@dataclass
class Result:
    model: str
    images: list[ImageResult] = field(default_factory=list)
    errors: list[CnnError] = field(default_factory=list)


def load(model: str, *, weights: str | None = None, offline: bool = False,
         preprocessing: str | None = None) -> Loaded:
    """A pretrained name (vgg16), a run folder, or a ``.keras`` file."""
    if model in pretrained.REGISTRY:
        entry = pretrained.get(model)
        net = pretrained.load(model, weights=weights, offline=offline)
        return Loaded(model, net, entry.input_shape, preprocessing or entry.preprocessing,
                      imagenet.class_names())
    if weights:
        raise ConfigError("--weights goes with a pretrained model name",
                          hint="use one of " + ", ".join(sorted(pretrained.REGISTRY)))
    target = resolve(model)
    net = modelfile.load_model(target.model_path)
    meta = target.metadata
    shape = image_input(net, target.model_path)
    classes = net.output_shape[-1]
    names = meta.get("class_names") or [str(i) for i in range(classes)]
    if len(names) != classes:
        names = [str(i) for i in range(classes)]
    return Loaded(str(target.model_path), net, shape,
                  preprocessing or meta.get("preprocessing", "scale"), names)


def predict(sources: list[str], *, model: str | Loaded, top: int = 5, batch_size: int = 32,
            weights: str | None = None, offline: bool = False, resize: str = "bilinear",
            stdin=None) -> Result:
    """Top-`top` classes for every image in `sources` (files, folders, globs, @lists, URLs)."""
    loaded = model if isinstance(model, Loaded) else load(model, weights=weights,
                                                          offline=offline)
    files = inputs.expand_inputs(sources, stdin=stdin)
    result = Result(model=loaded.name)
    top = max(1, min(top, len(loaded.class_names)))
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            decoded = list(pool.map(lambda f: _read(f, loaded, resize), chunk))
            good = [(f, img) for f, img in zip(chunk, decoded, strict=True)
                    if not isinstance(img, CnnError)]
            result.errors += [img for img in decoded if isinstance(img, CnnError)]
            if not good:
                continue
            batch = np.stack([img for _, img in good])
            x = pipeline.preprocess_batch(batch, loaded.input_shape, loaded.preprocessing)
            probs = np.asarray(loaded.model.predict_on_batch(x))
            for (file, _), p in zip(good, probs, strict=True):
                best = np.argsort(-p, kind="stable")[:top]
                result.images.append(ImageResult(
                    file, [(loaded.class_names[i], float(p[i])) for i in best]))
    return result


def _read(source: str, loaded: Loaded, resize: str):
    """The image at `source` as uint8 at the model's size, or the error it raised."""
    try:
        data = inputs.fetch_url(source) if inputs.is_url(source) else Path(source)
        channels = loaded.input_shape[-1]
        img = images.load_image(data, name=source, channels=1 if channels == 1 else 3)
        return images.resize(img, loaded.input_shape[:2], resize)
    except CnnError as exc:
        return exc
