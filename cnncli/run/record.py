"""What a run writes about itself: its resolved ``config.yaml`` and, at the end,
``metrics.json`` (`RunMetrics`: final and best figures, timings, device, data, versions).

>>> metrics = RunMetrics(epochs=3, best=Best("val_accuracy", 0.91, 3))
>>> RunMetrics.from_json(metrics.to_json()) == metrics
True
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cnncli import __version__, config, files, yamlio
from cnncli.run import rundir
from cnncli.run.state import TrainState

METRICS = "metrics.json"


def write_config(run: Path, cfg: config.RunConfig) -> None:
    """The resolved config (what ``--resume`` continues with) and its hash."""
    text = ("# The resolved config of this run (cnncli train --resume uses it).\n"
            + yamlio.dumps({**cfg.resolved(), "digest": cfg.digest()}))
    files.write_atomic(run / rundir.CONFIG, text)


@dataclass(frozen=True)
class Best:
    """The best value of `metric` (the figure ``best.keras`` follows) and its epoch
    (1-based); None before any epoch ended."""

    metric: str | None = None
    value: float | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class DataRecord:
    """What the run trained on: the data's name and where it was found, whether it was a
    sample, the number of images in each split, and the classes."""

    name: str | None = None
    source: str | None = None
    sample: bool = False
    train: int = 0
    validation: int = 0
    test: int = 0
    classes: int = 0
    class_names: list[str] = field(default_factory=list)
    held_out: str | None = None  # `Dataset.held_out_names`: its test images, when held out
    digest: str | None = None  # `Feed.fingerprint`'s: the training and validation images

    @classmethod
    def of(cls, p, digest: str | None = None) -> DataRecord:
        """The record of a run's plan `p` (`cnncli.run.plan.Plan`): its data and feed;
        `digest`: the feed's (`Feed.fingerprint`), worked out when not given."""
        d = p.data
        return cls(d.name, d.source, d.sample, len(p.feed.train), len(p.feed.val),
                   len(d.test), d.num_classes, list(d.class_names), d.held_out_names(),
                   digest or p.feed.fingerprint()["digest"])


@dataclass(frozen=True)
class RunMetrics:
    """The content of ``metrics.json``, written once a run finished.

    Args:
        final: the last epoch's figures (``loss``, ``val_accuracy``...).
        images_per_s: the median over the epochs.
        resumes: `TrainState.resumes` (each ``--resume --force`` that changed the config).
        transfer: `cnncli.run.transfer.Transfer.to_json`, for a run that started from
            pretrained weights or another model.
        network: the network's `cnncli.model.spec.Spec.digest` (its spec file edited
            since, a built-in defined otherwise: another digest).
    """

    run: str | None = ""  # None: a worker's (the chief writes the run)
    epochs: int = 0
    steps: int = 0
    stopped_early: bool = False
    final: dict[str, float] = field(default_factory=dict)
    best: Best = field(default_factory=Best)
    train_seconds: float = 0.0
    images_per_s: float | None = None
    batch_size: int = 0
    batch_size_is_per_replica: bool = False
    device: str = ""
    replicas: int = 1
    precision: str = "float32"
    steps_per_execution: int = 1
    jit_compile: bool = False
    fused_batch_norm_layers: int = 0
    resumes: list[dict] = field(default_factory=list)
    dataset: DataRecord = field(default_factory=DataRecord)
    preprocessing: str | None = None
    input: list[int] = field(default_factory=list)
    transfer: dict | None = None
    network: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, run: Path) -> None:
        files.write_json(Path(run) / METRICS, self.to_json())

    @classmethod
    def from_json(cls, data: dict) -> RunMetrics:
        """The record in `data` (keys this version does not know are ignored, those it
        misses keep their defaults: a run of an older version); a `ValueError` naming
        the field if a figure ``cnncli runs`` shows is not a number."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        best = values.get("best") or {}
        if not isinstance(best, dict):
            raise ValueError(f"{METRICS}'s best is not an object")
        value = best.get("value")
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise ValueError(f"{METRICS}'s best value {value!r} is not a number")
        values["best"] = Best(best.get("metric"), None if value is None else float(value),
                              best.get("epoch"))
        speed = values.get("images_per_s")
        if speed is not None and not (_is_number(speed) and math.isfinite(speed)):
            raise ValueError(f"{METRICS}'s images_per_s {speed!r} is not a number")
        values["images_per_s"] = None if speed is None else float(speed)
        epochs = values.get("epochs", 0)
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            raise ValueError(f"{METRICS}'s epochs {epochs!r} is not a whole number")
        dataset = values.get("dataset", {})
        if not isinstance(dataset, dict):
            raise ValueError(f"{METRICS}'s dataset is not an object")
        names = {f.name for f in fields(DataRecord)}
        values["dataset"] = DataRecord(**{k: v for k, v in dataset.items() if k in names})
        return cls(**values)

    @classmethod
    def read(cls, run: Path) -> RunMetrics | None:
        """The record `run` wrote, None if it has none (not finished); a `ValueError`
        saying what is wrong if the file is damaged."""
        path = Path(run) / METRICS
        return cls.from_json(files.read_json_object(path)) if path.exists() else None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def final_metrics(p, run: Path, state: TrainState, monitor: str, model) -> RunMetrics:
    """The record of the plan `p` trained into `run`."""
    import numpy as np
    import PIL

    from cnncli.devices import hardware
    from cnncli.model import fused_norm
    from cnncli.runtime import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    history = state.history
    last = history[-1] if history else {}
    speeds = [r["images_per_s"] for r in history]
    return RunMetrics(
        run=str(Path(run).resolve()),  # found from any folder (a resumed run's is too)
        epochs=len(history),
        steps=sum(p.steps_in(e) for e in range(len(history))),  # stopped early: fewer
        stopped_early=state.stopped_early,
        final={k: v for k, v in last.items() if k not in ("seconds", "images_per_s")},
        best=Best(monitor, state.best, state.best_epoch),
        train_seconds=round(state.train_seconds, 2),
        images_per_s=round(float(np.median(speeds)), 1) if speeds else None,
        batch_size=p.cfg.train.batch_size,
        batch_size_is_per_replica=p.placement.replicas > 1,
        device=p.placement.label(),
        replicas=p.placement.replicas,
        precision=p.placement.precision,
        steps_per_execution=p.steps_per_execution,
        jit_compile=bool(getattr(model, "jit_compile", False)),
        fused_batch_norm_layers=fused_norm.fused_layers(model),
        resumes=state.resumes,
        dataset=DataRecord.of(p, digest=state.data.get("digest")),  # (its backups')
        preprocessing=p.preprocessing,
        input=list(p.spec.input),
        transfer=p.transfer.to_json(fine_tuned=state.stage > 0) if p.transfer else None,
        network=state.network,
        versions={"cnncli": __version__, "tensorflow": tf.__version__,
                  "keras": keras.__version__, "numpy": np.__version__,
                  "pillow": PIL.__version__,  # (decodes and resizes every image file)
                  "python": platform.python_version(),
                  "cpu": hardware.cpu_name()})  # (its kernels change the last bits)
