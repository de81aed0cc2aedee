"""Resuming with a changed config: what ``--force`` may change, and how it is recorded.

A resumed run continues with the config it was started with (``config.yaml`` in the run,
with the device and precision ``auto`` chose). A different value is refused unless
``--force``; then it is applied and recorded. Some values shape what the backup holds
(the network, the data, the batch, the optimizer's kind, the seed): they are refused even
with ``--force``, since no backup could continue with them. `data.name` may change with
``--force`` (a data folder moved elsewhere): the data read there must be the run's own
(`cnncli.data.feed.Feed.fingerprint`, checked before the backup is read).

>>> changes({"train": {"epochs": 4, "seed": 0}}, {"train": {"epochs": 5, "seed": 0}})
{'train.epochs': (4, 5)}
>>> refused({"train.epochs": (4, 5), "train.seed": (0, 1)})
['train.seed']
>>> changes({"data": {"offline": False}}, {"data": {"offline": True}})
{}
"""

from __future__ import annotations

from cnncli.text import shorten

#: Keys (and sections) a resume cannot change: the backup was made with them.
FIXED = ("model", "data.validation_split", "data.stratify", "data.limit", "data.image_size",
         "data.preprocessing", "train.batch_size", "train.seed", "train.optimizer.name",
         "train.metrics", "train.loss", "train.label_smoothing", "train.scale_lr",
         "train.freeze", "train.fine_tune")
#: Keys a resume takes as given, without ``--force``: where a new run would go, and where
#: and how the same data is read (a machine without network resumes with ``--offline``).
IGNORED = ("output", "data.offline", "data.data_dir", "data.cache")


def flat(doc: object, prefix: str = "") -> dict:
    """A nested mapping as ``{"train.optimizer.name": ...}``.

    >>> flat({"train": {"seed": 0, "optimizer": {"name": "adam"}}})
    {'train.seed': 0, 'train.optimizer.name': 'adam'}
    """
    if isinstance(doc, dict) and doc:
        out = {}
        for key, value in doc.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): doc}


def changes(before: dict, after: dict) -> dict[str, tuple]:
    """Dotted key -> (old, new) for every value that differs."""
    old, new = flat(before), flat(after)
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and not k.startswith(IGNORED)}


#: Schedules whose learning rate the optimizer keeps as a number (a variable in its
#: backup); the others compute it from the step count. A resume cannot switch between the
#: two: the backup's optimizer has one variable more or less than the new one.
RATE_AS_A_NUMBER = ("constant", "plateau")


def refused(diff: dict) -> list[str]:
    """The changed keys no resume can apply."""
    old, new = diff.get("train.schedule.name", ("constant", "constant"))
    kind = [(name or "constant") in RATE_AS_A_NUMBER for name in (old, new)]
    return [k for k in diff if any(k == f or k.startswith(f + ".") for f in FIXED)
            or (k == "train.schedule.name" and kind[0] != kind[1])]


def describe(diff: dict) -> str:
    """``train.epochs 4 -> 5; train.optimizer.learning_rate 0.001 -> 0.05``."""
    return "; ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in diff.items())


def _short(value) -> str:
    return shorten("unset" if value is None else str(value), 40)
