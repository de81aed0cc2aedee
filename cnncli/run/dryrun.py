"""What ``cnncli train --dry-run`` works out, writing nothing: the run config as training
would record it, the network, and (when the data is on this machine) the plan, once
every problem training would refuse has been raised, the network's first.

>>> shown = dry_run(config.load("configs/mnist.yaml"), "configs/mnist.yaml")  # doctest: +SKIP
>>> shown.plan.epochs, shown.to_dict()["data"]["classes"][:2]                 # doctest: +SKIP
(3, ['0', '1'])
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from cnncli import config, devices
from cnncli.run import rundir
from cnncli.run.record import DataRecord

if TYPE_CHECKING:
    from cnncli.model.summary import Summary
    from cnncli.run.plan import Plan


@dataclass
class DryRun:
    """A run worked out and not started (`dry_run`).

    Args:
        config: the run config, with the device and precision chosen as recorded.
        summary: the network's (the data's classes when the data was read).
        plan: the run's plan; None when the data is not on this machine.
        not_here: for a known dataset training would download, what it would do.
        warnings: the summary's first, then the memory's, the data's and the plan's.
    """

    config: config.RunConfig
    summary: Summary
    plan: Plan | None = None
    not_here: str | None = None
    warnings: list[str] = field(default_factory=list)

    def data(self) -> dict | None:
        """What the run would train on, with the keys of the run's own record of it
        (`DataRecord`, ``train --json``'s `dataset`), how it is read and batched; for a
        known dataset training would download, its name and that note; None for a path
        not made yet (its warning says so)."""
        if self.plan is None:
            note = self.not_here
            return note and {"name": self.config.data.name, "on_this_machine": False,
                             "note": note}
        p = self.plan
        return {**asdict(DataRecord.of(p)), "on_this_machine": True,
                "reading": p.feed.describe(), "epochs": p.epochs,
                "steps_per_epoch": p.steps_per_epoch, "batch_size": p.cfg.train.batch_size}

    def to_dict(self) -> dict:
        """``train --dry-run --json``: the resolved config and the model (as `cnncli
        summary --json` gives it), the data and the warnings."""
        return {"config": self.config.resolved(), "model": self.summary.to_dict(),
                "data": self.data(), "warnings": self.warnings}


def dry_run(cfg: config.RunConfig, config_file: str) -> DryRun:
    """Work out the run of `cfg` (read from `config_file`) as training would, without
    downloading, caching or writing anything: a device asked for and not there, the
    network's and the settings' problems are raised first, then the data's."""
    from cnncli.model.precision import policy_kept

    with policy_kept():  # `devices.setup` sets it
        return _dry_run(cfg, config_file)


def _dry_run(cfg: config.RunConfig, config_file: str) -> DryRun:
    from cnncli.model import summary as summaries
    from cnncli.run import checking, plan

    t = cfg.train
    placement = devices.setup(t.device, t.precision)  # a GPU asked for and not there
    t.precision, t.device = placement.precision, placement.device_setting()  # as recorded
    built = checking.dry_run(cfg, config_file)  # what training would refuse, first
    rundir.check_place(cfg.output.dir, cfg.output.name or "run")  # (the folder it would make)
    try:
        with warnings.catch_warnings(record=True) as caught:  # the data's (files skipped)
            planned = plan.shown(cfg, placement, config_file=config_file)  # then the data's
    except Exception:  # said with its refusal, as training says them (they may explain it)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        raise
    data_said = [str(w.message) for w in caught]
    if planned:  # the data's classes, not a guess (nor its note)
        built = checking.dry_run(cfg, config_file, classes=planned.spec.classes)
    memory = plan.memory_warnings(built, placement, t.batch_size)  # or too large: refused
    summary = summaries.summarize(built)
    said = summary.warnings + memory + data_said
    said += [w for w in (planned.warnings if planned else []) if w not in said]
    return DryRun(cfg, summary, planned, None if planned else _not_here_yet(cfg.data), said)


def _not_here_yet(d: config.DataSection) -> str | None:
    """What the dry run says of a known dataset training would download (a path not
    made yet has its note among the warnings)."""
    from cnncli.data import datasets

    name = datasets.known_name(d.name)
    if name is None:
        return None
    where = datasets.locate(name, data_dir=d.data_dir).description  # will download 170 MB
    fallback = " (without internet: the 5,000 digits shipped with cnncli)" \
        if name == "mnist" else ""
    return (f"{name} is not on this machine yet: training {where}{fallback}; what depends on "
            "its size (batches, steps) is checked when training reads it")
