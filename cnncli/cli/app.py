"""The command line: parse, call library functions, show their results.

Heavy libraries (TensorFlow, Keras, NumPy, pydantic) are imported inside the
commands, so ``cnncli --help`` starts fast (ruff's TID253 keeps it so).
Errors are turned into messages and exit codes in one place: `main`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnncli import __version__, files
from cnncli.errors import EXIT_BELOW_THRESHOLD, EXIT_DATA_OR_MODEL, EXIT_SIGINT, CnnError

app = typer.Typer(
    name="cnncli",
    help="Describe convolutional networks in YAML; build, train, evaluate and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        print(f"cnncli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and TensorFlow's "
                                        "own messages.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    if debug:
        os.environ["CNNCLI_DEBUG"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


@app.command()
def summary(
    spec: Annotated[str, typer.Argument(help="A spec file, a run config, or a built-in name "
                                        "(vgg16, mnist_net, ...).")],
    explain: Annotated[bool, typer.Option("--explain", help="Show F, S, P and the output-size "
                                          "formula for each convolution and pooling layer.")]
    = False,
    classes: Annotated[int | None, typer.Option(help="Override the number of classes.")] = None,
    json: JsonOpt = False,
) -> None:
    """Print the lecture's table for a network: layers, volume sizes, parameters, memory."""
    from cnncli.cli import render
    from cnncli.model import builder
    from cnncli.model import summary as summaries

    built = builder.build_checked(_load_spec(spec).with_overrides(classes=classes))
    result = summaries.summarize(built)
    if json:
        render.print_json(result.to_dict())
    else:
        render.summary(result, explain=explain)


@app.command()
def check(
    path: Annotated[str, typer.Argument(help="A spec file, a run config, or a built-in name.")],
    json: JsonOpt = False,
) -> None:
    """Validate a spec or run config without training (exit 0 if valid, 2 if not)."""
    from cnncli.cli import render
    from cnncli.model import builder

    built = builder.build_checked(_load_spec(path))
    model = built.model
    result = {"valid": True, "file": path, "model": model.name, "layers": len(model.layers) - 1,
              "params": model.count_params(), "warnings": built.warnings}
    if json:
        render.print_json(result)
        return
    render.out.print(f"OK: {path} is valid ({model.name}: {result['layers']} layers, "
                     f"{result['params']:,} parameters)")
    for w in built.warnings:
        render.warn(w)


@app.command()
def schema() -> None:
    """Print the JSON Schema of run configs (for editors' YAML completion)."""
    from cnncli import config
    from cnncli.cli import render

    render.print_json(config.schema())


@app.command()
def models(
    download: Annotated[str | None, typer.Option(
        help="Fetch a pretrained model's weights into Keras' cache now.")] = None,
    json: JsonOpt = False,
) -> None:
    """List the built-in architectures and the pretrained models (weights cached or not)."""
    from cnncli.cli import render
    from cnncli.model import architectures, pretrained, spec

    if download:
        path = pretrained.download(download)
        render.out.print(f"{download}: weights in {path}", markup=False)
        return
    rows = []
    for name in architectures.names():
        s = spec.load(name)
        rows.append({"name": name, "kind": "spec", "description": s.description,
                     "input": s.input, "classes": s.classes})
    for name, entry in sorted(pretrained.REGISTRY.items()):
        cached = pretrained.cached_weights(entry)
        rows.append({"name": name, "kind": "pretrained", "input": list(entry.input_shape),
                     "classes": 1000, "weights": str(cached) if cached else None,
                     "description": "ImageNet weights " + (
                         "cached" if cached else f"not cached ({entry.megabytes} MB download)")})
    if json:
        render.print_json(rows)
        return
    for r in rows:
        dims = "x".join(map(str, r["input"]))
        render.out.print(f"{r['name']:<16} {r['kind']:<10} {dims:<12} {r['classes']:>5} classes"
                         f"  {r['description']}", markup=False)


