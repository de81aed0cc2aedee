"""Commands that use a trained or pretrained model: predict, evaluate."""

from __future__ import annotations

import sys
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


def predict(
    sources: Annotated[list[str], typer.Argument(
        metavar="IMAGES", help="Image files, folders, globs, @list.txt, - (paths on stdin) "
        "or http(s) URLs.")],
    model: Annotated[str, typer.Option(help=f"A pretrained name ({PRETRAINED}), a run "
                                       "folder, a "
                                       ".keras file, or an exported model.onnx, .tflite, "
                                       ".xml or SavedModel folder.")],
    top: Annotated[int, typer.Option(min=1, help="How many classes to show per image.")] = 5,
    weights: WeightsOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json, jsonl or csv.")] = "text",
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Images per batch (default: 64 on a CPU, 128 on a GPU).")] = None,
    precision: PrecisionOpt = "auto",
    resize: Annotated[str | None, typer.Option(help="stretch, center_crop or pad (default: "
                                               "as the model was trained).")] = None,
    skip_bad: SkipBadOpt = False,
    offline: OfflineOpt = False,
    device: DeviceOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results.")] = False,
    explain: Annotated[str | None, typer.Option(
        metavar="DIR", help="Also write a Grad-CAM heat map of the top class of each image "
        "into DIR (gradcam_<image>.png).")] = None,
    json: JsonOpt = False,  # --format json, as every command has it
) -> None:
    """Classify images: cnncli predict car.jpg --model vgg16."""
    from cnncli import devices
    from cnncli.cli import render
    from cnncli.infer import classifier
    from cnncli.infer import predict as prediction

    if fmt not in ("text", "json", "jsonl", "csv"):
        raise typer.BadParameter("use text, json, jsonl or csv", param_hint="--format")
    if json and fmt not in ("text", "json"):
        raise typer.BadParameter(f"--json is --format json: give one of them, not --format "
                                 f"{fmt} too", param_hint="--json")
    fmt = "json" if json else fmt
    if resize is not None:  # before the model is loaded
        from cnncli.data import images
        from cnncli.errors import ConfigError

        try:
            images.resize_mode(resize)
        except ConfigError as exc:
            exc.where = f"--resize {resize}"
            raise
    if explain == "":
        raise typer.BadParameter("give the folder for the heat maps", param_hint="--explain")
    if explain is not None:  # before any work: a bad --explain is known now
        from cnncli.viz import explain as explaining

        explain = explaining.check_folder(explain, model)
    placement = _placement(model, device, precision)
    loaded = classifier.load(model, weights=weights, offline=offline,
                             precision=placement.precision if placement else "float32")
    if explain:  # a model without convolutions is refused before it predicts
        explaining.check_model(loaded)
    runtime = placement.describe() if placement else None
    if not quiet:
        render.info(runtime or f"Runtime: {loaded.runtime}")
        render.info(f"[INFO] classifying image with '{loaded.name}'...")  # a run's file
    # written batch by batch as they come, but with heat maps (made after all are known);
    # the warnings known so far before each batch's (`| head` would never see them after)
    out, said = render.Predictions(fmt), []

    def each(result, images):
        render.warn_all(result.warnings[len(said):])
        said[:] = result.warnings
        out.add(result, images)

    result = prediction.predict(sources, model=loaded, top=top,
                                batch_size=batch_size or devices.inference_batch_size(placement),
                                resize=resize, stdin=sys.stdin,
                                each=None if explain else each)
    stopped = explaining.for_predictions(result, loaded, explain, resize) if explain else None
    for image in result.images if explain and not quiet else ():
        if image.gradcam:
            render.info(f"Grad-CAM: {image.gradcam}")
    if result.errors and not result.predicted and stopped is None:
        render.warn_all(result.warnings)
        raise none_done(result.errors)  # said as any error is: no empty list of results
    out.add(result, result.images)  # (each with its heat map's file in JSON)
    out.end(result)
    render.warn_all(result.warnings[len(said):])
    excused = skip_bad and bool(result.predicted)  # --skip-bad excuses some, not all
    render.unread(result.errors, skipped=excused)
    if stopped is not None:
        render.error(stopped)
        raise typer.Exit(stopped.exit_code)
    if result.errors and not excused:
        raise typer.Exit(EXIT_BELOW_THRESHOLD)  # (none read: `none_done`'s error above)


def evaluate(
    target: Annotated[str, typer.Argument(metavar="RUN_OR_MODEL", help="A run folder "
                                          "(runs/mnist/1), its latest link, a .keras file, or "
                                          "an exported file (.onnx, .tflite, .xml, SavedModel "
                                          "folder).")],
    data: Annotated[str | None, typer.Option(help="Evaluate on this dataset (name or path) "
                                             "instead of the run's.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where to look for datasets first.")]
    = None,
    offline: Annotated[bool, typer.Option(help="Never download.")] = False,
    weights: WeightsOpt = None,
    fail_under: Annotated[list[str] | None, typer.Option(
        help="Exit 1 when a figure is worse: accuracy=0.99 (loss=0.3 means at most). "
        "Repeatable.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per prediction batch.")] = 256,
    precision: PrecisionOpt = "auto",
    output: Annotated[str | None, typer.Option(help="Folder for the PNGs and "
                                               "evaluation.json (default: the run's).")]
    = None,
    device: DeviceOpt = "auto",
    all_images: Annotated[bool, typer.Option(
        "--all-images", help="Every image of a --data folder or CSV that has no test split "
        "of its own (photos the model was not trained on; one class is enough), not a "
        "seeded fifth.")] = False,
    json: JsonOpt = False,
) -> None:
    """Evaluate a trained model on its test set: figures, per-class table, confusions."""
    from cnncli.cli import render
    from cnncli.infer import evaluate as evaluation
    from cnncli.infer import metrics

    metrics.parse_thresholds(fail_under or [])  # a bad --fail-under before TensorFlow
    placement = _placement(target, device, precision)
    if not json and placement:
        render.info(placement.describe())
    rep = evaluation.evaluate(target, data=data, data_dir=data_dir, offline=offline,
                              batch_size=batch_size, fail_under=fail_under or [],
                              output=output, all_images=all_images, weights=weights,
                              precision=placement.precision if placement else "float32")
    if json:
        render.print_json(rep.to_dict())
        render.warn_all(rep.notes)
    else:
        render.evaluation(rep)
    for passed in rep.passes:  # a check list: each threshold met, then each missed
        render.err.print(f"PASS: {passed}", markup=False)
    for failure in rep.failures:
        render.err.print(f"FAIL: {failure}", markup=False)
    if rep.failures:
        raise typer.Exit(EXIT_BELOW_THRESHOLD)


def _placement(model: str, device: str, precision: str):
    """`cnncli.infer.placement.place`, its warnings said."""
    from cnncli.cli import render
    from cnncli.infer.placement import place

    placement, notes = place(model, device, precision)
    render.warn_all(notes)
    return placement
