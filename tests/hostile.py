"""Builders of hostile and broken model files, for tests of cnncli.model.modelfile.load_model.

Each builder saves a small real Keras model and then damages it or edits the
``config.json`` inside the zip, the way an attacker would. Code-bearing files try to
create a marker file when loaded unsafely, so a test can prove nothing ran.

`CASES` lists them all: ``case.build(folder, marker) -> path`` makes the file in
`folder` (or returns a remote path) and `case.message` is a regex the refusal's
message must match.

>>> path = CASES["lambda_top_level"].build(tmp_path, tmp_path / "marker")  # doctest: +SKIP
>>> load_model(path)                                                       # doctest: +SKIP
Traceback (most recent call last):
cnncli.errors.ModelError: ...: refusing to load the model: it contains a Lambda layer ...
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnncli.runtime import import_keras

keras = import_keras()

Edit = Callable[[dict], None]


# --- building blocks --------------------------------------------------------------------


def small_model():
    """A tiny functional model: 4 inputs -> Dense(3, softmax)."""
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    return keras.Model(inputs, outputs, name="small")


def save_small_model(path: Path) -> Path:
    small_model().save(path)
    return path


def marker_lambda(marker: Path, name: str = "hack"):
    """A Lambda layer whose function creates `marker` when it runs (the path is in its code).

    Building a model runs it once; `save_lambda_model` removes that marker.
    """
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]"
    return keras.layers.Lambda(eval(code), name=name)  # noqa: S307 (building a test fixture)


def save_lambda_model(model, path: Path, marker: Path) -> Path:
    """Save `model`, then remove the marker its Lambda made when the model was built."""
    model.save(path)
    marker.unlink(missing_ok=True)
    return path


def rewrite_config(src: Path, dst: Path, edit: Edit) -> Path:
    """Copy the .keras zip `src` to `dst`, with `edit(config)` applied to its config.json."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(info, data)
    return dst


def edited_small_model(folder: Path, name: str, edit: Edit) -> Path:
    """A small model saved to `folder`, then its config edited, as `folder/name`."""
    clean = save_small_model(folder / f"clean-{name}")
    return rewrite_config(clean, folder / name, edit)


def layer_config(config: dict, layer_name: str) -> dict:
    """The entry of layer `layer_name` in a functional model's config."""
    for layer in config["config"]["layers"]:
        if layer["config"].get("name") == layer_name:
            return layer
    raise KeyError(layer_name)


# --- Lambda layers (Python bytecode in the file) --------------------------------------


def lambda_top_level(folder: Path, marker: Path) -> str:
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(marker_lambda(marker)(inputs))
    return str(save_lambda_model(keras.Model(inputs, outputs), folder / "lambda.keras", marker))


def lambda_in_submodel(folder: Path, marker: Path) -> str:
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, marker_lambda(marker)(inner_in), name="inner")
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(inner(inputs))
    model = keras.Model(inputs, outputs, name="outer")
    return str(save_lambda_model(model, folder / "nested.keras", marker))


def lambda_in_layer_config(folder: Path, marker: Path) -> str:
    """A Lambda inside another layer's config (TimeDistributed keeps its layer there)."""
    inputs = keras.Input((3, 4))
    outputs = keras.layers.TimeDistributed(marker_lambda(marker), name="wrapper")(inputs)
    return str(save_lambda_model(keras.Model(inputs, outputs), folder / "wrapped.keras", marker))


# --- config entries naming arbitrary Python ---------------------------------------------


def module_os_system(folder: Path, marker: Path) -> str:
    def edit(config):
        layer = layer_config(config, "hidden")
        layer.update({"module": "os", "class_name": "system",
                      "config": {"command": f"touch {marker}", "name": "hidden"}})

    return str(edited_small_model(folder, "os_system.keras", edit))


def builtins_eval_activation(folder: Path, marker: Path) -> str:
    def edit(config):
        layer_config(config, "hidden")["config"]["activation"] = {
            "module": "builtins", "class_name": "function", "config": "eval",
            "registered_name": "function",
        }

    return str(edited_small_model(folder, "builtins_eval.keras", edit))


def builtins_exec_layer(folder: Path, marker: Path) -> str:
    def edit(config):
        layer = layer_config(config, "hidden")
        layer.update({"module": "builtins", "class_name": "exec",
                      "config": {"source": f"open({str(marker)!r}, 'w')", "name": "hidden"}})

    return str(edited_small_model(folder, "builtins_exec.keras", edit))


