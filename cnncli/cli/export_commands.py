"""The export command: deployment files, each checked in its own runtime."""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.cli.options import JsonOpt
from cnncli.errors import EXIT_BELOW_THRESHOLD
from cnncli.export.formats import FORMATS, quantizations_help


def export(
    target: Annotated[str, typer.Argument(metavar="RUN_OR_MODEL", help="A run folder "
                                          "(runs/mnist/1), its latest link, or a .keras file.")],
    fmt: Annotated[list[str], typer.Option(
        "--format", help=f"{', '.join(FORMATS)}; repeatable, or comma-separated "
        "(--format onnx,litert).")],
    output: Annotated[str | None, typer.Option(
        help="Folder for the files (default: export/ beside the model file), or with one "
        "format the file itself (model.onnx).")] = None,
    quantize: Annotated[list[str] | None, typer.Option(
        help="none (float32), float16, dynamic or int8; repeatable or comma-separated. "
        f"{quantizations_help()}.")] = None,
    force: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    images: Annotated[list[str] | None, typer.Option(
        help="Check the exports on these images (files, folders, quoted globs: --images "
        "'photos/*.jpg') instead of the run's test split. Repeatable.")] = None,
    data: Annotated[str | None, typer.Option(help="The dataset (name or path) to check on "
                                             "and calibrate with, instead of the run's.")]
    = None,
    data_dir: Annotated[str | None, typer.Option(help="Where to look for datasets first.")]
    = None,
    offline: Annotated[bool, typer.Option(help="Never download.")] = False,
    max_drop: Annotated[float, typer.Option(
        help="Accuracy points a quantized export may lose before it is refused.")] = 1.0,
    check_images: Annotated[int, typer.Option(
        help="Test images to check on (a seeded sample; 0: all).")] = 1000,
    device: Annotated[str, typer.Option(help="auto, cpu, gpu or gpu:N (for the Keras "
                                        "model and the converters).")] = "auto",
    json: JsonOpt = False,
) -> None:
    """Export a trained model: cnncli export runs/mnist/latest --format onnx,litert."""
    from cnncli import devices
    from cnncli.cli import render
    from cnncli.export import formats

    formats.plan(fmt, quantize or ["none"])  # bad options are said before TensorFlow loads
    formats.check_options(max_drop, check_images)
    placement = devices.setup(device, "float32", one_device=True)
    from cnncli.export import exporter

    if not json:
        render.info(placement.describe())
    try:
        report = exporter.export(target, formats=fmt, quantize=quantize or ["none"],
                                 output=output, force=force, images=images, data=data,
                                 data_dir=data_dir, offline=offline, max_drop=max_drop,
                                 check_images=check_images)
    except exporter.ExportStopped as stopped:  # Ctrl-C, a full disk: what was done, the error
        if not json:  # (with --json, the error's JSON holds the report)
            if stopped.report.results:
                render.exports(stopped.report)
            _problems(stopped.report, render)
        raise
    if json:
        render.print_json(report.to_dict())
        render.warn_all(report.notes)
    else:
        render.exports(report)
    codes = _problems(report, render)
    if codes:
        raise typer.Exit(max(codes))


def _problems(report, render) -> list[int]:
    """Say the report's failed checks and errors on stderr; their exit codes."""
    from cnncli.text import printable

    for failed in report.failed:  # a path may hold a newline: escaped, as in errors
        kept = "the new file was not kept (the one made before is still there)" if \
            failed.path.exists() else "the file was not kept"  # (--force)
        render.err.print(printable(f"FAIL: {failed.path}: {failed.check.problem}; {kept}",
                                   one_line=True), markup=False)
    for error in report.errors:  # on stderr: with --json the report above has them too
        render.error(error)
    return [e.exit_code for e in report.errors] + [EXIT_BELOW_THRESHOLD] * bool(report.failed)
