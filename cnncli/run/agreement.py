"""Several machines train one run: before anything is written, each says what it would
train (its config, a fingerprint of its data, whether it resumes and from where) through
the cluster's key-value store, and every machine stops with the same error when any of
them differs. Without this, a worker started with another seed, one more image or
another run to resume trained on together without a word (its batches mixed with the
others', its validation images leaking into their training) or failed in a collective
with a message about something else.

>>> differences({"worker 0": {"config": {"train.seed": 0}},
...              "worker 1": {"config": {"train.seed": 7}}})
['`train.seed` is 0 on worker 0 and 7 on worker 1']
"""

from __future__ import annotations

import json

from cnncli import devices
from cnncli.devices import distributed
from cnncli.errors import ConfigError
from cnncli.run import resume
from cnncli.run.plan import Plan
from cnncli.runtime import import_tf
from cnncli.text import first_line

#: Settings each machine has of its own: those a resume takes as given (where the run is
#: written, how the data is read: `resume.IGNORED`), where the data is (the data itself
#: is compared: `Feed.fingerprint`), the kind of device (their number is compared when
#: the cluster is joined), and the network's section, whose files may be at other paths
#: (the network itself is compared: `network_of`).
OWN_SETTINGS = (*resume.IGNORED, "data.name", "train.device", "model")


def what_is_trained(p: Plan, start: str) -> dict:
    """What this machine would train: its settings (but `OWN_SETTINGS`), its network,
    its data's fingerprint, and `start` (``as a new run``, or where it resumes from)."""
    settings = {key: value for key, value in resume.flat(p.cfg.resolved()).items()
                if not key.startswith(OWN_SETTINGS)}
    return {"config": settings, "network": network_of(p), "data": p.feed.fingerprint(),
            "start": start}


def network_of(p: Plan) -> str:
    """A fingerprint of the network every machine can compare: the spec's
    (`Spec.digest`: input, classes, layers), with the files a pretrained backbone's
    weights or a cut model come from named by their contents (SHA-256), not by their
    paths, which may differ between machines."""
    t = p.transfer
    files = {w.path: w.sha256 for w in (t.weights if t else [])} | {
        s.file: s.sha256 for s in (t.sources if t else [])}
    return p.spec.digest(files)


def check_same_run(p: Plan, start: str, topic: str = "run") -> None:
    """A `ConfigError` on every machine of the cluster unless all would train what this
    one would (`what_is_trained`); nothing on one machine. `topic`: a name for this
    comparison in the store (each is made once a process)."""
    mine = json.dumps(what_is_trained(p, start), sort_keys=True)
    distributed.all_here(p.placement)  # a machine that stopped is found here, in seconds
    tf = import_tf()
    try:
        said = devices.said_by_each_machine(p.placement, topic, mine)
    except (tf.errors.UnavailableError, tf.errors.AbortedError):
        raise  # a machine that stopped: `distributed.peers_watched` says so
    except tf.errors.OpError as exc:  # one that never came
        raise ConfigError("the machines of the cluster could not compare their runs: "
                          f"{first_line(exc)}",
                          hint="start cnncli train on every machine of TF_CONFIG") from None
    found = differences({task: json.loads(text) for task, text in said.items()})
    if found:
        raise ConfigError(
            "the machines of the cluster would not train the same run: " + "; ".join(found),
            hint="start every machine with the same config, settings and data (each may "
                 "have its data elsewhere: the images and labels are compared, not where "
                 "they are), and the same --resume or none")


def differences(records: dict[str, dict]) -> list[str]:
    """What differs between the machines' `what_is_trained` records, said for people.

    >>> differences({"worker 0": {"data": {"train": 432, "validation": 48, "digest": "a"}},
    ...              "worker 1": {"data": {"train": 433, "validation": 48, "digest": "b"}}})
    ['the data has 432 training and 48 validation images on worker 0, 433 and 48 on worker 1']
    """
    found = []
    configs = {task: r.get("config", {}) for task, r in records.items()}
    networks = {task: r.get("network") for task, r in records.items()}
    if len(set(networks.values())) > 1:
        found.append("the network differs (its layers, classes, input or pretrained "
                     "weights): " + _apart(networks, "build", "one"))
    for key in sorted({k for c in configs.values() for k in c}):
        values = {task: json.dumps(c.get(key)) for task, c in configs.items()}
        if len(set(values.values())) > 1:
            found.append(f"`{key}` is " + _each(values))
    data = {task: r.get("data") or {} for task, r in records.items()}
    counts = {task: (d.get("train"), d.get("validation")) for task, d in data.items()}
    if len(set(counts.values())) > 1:
        (first, (train, val)), *rest = counts.items()
        found.append(f"the data has {train} training and {val} validation images on "
                     f"{first}, " + ", ".join(f"{t} and {v} on {task}"
                                              for task, (t, v) in rest))
    elif len({json.dumps(d, sort_keys=True) for d in data.values()}) > 1:
        found.append("the data is as many images on each machine, but not the same images "
                     "or labels: " + _apart({task: json.dumps(d, sort_keys=True)
                                             for task, d in data.items()}, "hold", "one set"))
    starts = {task: json.dumps(r.get("start")) for task, r in records.items()}
    if len(set(starts.values())) > 1:
        found.append("the machines start differently: " + _each(starts))
    return found


def _apart(values: dict[str, str], verb: str, first: str) -> str:
    """``worker 0 and worker 2 hold one set; worker 1 holds another``."""
    return "; ".join(f"{' and '.join(tasks)} {verb if len(tasks) > 1 else verb + 's'} "
                     f"{first if i == 0 else 'another'}"
                     for i, tasks in enumerate(_groups(values).values()))


def _groups(values: dict[str, str]) -> dict[str, list[str]]:
    """The tasks saying each value, in the order first said."""
    by_value: dict[str, list[str]] = {}
    for task, value in values.items():
        by_value.setdefault(value, []).append(task)
    return by_value


def _each(values: dict[str, str]) -> str:
    """``0 on worker 0 and 7 on worker 1`` (machines saying the same, together)."""
    parts = [f"{value} on {' and '.join(tasks)}" for value, tasks in _groups(values).items()]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
