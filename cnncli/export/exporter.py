"""`export`: a trained model written in deployment formats, each file checked at once.

For each format and quantization asked for, the serving graph (`graph`) is converted
(`convert`) into a staging folder (`staging`), opened in its own runtime exactly as
``cnncli predict --model FILE`` opens it (`cnncli.infer.exported`), and run on the
check images beside the Keras model (`verify`). Only a file that passes is renamed
into the output folder, with its sidecar JSON; the folder gets a ``labels.txt``.

The check images are a seeded sample of the run's test split (``--check-images``, 1,000
by default), or the files given with ``--images`` (no labels: agreement only). ``int8``
calibrates on `CALIBRATION_IMAGES` training images.

>>> report = export("runs/mnist/latest", formats=["onnx", "litert"])   # doctest: +SKIP
>>> [(r.path.name, r.check.agreement) for r in report.results]         # doctest: +SKIP
[('model.onnx', 1.0), ('model.tflite', 1.0)]
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnncli import devices, files, runfolder, text
from cnncli.data import datasets, feed, records
from cnncli.errors import (
    EXIT_DATA_OR_MODEL,
    CnnError,
    ConfigError,
    DataError,
    ModelError,
    Stopped,
    Terminated,
    stopped_by,
)
from cnncli.export import convert, formats, graph, metadata, unsupported, verify
from cnncli.export.staging import Staging
from cnncli.infer import artefact, classifier, exported, metrics, sidecar
from cnncli.infer.base import in_parts
from cnncli.model import pretrained

CALIBRATION_IMAGES = 300  # "a few hundred training images" (LiteRT's and ONNX Runtime's advice)
DEFAULT_CHECK_IMAGES = 1000
FEW_CHECK_IMAGES = 100  # fewer check images than this: a note says the figures say little
BATCH = 256


@dataclass
class Exported:
    """One variant: where it went (or would have), its size, its check, whether kept."""

    format: str
    quantization: str
    path: Path
    size: int = 0
    check: verify.Check | None = None
    kept: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"format": self.format, "quantization": self.quantization,
                "path": str(self.path), "size_bytes": self.size, "kept": self.kept,
                "seconds": round(self.seconds, 2),
                "check": self.check.to_json() if self.check else None}


@dataclass
class Report:
    model: str
    images: str  # what the check ran on
    results: list[Exported] = field(default_factory=list)
    errors: list[CnnError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Exported]:
        """Variants whose check failed (their files were not kept)."""
        return [r for r in self.results if r.check and not r.check.passed]

    def to_dict(self) -> dict:
        return {"model": self.model, "images": self.images,
                "exports": [r.to_dict() for r in self.results],
                "errors": [e.to_dict() for e in self.errors], "notes": self.notes}


class ExportStopped(CnnError):
    """An export stopped before every file was made (`why`: a full disk, a folder made
    read-only meanwhile): the files finished before it stay (whole, checked, with their
    labels); the error says which, and which were not made. `report` holds what was done
    before it (failed checks and errors included), for the command to show.

    >>> raise ExportStopped(report, rest, folder, "cannot write the export: No space "
    ...                     "left on device", hint="free some disk space")  # doctest: +SKIP
    ExportStopped: export/: cannot write the export: No space left on device; kept:
    model.onnx (checked); not made: litert. Hint: free some disk space; export the ones...
    """

    exit_code = EXIT_DATA_OR_MODEL

    def __init__(self, report: Report, rest: list, folder: Path, why: str, *,
                 hint: str | None = None, output: str | Path | None = None):
        self.report = report
        kept = [r.path.name for r in report.results if r.kept]
        then = ((f"export the ones not made: the same command with {_flags(rest, output)}; "
                 if rest else "")
                + "the kept files are whole") if kept else "run the export again"
        super().__init__(
            f"{why}; " + (f"kept: {', '.join(kept)} (checked); " if kept
                          else "no file was kept; ")
            + (f"not made: {', '.join(v.label for v in rest)}" if rest
               else "every export was made"), file=str(folder),
            hint=f"{hint}; {then}" if hint else then)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "report": self.report.to_dict()}


class ExportInterrupted(Stopped, ExportStopped):
    """Ctrl-C (or SIGTERM: `terminated`) during an export (see `ExportStopped`): exits
    130 (143) and says ``Interrupted`` (``Terminated``) in JSON, as any command stopped
    so.

    >>> raise ExportInterrupted(report, rest, folder)      # doctest: +SKIP
    ExportInterrupted: export/: Ctrl-C: the export stopped; kept: model.onnx (checked);
    not made: litert, openvino. Hint: ...
    """

    def __init__(self, report: Report, rest: list, folder: Path, *, terminated: bool = False,
                 output: str | Path | None = None):
        super().__init__(report, rest, folder,
                         f"{stopped_by(terminated)}: the export stopped",
                         terminated=terminated, output=output)


def _flags(variants: list, output: str | Path | None = None) -> str:
    """The export options that make `variants` and no other (those made are refused as
    existing): formats with the same quantizations together, `output` (``--output``).

    >>> v = [formats.Variant(formats.FORMATS[f], q) for f, q in (("onnx", "int8"),
    ...      ("litert", "none"), ("litert", "int8"), ("openvino", "none"))]
    >>> _flags(v, "out")
    '--format onnx --quantize int8 --output out, then --format litert --quantize none,int8 --output out, then --format openvino --output out'
    >>> _flags([v[0], formats.Variant(formats.FORMATS["litert"], "int8")])
    '--format onnx,litert --quantize int8'
    """  # noqa: E501
    by_format: dict[str, list[str]] = {}
    for v in variants:
        by_format.setdefault(v.format.name, []).append(v.quantization)
    together: dict[tuple, list[str]] = {}
    for name, quantized in by_format.items():
        together.setdefault(tuple(quantized), []).append(name)
    where = f" --output {text.arg(output)}" if output is not None else ""
    return ", then ".join(f"--format {','.join(names)}" + (
        "" if quantized == ("none",) else f" --quantize {','.join(quantized)}") + where
        for quantized, names in together.items())


@dataclass
class Samples:
    """uint8 check images at the export's input, their labels, calibration images."""

    images: np.ndarray
    labels: np.ndarray | None
    calibration: np.ndarray | None
    shape: tuple[int, int, int]
    source: str
    notes: list[str] = field(default_factory=list)  # what reading the data warned about


