"""Commands about training: train, runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.cli.options import JsonOpt
from cnncli.errors import CnnError, ConfigChanged


# Long only by its options: typer declares each one in the signature; the body is short.
def train(
    config_file: Annotated[str | None, typer.Argument(
        metavar="CONFIG", help="A run config (configs/mnist.yaml). Optional with --resume.")]
    = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any key: --set train.batch_size=64 (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Train N epochs (instead of the config's "
                                                "epochs or steps).")]
    = None,
    batch_size: Annotated[int | None, typer.Option(help="Shortcut for train.batch_size.")]
    = None,
    lr: Annotated[float | None, typer.Option(help="Shortcut for "
                                             "train.optimizer.learning_rate.")] = None,
    data: Annotated[str | None, typer.Option(help="Shortcut for data.name (a name or a "
                                             "path).")] = None,
    weights: Annotated[str | None, typer.Option(help="Shortcut for model.weights: the "
                                                "pretrained backbone's weights file.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where to look for datasets first "
                                                 "(also CNNCLI_DATA_DIR).")] = None,
    offline: Annotated[bool | None, typer.Option(
        "--offline/--no-offline", help="Shortcut for data.offline: never download, use local "
        "data only (--no-offline: a config's `offline: true` undone).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run (runs/NAME/N or "
                                               "runs/NAME/latest) from its last backup; "
                                               "`auto` (with CONFIG): the config's latest "
                                               "run if it stopped with a backup, else a new "
                                               "run.")]
    = None,
    force: Annotated[bool, typer.Option(help="Resume with a changed config (epochs, learning "
                                        "rate, precision, ...): applied and recorded.")]
    = False,
    dry_run: Annotated[bool, typer.Option(help="Print the resolved config, the model "
                                          "summary and what it would train on (the data "
                                          "read, counted, split and batched), then stop; "
                                          "nothing written or downloaded.")] = False,
    device: Annotated[str | None, typer.Option(help="Shortcut for train.device: auto, cpu, "
                                               "gpu or gpu:N.")] = None,
    precision: Annotated[str | None, typer.Option(help="Shortcut for train.precision: auto, "
                                                  "float32, mixed_float16 or "
                                                  "mixed_bfloat16.")] = None,
    auto_batch: Annotated[bool, typer.Option(help="Out of GPU memory: halve the batch size "
                                             "and start again (at most 3 times).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    json: JsonOpt = False,
) -> None:
    """Train a network: cnncli train configs/mnist.yaml."""
    from cnncli.cli import render
    from cnncli.run import checking, rundir
    from cnncli.run import train as training

    if config_file is None and resume is None:
        raise typer.BadParameter("give a CONFIG file, or --resume RUN", param_hint="CONFIG")
    auto = resume == AUTO_RESUME
    if auto and config_file is None:
        raise typer.BadParameter("--resume auto goes on with a CONFIG's latest run: give the "
                                 "CONFIG", param_hint="CONFIG")
    if dry_run and resume is not None:
        raise typer.BadParameter("a dry run shows a new run; a resume's checks (its backup, "
                                 "its config, its data) are made when it starts, before any "
                                 "step", param_hint="--dry-run")
    if config_file is None:
        config_file = str(rundir.find(resume) / rundir.CONFIG)
    resume = None if auto else resume  # (found once the config says where its runs are)
    values, origins = _shortcuts(set_ or [], (
        ("train.epochs", epochs, "--epochs"), ("train.batch_size", batch_size, "--batch-size"),
        ("train.optimizer.learning_rate", lr, "--lr"), ("data.name", data, "--data"),
        ("model.weights", weights, "--weights"), ("data.data_dir", data_dir, "--data-dir"),
        ("train.device", device, "--device"), ("train.precision", precision, "--precision"),
        ("data.offline", offline, "--offline" if offline else "--no-offline")))
    reporter = render.train_reporter(quiet or json)
    try:
        cfg = checking.load_config(config_file, list(set_ or []), origins, values)
        if dry_run:  # (warnings that explain a refusal: in its --json too)
            with render.warnings_to(reporter.note):
                return _dry_run(cfg, config_file, json)
        if auto:
            resume = _resume_auto(cfg, quiet)  # said with --json too, as notes are
        _joining(quiet or json)
        with render.warnings_to(reporter.note):  # the data's warnings too, in --json's list
            try:
                result = training.train(cfg, config_file=config_file, resume=resume,
                                        force=force, auto_batch=auto_batch, reporter=reporter)
            except ConfigChanged as exc:
                if auto and resume:  # (else every restart stops here again)
                    exc.hint = ", or ".join([w for w in exc.ways if w != exc.NEW_RUN]) + \
                        f"; or {exc.NEW_RUN}: the same command without --resume auto"
                raise
    except CnnError as exc:  # --json promises `warnings`: an error's document has them too
        exc.warnings = reporter.warned
        raise
    if json:  # its warnings and notes were on stderr as they came: here too, all of them
        render.print_json({**result.metrics.to_json(), "resumed": bool(resume),
                           "warnings": reporter.warned})
    elif not quiet:
        best = result.metrics.best
        value = f"{best.value:.4f}" if best.value is not None else "n/a"
        done = result.run if result.run is not None else \
            f"{result.task}'s part (the chief wrote the run)"  # its copy is removed
        render.info(f"Done: {done}  (best {best.metric} {value} at epoch "
                    f"{best.epoch}; {result.metrics.images_per_s or 0:,.0f} images/s)")
        if result.run is not None:
            from cnncli.text import arg

            render.info(f"Next: cnncli evaluate {arg(result.run)}")


#: ``--resume auto``: go on with the config's latest run if it can be, else start one.
AUTO_RESUME = "auto"


def _shortcuts(set_: list[str], given) -> tuple[dict, dict]:
    """The config values the shortcut options set (`given`: (key, value or None, option)
    rows) and where each came from (``--lr 0.01``), for `checking.load_config`: values as
    typed (text is text, never YAML). An option and a ``--set`` of the same key (or of a
    section holding it) are refused: one would be dropped without a word. ``--epochs``
    also clears ``train.steps`` (the two say how long a run is).

    >>> _shortcuts([], [("train.epochs", 3, "--epochs"), ("data.name", None, "--data")])
    ({'train.epochs': 3, 'train.steps': None}, {'train.epochs': '--epochs 3', \
'train.steps': '--epochs 3'})
    """
    set_keys = {item.partition("=")[0].strip() for item in set_}

    def also_set(key: str) -> str | None:  # by a --set of it, or of a section holding it
        return next((s for s in set_keys if key == s or key.startswith(s + ".")), None)

    values, origins = {}, {}
    for key, value, option in given:
        if value is None:
            continue
        if also_set(key):
            raise typer.BadParameter(f"give {option} or --set {also_set(key)}, not both",
                                     param_hint=option)
        values[key] = value
        origins[key] = option if isinstance(value, bool) else f"{option} {value}"
    if "train.epochs" in values:
        if also_set("train.steps"):
            raise typer.BadParameter(f"give --epochs or --set {also_set('train.steps')}, not "
                                     "both (one sets how long the run is)",
                                     param_hint="--epochs")
        values["train.steps"], origins["train.steps"] = None, origins["train.epochs"]
    return values, origins


def _resume_auto(cfg, quiet: bool) -> str | None:
    """The run ``--resume auto`` goes on with (None: a new one), said unless `quiet`."""
    from cnncli import text
    from cnncli.cli import render
    from cnncli.run import rundir

    folder = Path(cfg.output.dir) / cfg.output.name
    run = rundir.resumable(folder)
    live = [str(r) for r in rundir.numbered(folder) if rundir.is_live(r)]
    busy = f"; {text.some(live)} {'is' if len(live) == 1 else 'are'} training now, in " \
        "another process" if live else ""
    edited = [str(r) for r in rundir.edited_configs(folder, newer_than=run)]
    passed = f"; passed over {text.some(edited)}: config.yaml edited or unreadable since " \
        "the run wrote it (its resume is refused; cnncli train --resume RUN --set " \
        "KEY=VALUE --force changes a setting)" if edited else ""
    if not quiet:
        render.info(f"--resume auto: going on with {run}, which stopped with a backup"
                    f"{passed}" if run else f"--resume auto: no run under {folder} to go on "
                    f"with (none, or all finished{busy}{passed}): starting a new one")
    return str(run) if run else None


def _joining(quiet: bool) -> None:
    """Say that this machine joins a cluster and waits for the others (TensorFlow waits
    for every worker without a limit and prints nothing meanwhile)."""
    from cnncli import devices
    from cnncli.cli import render

    cluster = devices.from_environment()
    if cluster and not quiet:
        render.info(f"Joining the cluster as {cluster.task} of {cluster.workers} "
                    f"({cluster.address}): training starts when every worker of TF_CONFIG "
                    "has started")


def _dry_run(cfg, config_file: str, json: bool = False) -> None:
    from cnncli import yamlio
    from cnncli.cli import render
    from cnncli.run.dryrun import dry_run

    shown = dry_run(cfg, config_file)
    if json:
        render.print_json(shown.to_dict())
        render.warn_all(shown.warnings)
        return
    render.out.print(yamlio.dumps(shown.config.resolved()), markup=False)
    render.summary(shown.summary)
    lines = (render.data_line(shown.plan), render.training_line(shown.plan, "Would train")) \
        if shown.plan else [f"Data: {shown.not_here}"] if shown.not_here else []
    for line in lines:
        render.out.print(render.printable(line, one_line=True), markup=False)
    render.warn_all(shown.warnings[len(shown.summary.warnings):])  # (the summary's were
    # said with it)


def runs(
    root: Annotated[str | None, typer.Argument(
        metavar="DIR", help="The folder holding the runs (default: runs).")] = None,
    json: JsonOpt = False,
) -> None:
    """List training runs with their status and best figures."""
    from cnncli.cli import render
    from cnncli.run import listing

    rows = listing.summaries(root or "runs", must_exist=root is not None)
    root = root or "runs"
    if json:
        render.print_json([r.to_dict() for r in rows])
        return
    if not rows:
        render.info(f"No runs under {root}/. Start one with: cnncli train configs/mnist.yaml")
    names = [render.printable(str(r.run), one_line=True) for r in rows]  # escaped, aligned
    width = max(map(len, names), default=0)
    for name, r in zip(names, rows, strict=True):
        best = f"{r.best_metric} {r.best:.4f}" if r.best is not None else ""
        line = f"{name:<{width}}  {r.status:<11} {best}".rstrip()
        problem = f"  ({render.printable(r.problem, one_line=True)})" if r.problem else ""
        render.out.print(line + problem, markup=False)  # (an error may name any file)
