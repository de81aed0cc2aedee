"""What an exported file says about itself: class names, preprocessing, input, origin.

Always in the sidecar JSON beside the file (`cnncli.infer.sidecar`) and in the folder's
``labels.txt``; also inside the file where the format has a place for it:

- ONNX: ``metadata_props`` (``cnncli``: the sidecar's JSON but its ``check``, made after
  the file; ``class_names``: a JSON list; ``preprocessing``; ``input``), read with ONNX
  Runtime's ``session.get_modelmeta().custom_metadata_map``;
- OpenVINO: the ``.xml``'s ``rt_info`` (``cnncli``: the same JSON), read with
  ``core.read_model(path).get_rt_info(["cnncli"])``;
- SavedModel: ``assets/labels.txt`` and ``assets/cnncli.json`` (TensorFlow Serving keeps
  the folder whole).

LiteRT files have only the sidecar (LiteRT's metadata needs the whole FlatBuffer
rewritten in Python, hundreds of MB for VGG16); `cnncli predict` of one without it reads
``labels.txt`` beside it, and says what it cannot know.

>>> info = describe("onnx", "int8", (28, 28, 1), classifier_stub)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from cnncli import files
from cnncli.infer import artefact, sidecar
from cnncli.infer.sidecar import INPUT_NAME, ExportInfo


def describe(fmt: str, quantization: str, shape, reference, check: dict | None = None,
             *, scores: bool = False) -> ExportInfo:
    """The `ExportInfo` of one export of the Keras classifier `reference`."""
    meta = reference.meta
    source = reference.artefact.model_path if reference.artefact else None
    return ExportInfo(
        fmt, quantization=quantization, input_shape=tuple(int(d) for d in shape),
        class_names=tuple(reference.class_names),
        preprocessing=getattr(reference, "preprocessing", meta.preprocessing),
        model_input=tuple(int(d) for d in reference.network_input), model=meta.model,
        dataset=meta.dataset, resize=meta.resize,
        held_out=artefact.held_out(meta, reference.artefact),
        source=str(source) if source else None, check=dict(check or {}), scores=scores)


def embedded(info: ExportInfo) -> str:
    """The JSON stored inside a file: the sidecar's but its ``check``, which is made
    after the file (the sidecar has the figures)."""
    return files.json_text({k: v for k, v in info.to_json().items() if k != "check"},
                           one_line=True)


def embed_onnx(path: Path, info: ExportInfo) -> None:
    """Store `info` in the ONNX file's ``metadata_props`` (before it is checked)."""
    import onnx

    model = onnx.load(str(path))
    text = embedded(info)
    props = {sidecar.EMBEDDED_KEY: text,
             "class_names": files.json_text(list(info.class_names), one_line=True),
             "preprocessing": f"{info.preprocessing} (inside the graph)",
             "input": f"{INPUT_NAME}: uint8 NHWC [batch, {', '.join(map(str, info.input_shape))}]"}
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"cnncli export of {info.model}: uint8 images in, class "
                        f"{'scores' if info.scores else 'probabilities'} out; see "
                        "metadata_props")
    onnx.save(model, str(path))


def write_sidecars(path: Path, info: ExportInfo) -> Path:
    """The JSON beside `path` (and a SavedModel's assets). Returns the JSON's path."""
    text = files.json_text(info.to_json()) + "\n"  # strict: what any parser reads
    if info.format == "saved_model":
        assets = path / "assets"
        assets.mkdir(exist_ok=True)
        files.write_atomic(assets / sidecar.SAVED_MODEL_ASSET, text)
        files.write_atomic(assets / sidecar.LABELS_FILE, sidecar.labels_text(info.class_names))
    json_path = sidecar.sidecar_path(path)
    files.write_atomic(json_path, text)
    return json_path