def export(target: str | Path, *, formats: list[str], quantize: list[str] = ("none",),
           output: str | Path | None = None, force: bool = False,
           images: list[str] | None = None, data: str | None = None,
           data_dir: str | None = None, offline: bool = False,
           max_drop: float = verify.DEFAULT_MAX_DROP,
           check_images: int = DEFAULT_CHECK_IMAGES) -> Report:
    """Export `target` (a run or a ``.keras`` file); see the module docstring."""
    formats, quantize = text.as_list(formats), text.as_list(quantize)  # ("onnx" alone: one format)
    images = None if images is None else text.as_list(images)
    variants, notes = _plan(formats, quantize, max_drop, check_images)
    if exported.kind(target):
        raise ConfigError("this is an exported file already; export takes a run folder "
                          "or a .keras file", file=str(target))
    if str(target) in pretrained.REGISTRY and not Path(target).exists():
        raise ConfigError(f"'{target}' is a pretrained model; export takes a run folder or "
                          "a .keras file", hint="save the model as a .keras file first")
    reference = classifier.load(str(target))
    notes += artefact.unfinished(reference.artefact, "exports")
    folder, exact = _destination(output, reference, variants)
    needing = sorted({exported.needs_utf8_path(folder, v.format.name) for v in variants}
                     - {None})
    if needing:
        raise ConfigError(f"{' and '.join(needing)} cannot open a file whose path holds bytes "
                          "that are not UTF-8, so the export could not be checked",
                          file=str(folder),
                          hint="give an --output whose name is UTF-8 (or --format openvino)")
    calibrate = any(v.quantization == "int8" for v in variants)
    read = [artefact.training_data(reference.artefact, reference.meta, data).name] \
        if not images or calibrate else []
    for source in [*read, *(images or [])]:
        if source:  # the data read to check the exports, class folders: never written into
            datasets.check_output_outside(folder, source)
    targets = {v: _targets(v, folder, exact) for v in variants}
    _refuse_existing(targets, folder, reference.class_names, force)  # (before a folder is made)
    made = files.missing_folders(folder)
    try:
        files.writable_folder(folder)
        busy = ConfigError("another cnncli export is writing into this folder now",
                           file=str(folder), hint="wait for it to finish, or give another "
                           "--output")
        with files.only_writer(folder, busy):  # checked again under the lock: what the
            _refuse_existing(targets, folder, reference.class_names, force)  # other wrote
            report = _export_all(reference, variants, targets, folder, notes, images=images,
                                 data=data, data_dir=data_dir, offline=offline, force=force,
                                 max_drop=max_drop, check_images=check_images,
                                 calibrate=calibrate, output=output)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        raise ModelError(f"cannot write the export: {exc.strerror or exc}", file=str(folder),
                         hint="free some disk space, or give another --output") from None
    finally:  # a folder it made and left empty (failed, nothing kept) goes again
        files.remove_empty(made)
    return report


