"""What in a Keras model file's config would run code when loaded: Lambda layers, modules
outside Keras, Keras functions that are not about modelling, custom objects. Read before
Keras sees the file (`cnncli.model.modelfile.load_model`).

>>> scan_config({"config": {"layers": [{"class_name": "Lambda", "config": {"name": "f"}}]}})
["a Lambda layer 'f' (Lambda layers hold Python code) at config.layers[0]"]
"""

from __future__ import annotations

import builtins

#: Keras API names a model config never needs (Keras refuses most of these itself).
_NON_MODELING_MODULES = ("keras.config", "keras.saving", "keras.utils", "keras.models",
                         "keras.backend", "keras.preprocessing", "keras.src.saving",
                         "keras.src.utils", "keras.src.backend.config")

_NON_MODELING_NAMES = {"enable_unsafe_deserialization", "load_model", "save_model",
                       "model_from_json", "load_weights", "save_weights", "get_file",
                       "deserialize_keras_object", "register_keras_serializable"}


def scan_config(config: object) -> list[str]:
    """What in a model config would need Python code to load, as readable phrases.

    Looks at every object the config describes, at any depth (sub-models, wrapped
    layers, activations, the compile config). An empty list means nothing was found.

    >>> scan_config({"config": {"layers": [{"class_name": "Lambda", "config": {"name": "f"}}]}})
    ["a Lambda layer 'f' (Lambda layers hold Python code) at config.layers[0]"]
    >>> scan_config({"module": "os", "class_name": "system", "config": {}})
    ["a reference to Python module 'os' ('system') at the top level"]
    """
    problems: list[str] = []
    _scan(config, "", problems)
    return problems


def _scan(node: object, where: str, problems: list[str]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _scan(item, f"{where}[{i}]", problems)
        return
    if not isinstance(node, dict):
        return
    problem = _problem_of(node)
    if problem:
        problems.append(f"{problem} at {where or 'the top level'}")
        return  # one problem per object: its insides are not looked at
    for key, value in node.items():
        _scan(value, f"{where}.{key}" if where else str(key), problems)


def _problem_of(node: dict) -> str | None:
    """The problem with one config object (a dict), or None."""
    class_name = node.get("class_name")
    inner = node.get("config")
    if class_name in ("Lambda", "__lambda__"):
        name = inner.get("name") if isinstance(inner, dict) else None
        label = f" '{name}'" if isinstance(name, str) else ""
        return f"a Lambda layer{label} (Lambda layers hold Python code)"
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        return f"a custom object '{registered}' (its Python code is not in the file)"
    if "module" not in node:
        return None
    module = node["module"]
    # For functions, Keras stores the function's name as the config.
    name = inner if class_name == "function" and isinstance(inner, str) else class_name
    if module is None:
        return None
    if not isinstance(module, str):
        return f"a module name that is not text ({module!r})"
    if module == "builtins":
        if class_name == "function" and isinstance(name, str) and _keras_builtin_name(name):
            return None  # e.g. an activation saved by name; Keras looks it up in keras.*
        return f"a reference to Python's builtins ('{name}')"
    if module != "keras" and not module.startswith("keras."):
        return f"a reference to Python module '{module}' ('{name}')"
    if module.startswith(_NON_MODELING_MODULES) or name in _NON_MODELING_NAMES:
        return f"a call to '{module}.{name}', which is not part of a model"
    return None


def _keras_builtin_name(name: str) -> bool:
    """A plain name that is not one of Python's builtins (eval, exec, open, __import__...)."""
    return name.isidentifier() and not name.startswith("_") and not hasattr(builtins, name)
