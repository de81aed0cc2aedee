"""Commands about networks: summary, check, schema, models."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from cnncli.cli.options import JsonOpt
from cnncli.text import dims_text, printable


def summary(
    spec: Annotated[str, typer.Argument(metavar="SPEC", help="A spec file, a run config, or "
                                        "a built-in name (vgg16, mnist_net, ...).")],
    explain: Annotated[bool, typer.Option("--explain", help="Show F, S, P and the output-size "
                                          "formula for each convolution and pooling layer.")]
    = False,
    classes: Annotated[int | None, typer.Option(min=1, help="Override the number of "
                                                "classes.")] = None,
    plot: Annotated[str | None, typer.Option(
        help="Also draw the network as boxes sized by their volumes into this picture "
        "(.png, .jpg, .pdf or .svg).")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="A row per layer of a pretrained "
                                         "backbone instead of one row.")] = False,
    json: JsonOpt = False,
) -> None:
    """Print the lecture's table for a network: layers, volume sizes, parameters, memory."""
    from cnncli.cli import render
    from cnncli.model import summary as summaries
    from cnncli.run import checking

    if plot:  # a bad name is known before any work
        from cnncli import plots

        plot = plots.picture_path(plot, "--plot")
    built = checking.build(spec, classes=classes)  # a run config: frozen as in its stage 1
    result = summaries.summarize(built, expand=expand)
    drawn = None
    if plot:
        from cnncli.viz import network_plot

        drawn = str(network_plot.write(built, plot))
    if json:
        render.print_json(result.to_dict() | ({"plot": drawn} if drawn else {}))
    else:
        render.summary(result, explain=explain)
        if drawn:
            render.out.print(f"Plot: {printable(drawn, one_line=True)}", markup=False)


def check(
    path: Annotated[str, typer.Argument(metavar="SPEC", help="A spec file, a run config, or a "
                                        "built-in name.")],
    json: JsonOpt = False,
) -> None:
    """Validate a spec or run config without training (exit 0 if valid, 2 if not)."""
    from cnncli.cli import render
    from cnncli.run import checking

    checked = checking.check(path)
    model = checked.model
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    result = {"valid": True, "file": path, "model": model.name, "layers": len(model.layers) - 1,
              "params": model.count_params(), "trainable_params": int(trainable),
              "frozen_params": int(model.count_params() - trainable),
              "warnings": checked.warnings}
    if json:
        render.print_json(result)
        return
    frozen = f", {result['frozen_params']:,} frozen" if result["frozen_params"] else ""
    render.out.print(f"OK: {printable(path, one_line=True)} is valid ({model.name}: "
                     f"{result['layers']} layers, {result['params']:,} parameters{frozen})")
    for w in checked.warnings:
        render.warn(w)


def schema() -> None:
    """Print the JSON Schema of run configs (for editors' YAML completion)."""
    from cnncli import config
    from cnncli.cli import render

    render.print_json(config.schema())


def _cached(path, megabytes: float) -> str:
    return "cached" if path else f"not cached ({megabytes:g} MB download)"


def models(
    download: Annotated[str | None, typer.Option(
        help="Fetch a pretrained model's weights into Keras' cache now.")] = None,
    json: JsonOpt = False,
) -> None:
    """List the built-in architectures and the pretrained models (weights cached or not)."""
    from cnncli.cli import render
    from cnncli.model import architectures, pretrained, spec

    if download:
        for path in pretrained.download(download):  # with and without the classifier
            render.out.print(f"{download}: weights in {path}", markup=False)
        return
    rows = []
    for name in architectures.names():
        s = spec.load(name)
        rows.append({"name": name, "kind": "spec", "description": s.description,
                     "input": s.input, "classes": s.classes})
    for name, entry in sorted(pretrained.REGISTRY.items()):
        cached = pretrained.cached_weights(entry)
        notop = pretrained.cached_notop(entry)
        rows.append({"name": name, "kind": "pretrained", "input": list(entry.input_shape),
                     "classes": 1000, "weights": str(cached) if cached else None,
                     "notop_weights": str(notop) if notop else None,
                     "description": f"ImageNet weights {_cached(cached, entry.megabytes)}; "
                                    "without the classifier (for fine-tuning) "
                                    f"{_cached(notop, entry.notop_megabytes)}"})
    if json:
        render.print_json(rows)
        return
    for r in rows:
        dims = dims_text(r["input"])
        render.out.print(f"{r['name']:<16} {r['kind']:<10} {dims:<12} {r['classes']:>5} classes"
                         f"  {r['description']}", markup=False)