def _precision_here() -> list[str]:
    """A note when the run's own predict, evaluate and explain compute in another
    precision here by default than the float32 the check and the exported files use: the
    check's tiny differences are not what a user finds between `predict` and the file."""
    here = devices.decide("auto", "auto", devices.visible_gpus(), devices.tf_cpu_threads(),
                          cpu_bf16=devices.cpu_bf16_units(), one_device=True).precision
    if here == "float32":
        return []
    return [f"the check compares in float32, as the exported files compute; predict, "
            f"evaluate and explain of the model itself compute in {here} on this machine "
            "(--precision auto), so their probabilities differ a little from the files' "
            "(--precision float32 gives the files' numbers)"]


def _labels_on_one_line(class_names) -> list[str]:
    """A note for each class name ``labels.txt`` (one name a line) cannot hold as it is."""
    return [f"the class name {name!r} has a line break: labels.txt has it on one line, as "
            f"{sidecar.labels_text([name])[:-1]!r} (the JSON's class_names as it is)"
            for name in map(str, class_names) if sidecar.labels_text([name]) != f"{name}\n"]


def _export_all(reference, variants, targets, folder: Path, notes: list[str], *, images,
                data, data_dir, offline, force: bool, max_drop: float,
                check_images: int, calibrate: bool, output=None) -> Report:
    samples = _samples(reference, images, data, data_dir, offline, check_images, calibrate)
    notes += samples.notes
    if samples.calibration is not None and len(samples.calibration) < CALIBRATION_IMAGES:
        calibrated = text.count(len(samples.calibration), "training image")
        notes.append(f"int8 calibrated on {calibrated} only "
                     f"({CALIBRATION_IMAGES} when there are that many): its ranges may not "
                     "fit other images")
    if len(samples.images) < FEW_CHECK_IMAGES:
        notes.append(f"the check ran on {text.count(len(samples.images), 'image')} only: its "
                     "figures "
                     f"say little (at least {FEW_CHECK_IMAGES} are advised)")
    notes += _precision_here() + _labels_on_one_line(reference.class_names)
    wrapper = graph.serving_model(reference.model, samples.shape, reference.preprocessing)
    expected = in_parts(reference.probabilities, samples.images, BATCH)
    scores = metrics.not_probabilities(expected)
    if scores:  # said now: a client written from the README would take them as such
        notes.append(metrics.scores_note(
            reference.name, "the files' output `probabilities` holds its raw scores (the "
            "JSON's output.values says `scores`); a client takes the largest as the class, "
            "or applies a softmax"))
    report = Report(reference.name, samples.source, notes=notes)
    failures = []  # (format, error)
    with Staging(folder) as stage:
        (stage.path / "scratch").mkdir()
        for k, v in enumerate(variants):
            rest = variants[k:]
            try:
                result = _export_one(v, targets[v], stage, wrapper, samples, expected,
                                     reference, force, max_drop, scores, report.notes)
                report.results.append(result)
                rest = variants[k + 1:]
                if result.kept and sum(r.kept for r in report.results) == 1:
                    # with the first file, not the last: an export stopped half-way
                    # (Ctrl-C, SIGTERM) leaves its kept files with their labels
                    with stage.holding():
                        _publish_labels(stage, folder, reference.class_names)
            except CnnError as exc:  # (a signal its converter swallowed: checked below)
                report.errors.append(exc)
                failures.append((v.format.name, exc))
                rest = variants[k + 1:]
            except KeyboardInterrupt as stop:  # SIGTERM too: the staging's handler
                raise ExportInterrupted(report, rest, folder, output=output,
                                        terminated=isinstance(stop, Terminated)) from None
            except OSError as exc:  # a full disk: what was made before it is kept
                raise ExportStopped(report, rest, folder, "cannot write the export: "
                                    f"{exc.strerror or exc}", hint="free some disk space, "
                                    "or give another --output", output=output) from None
            # a signal held while files landed: stop, unless all is done (SIGTERM still
            # ends the process as asked, after saying what was kept)
            if stage.interrupted and (rest or stage.terminated):
                raise ExportInterrupted(report, rest, folder, terminated=stage.terminated,
                                        output=output)
    report.errors = unsupported.said_once(failures, {r.format for r in report.results
                                                     if r.kept})
    return report


