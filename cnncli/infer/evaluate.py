"""Evaluating a trained model on a test set: the figures, the confusions, the worst mistakes.

>>> report = evaluate("runs/mnist/latest")        # doctest: +SKIP
>>> report.result.accuracy                         # doctest: +SKIP
0.9912

Classes are matched by name: a test set whose class folders are named like the model's
classes is evaluated whatever their order; one with classes the model does not know is
refused. An evaluation on other data than the run's is written beside the run's own
(``eval-<data>/``), never over it, unless ``output`` names the run folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cnncli import files, plots, runfolder, text
from cnncli.data import datasets, feed, records
from cnncli.errors import ConfigError, DataError
from cnncli.infer import artefact, classifier, metrics
from cnncli.infer.base import check_batch_size
from cnncli.infer.predict import not_numbers
from cnncli.model import imagenet

WORST = 32  # misclassified examples shown in the PNG grid


@dataclass
class Report:
    model: str
    result: metrics.EvalResult
    dataset: str
    files: dict[str, str]
    failures: list[str]
    notes: list[str]
    precision: str = "float32"
    passes: list[str] = field(default_factory=list)  # the --fail-under thresholds met

    def to_dict(self) -> dict:
        return {"model": self.model, "dataset": self.dataset, "precision": self.precision,
                **self.result.to_dict(), "files": self.files, "failures": self.failures,
                "passes": self.passes, "notes": self.notes}


def evaluate(target: str | Path, *, data: str | None = None, data_dir: str | None = None,
             offline: bool = False, batch_size: int = 256, fail_under: list[str] = (),
             output: str | Path | None = None,
             model: classifier.Classifier | None = None,
             precision: str = "float32", all_images: bool = False,
             weights: str | None = None) -> Report:
    """Evaluate on the test split of the run's dataset (or `data`); see `Report`.
    ``all_images``: every image of data that has no test split of its own (a folder of
    class folders, a CSV without a split column; one class is then enough), not the
    seeded fifth a training run holds out: for photos the model was not trained on.
    ``weights``: a pretrained network's weights file (`target` its name), as predict's."""
    thresholds = metrics.parse_thresholds(text.as_list(fail_under))  # bad ones fail first
    for option, value in (("--data", data), ("--output", output)):
        if value is not None and not str(value).strip():
            raise ConfigError(f"{option} is empty", hint=f"give {option} a path, or leave "
                              "it out")
    check_batch_size(batch_size)
    clf = model or classifier.load(str(target), weights=weights, offline=offline,
                                   precision=precision)
    art = clf.artefact
    run_data = art.data if art else None
    reading = artefact.training_data(art, clf.meta, data, data_dir, offline)
    source = reading.name
    if not source:
        raise ConfigError("which data? this model file does not say what it was trained on",
                          file=clf.name, hint="pass --data NAME_OR_PATH")
    given = _data_id(data) if data is not None else None
    folder = _output_folder(output, art.run if art else None, data, given, run_data,
                            notes := [], clf.name, all_images=all_images)
    claimed = folder if folder in _CLAIMS else None
    made = []
    try:
        notes += artefact.unfinished(art, "evaluates")  # training now: its model so far
        if data is None and run_data and not datasets.exists(source):
            raise DataError(f"the data this run trained on is no longer at {source}",
                            file=str(art.run),
                            hint="if it moved, give its new place: cnncli evaluate "
                                 f"{text.arg(art.run)} --data NEW_PLACE")
        if folder is not None:
            datasets.check_output_outside(folder, source)
        made = files.missing_folders(folder) if folder else []
        if folder is not None:
            files.writable_folder(folder, "--output")  # found before the work
        ds, said = datasets.load_noting(source, data_dir=reading.data_dir,
                                        offline=reading.offline,
                                        test_fraction=1.0 if all_images else 0.2)
        notes += said
        records.refuse_resized(ds, clf.meta.resize, clf.input_shape[:2], source)
        labels, matched = labels_by_name(ds, clf, source)
        notes += matched
        trained = artefact.training_data(art, clf.meta).name  # (a file: its record)
        trained_on = bool(trained and _same_place(source, trained))
        notes += _split_notes(ds, source, data=data, all_images=all_images,
                              trained_on=trained_on, run=bool(art and art.run))
        if trained_on:
            notes += _changed_since_training(ds, artefact.held_out(clf.meta, art),
                                             artefact.held_out_count(clf.meta, art))
        result = _measure(ds, labels, clf, batch_size, notes)
        written = _write_files(folder, result, ds, clf, given or source, notes) \
            if folder else {}
        _unclaim(claimed, failed=False)  # its evaluation.json says whose it is now
    except BaseException:  # bad data, no readable image, Ctrl-C: no empty folder left
        files.remove_empty(made)
        _unclaim(claimed)
        raise
    named = ds.source if ds.source.startswith(ds.name) else f"{ds.name} ({ds.source})"
    verdicts = metrics.judge_thresholds(result, thresholds)
    return Report(clf.name, result, named, written,
                  [what for met, what in verdicts if not met], notes,
                  getattr(clf, "precision", "float32"),
                  [what for met, what in verdicts if met])


def _split_notes(ds, source: str, *, data, all_images: bool, trained_on: bool,
                 run: bool = True) -> list[str]:
    """What to know about which images are the test split: a held-out fifth, a test split
    of the data's own despite --all-images, or images the model trained on (`run`: the
    model is a run's, not a file apart from it)."""
    if ds.held_out and (data or not all_images):  # (the run's own: the fifth it never saw)
        whose = "a training run holds out" if data else \
            "this run held out from training" if run else "its training held out"
        return [f"{ds.name} has no test split of its own: its test images are the seeded "
                f"fifth {whose} ({len(ds.test)} of {len(ds.train) + len(ds.test)})"
                + ("; --all-images evaluates every image" if data else "")]
    if all_images and len(ds.train):
        return [f"{ds.name} has a test split of its own: its {len(ds.test)} test images are "
                "evaluated (--all-images is for a folder or CSV without one)"]
    if all_images and trained_on:
        return [f"--all-images on the data {'this run' if run else 'the model'} trained on "
                f"({source}): most of "
                "these images are ones the model learned from, so the figures are higher "
                "than on photos it has not seen"]
    return []


