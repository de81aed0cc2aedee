"""This process's place in a cluster of machines training together, from ``TF_CONFIG``
(Kubeflow's TFJob, Vertex AI and SageMaker set it). No TensorFlow.

>>> cluster = parse_tf_config('{"cluster": {"worker": ["a:2222", "b:2222"]},'
...                           ' "task": {"type": "worker", "index": 1}}')
>>> cluster.workers, cluster.task, cluster.is_chief
(2, 'worker 1', False)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cnncli import files
from cnncli.errors import ConfigError
from cnncli.text import count

#: ``TF_CONFIG`` task types that train (MultiWorkerMirroredStrategy's); an
#: ``evaluator`` may be listed in the cluster but does not train.
TRAINING_TASKS = ("chief", "worker")

TF_CONFIG_HINT = ('TF_CONFIG is JSON such as {"cluster": {"worker": ["host0:2222", '
                  '"host1:2222"]}, "task": {"type": "worker", "index": 0}}; Kubeflow, '
                  "Vertex AI and SageMaker set it; unset it to train on this machine only")


@dataclass


class Cluster:
    """This process's place in a training cluster, from ``TF_CONFIG`` (`parse_tf_config`).

    Args:
        workers: tasks that train together (the chief, if any, and the workers).
        task_type: ``"chief"`` or ``"worker"``.
        task_index: this task's index among the tasks of its type.
        is_chief: whether this task writes the run: the ``chief`` task, or
            worker 0 when the cluster has no chief.
        address: this task's ``host:port`` (where it listens).
    """

    workers: int
    task_type: str
    task_index: int
    is_chief: bool
    address: str = ""

    @property
    def task(self) -> str:
        """``"worker 1"``, ``"chief 0"``."""
        return f"{self.task_type} {self.task_index}"


def _tf_config_error(message: str) -> ConfigError:
    return ConfigError(message, hint=TF_CONFIG_HINT)


def _address_problem(host) -> str | None:
    """What is wrong with a cluster's task address (None: a ``host:port``).

    >>> _address_problem("w0:2222"), _address_problem("[::1]:2222"), _address_problem("w0")
    (None, None, 'is not host:port, e.g. "host0:2222"')
    """
    if not isinstance(host, str):
        return 'is not a string "host:port"'
    name, _, port = host.rpartition(":")
    if not name or not (port.isascii() and port.isdigit()):
        return 'is not host:port, e.g. "host0:2222"'
    if not 0 < int(port) < 65536:
        return f"has port {port}, not one from 1 to 65535"
    return None


def from_environment() -> Cluster | None:
    """This process's place in the cluster its ``TF_CONFIG`` describes (`parse_tf_config`),
    or None (one machine)."""
    return parse_tf_config(os.environ.get("TF_CONFIG"))


def parse_tf_config(text: str | None) -> Cluster | None:
    """The training cluster a ``TF_CONFIG`` value describes, and this task's place in it.

    None when there is nothing to join: `text` unset or empty, no cluster, or a
    cluster with a single training task (Vertex AI sets one for one machine).

    >>> parse_tf_config('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]},'
    ...                 ' "task": {"type": "worker", "index": 0}}')
    Cluster(workers=2, task_type='worker', task_index=0, is_chief=False, address='b:1')
    >>> parse_tf_config(None) is None
    True

    Raises:
        ConfigError: not JSON, parameter servers, or a task that is not in the cluster.
    """
    if not text or not text.strip():
        return None
    try:
        data = files.parse_json(text)
    except json.JSONDecodeError as exc:
        raise _tf_config_error(f"TF_CONFIG is not valid JSON ({exc.msg} at character "
                               f"{exc.pos})") from None
    except ValueError as exc:  # nested too deeply, a number of thousands of digits
        raise _tf_config_error(f"TF_CONFIG cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise _tf_config_error("TF_CONFIG is not a JSON object")
    cluster, task = data.get("cluster") or {}, data.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise _tf_config_error("TF_CONFIG's `cluster` and `task` must be JSON objects")
    if not cluster:
        return None
    other = sorted(set(cluster) - set(TRAINING_TASKS) - {"evaluator"})
    if other:
        raise _tf_config_error(
            f"TF_CONFIG's cluster has '{other[0]}' tasks, but cnncli trains with "
            "MultiWorkerMirroredStrategy, on 'chief' and 'worker' tasks only")
    lists = {kind: cluster.get(kind) or [] for kind in TRAINING_TASKS}
    if any(not isinstance(hosts, list) for hosts in lists.values()):
        raise _tf_config_error("TF_CONFIG's cluster must list each task type's hosts")
    if len(lists["chief"]) > 1:
        raise _tf_config_error("TF_CONFIG's cluster has more than one chief")
    for kind, hosts in lists.items():
        for host in hosts:
            if problem := _address_problem(host):
                raise _tf_config_error(f"TF_CONFIG's {kind} address {host!r} {problem}")
    workers = len(lists["chief"]) + len(lists["worker"])
    kind, index = task.get("type"), task.get("index")
    if kind is None and workers > 1:
        raise _tf_config_error(f"TF_CONFIG has no task type: which of its cluster's "
                               f"{workers} tasks is this machine?")
    if kind not in TRAINING_TASKS and kind is not None:
        raise _tf_config_error(f"TF_CONFIG's task type {kind!r} does not train: cnncli "
                               "trains on 'chief' and 'worker' tasks")
    if workers < 2 and (kind is None or index in (None, 0)):
        return None  # one machine (a task index beyond it is refused below)
    if index is None and len(lists[kind]) > 1:
        raise _tf_config_error(f"TF_CONFIG's task has no index: which of the "
                               f"{len(lists[kind])} {kind} tasks is this machine?")
    index = 0 if index is None else index
    if isinstance(index, bool) or not isinstance(index, int):
        raise _tf_config_error(f"TF_CONFIG's task index {index!r} is not a whole number")
    if not 0 <= index < len(lists[kind]):
        raise _tf_config_error(f"TF_CONFIG's task {kind} {index!r} is not in its cluster, "
                               f"which has {count(len(lists[kind]), kind + ' task')}")
    if workers < 2:
        return None
    return Cluster(workers=workers, task_type=kind, task_index=index,
                   is_chief=kind == "chief" or (not lists["chief"] and index == 0),
                   address=lists[kind][index])