def _plan(fmts, quantize, max_drop: float, check_images: int):
    variants, notes = formats.plan(fmts, quantize)
    formats.check_options(max_drop, check_images)
    formats.require_packages(variants)  # a missing extra fails before any work
    return variants, notes


def _destination(output, reference, variants) -> tuple[Path, Path | None]:
    """The output folder, and the file name when ``--output`` names one file."""
    if output is None:
        return runfolder.own_folder(reference.artefact.model_path.parent / "export"), None
    path = Path(output).expanduser()
    fmt = exported.SUFFIXES.get(path.suffix.lower())
    if (path / "saved_model.pb").is_file():  # a SavedModel, not a folder to export into
        if [v.format.name for v in variants] != ["saved_model"]:
            raise ConfigError(f"--output {output} is a SavedModel folder, not a folder to "
                              "export into", hint="give --output another folder, or ask "
                              "for --format saved_model alone to replace it (with --force)")
        path = path.absolute()  # `--output .` inside it: a name and a parent
        return path.parent, path
    if _serving_version(path, variants):  # TensorFlow Serving's serving/mnist/1
        return path.parent, path
    if path.suffix.lower() == ".bin" and any(v.format.name == "openvino" for v in variants):
        # OpenVINO's weights: the model is the .xml beside them
        raise ConfigError(f"--output {output} names OpenVINO's weights file; an OpenVINO "
                          "export is named by its .xml (the .bin of the same name is "
                          "written beside it)", hint=f"give --output {path.with_suffix('.xml')}"
                          ", or a folder")
    if fmt is None:
        return path, None
    if len(variants) != 1:
        raise ConfigError(f"--output {output} names one {fmt} file, but "
                          f"{len(variants)} exports were asked for: "
                          + ", ".join(v.label for v in variants),
                          hint="give --output a folder to write several files")
    if variants[0].format.name != fmt:
        wanted = variants[0].format
        raise ConfigError(f"--output {output} names a{'n' if fmt[0] in 'aeiou' else ''} "
                          f"{fmt} file, but the export asked for is {variants[0].label}",
                          hint=f"give --output a name ending in {wanted.suffix}, or a folder"
                          if wanted.suffix else "give --output a folder (a SavedModel is "
                          "a folder)")
    return path.parent if str(path.parent) else Path("."), path


def _serving_version(path: Path, variants) -> bool:
    """Whether `path` is a SavedModel to make: a folder not made yet named by a whole
    number (TensorFlow Serving's version folder: ``serving/mnist/1``), the SavedModel
    alone asked for. Any other folder is one to export into."""
    return [v.format.name for v in variants] == ["saved_model"] and \
        re.fullmatch("[0-9]+", path.name) is not None and not path.exists() and \
        not path.is_symlink()  # (str.isdigit takes "²", which no server reads as a version)


def _targets(v: formats.Variant, folder: Path, exact: Path | None) -> list[Path]:
    """The files of variant `v`, main file last, then its sidecar JSON."""
    if exact is not None:
        main = exact
        paths = ([main.with_suffix(v.format.companion)] if v.format.companion else []) + [main]
    else:
        base = formats.SAVED_MODEL_BASE if not v.format.suffix else "model"
        paths = v.format.files(folder, base, v.quantization)
    return [sidecar.sidecar_path(paths[-1]), *paths]