def _changed_since_training(ds, then: str | None, count: int | None = None) -> list[str]:
    """A note when `ds`, data the model trained on holding a fifth out, changed since:
    images added, removed or renamed move the seeded fifth onto images it trained on
    (`then`: the digest of the held-out images' names its training recorded; without
    one, `count`: how many there were, as an older run recorded)."""
    if not ds.held_out:
        return []
    if then is not None and then == ds.held_out_names():
        return []
    if then is None and (count is None or count == len(ds.test)):
        return []
    return [f"{ds.name} changed since the model trained (images added, removed or renamed, "
            "or a CSV's rows put in another order): "
            "the seeded fifth held out now takes other images, some of them ones the model "
            "trained on, so the figures may be too high; to evaluate on images it never "
            "saw, give them apart: a test/ folder beside train/, or --data NEW_PHOTOS "
            "--all-images"]


def _measure(ds, labels: np.ndarray, clf, batch_size: int,
             notes: list[str]) -> metrics.EvalResult:
    """The figures of `clf` on `ds`'s test split; images that cannot be read are left out
    (and said in `notes`). The loss is the cross-entropy of the probabilities computed."""
    probs, readable = [], []
    for images, _, weights in feed.split_batches(ds.test, clf.input_shape,
                                                 resize=clf.meta.resize,
                                                 batch_size=batch_size):
        probs.append(clf.probabilities(images))
        readable.append(weights > 0)
    probs, readable = np.concatenate(probs), np.concatenate(readable)
    kept, ids = np.flatnonzero(readable), ds.test.ids
    lost = int((~np.isfinite(probs[kept]).all(axis=1)).sum())
    if lost:  # its figures would be of nothing (NaN's class is the first)
        raise not_numbers(clf.name, count=lost, precision=getattr(clf, "precision", "float32"))
    if not readable.all():
        bad = np.flatnonzero(~readable)
        named = f": {text.some(ids[i] for i in bad)}" if ids else ""
        notes.append(f"{text.count(len(bad), 'test image')} could not be read and "
                     f"{'is' if len(bad) == 1 else 'are'} left out{named}")
    result = metrics.compute(labels[kept], probs[kept], clf.class_names,
                             ids=[ids[i] for i in kept] if ids else kept.tolist())
    result.misclassified = [  # positions in the test split, unreadables counted too
        replace(m, index=int(kept[m.index])) for m in result.misclassified]
    if metrics.not_probabilities(probs[kept]):  # raw scores: their cross-entropy means nothing
        notes.append(metrics.scores_note(
            clf.name, "the figures are by its highest score, with no loss and no worst "
            "mistakes (they are ranked by confidence)"))
        result.misclassified = []
        return result
    if ds.test.kind == "records" and result.misclassified:  # named as packed, not by place
        named = records.ids_at(ds.test, [m.index for m in result.misclassified])
        result.misclassified = [replace(m, id=ident) for m, ident in
                                zip(result.misclassified, named, strict=True)]
    result.loss = metrics.log_loss(probs[kept], labels[kept])
    return result


