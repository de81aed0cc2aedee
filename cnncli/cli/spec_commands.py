"""Commands about networks: summary, check, schema, models."""

from __future__ import annotations

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
        render.warn_all(result.warnings)
    else:
        render.summary(result, explain=explain)
        if drawn:
            render.out.print(f"Plot: {printable(drawn, one_line=True)}", markup=False)


def check(
    path: Annotated[str, typer.Argument(metavar="SPEC", help="A spec file, a run config, or a "
                                        "built-in name.")],
    json: JsonOpt = False,
) -> None:
    """Validate a spec or run config without training (exit 0 if valid, 2 if not; 3 for a
    weights or model file it names that cannot be read or does not fit)."""
    from cnncli.cli import render
    from cnncli.run import checking

    checked = checking.check(path)
    if json:
        render.print_json(checked.to_dict(path))
        render.warn_all(checked.warnings)
        return
    frozen = f", {checked.frozen_params:,} frozen" if checked.frozen_params else ""
    name = printable(checked.name or checked.model.name, one_line=True)
    render.out.print(f"OK: {printable(path, one_line=True)} is valid ({name}: "
                     f"{checked.layers} layers, {checked.params:,} parameters{frozen})")
    render.warn_all(checked.warnings)


def schema(json: Annotated[bool, typer.Option(
        "--json", help="Accepted, as by every command printing JSON (it always does).")]
        = False) -> None:
    """Print the JSON Schema of run configs (for editors' YAML completion)."""
    from cnncli import config
    from cnncli.cli import render

    render.print_json(config.schema())


def models(
    download: Annotated[str | None, typer.Option(
        help="Fetch a pretrained model's weights into Keras' cache now.")] = None,
    input_size: Annotated[int | None, typer.Option(
        help="With --download: the input size to fine-tune at, for a network whose weights "
        "without the classifier depend on it (mobilenet_v2: 96, 128, 160, 192, 224).")]
    = None,
    json: JsonOpt = False,
) -> None:
    """List the built-in architectures and the pretrained models (weights cached or not)."""
    from cnncli.cli import render
    from cnncli.model import catalogue, pretrained

    if input_size is not None and not download:
        raise typer.BadParameter("goes with --download NAME (the input size to fetch the "
                                 "weights for)", param_hint="--input-size")
    if download:
        paths = pretrained.download(download, input_size)  # with and without the top
        if json:
            render.print_json({"model": download, "weights": [str(p) for p in paths]})
        for path in [] if json else paths:
            render.out.print(f"{download}: weights in {path}", markup=False)
        return
    found = catalogue.entries()
    if json:
        render.print_json([e.to_dict() for e in found])
        return
    for e in found:
        render.out.print(f"{e.name:<16} {e.kind:<10} {dims_text(e.input):<12} {e.classes:>5} "
                         f"classes  {e.description}", markup=False)
