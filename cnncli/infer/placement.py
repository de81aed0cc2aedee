"""Where and in what precision a model to run computes: TensorFlow's device set-up for a
Keras model or a SavedModel; none for an ONNX, LiteRT or OpenVINO file, which runs in its
own runtime.

>>> placement, notes = place("model.onnx", "gpu", "auto")     # doctest: +SKIP
>>> placement, notes                                          # doctest: +SKIP
(None, ['--device gpu does not apply to onnx files: they run on the CPU, ...'])
"""

from __future__ import annotations

from cnncli import devices
from cnncli.infer import exported


def place(model: str, device: str, precision: str) -> tuple[devices.Placement | None,
                                                            list[str]]:
    """TensorFlow's devices and precision set up for running `model` (a run, a ``.keras``
    file, a pretrained name or an exported file), and warnings for options that do not
    apply to it. None for an exported ONNX, LiteRT or OpenVINO file; a SavedModel runs
    in TensorFlow, on the device, in the precision it was exported in (float32)."""
    from cnncli.devices.placement import parse_device, parse_precision

    kind = exported.kind(model)
    if kind is None:
        return devices.setup(device, precision, one_device=True), []
    form, _ = parse_device(device)
    asked = [f"--device {device}"] * (form == "gpu" and kind != "saved_model") + [
        f"--precision {precision}"] * (parse_precision(precision) not in ("auto", "float32"))
    where = "on the CPU, " if kind != "saved_model" else ""
    notes = [f"{' '.join(asked)} {'does' if len(asked) == 1 else 'do'} not apply to {kind} "
             f"files: they run {where}in the precision they were exported in"] if asked else []
    if kind != "saved_model":
        return None, notes
    return devices.setup(device, "float32", one_device=True), notes