def labels_by_name(ds, clf, source: str) -> tuple[np.ndarray, list[str]]:
    """The test labels as indices of the model's classes, matched by class name; an error
    names `source`, the data as the user or the run gave it (a path or a known name), and
    the data's classes the model does not know. Names are compared in Unicode's composed
    form (NFC): macOS writes a folder 'é' as 'e' and an accent, which prints the same. A
    model of the 1000 ImageNet classes also knows them by WordNet ID (``n01440764``: the
    folders of ImageNet's own validation set); a name two of its classes share (ImageNet's
    ``crane``, a bird and a machine) is read as the first, and a note says so."""
    model_names = [text.composed(n) for n in clf.class_names]
    data_names = [text.composed(n) for n in ds.class_names]
    if data_names == model_names[:len(data_names)]:
        return ds.test.labels, []
    known = {name: i for i, name in reversed(list(enumerate(model_names)))}  # the first
    wordnet = imagenet.wordnet_ids(model_names) or []  # an ImageNet model's classes
    known.update((wordnet_id, i) for i, wordnet_id in enumerate(wordnet))
    unknown = [given for given, n in zip(ds.class_names, data_names, strict=True)
               if n not in known]  # (named as the data names them: more classes, some
    if unknown:  # unknown)
        what = (f"the data has {ds.num_classes} classes but the model predicts "
                f"{len(model_names)}" if ds.num_classes > len(model_names)
                else "the data has classes the model does not know")
        shown = text.some((_quoted(n) for n in unknown), shown=5)
        raise DataError(
            f"{what}: {shown} {'is' if len(unknown) == 1 else 'are'} not among the "
            "model's classes", file=source,
            hint="the model's classes are " + ", ".join(_quoted(n) for n in
                                                        clf.class_names[:10])
            + ("..." if len(model_names) > 10 else "") + "; " + _naming_hint(ds, source))
    index = np.array([known[n] for n in data_names])
    some = (f"{len(data_names)} of the model's {len(model_names)} classes"
            if len(data_names) < len(model_names) else "")
    notes = [f"the data's classes{f' ({some})' if some else ''} are in another order than "
             "the model's: matched by name" if np.any(np.diff(index) < 0) else
             f"the data has {some}: matched by name"]
    for name in data_names:
        shared = [i for i, n in enumerate(model_names) if n == name]
        if len(shared) > 1:
            notes.append(f"'{name}' names {len(shared)} of the model's classes ("
                         + ", ".join(map(str, shared)) + f"): read as class {shared[0]}"
                         + ("; name its folder by WordNet ID ("
                            + ", ".join(wordnet[i] for i in shared) + ") to choose"
                            if wordnet else ""))
    return index[ds.test.labels], notes


def _quoted(name: str) -> str:
    """A class's name in quotes, as it is (escaped once, where the message is printed).

    >>> _quoted("cat"), _quoted("lat\\udce9")
    ("'cat'", "'lat\\\\xe9'")
    """
    return f"'{text.as_text(name)}'"


def _naming_hint(ds, source: str) -> str:
    """How this kind of data names its classes, to name them as the model's are."""
    if datasets.known_name(str(source)) is not None:
        return "evaluate on the data the model was trained for (--data)"
    if ds.test.kind == "files":
        return ("name the class folders (or a CSV's labels) the same, or evaluate on the "
                "data the model was trained for")
    if ds.test.kind == "records":
        return ("pack data whose classes are named the same, or evaluate on the data the "
                "model was trained for")
    return ("give the data these class names (an .npz: its class_names array, in label "
            "order), or evaluate on the data the model was trained for")


def _same_place(a: str, b: str) -> bool:
    """True if data names `a` and `b` are the same dataset or path (``photos/`` and
    ``./photos``)."""
    if a == b:
        return True
    try:
        return Path(a).exists() and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _data_id(data: str) -> str:
    """`--data` as evaluation.json records it: a known name, else the absolute path."""
    return data if datasets.known_name(data) else os.path.abspath(os.path.expanduser(data))


#: Bytes of the data's name in an ``eval-<data>`` folder's name (of 255).
MAX_SLUG = 200


