"""Load ``.keras`` model files safely, and save them without ever leaving half a file.

A ``.keras`` file is a zip archive holding ``config.json`` (the architecture),
``model.weights.h5`` and ``metadata.json``. Loading one can run code if its config
asks for it (a ``Lambda`` layer holds Python bytecode; other entries name Python
functions). `load_model` therefore checks, in this order, before Keras sees the file:

1. the path is local (not ``hf://``, ``gs://``, ``s3://``, ``http(s)://`` ...), exists,
   is a regular file and not a folder, and ends in ``.keras`` (legacy ``.h5`` files
   are refused with a way to convert them);
2. the file is a complete zip archive of sane size: at most `MAX_UNCOMPRESSED_BYTES`
   unpacked, no member unpacking to more than `MAX_COMPRESSION_RATIO` times its stored
   size (zip bombs), every checksum right, with a ``config.json``;
3. `scan_config` finds nothing that needs Python code: no ``Lambda`` layer, no module
   outside Keras, no Keras function that is not about modelling (e.g.
   ``keras.config.enable_unsafe_deserialization``), no custom object;

then Keras loads it with ``safe_mode=True`` (never turned off) and ``compile=False``.
Keras' unsafe-deserialization switch must be off before and after; if anything turned
it on, it is turned off again and the load fails.

>>> model = load_model("runs/fashion/model.keras")              # doctest: +SKIP
>>> save_model_atomic(model, "runs/fashion/copy.keras")         # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import zipfile
import zlib

from cnncli import files
from cnncli.errors import ModelError, WriteError
from cnncli.model.config_scan import scan_config
from cnncli.model.meta import ModelMeta
from cnncli.runtime import import_keras
from cnncli.text import shorten

keras = import_keras()

MODEL_SUFFIX = ".keras"

#: Largest total unpacked size of a model archive (4 GiB; ConvNeXtXLarge is 1.4 GB).
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3

#: Largest unpacked/stored ratio of one archive member bigger than `RATIO_FLOOR_BYTES`.
#: Keras stores members uncompressed (ratio 1); a zip bomb reaches about 1000.
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 1024**2

#: Most members an archive may have (Keras writes three, plus any assets).
MAX_MEMBERS = 10_000
METADATA = "cnncli.json"  # what cnncli stores beside Keras' own files in a .keras zip

#: Largest ``config.json`` (it is parsed in memory; big real models need about 1 MB).
MAX_CONFIG_BYTES = 64 * 1024**2

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

_CONVERT_HINT = (
    "convert it once in an environment you trust: load it there with Keras "
    "(keras.saving.load_model('model.h5')) and save it with model.save('model.keras')"
)
_KERAS_FAILED_HINT = (
    "the file may hold custom layers, or come from a different Keras version; cnncli "
    "loads models made of Keras' own layers"
)
_NO_CODE_HINT = (
    "cnncli loads only models built from Keras' own layers; rebuild the model without "
    "custom Python code (e.g. replace Lambda layers with built-in layers) and save it again"
)


# --- checks before Keras sees the file -----------------------------------------------


def check_model_path(path: str | os.PathLike) -> str:
    """Check that `path` names a local, existing, regular ``.keras`` file; return it as str.

    Raises:
        ModelError: with its own message for a remote path, a missing file, a folder,
            a legacy ``.h5`` file, a weights-only file or another suffix.
    """
    text = os.fspath(path)
    if _REMOTE.match(text):
        scheme = text.split("://", 1)[0]
        raise ModelError(
            f"'{scheme}://' is a remote location; cnncli only loads model files from the "
            "local disk", file=text,
            hint="download the file first and pass its local path",
        )
    if not os.path.lexists(text):
        raise ModelError("the model file does not exist", file=text,
                         hint="check the path; 'cnncli train' writes <run folder>/model.keras")
    if os.path.isdir(text):
        raise ModelError(
            "this is a folder, not a .keras model file", file=text,
            hint="a .keras model is a single zip file; pass the file, e.g. <run>/model.keras",
        )
    try:
        mode = os.stat(text).st_mode
    except OSError as err:
        raise ModelError(f"cannot read the model file: {err.strerror}", file=text) from None
    if not stat.S_ISREG(mode):
        raise ModelError("this is not a regular file (a device, pipe or socket?)", file=text)
    lower = text.lower()
    if lower.endswith(".weights.h5"):
        raise ModelError(
            "this file holds only weights, not a model", file=text,
            hint="give the model it belongs to instead: for a pretrained network, its name "
                 "with --weights FILE (predict, evaluate, explain; `cnncli models` lists the "
                 "names); for weights of your own model, its run folder or .keras file",
        )
    if lower.endswith((".h5", ".hdf5")):
        raise ModelError(
            "legacy HDF5 (.h5) model files are not loaded: their loader has no safe mode",
            file=text, hint=_CONVERT_HINT,
        )
    if lower.endswith(MODEL_SUFFIX) and not text.endswith(MODEL_SUFFIX):
        raise ModelError("the model file name must end in lower-case .keras", file=text,
                         hint="rename it; Keras only recognises the lower-case suffix")
    if not lower.endswith(MODEL_SUFFIX):
        hint = ("Keras 3 model files end in .keras (predict and evaluate also take an "
                "exported .onnx, .tflite or .xml file, or a SavedModel folder)")
        if zipfile.is_zipfile(text):
            hint = "if this is a Keras 3 model archive, rename it to end in .keras"
        elif _starts_with(text, _HDF5_SIGNATURE):
            hint = _CONVERT_HINT
        raise ModelError("this is not a .keras model file", file=text, hint=hint)
    return text


def _starts_with(path: str, signature: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(signature)) == signature
    except OSError:
        return False


def read_model_config(
    path: str | os.PathLike,
    *,
    max_total_bytes: int = MAX_UNCOMPRESSED_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
) -> dict:
    """Check the archive at `path` (see the module docstring, step 2); return config.json.

    Raises:
        ModelError: for an empty, truncated, damaged or encrypted archive, a zip bomb,
            an archive without ``config.json``, or a config that is not a JSON object.
    """
    text = os.fspath(path)
    if os.path.getsize(text) == 0:
        raise ModelError("the model file is empty (0 bytes)", file=text,
                         hint="the save or copy probably failed; save the model again")
    if not zipfile.is_zipfile(text):
        if _starts_with(text, _ZIP_SIGNATURE):
            raise ModelError(
                "the model file is truncated or damaged (its zip directory is missing)",
                file=text, hint="copy or download it again",
            )
        if _starts_with(text, _HDF5_SIGNATURE):
            raise ModelError("this is a legacy HDF5 model named .keras", file=text,
                             hint=_CONVERT_HINT)
        raise ModelError("this is not a Keras model file (not a zip archive)", file=text,
                         hint="a .keras file is what Keras 3 model.save('x.keras') writes")
    try:
        with zipfile.ZipFile(text) as archive:
            _check_members(archive, text, max_total_bytes, max_ratio)
            bad = archive.testzip()
            if bad is not None:
                raise ModelError(f"the model file is damaged: '{bad}' fails its checksum",
                                 file=text, hint="copy or download it again")
            if "config.json" not in archive.namelist():
                raise ModelError(
                    "this zip archive is not a Keras model: it has no config.json",
                    file=text, hint="a .keras file is what Keras 3 model.save('x.keras') writes",
                )
            raw = archive.read("config.json")
    except ModelError:
        raise
    except RuntimeError as err:  # zipfile: encrypted member
        raise ModelError(f"cannot read the model archive: {err}", file=text) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise ModelError(f"the model file is truncated or damaged ({err})", file=text,
                         hint="copy or download it again") from None
    try:
        config = files.parse_json(raw)
    except ValueError as err:
        raise ModelError(f"config.json in the model file is not valid JSON ({err})",
                         file=text) from None
    if not isinstance(config, dict):
        raise ModelError("config.json in the model file is not a JSON object", file=text)
    return config


def _check_members(archive: zipfile.ZipFile, path: str, max_total: int, max_ratio: float):
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelError(f"the model archive has {len(infos)} members, more than "
                         f"{MAX_MEMBERS}; refusing it", file=path)
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ModelError("the model archive holds two members with the same name; "
                         "refusing it", file=path)
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
            raise ModelError(f"the model archive holds a member with an unsafe path '{name}'",
                             file=path)
        total += info.file_size
        stored = max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * stored:
            raise ModelError(
                f"the model archive member '{name}' unpacks to {info.file_size:,} bytes "
                f"from {info.compress_size:,}; refusing a possible zip bomb", file=path,
            )
    if total > max_total:
        raise ModelError(
            f"the model archive unpacks to {total:,} bytes, more than the {max_total:,} "
            "cnncli accepts; refusing a possible zip bomb", file=path,
        )
    if "config.json" in names:
        size = archive.getinfo("config.json").file_size
        if size > MAX_CONFIG_BYTES:
            raise ModelError(f"config.json in the model file is {size:,} bytes, more than "
                             f"the {MAX_CONFIG_BYTES:,} cnncli reads", file=path)


# --- Keras' unsafe-deserialization switch ----------------------------------------------


def unsafe_deserialization_enabled() -> bool:
    """True if something called ``keras.config.enable_unsafe_deserialization()``.

    Keras 3.15 has no public getter, so this reads the flag that function sets.
    """
    getter = getattr(keras.config, "is_unsafe_deserialization_enabled", None)
    if getter is not None:
        return bool(getter())
    return keras.src.saving.serialization_lib.in_safe_mode() is False


def _disable_unsafe_deserialization() -> None:
    """Undo ``enable_unsafe_deserialization()`` (Keras has no public function for it)."""
    keras.src.backend.common.global_state.set_global_attribute("safe_mode_saving", None)


def _enforce_safe_mode(path: str, when: str) -> None:
    if unsafe_deserialization_enabled():
        _disable_unsafe_deserialization()
        raise ModelError(
            f"Keras' unsafe deserialization was switched on {when} loading the model; "
            "cnncli switched it off again and refuses this model", file=path,
            hint="nothing in cnncli turns it on; check plugins or code run in this process",
        )


# --- loading and saving ----------------------------------------------------------------


def _keras_load(path: str, config: dict | None = None):
    """Keras' own loader, in safe mode, errors as ModelError (no checks of ours). With
    `config` (the file's config.json), the model is made from it alone: its layers and
    shapes, and no weights read."""
    _enforce_safe_mode(path, "before")
    try:
        if config is None:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        else:  # as load_model does it (private: keras<3.16 is pinned), uncompiled
            from keras.src.saving.serialization_lib import ObjectSharingScope

            with ObjectSharingScope():
                model = keras.saving.deserialize_keras_object(
                    {**config, "compile_config": None}, safe_mode=True)
    except Exception as err:  # any deserialization failure: unknown layer, bad weights...
        _enforce_safe_mode(path, "while")
        raise ModelError(f"Keras cannot load the model: {_root_cause(err)}", file=path,
                         hint=_KERAS_FAILED_HINT) from err
    _enforce_safe_mode(path, "while")
    if not isinstance(model, keras.Model):
        raise ModelError(f"the file holds a {type(model).__name__}, not a Keras model",
                         file=path)
    return model


def _root_cause(err: BaseException, limit: int = 300) -> str:
    """The message of the innermost exception Keras chained (the outer ones only say
    "Functional could not be deserialized"), on one line, at most `limit` characters."""
    for _ in range(50):  # chains are short; the bound only guards against a cycle
        inner = err.__cause__ or err.__context__
        if inner is None:
            break
        err = inner
    message = " ".join(str(err).split()) or type(err).__name__
    return shorten(message, limit)


def load_model(path: str | os.PathLike, *, weights: bool = True):
    """Load a ``.keras`` model file safely (see the module docstring); uncompiled.

    ``weights=False`` makes the model from the file's description alone, reading none of
    its weights (new, untrained values; none at all under `builder.weightless`): what
    showing or planning a network cut from it needs, in half the time for a ResNet50
    (0.7 against 1.5 s) and without the memory of the weights.

    Raises:
        ModelError: naming the file, with its own message for each reason it is refused.
    """
    text = check_model_path(path)
    config = read_model_config(text)
    problems = scan_config(config)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelError(f"refusing to load the model: it contains {problems[0]}{more}",
                         file=text, hint=_NO_CODE_HINT)
    return _keras_load(text, None if weights else config)


def save_model_atomic(model: keras.Model, path: str | os.PathLike,
                      meta: ModelMeta | None = None) -> None:
    """Save `model` to the ``.keras`` file `path` so a crash never leaves half a file.

    `meta` (class names, preprocessing, input size...) is stored inside the file as
    ``cnncli.json``, which Keras ignores: a model file carries what prediction needs.

    Keras writes a temporary file in the same folder, which is flushed to disk and then
    renamed over `path` in one step; the folder is flushed too. On failure the
    temporary file is removed and any older `path` is left as it was.

    Raises:
        ModelError: if `path` does not end in ``.keras``, or its folder is missing or
            not writable, or the disk is full.
    """
    text = os.fspath(path)
    if not text.endswith(MODEL_SUFFIX):
        raise ModelError("a model file name must end in .keras (lower case)", file=text,
                         hint=f"save it as {os.path.splitext(text)[0]}.keras")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise ModelError("the folder to save the model in does not exist", file=text)
    tmp = os.path.join(
        folder, f"{files.unfinished_prefix(text)}{os.getpid()}-{secrets.token_hex(4)}.tmp.keras"
    )
    try:
        model.save(tmp)
        if meta is not None:
            with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(METADATA, json.dumps(meta.to_json(), indent=1))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, text)
    except OSError as err:
        raise WriteError(f"cannot save the model: {err.strerror or err}", file=text) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    files.sync_folder(folder)


def is_remote(path: str) -> bool:
    """True for ``hf://``, ``gs://``, ``http://`` and other URLs (never loaded)."""
    return bool(_REMOTE.match(path))


def outline(path: str | os.PathLike) -> tuple[str, set[str]] | None:
    """Keras' name for the model in a ``.keras`` file and the names of its layers (from
    its config.json, nothing loaded); None if the file is no readable Keras model, or one
    that loading refuses (code in it): loading it says why."""
    try:
        found = read_model_config(path)
    except ModelError:
        return None
    if scan_config(found):
        return None
    inner = found.get("config")
    if not isinstance(inner, dict):
        return None
    layers = inner.get("layers") if isinstance(inner.get("layers"), list) else []
    names = {layer.get("config", {}).get("name") for layer in layers
             if isinstance(layer, dict) and isinstance(layer.get("config"), dict)}
    return str(inner.get("name", "")), {n for n in names if isinstance(n, str)}


def read_meta(path: str | os.PathLike) -> ModelMeta | None:
    """The `ModelMeta` stored in a model file by `save_model_atomic`, if any.

    Raises:
        ModelError: the stored record is too large or holds values of the wrong type.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA not in archive.namelist():
                return None
            if archive.getinfo(METADATA).file_size > MAX_CONFIG_BYTES:
                raise ModelError("the model's cnncli.json is too large", file=str(path))
            data = files.parse_json(archive.read(METADATA))
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    return ModelMeta.from_json(data, file=str(path))