@app.command()
def predict(
    sources: Annotated[list[str], typer.Argument(
        metavar="IMAGES...", help="Image files, folders, globs, @list.txt, - (paths on stdin) "
        "or http(s) URLs.")],
    model: Annotated[str, typer.Option(help="A pretrained name (vgg16, vgg19, resnet50, "
                                       "mobilenet_v2, efficientnet_b0), a run folder or a "
                                       ".keras file.")],
    top: Annotated[int, typer.Option(help="How many classes to show per image.")] = 5,
    weights: Annotated[str | None, typer.Option(help="A local weights file for a pretrained "
                                                "model.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json, jsonl or csv.")] = "text",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    resize: Annotated[str, typer.Option(help="bilinear (stretch to the model's size, Keras' "
                                        "default) or center_crop.")] = "bilinear",
    skip_bad: Annotated[bool, typer.Option(help="Exit 0 even if some images could not be "
                                           "read.")] = False,
    offline: Annotated[bool, typer.Option(help="Never download weights.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, gpu or gpu:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results.")] = False,
) -> None:
    """Classify images: cnncli predict car.jpg --model vgg16."""
    from cnncli import devices
    from cnncli.cli import render
    from cnncli.infer import predict as prediction

    if fmt not in ("text", "json", "jsonl", "csv"):
        raise typer.BadParameter("use text, json, jsonl or csv", param_hint="--format")
    placement = devices.setup(device, "float32")
    loaded = prediction.load(model, weights=weights, offline=offline)
    if not quiet:
        render.info(placement.describe())
        render.info(f"[INFO] classifying image with '{model}'...")
    result = prediction.predict(sources, model=loaded, top=top, batch_size=batch_size,
                                resize=resize, stdin=sys.stdin)
    render.predictions(result, fmt)
    for error in result.errors:
        render.error(error)
    if result.errors and not skip_bad:
        raise typer.Exit(EXIT_DATA_OR_MODEL if not result.images else EXIT_BELOW_THRESHOLD)


