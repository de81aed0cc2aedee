"""The built-in architecture specs: one YAML file each, beside this file.

A name is accepted anywhere a spec path is (``cnncli summary vgg16``).

>>> "vgg16" in names()
True
>>> resolve("vgg16").name
'vgg16.yaml'
"""

from __future__ import annotations

from pathlib import Path

from cnncli.errors import ConfigError

HERE = Path(__file__).parent


def names() -> list[str]:
    """Names of the built-in specs, sorted."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def resolve(path_or_name: str | Path) -> Path:
    """The YAML file for a built-in name, or the given path if it is a file."""
    text = str(path_or_name)
    builtin = HERE / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")) and builtin.exists():
        return builtin
    path = Path(text)
    if path.exists():
        return path
    import difflib

    close = difflib.get_close_matches(text, names(), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        f"'{text}' is neither a spec file nor a built-in architecture",
        hint=hint + "built-in: " + ", ".join(names()),
    )
