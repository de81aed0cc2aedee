"""Exporting trained models for deployment: SavedModel, ONNX, LiteRT and OpenVINO files
that take uint8 images and give class probabilities, each checked in its own runtime.

`exporter.export` is the entry point (``cnncli export``); `formats` lists the formats,
`graph` builds what they hold, `convert` writes them, `verify` judges them, `metadata`
and `staging` write what goes beside them, safely. Running the files is
`cnncli.infer.exported`'s job (``cnncli predict --model model.onnx``).
"""
