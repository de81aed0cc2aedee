"""Grad-CAM pictures of image files: one PNG per image, the heat map over the image as
the model sees it, titled with the class and its probability.

An image that cannot be read gets its own error; the others are still explained.

>>> clf = classifier.load("runs/mnist/latest")                 # doctest: +SKIP
>>> result = explain(["7.png"], clf, output="cams")            # doctest: +SKIP
>>> result.pictures[0].to_dict()["picture"]                        # doctest: +SKIP
'cams/gradcam_7.png'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cnncli import plots, text
from cnncli.errors import CnnError, ConfigError, suggest
from cnncli.files import missing_folders, remove_empty, writable_folder
from cnncli.viz import conv_layers, gradcam, model_input, mosaic
from cnncli.viz.pictures import file_name

#: Images per Grad-CAM batch.
BATCH = 16
#: Class names listed in full in an error up to this many classes.
LIST_CLASSES = 40


@dataclass
class Explained:
    png: Path
    image: str
    class_name: str
    probability: float
    layer: str
    evidence: bool = True  # False: nothing at the layer raised the class (all dark)
    wordnet_id: str | None = None  # an ImageNet model's class (two share `crane`)

    def to_dict(self) -> dict:
        return {"picture": str(self.png), "image": self.image, "class": self.class_name,
                **({"wordnet_id": self.wordnet_id} if self.wordnet_id else {}),
                "probability": text.significant(self.probability), "layer": self.layer,
                "evidence": self.evidence}


@dataclass
class Explanation:
    pictures: list[Explained] = field(default_factory=list)
    errors: list[CnnError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the layer looked at


def class_index(class_names: list[str], name: str) -> int:
    """The index of the class called `name` (for ImageNet's classes, a WordNet ID too:
    what tells apart the two ``crane``s), or a `ConfigError` naming the valid ones, or
    the IDs of a name two classes share.

    >>> class_index(["cat", "dog"], "dog"), class_index(["cat", "re\u0301d"], "r\u00e9d")
    (1, 1)
    >>> class_index(["cat", "lat\\\\xe9"], "lat\\udce9")  # the name's byte, typed as it is
    1
    """
    from cnncli.model import imagenet

    names = [str(n) for n in class_names]
    wordnet = imagenet.wordnet_ids(names) or []
    if name in wordnet:
        return wordnet.index(name)
    # 'é' typed, 'e' and an accent named; a Latin-1 byte typed, its \\xNN the model holds
    composed = [text.composed(text.as_text(n)) for n in names]
    found = [i for i, n in enumerate(composed) if n == text.composed(text.as_text(name))]
    if len(found) > 1 and wordnet:  # (ImageNet's: a bird and a machine are both crane)
        raise ConfigError(f"two classes of the model are named '{name}'", hint="name the "
                          f"one meant by its WordNet ID: {' or '.join(wordnet[i] for i in found)}"
                          " (as predict's JSON gives them)")
    if found:
        return found[0]
    close = suggest(name, names)
    hint = f"{close} " if close else ""
    hint += (f"the classes are: {', '.join(names)}" if len(names) <= LIST_CLASSES else
             f"the model has {len(names)} classes, from '{names[0]}' to '{names[-1]}'")
    raise ConfigError(f"the model has no class '{name}'", hint=hint)


def explain(sources: list[str], clf, *, class_name: str | None = None,
            layer: str | None = None, output: str | Path = ".",
            resize: str | None = None) -> Explanation:
    """Write ``gradcam_<image>.png`` into the folder `output` for every image in `sources`,
    for `class_name` (default: the class the model predicts) at `layer` (default: the
    last convolution's maps, `conv_layers.last_volume`); `resize` overrides the model's
    resize mode."""
    cam = gradcam.GradCam(conv_layers.keras_model(clf, "Grad-CAM"), layer, clf.name)
    wanted = None if class_name is None else class_index(clf.class_names, class_name)
    result, names = Explanation(warnings=cam.warnings), _Names(writable_folder(output,
                                                                          create=False))
    for start in range(0, len(sources), BATCH):
        seen = []
        for source in sources[start:start + BATCH]:
            try:
                seen.append(model_input.read(source, clf, resize=resize))
            except CnnError as exc:
                result.errors.append(exc)
        if not seen:
            continue
        # The probabilities as predict computes them (its compiled function: in bfloat16
        # the gradient's eager run differs in the fourth digit), and its top class.
        probabilities = clf.probabilities(np.stack([s.pixels for s in seen]))
        classes = np.argmax(probabilities, axis=-1) if wanted is None else [wanted] * len(seen)
        maps = [replace(heat, probability=float(p[heat.class_index])) for heat, p in zip(
            cam(np.concatenate([np.asarray(s.x) for s in seen]), classes), probabilities,
            strict=True)]
        made = [] if result.pictures else missing_folders(output)
        if not result.pictures:  # made with the first picture: a failure leaves none
            writable_folder(output)
        try:
            for image, heat in zip(seen, maps, strict=True):
                result.pictures.append(_write(image, heat, clf.class_names, names.next(image)))
        except BaseException:  # the first picture not written (a full disk): no folder
            if not result.pictures:
                remove_empty(made)
            raise
    result.warnings += [f"{p.image}: nothing at {p.layer} raised '{p.class_name}' (the "
                        "Grad-CAM is zero everywhere: the overlay is dark all over); try "
                        "another class (explain --class) or layer (--layer)"
                        for p in result.pictures if not p.evidence]
    return result


def check_folder(folder: str, model: str, option: str = "--explain") -> str:
    """The folder Grad-CAM pictures of `model` will go into (`option`'s value, ``~``
    expanded: no shell expands ``--explain=~/cams``), checked before any work: an exported
    model is refused (Grad-CAM looks into the layers), and so is a folder named like a
    picture or one that cannot be written to. It is made with the first picture."""
    import os

    from cnncli.infer import exported

    if exported.kind(model):
        raise exported.not_looked_into(f"{option} (Grad-CAM)", model, "--model")
    folder = os.path.expanduser(folder)
    plots.check_picture_folder(folder, option)
    writable_folder(folder, create=False)
    return folder


def check_model(clf) -> None:
    """Raise a `ConfigError` if Grad-CAM cannot look into `clf` (no convolutions), before
    it predicts anything."""
    conv_layers.require_convolutions(conv_layers.keras_model(clf, "Grad-CAM"), "Grad-CAM",
                                     clf.name)


def for_predictions(result, clf, folder: str, resize: str | None = None
                    ) -> CnnError | None:
    """Grad-CAM of each predicted image's top class (`cnncli predict --explain`) into
    `folder`: each image of `result` (a `cnncli.infer.predict.Result`) gets its picture's
    file (``gradcam``), images it cannot read join the result's errors and its warnings
    the result's. Its own failure (a full disk) is returned, not raised: it is said after
    the predictions (one JSON document with --format json), and --skip-bad does not excuse
    it."""
    if not result.images:
        return None
    try:
        cams = explain([r.file for r in result.images], clf, output=folder, resize=resize)
    except CnnError as exc:
        return exc
    made = {picture.image: str(picture.png) for picture in cams.pictures}
    for r in result.images:
        r.gradcam = made.get(r.file)
    result.errors += cams.errors
    result.warnings += cams.warnings  # as `cnncli explain` says them
    return None


def _write(image: model_input.ModelInput, heat: gradcam.Heatmap, class_names,
           png: Path) -> Explained:
    from cnncli.model import imagenet

    name = str(class_names[heat.class_index])
    wordnet = (imagenet.wordnet_ids(list(class_names)) or [None] * len(class_names))[
        heat.class_index]
    shown = f"{name} ({wordnet})" if name in imagenet.shared_names() and wordnet else name
    picture = mosaic.enlarged(gradcam.overlay(image.pixels, heat.heatmap))
    evidence = bool(heat.heatmap.max() > 0)
    title = f"{shown}: {text.probability(heat.probability)}   (Grad-CAM at {heat.layer}" + (
        ")" if evidence else ": no evidence for it there)")
    key = ("dark: no evidence, bright: the most", gradcam.scale_bar(picture.shape[1]))
    plots.pixel_panels([(title, picture), key], png)
    return Explained(png, image.source, name, heat.probability, heat.layer, evidence,
                     wordnet)


class _Names:
    """``gradcam_<image>.png`` in a folder, with ``_2``, ``_3``... for images of one name:
    one name as a Mac's or Windows' disk sees it (``Cat.jpg`` and ``cat.jpg``, an accent
    in either Unicode form), where the second picture would overwrite the first."""

    def __init__(self, folder: Path):
        self.folder, self.used = folder, set()

    def next(self, image: model_input.ModelInput) -> Path:
        base = f"gradcam_{file_name(model_input.stem(image.source))}"
        name, n = base, 1
        while text.composed(name).casefold() in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(text.composed(name).casefold())
        return self.folder / f"{name}.png"

