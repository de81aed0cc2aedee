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

from cnncli import __version__
from cnncli.errors import EXIT_SIGINT, CnnError

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
    from cnncli import builder, report
    from cnncli import summary as summaries

    built = builder.build_checked(_load_spec(spec).with_overrides(classes=classes))
    result = summaries.summarize(built)
    if json:
        report.print_json(result.to_dict())
    else:
        report.summary(result, explain=explain)


@app.command()
def check(
    path: Annotated[str, typer.Argument(help="A spec file, a run config, or a built-in name.")],
    json: JsonOpt = False,
) -> None:
    """Validate a spec or run config without training (exit 0 if valid, 2 if not)."""
    from cnncli import builder, report

    built = builder.build_checked(_load_spec(path))
    model = built.model
    result = {"valid": True, "file": path, "model": model.name, "layers": len(model.layers) - 1,
              "params": model.count_params(), "warnings": built.warnings}
    if json:
        report.print_json(result)
        return
    report.out.print(f"OK: {path} is valid ({model.name}: {result['layers']} layers, "
                     f"{result['params']:,} parameters)")
    for w in built.warnings:
        report.warn(w)


@app.command()
def schema() -> None:
    """Print the JSON Schema of run configs (for editors' YAML completion)."""
    from cnncli import config, report

    report.print_json(config.schema())


@app.command()
def models(json: JsonOpt = False) -> None:
    """List the built-in architectures."""
    from cnncli import architectures, report, spec

    rows = []
    for name in architectures.names():
        s = spec.load(name)
        rows.append({"name": name, "kind": "spec", "description": s.description,
                     "input": s.input, "classes": s.classes})
    if json:
        report.print_json(rows)
        return
    for r in rows:
        dims = "x".join(map(str, r["input"]))
        report.out.print(f"{r['name']:<10} {dims:<12} {r['classes']:>5} classes  "
                         f"{r['description']}")


def _load_spec(path_or_name: str):
    """A spec from a spec file, a built-in name, or the `model:` of a run config."""
    from cnncli import architectures, config, spec, yamlio

    path = architectures.resolve(path_or_name)
    doc = yamlio.load(path)
    if isinstance(doc, dict) and "model" in doc and "layers" not in doc:
        cfg = config.parse(doc, file=str(path))
        return config.model_spec(cfg, file=str(path))
    return spec.parse(doc, file=str(path), default_name=Path(path).stem)


def main() -> None:
    """Entry point: run the app; map our errors to one-paragraph messages and exit codes.

    Typer itself handles usage errors (exit 2), ``--help`` and Ctrl-C (exit 130 below).
    """
    try:
        app()
    except CnnError as exc:
        if os.environ.get("CNNCLI_DEBUG"):
            raise
        from cnncli import report

        report.error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(EXIT_SIGINT)