def _refuse_existing(targets: dict, folder: Path, class_names, force: bool) -> None:
    """Existing outputs are refused unless `force`; even then, a folder is replaced
    only by a SavedModel and only if it is one (never a folder of the user's)."""
    labels = folder / sidecar.LABELS_FILE
    for v, paths in [*targets.items(), (None, [labels])]:
        for path in paths:
            makes_folder = v is not None and path == paths[-1] and not v.format.suffix
            if path.is_dir() and not path.is_symlink() and not (
                    makes_folder and (path / "saved_model.pb").is_file()):
                what = ("a folder that is not a SavedModel" if makes_folder
                        else "a folder, where the export writes a file")
                raise ConfigError(f"the output is {what}: it is not replaced, even with "
                                  "--force", file=str(path),
                                  hint="choose another --output, or move that folder away")
    other_labels = labels.is_file() and sidecar.labels_on_disk(
        labels) != sidecar.labels_text(class_names)
    if other_labels:
        ours = {p for paths in targets.values() for p in paths}
        others = [p.name for p in sorted(folder.iterdir()) if p not in ours and exported.kind(p)]
        if others:  # their labels: a client beside them would read ours
            raise ConfigError(f"{labels.name} there names other classes, those of "
                              f"{', '.join(others[:3])}: it is not replaced, even with "
                              "--force (those files would be given the wrong labels)",
                              file=str(labels), hint="export into another folder, or move "
                              "those files away first")
    if force:
        return
    existing = [p for paths in targets.values() for p in paths
                if p.exists() or p.is_symlink()]  # a dangling link is in the way too
    if other_labels or (labels.is_symlink() and not labels.exists()):
        existing.append(labels)
    if existing:
        one = len(existing) == 1
        raise ConfigError(f"the output{'' if one else 's'} exist{'s' if one else ''} "
                          "already: " + text.some(existing, shown=4), hint="pass --force "
                          f"to replace {'it' if one else 'them'}, or choose another --output")


def _samples(reference, images, data, data_dir, offline, limit: int,
             calibrate: bool) -> Samples:
    """The check images (and labels), the calibration images, the export's input."""
    reading = artefact.training_data(reference.artefact, reference.meta, data, data_dir,
                                     offline)
    source = reading.name
    ds, said = None, []
    if source and (not images or calibrate):
        try:
            ds, said = datasets.load_noting(source, data_dir=reading.data_dir,
                                            offline=reading.offline)
        except CnnError as exc:
            if data:  # the user's own --data: its error as it is
                raise
            # the data the model was trained on, as recorded: moved or deleted since?
            exc.message = f"the data this model was trained on cannot be read: {exc.message}"
            instead = "give the data with --data NAME_OR_PATH" + (
                "" if calibrate else ", or check on image files with --images FILES")
            exc.hint = f"{exc.hint}; or {instead}" if exc.hint else instead
            raise
    if ds is None and not images:
        raise ConfigError("which images should the exports be checked on? this model file "
                          "does not say what data it was trained on", file=reference.name,
                          hint="pass --data NAME_OR_PATH or --images FILES")
    if calibrate and ds is None:
        raise ConfigError("int8 calibrates on training images, and this model file does "
                          "not say what data it was trained on", file=reference.name,
                          hint="pass --data NAME_OR_PATH")
    # The channels a client has: the training images' (grey MNIST into an RGB network
    # gives a 1-channel export, converted in the graph), as the model file records them;
    # never those of the check images (--data, --images), which only check.
    shape = tuple(reference.input_shape)
    resize = reference.meta.resize
    if ds is not None:
        records.refuse_resized(ds, resize, shape[:2], source)
    calibration = None
    if calibrate:  # its own seed: the check images must not depend on it
        pick = np.random.default_rng(1).permutation(len(ds.train))[:CALIBRATION_IMAGES]
        train, read = feed.images_at(ds.train, np.sort(pick), shape, resize=resize)
        calibration = train[read]  # a file that cannot be decoded is no calibration
        if not len(calibration):
            raise DataError(f"none of the {len(pick):,} training images picked to calibrate "
                            "the int8 export could be decoded", file=source,
                            hint="check the data (a copy cut short?), or give other data "
                                 "with --data NAME_OR_PATH")
    if images:
        checked, given, bad = _read_images(images, shape, resize, limit)
        of = f" of the {given:,}" if given > len(checked) else ""
        left_out = (f"; {len(bad):,} unreadable left out, e.g. {bad[0].file}: "
                    f"{bad[0].message}" if bad else "")
        noun = "image" if (given if of else len(checked)) == 1 else "images"
        return Samples(checked, None, calibration, shape,
                       f"{len(checked):,}{of} {noun} given with --images (no labels"
                       f"{left_out})", said)
    from cnncli.infer import evaluate as evaluation

    labels, _ = evaluation.labels_by_name(ds, reference, source)  # matched by name
    pick = np.arange(len(ds.test))
    if limit and limit < len(pick):
        pick = np.sort(np.random.default_rng(0).permutation(len(pick))[:limit])
    checked, read = feed.images_at(ds.test, pick, shape, resize=resize)
    if not read.any():
        raise DataError(f"none of the {len(pick):,} test images of {ds.name} could be "
                        "decoded: the exports cannot be checked on them", file=source,
                        hint="check on image files with --images FILES, or give other "
                        "data with --data NAME_OR_PATH")
    left_out = f", {np.count_nonzero(~read):,} unreadable left out" if not read.all() else ""
    return Samples(checked[read], labels[pick][read], calibration, shape,
                   f"{np.count_nonzero(read):,} test images of {ds.name} ({ds.source}"
                   f"{left_out})", said)


