"""Commands about networks: summary, check, schema, models."""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.cli.options import JsonOpt


def summary(
    spec: Annotated[str, typer.Argument(help="A spec file, a run config, or a built-in name "
                                        "(vgg16, mnist_net, ...).")],
    explain: Annotated[bool, typer.Option("--explain", help="Show F, S, P and the output-size "
                                          "formula for each convolution and pooling layer.")]
    = False,
    classes: Annotated[int | None, typer.Option(min=1, help="Override the number of "
                                                "classes.")] = None,
    plot: Annotated[str | None, typer.Option(help="Also draw the network as boxes sized by "
                                             "their volumes into this PNG.")] = None,
    json: JsonOpt = False,
) -> None:
    """Print the lecture's table for a network: layers, volume sizes, parameters, memory."""
    from cnncli.cli import render
    from cnncli.model import builder
    from cnncli.model import summary as summaries
    from cnncli.run import checking

    built = builder.build_checked(checking.load_spec(spec).with_overrides(classes=classes))
    result = summaries.summarize(built)
    drawn = None
    if plot:
        from cnncli.viz import network_plot

        drawn = str(network_plot.write(built, plot))
    if json:
        render.print_json(result.to_dict() | ({"plot": drawn} if drawn else {}))
    else:
        render.summary(result, explain=explain)
        if drawn:
            render.out.print(f"Plot: {drawn}", markup=False)


def check(
    path: Annotated[str, typer.Argument(help="A spec file, a run config, or a built-in name.")],
    json: JsonOpt = False,
) -> None:
    """Validate a spec or run config without training (exit 0 if valid, 2 if not)."""
    from cnncli.cli import render
    from cnncli.run import checking

    checked = checking.check(path)
    model = checked.model
    result = {"valid": True, "file": path, "model": model.name, "layers": len(model.layers) - 1,
              "params": model.count_params(), "warnings": checked.warnings}
    if json:
        render.print_json(result)
        return
    render.out.print(f"OK: {path} is valid ({model.name}: {result['layers']} layers, "
                     f"{result['params']:,} parameters)")
    for w in checked.warnings:
        render.warn(w)


def schema() -> None:
    """Print the JSON Schema of run configs (for editors' YAML completion)."""
    from cnncli import config
    from cnncli.cli import render

    render.print_json(config.schema())


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
