"""The model a command was pointed at: a run folder, its ``latest`` link, or a ``.keras``
file, and what is known about how it was trained (`ModelMeta`, the run's data section).

>>> art = resolve("runs/mnist/latest")       # doctest: +SKIP
>>> art.model_path.name, art.meta.class_names[:3]   # doctest: +SKIP
('best.keras', ('0', '1', '2'))
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnncli import config, runfolder, text
from cnncli.errors import CnnError, ConfigError, ModelError
from cnncli.model.meta import ModelMeta
from cnncli.run import rundir
from cnncli.run.status import FINISHED, RunStatus

if TYPE_CHECKING:
    import keras


@dataclass
class Artefact:
    """A model file, the run it belongs to (if any), its metadata and the run's data."""

    model_path: Path
    run: Path | None
    meta: ModelMeta
    data: config.DataSection | None = None  # the run config's `data:`, for a run


def resolve(target: str | os.PathLike) -> Artefact:
    """The model at `target`: a ``.keras`` file, or a run's ``best.keras`` (else its
    ``model.keras``). Raises `ModelError` for a run without a model yet."""
    from cnncli.model import modelfile, saved_meta  # import Keras: only for Keras models

    text = os.fspath(target)  # not Path(): it would turn gs://b/m into gs:/b/m
    if not text.strip():  # Path("") is the current folder
        raise ConfigError("the run or model to use is an empty name",
                          hint="give a run folder (runs/mnist/1) or a model file")
    path = Path(text)
    if modelfile.is_remote(text) or text.endswith(".keras") or path.is_file():
        modelfile.check_model_path(text)
        path = path if modelfile.is_remote(text) else path.absolute()  # named as runs are
        meta = saved_meta.read(path)
        run = None if modelfile.is_remote(text) else _run_whose_model(path)
        if run is not None:  # its run's own model: the run, as `cnncli evaluate RUN` takes it
            with contextlib.suppress(CnnError):  # a damaged config: the file on its own
                return Artefact(path, run, meta, config.load(run / rundir.CONFIG).data)
        return Artefact(path, None, meta)
    run = rundir.find(path)
    model = runfolder.model_file(run)
    if model is None:
        if _finished(run):  # it had one: removed or lost since
            raise ModelError("this run finished, but its model files (best.keras, "
                             "model.keras) are gone", file=str(run),
                             hint="restore them from a copy, or train the run again")
        raise ModelError("this run has no model file yet (it did not finish an epoch)",
                         file=str(run), hint=rundir.no_model_hint(run))
    saved = config.load(run / rundir.CONFIG)
    return Artefact(model, run, saved_meta.read(model), saved.data)


@dataclass(frozen=True)
class DataSource:
    """The data a command reads for a model (`training_data`), as `datasets.load` takes
    it."""

    name: str | None  # None: the model does not say what it was trained on
    data_dir: str | None = None
    offline: bool = False


def training_data(art: Artefact | None, meta: ModelMeta, data: str | None = None,
                  data_dir: str | None = None, offline: bool = False) -> DataSource:
    """What evaluate and export read for the model `art` (or a model file's `meta`):
    `data` (``--data``), else its run's data, with the run's ``data_dir`` and ``offline``
    unless given, else the data its file says it was trained on."""
    run_data = art.data if art else None
    return DataSource(data or (run_data.name if run_data else None) or _on_disk(meta.dataset),
                      data_dir or (run_data.data_dir if run_data else None),
                      offline or bool(run_data and run_data.offline))


def _on_disk(path: str | None) -> str | None:
    """`path` as a model's record holds it, or, where that is not there, the path an
    exported file's JSON meant by it (written with `text.as_text`: ``ph\\xe9`` for a
    Latin-1 folder's name)."""
    if path and not os.path.exists(path) and os.path.exists(raw := text.from_text(path)):
        return raw
    return path


def held_out(meta: ModelMeta, art: Artefact | None) -> str | None:
    """The digest of the images the model's training held out (`ModelMeta.held_out`); for
    a model saved before its file held it, the one its run recorded
    (`RunMetrics.dataset.held_out`)."""
    if meta.held_out:
        return meta.held_out
    recorded = _run_record(art)
    return recorded.held_out if recorded else None