def _output_folder(output, run: Path | None, data: str | None, given: str | None, run_data,
                   notes: list[str], model: str = "", *, all_images: bool = False
                   ) -> Path | None:
    """Where the files go: `output`, else the run's folder, or for other data than the
    run's (`given`: `_data_id`), or for every image of the run's data (`all_images`:
    ``-all`` added to its name), an ``eval-<data>`` folder inside it (the run's own
    evaluation of its held-out images is kept)."""
    if output is not None:  # absolute, as a run's own folder is (evaluation.json's paths)
        return Path(output).expanduser().absolute()
    if run is None:
        own = artefact.model_instead(model)
        said = (f"{Path(model).name} is not the model of its run ({own.name} is)" if own
                else "a model file has no run folder")
        notes.append(f"{said}: confusion.png, misclassified.png and evaluation.json are "
                     "written only with --output DIR")
        return None
    own_data = data is None or (run_data is not None and run_data.name in (data, given))
    if own_data and not all_images:
        return run
    given = given or run_data.name
    name = Path(given).name  # of "." too: its folder's name
    # cut to leave room for eval-, -all and -2 in a name's 255 bytes
    slug = re.sub(r"[^\w.-]+", "_", name).strip("_.")  # letters of any script: 写真 stays
    slug = slug.encode()[:MAX_SLUG].decode("utf-8", "ignore") or "data"  # (bytes: a name's)
    folder = _own_folder(run / f"eval-{slug}{'-all' if own_data else ''}", given)
    which = "the run's data with --all-images" if own_data else "other data than the run's"
    notes.append(f"evaluated on {which}: the files are in {folder}")
    return folder


def _own_folder(folder: Path, data: str) -> Path:
    """`folder`, or ``folder-2``, ``-3``...: the first that is new or holds an evaluation
    of the same `data` (its evaluation.json says which, as `text.as_text` writes it; one
    written before it said is of other data), so another folder of the same name does not
    replace it."""
    for k in range(1, 1000):
        candidate = runfolder.own_folder(folder if k == 1 else
                                         folder.with_name(f"{folder.name}-{k}"))
        try:
            earlier = files.read_json(candidate / "evaluation.json").get("data")
        except (OSError, ValueError, AttributeError):  # new (or not an evaluation cnncli
            if _claimed(candidate, data):  # can read: written over), unless another
                return candidate  # evaluation of other data chose it a moment ago
            continue
        if earlier == text.as_text(data):
            return candidate
    return folder


#: In an ``eval-<data>`` folder while an evaluation that chose it runs: the data it is
#: of, so that another evaluation at the same time, of other data of the same name, takes
#: the next folder (both chose the same one, and one's files replaced the other's).
CLAIM = ".cnncli-evaluating"


#: This process's claims: each folder's claim file, held open and locked while the
#: evaluation runs (one left by an evaluation that was killed is not locked: taken over).
_CLAIMS: dict[Path, int] = {}


def _claimed(folder: Path, data: str) -> bool:
    """Claim `folder` for an evaluation of `data`: True if it is this one's now (or an
    evaluation of the same data has it: the same files), False if another's."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / CLAIM, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:  # (a file in its way, no right to write: said by the checks that
        return True  # follow, as for a folder not claimed)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another evaluation's, running
        theirs = os.pread(fd, 100_000, 0).decode(errors="surrogateescape")  # (as written)
        os.close(fd)
        return theirs == data
    except OSError:  # a file system without locks (some NFS mounts): claimed unlocked, as
        pass  # the other locks of cnncli go on without one there
    os.ftruncate(fd, 0)
    os.write(fd, data.encode(errors="surrogateescape"))
    _CLAIMS[folder] = fd
    return True


def _unclaim(folder: Path | None, *, failed: bool = True) -> None:
    """Let go of this process's claim on `folder` (`_claimed`); for a `failed` evaluation
    the folder too, if nothing else is in it."""
    fd = _CLAIMS.pop(folder, None) if folder is not None else None
    if fd is None:
        return
    with contextlib.suppress(OSError):
        (folder / CLAIM).unlink()
    os.close(fd)
    if failed:
        with contextlib.suppress(OSError):
            folder.rmdir()  # (only if empty)


def _write_files(folder: Path, result: metrics.EvalResult, ds, clf,
                 data: str, notes: list[str]) -> dict[str, str]:
    written = {
        "confusion_matrix": str(plots.confusion_matrix(result.confusion, clf.class_names,
                                                       folder / "confusion.png")),
    }
    worst = result.misclassified[:WORST]
    if worst:
        images, _ = feed.images_at(ds.test, [w.index for w in worst], clf.input_shape,
                                   resize=clf.meta.resize)  # (mistakes: all were read)
        titles = [plots.misclassified_title(w.true_name, w.predicted_name, w.confidence)
                  for w in worst]
        written["misclassified"] = str(plots.image_grid(images, titles,
                                                        folder / "misclassified.png"))
    else:  # none to show (no mistake, or raw scores: no confidence to rank them by): an
        (folder / "misclassified.png").unlink(missing_ok=True)  # earlier one would mislead
    path = folder / "evaluation.json"
    files.write_json(path, {"data": data, "model": clf.name, "precision": getattr(
        clf, "precision", "float32"), **result.to_dict(), "notes": notes})
    written["evaluation"] = str(path)
    return written
