"""Commands that show what a network learned: visualize filters, visualize activations,
explain (Grad-CAM). Each writes PNGs and prints their paths (or JSON with --json)."""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.cli.options import (
    PRETRAINED,
    DeviceOpt,
    JsonOpt,
    OfflineOpt,
    PrecisionOpt,
    SkipBadOpt,
    WeightsOpt,
)
from cnncli.errors import EXIT_BELOW_THRESHOLD, none_done

visualize = typer.Typer(
    help="Pictures of a model's filters and activation maps.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

Target = Annotated[str, typer.Argument(
    metavar="RUN_OR_MODEL", help="A run folder (runs/mnist/1), its latest link, a .keras "
    f"file, or a pretrained name ({PRETRAINED}).")]


def _load(target: str, weights: str | None, offline: bool, device: str,
          precision: str = "float32"):
    from cnncli import devices
    from cnncli.infer import classifier

    placement = devices.setup(device, precision, one_device=True)
    return classifier.load(target, weights=weights, offline=offline,
                           precision=placement.precision)


def _show(rows: list[dict], json: bool, *, one: bool = False) -> None:
    """The PNGs written: their paths, one a line, or the records as JSON (the record
    itself for a command that writes `one` picture)."""
    from cnncli.cli import render

    if json:
        render.print_json(rows[0] if one else rows)
        return
    for row in rows:  # a newline in a file name must not make two lines
        render.out.print(render.printable(str(row["picture"]), one_line=True), markup=False)


@visualize.command("filters")
def filters(
    target: Target,
    layer: Annotated[str | None, typer.Option(help="The convolution layer (default: the "
                                              "first).")] = None,
    output: Annotated[str | None, typer.Option(help="The picture to write: .png, "
                                               ".jpg, .pdf or .svg (default: "
                                               "filters_<layer>.png).")] = None,
    weights: WeightsOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    json: JsonOpt = False,
) -> None:
    """The filters of a convolution layer as a grid of tiles, one per filter."""
    import warnings

    from cnncli import plots
    from cnncli.model.saved_meta import NoRecordWarning
    from cnncli.viz import pictures

    output = plots.picture_path(output, "--output") if output else None
    with warnings.catch_warnings():  # its preprocessing, unknown, is not used here
        warnings.simplefilter("ignore", NoRecordWarning)
        loaded = _load(target, weights, offline, device)
    _show([pictures.write_filters(loaded, layer, output).to_dict()], json, one=True)


@visualize.command("activations")
def activations(
    target: Target,
    image: Annotated[str, typer.Argument(metavar="IMAGE",
                                          help="The image (a file or an http(s) URL).")],
    layers: Annotated[list[str] | None, typer.Option(
        "--layers", help="Layers to show, convolutions or any with an HxWxD output such as "
        "pooling (repeatable, or comma-separated; default: every convolution).")] = None,
    output: Annotated[str | None, typer.Option(help="The picture to write: .png, "
                                               ".jpg, .pdf or .svg (default: "
                                               "activations_<image>.png).")] = None,
    weights: WeightsOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    json: JsonOpt = False,
) -> None:
    """The image, then the activation maps of each convolution layer, with its volume."""
    from cnncli import plots
    from cnncli.cli import render
    from cnncli.viz import pictures

    names = [n.strip() for item in layers or [] for n in item.split(",") if n.strip()]
    if layers is not None and not names:
        raise typer.BadParameter("names no layer: give layer names, or leave it out for "
                                 "all", param_hint="--layers")
    output = plots.picture_path(output, "--output") if output else None
    loaded = _load(target, weights, offline, device)
    picture = pictures.write_activations(loaded, image, names if layers else None, output)
    _show([picture.to_dict()], json, one=True)
    render.warn_all(picture.warnings)


def explain(
    target: Target,
    sources: Annotated[list[str], typer.Argument(
        metavar="IMAGES", help="Image files, folders, globs, @list.txt, - (paths on "
        "stdin) or http(s) URLs.")],
    class_name: Annotated[str | None, typer.Option(
        "--class", help="The class to explain (default: the one predicted).")] = None,
    layer: Annotated[str | None, typer.Option(
        help="A layer with an HxWxD output (default: the last convolution's maps after its "
        "batch norm and ReLU, or where the branches it is one of join).")] = None,
    output: Annotated[str, typer.Option(help="The folder for gradcam_<image>.png.")] = ".",
    skip_bad: SkipBadOpt = False,
    weights: WeightsOpt = None,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    json: JsonOpt = False,
) -> None:
    """Grad-CAM: where in each image the network found the class, as a heat map."""
    import os
    import sys

    from cnncli import plots
    from cnncli.cli import render
    from cnncli.data import inputs
    from cnncli.viz import explain as explaining

    output = os.path.expanduser(output)
    plots.check_picture_folder(output, "--output")
    empty = []  # as predict: one error each for folders and patterns with no images
    files = inputs.expand_inputs(sources, stdin=sys.stdin, missing_ok=True, empty=empty)
    loaded = _load(target, weights, offline, device, precision)  # predict's numbers
    result = explaining.explain(files, loaded, class_name=class_name, layer=layer,
                                output=output)
    result.errors[:0] = empty
    if result.errors and not result.pictures:
        render.warn_all(result.warnings)
        raise none_done(result.errors)  # said as any error is: no empty list of results
    _show([p.to_dict() for p in result.pictures], json)
    render.warn_all(result.warnings)  # (and each heat map with no evidence)
    render.unread(result.errors, skipped=skip_bad)
    if result.errors and not skip_bad:
        raise typer.Exit(EXIT_BELOW_THRESHOLD)  # (none read: `none_done`'s error above)
