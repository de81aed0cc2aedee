"""The networks cnncli knows, as ``cnncli models`` lists them: the built-in architectures
(specs) and the pretrained networks, with whether their weights are on this machine.

>>> [e.name for e in entries()][:3]
['alexnet', 'googlenet', 'lenet5']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cnncli.model import architectures, pretrained, spec


@dataclass(frozen=True)
class Entry:
    """One network: a built-in spec (`kind` ``spec``) or a pretrained one (``pretrained``,
    with its weights files in Keras' cache, if there)."""

    name: str
    kind: str
    input: list[int]
    classes: int | None
    description: str
    weights: str | None = None  # the file with the classifier (prediction)
    notop_weights: str | None = None  # the file without it (fine-tuning)

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.kind == "spec":  # a spec has no weights files
            del data["weights"], data["notop_weights"]
        return data


def entries() -> list[Entry]:
    """The built-in architectures, then the pretrained networks, each in name order."""
    found = []
    for name in architectures.names():
        s = spec.load(name)
        found.append(Entry(name, "spec", s.input, s.classes, s.description))
    for name, entry in sorted(pretrained.REGISTRY.items()):
        cached = pretrained.cached_weights(entry)
        notop = pretrained.cached_notop(entry)
        found.append(Entry(
            name, "pretrained", list(entry.input_shape), 1000,
            f"ImageNet weights {_cached(cached, entry.megabytes)}; without the classifier "
            f"(for fine-tuning) {_cached(notop, entry.notop_megabytes)}",
            str(cached) if cached else None, str(notop) if notop else None))
    return found


def _cached(path, megabytes: float) -> str:
    return "cached" if path else f"not cached ({megabytes:g} MB download)"
