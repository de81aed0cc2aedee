"""Run a model `cnncli export` wrote, without cnncli: the images prepared as cnncli
prepares them, so the probabilities are the ones `cnncli predict --precision float32`
gives (to about 1e-6).

    python examples/client.py runs/mnist/latest/export/model.onnx examples/digits/7.png
    python examples/client.py model.tflite photo.jpg other.png --json

Needs numpy, Pillow and the file's runtime: onnxruntime (.onnx), ai-edge-litert
(.tflite) or openvino (.xml). Copy it beside your model and change what you need: it
imports nothing of cnncli. What each step does, and why, is in README.md ("Deploying").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: The formats cnncli reads (others are refused, not guessed at).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")


def deep_to_8_bits(values: np.ndarray, mode: str) -> np.ndarray:
    """A grey image of more than 8 bits onto 0..255 over its bit depth's range: 16-bit
    over 0..65535, 32-bit integers over 0..65535 or, beyond, 0..2^31-1, floats over 0..1,
    0..255 or 0..65535 (the first that holds them)."""
    values = values.astype(np.float64)
    if mode.startswith("I;16"):
        top = 65535.0
    elif mode == "I":
        top = 65535.0 if values.max(initial=0) <= 65535 else float(2**31 - 1)
    else:  # "F"
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        peak = values.max(initial=0)
        top = next((t for t in (1.0, 255.0, 65535.0) if peak <= t), peak)
    return np.round(np.clip(values, 0, top) * (255.0 / top)).astype(np.uint8)


def read_image(path: str, height: int, width: int, channels: int, resize: str) -> np.ndarray:
    """One image as the model's input: (height, width, channels) uint8."""
    with Image.open(path, formats=FORMATS) as img:
        if img.format == "JPEG" and img.mode in ("L", "RGB"):
            side = max(height, width)  # a large JPEG is decoded at a reduced scale
            img.draft(img.mode, (side, side))
        img.load()
        img = ImageOps.exif_transpose(img)  # a phone's photo, upright
        if img.mode.startswith("I") or img.mode == "F":  # 16-bit, 32-bit or float grey
            img = Image.fromarray(deep_to_8_bits(np.asarray(img), img.mode), mode="L")
        elif img.mode == "1":
            img = img.convert("L")
        elif img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")  # transparency on white
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba).convert("RGB")
        elif img.mode not in ("L", "RGB"):  # palette, CMYK...: by RGB
            img = img.convert("RGB")
        target = "L" if channels == 1 else "RGB"  # RGB into grey: ITU-R 601 luma
        img = img if img.mode == target else img.convert(target)
        size = (width, height)
        if img.size != size:  # the way the model was trained (the JSON's `resize`)
            if resize == "center_crop":
                img = ImageOps.fit(img, size, method=Image.Resampling.BILINEAR)
            elif resize == "pad":
                img = ImageOps.pad(img, size, method=Image.Resampling.BILINEAR, color=0)
            else:  # stretch
                img = img.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).reshape(height, width, channels)


def runner(model: Path):
    """A function from a uint8 batch (N, H, W, C) to probabilities (N, classes)."""
    if model.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return lambda x: session.run(["probabilities"], {"image": x})[0]
    if model.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        run = Interpreter(model_path=str(model)).get_signature_runner()  # by its names
        scale, zero = run.get_output_details()["probabilities"]["quantization"]

        def litert(x):
            y = run(image=x)["probabilities"]
            return (y.astype(np.float32) - zero) * scale if scale else y  # integer output

        return litert
    if model.suffix == ".xml":
        import openvino

        # f32: OpenVINO computes in bfloat16 by default on CPUs that have it
        compiled = openvino.Core().compile_model(str(model), "CPU",
                                                 {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda x: compiled(x)[compiled.output(0)]
    raise SystemExit(f"{model}: give a .onnx, .tflite or .xml file")


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    model, *images = [Path(a) for a in argv if a != "--json"] or [None]
    if not images:
        raise SystemExit("usage: python client.py MODEL(.onnx|.tflite|.xml) IMAGE... [--json]")
    about = json.loads(Path(f"{model}.json").read_text())  # model.onnx.json beside it
    _, height, width, channels = about["input"]["shape"]
    batch = np.stack([read_image(str(p), height, width, channels,
                                 about.get("resize", "stretch")) for p in images])
    probabilities = runner(model)(batch)
    names = about["class_names"]
    found = []
    for path, row in zip(images, probabilities, strict=True):
        top = np.argsort(-row, kind="stable")[:5]
        found.append({"file": str(path), "top": [{"class": names[i],
                                                  "probability": float(row[i])} for i in top]})
    if as_json:
        print(json.dumps(found, indent=1))
    for image in found if not as_json else ():
        print(image["file"])
        for rank, guess in enumerate(image["top"], 1):
            value = guess["probability"]  # raw scores (no softmax: output.values) as they are
            scores = about["output"].get("values") == "scores"
            print(f"{rank}. {guess['class']}: {value:.4g}" if scores else
                  f"{rank}. {guess['class']}: {value:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