def module_subprocess_function(folder: Path, marker: Path) -> str:
    def edit(config):
        layer_config(config, "probs")["config"]["activation"] = {
            "module": "subprocess", "class_name": "function", "config": "getoutput",
            "registered_name": None,
        }

    return str(edited_small_model(folder, "subprocess.keras", edit))


def custom_registered_object(folder: Path, marker: Path) -> str:
    def edit(config):
        layer = layer_config(config, "hidden")
        layer.update({"module": None, "class_name": "Backdoor",
                      "registered_name": "Attacker>Backdoor"})

    return str(edited_small_model(folder, "custom.keras", edit))


# --- switching Keras' safe mode off from inside the file --------------------------------


def _lambda_model_with(folder: Path, marker: Path, name: str, edit: Edit) -> str:
    """A model with a Lambda after `edit`; if the edit turned safe mode off, the Lambda runs."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    outputs = marker_lambda(marker)(hidden)
    clean = save_lambda_model(keras.Model(inputs, outputs), folder / f"clean-{name}", marker)
    return str(rewrite_config(clean, folder / name, edit))


def unsafe_switch_as_activation(folder: Path, marker: Path) -> str:
    def edit(config):
        layer_config(config, "hidden")["config"]["activation"] = {
            "module": "keras.config", "class_name": "function",
            "config": "enable_unsafe_deserialization", "registered_name": "function",
        }

    return _lambda_model_with(folder, marker, "unsafe_activation.keras", edit)


def unsafe_switch_as_layer(folder: Path, marker: Path) -> str:
    def edit(config):
        layer_config(config, "hidden").update(
            {"module": "keras.config", "class_name": "enable_unsafe_deserialization"}
        )

    return _lambda_model_with(folder, marker, "unsafe_layer.keras", edit)


# --- zip bombs --------------------------------------------------------------------------

BOMB_BYTES = 64 * 1024**2  # compresses to about 64 kB


def _add_bomb_member(src: Path, dst: Path, member: str) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                data = data + b" " * BOMB_BYTES  # JSON allows trailing spaces
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
        if member not in zin.namelist():
            zout.writestr(member, bytes(BOMB_BYTES), compress_type=zipfile.ZIP_DEFLATED)
    return dst


def zip_bomb_member(folder: Path, marker: Path) -> str:
    clean = save_small_model(folder / "clean-bomb.keras")
    return str(_add_bomb_member(clean, folder / "bomb.keras", "assets/padding.bin"))


def zip_bomb_config(folder: Path, marker: Path) -> str:
    clean = save_small_model(folder / "clean-bomb-config.keras")
    return str(_add_bomb_member(clean, folder / "bomb_config.keras", "config.json"))


# --- legacy, broken and wrong files -----------------------------------------------------


def legacy_h5(folder: Path, marker: Path) -> str:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, marker_lambda(marker)(inputs))
    return str(save_lambda_model(model, folder / "legacy.h5", marker))


def hdf5_named_keras(folder: Path, marker: Path) -> str:
    path = folder / "renamed.keras"
    shutil.copy(legacy_h5(folder, marker), path)
    return str(path)


def truncated(folder: Path, marker: Path) -> str:
    data = save_small_model(folder / "full.keras").read_bytes()
    path = folder / "truncated.keras"
    path.write_bytes(data[: len(data) * 2 // 3])
    return str(path)


def corrupted_member(folder: Path, marker: Path) -> str:
    """A complete zip whose weights fail their checksum (one byte flipped)."""
    path = save_small_model(folder / "corrupt.keras")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    data = bytearray(path.read_bytes())
    # Keras stores members uncompressed: the data follows a 30-byte local header.
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return str(path)


def directory_named_keras(folder: Path, marker: Path) -> str:
    """An unpacked model in a folder named x.keras (Keras itself would load it)."""
    clean = save_small_model(folder / "clean-dir.keras")
    path = folder / "unpacked.keras"
    with zipfile.ZipFile(clean) as archive:
        archive.extractall(path)
    return str(path)


def missing_file(folder: Path, marker: Path) -> str:
    return str(folder / "missing.keras")


def empty_file(folder: Path, marker: Path) -> str:
    path = folder / "empty.keras"
    path.write_bytes(b"")
    return str(path)


def text_file(folder: Path, marker: Path) -> str:
    path = folder / "notes.keras"
    path.write_text("this is not a model\n")
    return str(path)


def random_bytes(folder: Path, marker: Path) -> str:
    path = folder / "noise.keras"
    path.write_bytes(os.urandom(4096))
    return str(path)


def zip_without_config(folder: Path, marker: Path) -> str:
    path = folder / "photos.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat.jpg", b"not really a cat")
    return str(path)


def _remote(url: str):
    return lambda folder, marker: url


# --- the catalogue ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile or broken model file and how its refusal must read."""

    build: Callable[[Path, Path], str]
    message: str  # regex searched in the ModelError's message
    runs_code: bool = False  # would run Python code if loaded without safe mode