@app.command()
def train(
    config_file: Annotated[str | None, typer.Argument(
        metavar="CONFIG", help="A run config (configs/mnist.yaml). Optional with --resume.")]
    = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any key: --set train.epochs=3 (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set train.epochs=N.")]
    = None,
    batch_size: Annotated[int | None, typer.Option(help="Shortcut for train.batch_size.")]
    = None,
    lr: Annotated[float | None, typer.Option(help="Shortcut for "
                                             "train.optimizer.learning_rate.")] = None,
    data: Annotated[str | None, typer.Option(help="Shortcut for data.name (a name or a "
                                             "path).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where to look for datasets first "
                                                 "(also CNNCLI_DATA_DIR).")] = None,
    offline: Annotated[bool, typer.Option(help="Never download; use local data only.")]
    = False,
    resume: Annotated[str | None, typer.Option(help="Continue this run (runs/NAME/N or "
                                               "runs/NAME/latest) from its last backup.")]
    = None,
    force: Annotated[bool, typer.Option(help="Resume even if the config changed.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the resolved config and the model "
                                          "summary, then stop.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, gpu or gpu:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, float32, mixed_float16 or "
                                           "mixed_bfloat16.")] = "auto",
    auto_batch: Annotated[bool, typer.Option(help="Out of GPU memory: halve the batch size "
                                             "and start again (at most 3 times).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    json: JsonOpt = False,
) -> None:
    """Train a network: cnncli train configs/mnist.yaml."""
    from cnncli import config
    from cnncli.cli import render
    from cnncli.run import rundir
    from cnncli.run import train as training

    if config_file is None and resume is None:
        raise typer.BadParameter("give a CONFIG file, or --resume RUN", param_hint="CONFIG")
    if config_file is None:
        config_file = str(rundir.find(resume) / rundir.CONFIG)
    overrides = list(set_ or [])
    for key, value in (("train.epochs", epochs), ("train.batch_size", batch_size),
                       ("train.optimizer.learning_rate", lr), ("data.name", data),
                       ("data.data_dir", data_dir)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if epochs is not None:
        overrides.append("train.steps=null")
    if offline:
        overrides.append("data.offline=true")
    cfg = config.load(config_file, overrides)
    if cfg.output.name is None:
        cfg.output.name = Path(config_file).stem
    if dry_run:
        return _dry_run(cfg, config_file)
    result = training.train(cfg, config_file=config_file, device=device, precision=precision,
                            resume=resume, force=force, auto_batch=auto_batch,
                            reporter=render.train_reporter(quiet or json))
    if json:
        render.print_json(result.metrics)
    elif not quiet:
        best = result.metrics["best"]
        value = f"{best['value']:.4f}" if best["value"] is not None else "n/a"
        render.info(f"Done: {result.run}  (best {best['metric']} {value} at epoch "
                    f"{best['epoch']}; {result.metrics['images_per_s'] or 0:,.0f} images/s)")
        render.info(f"Next: cnncli evaluate {result.run}")


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(metavar="RUN_OR_MODEL", help="A run folder "
                                          "(runs/mnist/1), its latest link, or a .keras file.")],
    data: Annotated[str | None, typer.Option(help="Evaluate on this dataset (name or path) "
                                             "instead of the run's.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where to look for datasets first.")]
    = None,
    offline: Annotated[bool, typer.Option(help="Never download.")] = False,
    fail_under: Annotated[list[str] | None, typer.Option(
        help="Exit 1 when a figure is worse: accuracy=0.99 (loss=0.3 means at most). "
        "Repeatable.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per prediction batch.")] = 256,
    output: Annotated[str | None, typer.Option(help="Folder for the PNGs and "
                                               "evaluation.json (default: the run's).")]
    = None,
    device: Annotated[str, typer.Option(help="auto, cpu, gpu or gpu:N.")] = "auto",
    json: JsonOpt = False,
) -> None:
    """Evaluate a trained model on its test set: figures, per-class table, confusions."""
    from cnncli import devices
    from cnncli.cli import render
    from cnncli.infer import evaluate as evaluation

    placement = devices.setup(device, "float32")
    if not json:
        render.info(placement.describe())
    rep = evaluation.evaluate(target, data=data, data_dir=data_dir, offline=offline,
                              batch_size=batch_size, fail_under=fail_under or [],
                              output=output)
    if json:
        render.print_json(rep.to_dict())
    else:
        render.evaluation(rep)
    for failure in rep.failures:
        render.err.print(f"FAIL: {failure}", markup=False)
    if rep.failures:
        raise typer.Exit(EXIT_BELOW_THRESHOLD)


def _dry_run(cfg, config_file: str) -> None:
    import yaml

    from cnncli.cli import render
    from cnncli.model import builder, spec
    from cnncli.model import summary as summaries

    render.out.print(yaml.safe_dump(cfg.resolved(), sort_keys=False), markup=False)
    network = spec.from_run_config(cfg, file=config_file)
    render.summary(summaries.summarize(builder.build_checked(network)))


@app.command()
def datasets(
    data_dir: Annotated[str | None, typer.Option(help="Where to look first (also "
                                                 "CNNCLI_DATA_DIR).")] = None,
    offline: Annotated[bool, typer.Option(help="Do not count on downloads.")] = False,
    json: JsonOpt = False,
) -> None:
    """Where each known dataset is found (or would be downloaded from), and its size."""
    from cnncli.cli import render
    from cnncli.data import datasets as data

    rows = data.describe_all(data_dir=data_dir, offline=offline)
    if json:
        render.print_json(rows)
    else:
        render.datasets(rows)


@app.command()
def doctor(json: JsonOpt = False) -> None:
    """TensorFlow, Keras, CUDA and GPUs: what this machine has, and what `auto` picks."""
    from cnncli import devices
    from cnncli.cli import render

    info = devices.doctor_info()
    if json:
        render.print_json(info)
    else:
        render.doctor(info)


@app.command()
def runs(
    root: Annotated[str, typer.Argument(help="The folder holding the runs.")] = "runs",
    json: JsonOpt = False,
) -> None:
    """List training runs with their best figures."""
    from cnncli.cli import render
    from cnncli.run import rundir

    rows = []
    for run in rundir.list_runs(root):
        metrics = run / "metrics.json"
        state = run / rundir.STATE
        m = files.read_json(metrics) if metrics.exists() else {}
        status = files.read_json(state).get("status") if state.exists() else "unknown"
        best = m.get("best", {})
        rows.append({"run": str(run), "status": status, "epochs": m.get("epochs"),
                     "best_metric": best.get("metric"), "best": best.get("value"),
                     "images_per_s": m.get("images_per_s")})
    if json:
        render.print_json(rows)
        return
    if not rows:
        render.info(f"No runs under {root}/. Start one with: cnncli train configs/mnist.yaml")
    for r in rows:
        best = f"{r['best_metric']} {r['best']:.4f}" if r["best"] is not None else ""
        render.out.print(f"{r['run']:<28} {r['status']:<12} {best}", markup=False)


def _load_spec(path_or_name: str):
    """A spec from a spec file, a built-in name, or the `model:` of a run config."""
    from cnncli import config, yamlio
    from cnncli.model import architectures, spec

    path = architectures.resolve(path_or_name)
    doc = yamlio.load(path)
    if isinstance(doc, dict) and "model" in doc and "layers" not in doc:
        cfg = config.parse(doc, file=str(path))
        return spec.from_run_config(cfg, file=str(path))
    return spec.parse(doc, file=str(path), default_name=Path(path).stem)


def main() -> None:
    """Entry point: run the app; map our errors to one-paragraph messages and exit codes.

    Typer itself handles usage errors (exit 2), ``--help`` and Ctrl-C (exit 130 below).
    """
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        from cnncli.cli import render

        render.warn(str(message))

    warnings.showwarning = show
    try:
        app()
    except CnnError as exc:
        if os.environ.get("CNNCLI_DEBUG"):
            raise
        from cnncli.cli import render

        render.error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(EXIT_SIGINT)
    except Exception as exc:  # a bug, ours or a library's: say so in one paragraph
        if os.environ.get("CNNCLI_DEBUG"):
            raise
        from cnncli.cli import render

        render.error(f"unexpected {type(exc).__name__}: {exc}. Hint: this is a bug in cnncli "
                     "or a library it uses; run again with --debug (before the command) for "
                     "the traceback, and report it")
        sys.exit(EXIT_DATA_OR_MODEL)
