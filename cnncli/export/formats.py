"""The export formats: one entry each, with its file names, variants and runtime.

>>> [f"{v.format.name}:{v.quantization}" for v in plan(["onnx,litert"], ["none", "int8"])[0]]
['onnx:none', 'onnx:int8', 'litert:none', 'litert:int8']
>>> FORMATS["openvino"].files(Path("out"), "model", "float16")
[PosixPath('out/model.float16.bin'), PosixPath('out/model.float16.xml')]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnncli.errors import ConfigError, suggest

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


@dataclass(frozen=True)
class Format:
    """One export format.

    Args:
        name: what ``--format`` takes.
        suffix: the file's suffix; "" for a folder (SavedModel).
        quantizations: the variants it has (``none`` is the float32 file).
        extra: the ``pip install 'cnncli[extra]'`` that brings its packages.
        modules: what exporting to it imports (checked before any work).
        companion: another file written beside the main one (OpenVINO's weights).
        fallbacks: the formats to try instead when a model cannot be converted to
            this one, in the order to try them.

    A new format is an entry here, its converter (`cnncli.export.convert.CONVERTERS`)
    and its runtime (`cnncli.infer.exported`'s openers); a test checks all three.
    """

    name: str
    suffix: str
    quantizations: tuple[str, ...]
    extra: str | None
    modules: tuple[str, ...]
    fallbacks: tuple[str, ...]
    companion: str | None = None

    def main_file(self, folder: Path, base: str, quantization: str) -> Path:
        """``model.onnx``, ``model.int8.tflite``, ``saved_model``."""
        if not self.suffix:
            return folder / (base if quantization == "none" else f"{base}.{quantization}")
        middle = "" if quantization == "none" else f".{quantization}"
        return folder / f"{base}{middle}{self.suffix}"

    def files(self, folder: Path, base: str, quantization: str) -> list[Path]:
        """Every file or folder of one export, the main one last (it is renamed last)."""
        main = self.main_file(folder, base, quantization)
        return ([main.with_suffix(self.companion)] if self.companion else []) + [main]


FORMATS = {f.name: f for f in (
    Format("saved_model", "", ("none",), None, (), ("onnx",)),
    Format("onnx", ".onnx", QUANTIZATIONS, "onnx", ("onnx", "onnxruntime", "tf2onnx"),
           ("saved_model", "litert")),
    Format("litert", ".tflite", QUANTIZATIONS, "litert", ("ai_edge_litert.interpreter",),
           ("saved_model", "onnx")),
    Format("openvino", ".xml", ("none", "float16"), "openvino", ("openvino",),
           ("saved_model", "onnx"), ".bin"),
)}
ALIASES = {"tflite": "litert", "savedmodel": "saved_model", "tf_saved_model": "saved_model",
           "ov": "openvino"}
SAVED_MODEL_BASE = "saved_model"  # the folder's name (TensorFlow Serving's word)


@dataclass(frozen=True)
class Variant:
    """One file to write: a format and a quantization."""

    format: Format
    quantization: str

    @property
    def label(self) -> str:
        return self.format.name + ("" if self.quantization == "none"
                                   else f" ({self.quantization})")


def quantizations_help() -> str:
    """Which formats have which variants, for ``--quantize``'s help.

    >>> quantizations_help()
    'onnx and litert: all four; openvino: none and float16; saved_model: none only'
    """
    by_variants: dict[tuple[str, ...], list[str]] = {}
    for f in FORMATS.values():
        by_variants.setdefault(f.quantizations, []).append(f.name)
    said = [" and ".join(names) + ": " + ("all four" if q == QUANTIZATIONS else
                                          "none only" if q == ("none",) else " and ".join(q))
            for q, names in sorted(by_variants.items(), key=lambda kv: -len(kv[0]))]
    return "; ".join(said)


def _split(values) -> list[str]:
    return [v.strip().lower() for value in values for v in str(value).split(",") if v.strip()]


def _known(value: str, choices, what: str) -> str:
    aliases = ALIASES if what == "--format" else {}
    value = aliases.get(value, value)
    if value in choices:
        return value
    close = suggest(value, [*choices, *aliases])  # "tflit": did you mean 'tflite'?
    raise ConfigError(f"{what}: unknown value '{value}'",
                      hint=(f"{close} " if close else "") + "use " + ", ".join(choices))


def plan(formats, quantizations) -> tuple[list[Variant], list[str]]:
    """The variants to write for ``--format`` and ``--quantize`` (both repeatable and
    comma-separated), and notes on combinations a format does not have (skipped)."""
    names = list(dict.fromkeys(_known(f, FORMATS, "--format") for f in _split(formats)))
    quants = list(dict.fromkeys(_known(q, QUANTIZATIONS, "--quantize")
                                for q in _split(quantizations) or ["none"]))
    if not names:
        raise ConfigError("no --format given", hint="use " + ", ".join(FORMATS))
    variants, notes = [], []
    for name in names:
        fmt = FORMATS[name]
        for q in quants:
            if q in fmt.quantizations:
                variants.append(Variant(fmt, q))
            else:
                notes.append(f"{name} has no {q} variant (it has: "
                             f"{', '.join(fmt.quantizations)}); skipped")
    for q in quants:
        if not any(v.quantization == q for v in variants):
            raise ConfigError(f"none of the formats asked for has the {q} variant",
                              hint=f"{q} exists for " + ", ".join(
                                  f.name for f in FORMATS.values() if q in f.quantizations))
    return variants, notes


def check_options(max_drop: float, check_images: int) -> None:
    """The `ConfigError` of an out-of-range ``--max-drop`` or ``--check-images`` (said
    before TensorFlow loads).

    >>> check_options(-3, 1000)
    Traceback (most recent call last):
    cnncli.errors.ConfigError: --max-drop is in accuracy points (0 to 100), not -3. Hint: e.g. --max-drop 1 (one point: 91.0% -> 90.0%)
    """  # noqa: E501
    if not 0 <= max_drop <= 100:
        raise ConfigError(f"--max-drop is in accuracy points (0 to 100), not {max_drop:g}",
                          hint="e.g. --max-drop 1 (one point: 91.0% -> 90.0%)")
    if check_images < 0:
        raise ConfigError("--check-images must be 0 (all) or more", hint="e.g. 1000")


def require_packages(variants: list[Variant]) -> None:
    """Import what each format needs now, so a missing extra fails before any work;
    every format's that is missing is said at once (not one per try)."""
    from cnncli.errors import CnnError, raise_all
    from cnncli.infer.exported import import_openvino, require

    missing: list[CnnError] = []
    for fmt in dict.fromkeys(v.format for v in variants):
        try:
            for module in fmt.modules:
                import_openvino() if module == "openvino" else require(module, fmt.extra)
        except CnnError as exc:  # this format's first missing module says its extra
            missing.append(exc)
    raise_all(missing)