def held_out_count(meta: ModelMeta, art: Artefact | None) -> int | None:
    """How many test images the model's run held out, as its metrics.json says, for a run
    that recorded no digest of which (`held_out`: a cnncli before 2026-12-07): what is
    left to tell that the fifth held out is other images now."""
    recorded = None if held_out(meta, art) else _run_record(art)
    return recorded.test or None if recorded else None


def _run_record(art: Artefact | None):
    """What the model's run recorded of its data (`RunMetrics.dataset`), None without a
    run or a record (not finished; a damaged one: `cnncli runs` says so)."""
    if art is None or art.run is None:
        return None
    from cnncli.run.record import RunMetrics

    try:
        recorded = RunMetrics.read(art.run)
    except ValueError:
        return None
    return recorded.dataset if recorded else None


def _run_whose_model(path: Path) -> Path | None:
    """The run folder holding `path` as the model it evaluates and exports (its
    ``best.keras``, else ``model.keras``: `runfolder.model_file`), else None (another file,
    such as ``model.keras`` beside a ``best.keras``, or a file outside a run)."""
    own = _model_of_run_holding(path)
    return own.parent if own is not None and own == path.resolve() else None


def model_instead(path: str | os.PathLike) -> Path | None:
    """For a model file of a run that is not the run's model (``model.keras`` beside a
    ``best.keras``), the run's model; None otherwise."""
    path = Path(path)
    own = _model_of_run_holding(path) if path.is_file() else None
    return own if own is not None and own != path.resolve() else None


def _model_of_run_holding(path: Path) -> Path | None:
    """The model (resolved) of the run folder `path` is in; None outside a run."""
    folder = path.resolve().parent
    if not runfolder.is_run(folder):
        return None
    own = runfolder.model_file(folder)
    return own.resolve() if own is not None else None


def _finished(run: Path) -> bool:
    try:
        return RunStatus.read(run).status == FINISHED
    except (OSError, ValueError):
        return False


def unfinished(art: Artefact | None, does: str, again: str | None = None) -> list[str]:
    """A note for the model of a run that has not finished (training now, stopped,
    failed, killed): what the command `does` (``exports``, ``evaluates``) is the model it
    had then, and may not be what it ends with; `again`: what to do then (`does` without
    its s)."""
    run = art.run if art else None
    if run is None:
        return []
    from cnncli.run import listing

    summary = listing.summarize(run)
    if summary.status in (FINISHED, listing.DAMAGED):
        return []
    after = f" after {text.count(summary.epochs, 'epoch')}" if summary.epochs else ""
    again = again or does.removesuffix("s")
    return [f"the run has not finished (it is {summary.status}{after}): this {does} the "
            f"model it had then, {art.model_path.name}; {again} again once it has finished"]


def image_input(model: keras.Model, path) -> tuple[int, int, int]:
    """The model's input as (height, width, channels), or a `ModelError` if not an image."""
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3) or None in shape:
        raise ModelError(f"the model takes inputs of shape {shape}, not images (height, "
                         "width, 1 or 3 channels)", file=str(path),
                         hint="cnncli evaluates and runs image classifiers")
    if max(shape[:2]) > config.MAX_IMAGE_SIDE:  # every image would be resized to it
        raise ModelError(f"the model takes images of {shape[0]}x{shape[1]}: larger than the "
                         f"{config.MAX_IMAGE_SIDE:,} pixels a side cnncli allows for a "
                         "model's input",
                         file=str(path), hint="save the model with the size it was trained at")
    return shape


def check_class_scores(model: keras.Model, path) -> None:
    """A `ModelError` for a model whose output is not one row of class scores per image
    (a network without its classifier gives feature maps: predicting with it would read
    them as classes)."""
    from cnncli.model import pretrained

    shape = tuple(model.output_shape[1:]) if not isinstance(model.output_shape, list) \
        else None
    entry = pretrained.recognise(model.name, {layer.name for layer in model.layers})
    pooled = entry is not None and type(model.layers[-1]).__name__.startswith("Global")
    if shape is not None and len(shape) == 1 and shape[0] and not pooled:
        return  # (a network of one's own may end in pooling: all-convolutional ones do)
    raise ModelError(
        f"the model gives outputs of shape {shape or model.output_shape}, not one score per "
        "class: it has no classifier", file=str(path),
        hint=pretrained.start_from(entry, path) if entry else
             "cnncli evaluates and runs image classifiers (a network ending in a Dense "
             "layer, one unit per class)")