_LAMBDA = r"refusing to load the model: it contains a Lambda layer"
_BOMB = r"zip bomb"

CASES: dict[str, Case] = {
    "lambda_top_level": Case(lambda_top_level, _LAMBDA, runs_code=True),
    "lambda_in_submodel": Case(lambda_in_submodel, _LAMBDA, runs_code=True),
    "lambda_in_layer_config": Case(lambda_in_layer_config, _LAMBDA, runs_code=True),
    "module_os_system": Case(module_os_system, r"Python module 'os' \('system'\)"),
    "builtins_eval_activation": Case(builtins_eval_activation, r"builtins \('eval'\)"),
    "builtins_exec_layer": Case(builtins_exec_layer, r"builtins \('exec'\)"),
    "module_subprocess_function": Case(module_subprocess_function, r"module 'subprocess'"),
    "custom_registered_object": Case(custom_registered_object, r"custom object"),
    "unsafe_switch_as_activation": Case(unsafe_switch_as_activation,
                                        r"keras\.config\.enable_unsafe_deserialization"),
    "unsafe_switch_as_layer": Case(unsafe_switch_as_layer,
                                   r"keras\.config\.enable_unsafe_deserialization"),
    "zip_bomb_member": Case(zip_bomb_member, _BOMB),
    "zip_bomb_config": Case(zip_bomb_config, _BOMB),
    "legacy_h5": Case(legacy_h5, r"legacy HDF5", runs_code=True),
    "hdf5_named_keras": Case(hdf5_named_keras, r"legacy HDF5 model named \.keras"),
    "truncated": Case(truncated, r"truncated or damaged"),
    "corrupted_member": Case(corrupted_member, r"fails its checksum"),
    "directory_named_keras": Case(directory_named_keras, r"is a folder"),
    "missing_file": Case(missing_file, r"does not exist"),
    "empty_file": Case(empty_file, r"empty \(0 bytes\)"),
    "text_file": Case(text_file, r"not a zip archive"),
    "random_bytes": Case(random_bytes, r"not a zip archive"),
    "zip_without_config": Case(zip_without_config, r"no config\.json"),
    "remote_hf": Case(_remote("hf://attacker/model"), r"'hf://' is a remote location"),
    "remote_gs": Case(_remote("gs://bucket/model.keras"), r"'gs://' is a remote location"),
    "remote_s3": Case(_remote("s3://bucket/model.keras"), r"'s3://' is a remote location"),
    "remote_http": Case(_remote("http://example.com/m.keras"), r"'http://' is a remote"),
    "remote_https": Case(_remote("https://example.com/m.keras"), r"'https://' is a remote"),
}

#: Cases whose config asks for Python code, with the reason Keras' safe mode alone gives
#: for refusing them: each is refused twice over (cnncli's `scan_config`, then Keras).
KERAS_REFUSALS: dict[str, str] = {
    "lambda_top_level": r"`Lambda` layer whose `function` is a Python lambda",
    "lambda_in_submodel": r"`Lambda` layer whose `function` is a Python lambda",
    "lambda_in_layer_config": r"`Lambda` layer whose `function` is a Python lambda",
    "module_os_system": r"Could not locate class 'system'",
    "builtins_eval_activation": r"Could not locate function 'eval'",
    "builtins_exec_layer": r"Could not locate class 'exec'",
    "module_subprocess_function": r"Could not locate function 'getoutput'",
    "custom_registered_object": r"Could not locate class 'Backdoor'",
    "unsafe_switch_as_activation": r"`keras.config.enable_unsafe_deserialization` because "
                                   r"it is not a modeling function",
    "unsafe_switch_as_layer": r"`keras.config.enable_unsafe_deserialization` because "
                              r"it is not a modeling function",
}
