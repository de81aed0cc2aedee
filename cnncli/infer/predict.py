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

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnncli import parallel
from cnncli.data import images, inputs
from cnncli.errors import CnnError, DataError, ModelError
from cnncli.infer import artefact, classifier, metrics
from cnncli.infer.base import check_batch_size
from cnncli.model import imagenet


@dataclass
class ImageResult:
    file: str
    top: list[tuple[str, float]]  # (class name, probability or score), best first
    gradcam: str | None = None  # its heat map's file (predict --explain)
    wordnet_ids: list[str] | None = None  # the top classes' (an ImageNet model's), in order


@dataclass
class Result:
    model: str
    images: list[ImageResult] = field(default_factory=list)
    errors: list[CnnError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scores: bool = False  # the model's outputs are raw scores, not probabilities
    wordnet: bool = False  # the model's classes are ImageNet's: each has a WordNet ID
    inputs: int = 0  # images to classify, and folders or patterns that gave none
    predicted: int = 0  # images classified (in `images`, unless given to `each`)


def predict(sources: list[str], *, model: str | classifier.Classifier, top: int = 5,
            batch_size: int = 64, weights: str | None = None, offline: bool = False,
            resize: str | None = None, stdin=None,
            each: Callable[[Result, list[ImageResult]], None] | None = None) -> Result:
    """Top-`top` classes for every image in `sources` (files, folders, globs, @lists, URLs).

    `each`, if given, is called with every batch's results as soon as they are known,
    and they are not kept in the result's `images`: memory stays flat however many
    images are classified (``cnncli predict --format jsonl`` prints them so). When it is
    first called, the result already says whether the figures are `scores`.
    """
    check_batch_size(batch_size)
    loaded = model if isinstance(model, classifier.Classifier) else classifier.load(
        model, weights=weights, offline=offline)
    resize = images.resize_mode(resize or loaded.meta.resize)  # as the model was trained
    empty: list[CnnError] = []  # folders and patterns with no images: one error each
    files = inputs.expand_inputs(sources, stdin=stdin, missing_ok=True, empty=empty)
    if not files:
        raise DataError("no images to classify: the list given is empty",
                        hint="give image files, folders, globs, @list.txt or - (paths on "
                             "standard input), one image at least")
    result = Result(model=loaded.name, errors=empty,
                    warnings=artefact.unfinished(loaded.artefact, "predicts with", "predict")
                    + _other_resize(loaded, resize), inputs=len(files) + len(empty))
    top = max(1, min(top, len(loaded.class_names)))
    wordnet = imagenet.wordnet_ids(loaded.class_names)
    result.wordnet = wordnet is not None
    # decoded in threads, the next batch while the model works on this one
    decoded = parallel.ordered_map(lambda f: _read(f, loaded, resize), files,
                                   threads=parallel.DECODE_THREADS, ahead=batch_size + 1)
    # closed on Ctrl-C: not after the next batch's reads (URLs: up to 30 s each)
    with contextlib.closing(decoded):
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            batch = [next(decoded) for _ in chunk]
            good = [(f, img) for f, img in zip(chunk, batch, strict=True)
                    if not isinstance(img, CnnError)]
            result.errors += [img for img in batch if isinstance(img, CnnError)]
            if not good:
                continue
            probs = loaded.probabilities(np.stack([img for _, img in good]))
            finite = np.isfinite(probs).all(axis=1)
            precision = getattr(loaded, "precision", "float32")
            if not finite.any() and not result.predicted:  # the model, not these images
                raise not_numbers(loaded.name, count=len(good), every=True,
                                  precision=precision)
            result.errors += [not_numbers(loaded.name, f, precision=precision)
                              for (f, _), ok in zip(good, finite, strict=True) if not ok]
            good, probs = [g for g, ok in zip(good, finite, strict=True) if ok], probs[finite]
            if not result.scores and metrics.not_probabilities(probs):
                result.scores = True
                result.warnings.append(metrics.scores_note(
                    loaded.name, "the figures shown are its raw scores (`score`), not "
                    "percentages of confidence"))
            found = [ImageResult(file, [(loaded.class_names[i], float(p[i])) for i in best],
                                 wordnet_ids=[wordnet[i] for i in best] if wordnet else None)
                     for (file, _), p, best in zip(good, probs, metrics.top_k(probs, top),
                                                   strict=True)]
            result.predicted += len(found)
            if each is None:
                result.images += found
            elif found:
                each(result, found)
    return result


def _other_resize(loaded: classifier.Classifier, resize: str) -> list[str]:
    """A note when `resize` is not how the images of the model's training were resized
    (a model cnncli trained: its file records its data and resize mode)."""
    if loaded.meta.dataset is None or resize == loaded.meta.resize:
        return []
    return [f"{loaded.name} was trained on images resized by {loaded.meta.resize}; "
            f"--resize {resize} gives it images shaped otherwise (its answers may differ "
            "from what its training's figures promise)"]


def not_numbers(model: str, file: str | None = None, count: int = 1,
                every: bool = False, precision: str = "float32") -> ModelError:
    """The error for outputs that are not numbers (NaN, infinite), of one image (`file`)
    or of `count` of them (`every` one tried: said once, not per image): a model whose
    weights are not finite (a training whose loss became NaN) gives them for all, and
    one computing in float16 (`precision`, what ``auto`` picks on a GPU of compute
    capability 7.x) for activations over float16's largest number."""
    which = "this image" if file else ("every image" if every and count > 1 else
                                       f"{count:,} of the images")
    weights = ("its weights are probably not finite (from a training whose loss became "
               "NaN?): use the run's best.keras, or train it again")
    if precision == "mixed_float16":
        weights = ("it computed in mixed_float16, where an activation over 65,504 (float16's "
                   "largest number) becomes infinite: try --precision float32; if the "
                   f"outputs are still not numbers, {weights}")
    return ModelError(f"{model} gives NaN or infinite outputs for {which}", file=file,
                      hint=weights)


def _read(source: str, loaded: classifier.Classifier, resize: str):
    """The image at `source` as uint8 at the model's size, or the error it raised."""
    try:
        return inputs.read_image(source, loaded.input_shape, resize)
    except CnnError as exc:
        return exc