def _read_images(sources: list[str], shape, resize: str, limit: int
                 ) -> tuple[np.ndarray, int, list[DataError]]:
    """The files of ``--images``, as `cnncli predict` reads them for this model: a seeded
    sample of `limit` of them (``--check-images``; 0: all), how many were given, and the
    errors of those that could not be read (left out, as from ``--data``; none readable
    is an error)."""
    from cnncli.data import inputs
    from cnncli.errors import CnnError

    paths = inputs.expand_inputs(list(sources))
    if not paths:
        raise DataError("--images names no images", hint="give image files or folders")
    given = len(paths)
    if limit and limit < given:  # a folder of 100,000 photos is not read whole
        paths = [paths[i] for i in np.sort(np.random.default_rng(0).permutation(given)[:limit])]
    read, bad = [], []
    for path in paths:
        try:
            read.append(inputs.read_image(path, shape, resize))
        except CnnError as exc:
            bad.append(exc)
    if not read:
        raise DataError(f"none of the {len(paths):,} images of --images could be read "
                        f"(e.g. {bad[0].file}: {bad[0].message})",
                        hint="give images the model can read (PNG, JPEG, ...)")
    return np.stack(read), given, bad


def _export_one(v: formats.Variant, targets: list[Path], stage: Staging, wrapper,
                samples: Samples, expected, reference, force: bool,
                max_drop: float, scores: bool, notes: list[str]) -> Exported:
    """Convert, open in its runtime, check; rename into place if it passes (a
    warning of its check goes into `notes`)."""
    started = time.perf_counter()
    work = stage.path / f"{v.format.name}-{v.quantization}"
    work.mkdir()
    staged = [work / p.name for p in targets]
    main = staged[-1]
    info = metadata.describe(v.format.name, v.quantization, samples.shape, reference,
                             scores=scores)
    convert.CONVERTERS[v.format.name](convert.Job(
        wrapper, samples.shape, main, v.quantization, samples.calibration,
        stage.path / "scratch", metadata.embedded(info)))
    if v.format.name == "onnx":
        metadata.embed_onnx(main, info)
    metadata.write_sidecars(main, info)
    try:
        loaded = exported.load(main)  # as `cnncli predict --model FILE` will
        got = in_parts(loaded.probabilities, samples.images, BATCH)
    except ModelError as exc:
        raise ModelError(f"the {v.label} file does not run in its own runtime, so it was "
                         f"not kept: {exc.message}", file=str(targets[-1]),
                         hint=unsupported.another_format(v.format.name)) from None
    del loaded
    check = verify.compare(expected, got, samples.labels,
                           quantized=v.quantization != "none", max_drop=max_drop)
    info = metadata.describe(v.format.name, v.quantization, samples.shape, reference,
                             check.to_json(), scores=scores)
    metadata.write_sidecars(main, info)
    result = Exported(v.format.name, v.quantization, targets[-1], _size(staged[1:]),
                      check)
    if check.passed and check.warning:
        notes.append(f"{targets[-1].name}: {check.warning}")
    if check.passed:
        stage.publish(list(zip(staged, targets, strict=True)), replace=force)
        result.kept = True
    result.seconds = time.perf_counter() - started
    return result


def _size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() \
            else p.stat().st_size
    return total


def _publish_labels(stage: Staging, folder: Path, class_names) -> None:
    labels = sidecar.labels_text(class_names)
    dest = folder / sidecar.LABELS_FILE
    if sidecar.labels_on_disk(dest) == labels:
        return
    staged = stage.path / sidecar.LABELS_FILE
    files.write_atomic(staged, labels)
    stage.publish([(staged, dest)], replace=True)
