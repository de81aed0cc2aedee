"""What a run writes about itself: its resolved ``config.yaml`` and, at the end,
``metrics.json`` (final and best figures, timings, device, data, versions)."""

from __future__ import annotations

import platform
from pathlib import Path

from cnncli import __version__, config, files, yamlio
from cnncli.run import rundir
from cnncli.run.state import TrainState


def write_config(run: Path, cfg: config.RunConfig) -> None:
    """The resolved config (what ``--resume`` continues with) and its hash."""
    text = ("# The resolved config of this run (cnncli train --resume uses it).\n"
            + yamlio.dumps({**cfg.resolved(), "digest": cfg.digest()}))
    files.write_atomic(run / rundir.CONFIG, text)


def final_metrics(p, run: Path, state: TrainState, monitor: str, model) -> dict:
    """The content of ``metrics.json`` for the plan `p` trained into `run`."""
    import numpy as np

    from cnncli.model import fused_norm
    from cnncli.runtime import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    history = state.history
    last = history[-1] if history else {}
    speeds = [r["images_per_s"] for r in history]
    d = p.data
    return {
        "run": str(run),
        "epochs": len(history),
        "steps": p.total_steps,
        "stopped_early": state.stopped_early,
        "final": {k: v for k, v in last.items() if k not in ("seconds", "images_per_s")},
        "best": {"metric": monitor, "value": state.best, "epoch": state.best_epoch},
        "train_seconds": round(state.train_seconds, 2),
        "images_per_s": float(np.median(speeds)) if speeds else None,
        "batch_size": p.cfg.train.batch_size,
        "batch_size_is_per_replica": p.placement.replicas > 1,
        "device": p.placement.label(),
        "replicas": p.placement.replicas,
        "precision": p.placement.precision,
        "steps_per_execution": p.steps_per_execution,
        "jit_compile": bool(getattr(model, "jit_compile", False)),
        "fused_batch_norm_layers": fused_norm.fused_layers(model),
        "resumes": state.resumes,
        "dataset": {"name": d.name, "source": d.source, "sample": d.sample,
                    "train": len(p.feed.train), "validation": len(p.feed.val),
                    "test": len(d.test), "classes": d.num_classes,
                    "class_names": list(d.class_names)},
        "preprocessing": p.preprocessing,
        "input": list(p.spec.input),
        "transfer": p.transfer.to_json() if p.transfer else None,
        "versions": {"cnncli": __version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
