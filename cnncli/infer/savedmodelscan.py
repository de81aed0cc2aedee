"""Checking a SavedModel before TensorFlow runs it: the operations its serving function
reaches must not touch files, the network or other processes.

A SavedModel is a TensorFlow program, not only weights: its graph may read and write
files (``tf.io.write_file``), print into one, open datasets, write summaries or call
other machines, all run the moment cnncli predicts with it. Keras' safe mode does not
look into SavedModels. `check` reads ``saved_model.pb``, walks what the
``serving_default`` signature reaches (its nodes, the functions they call, their
branches and loop bodies, and so on), and refuses an operation of those kinds, naming
it. Restoring the variables (TensorFlow's own checkpoint reading, from the SavedModel's
``variables/`` folder) is not in that function and is allowed: the files cnncli export
writes pass.

>>> check(Path("export/saved_model"))     # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

from cnncli.errors import ModelError

SIGNATURE = "serving_default"

#: Operations that reach outside the computation: files (read, write, match, memory-map),
#: checkpoints, summaries and events, printing (into a file too), datasets and readers,
#: lookup tables read from files, Python functions, databases, other machines.
_OUTSIDE = re.compile(
    r"File|Reader|Writer|Summary|Save|Restore|Checkpoint|Dataset|Print|Debug|Event|"
    r"ImmutableConst|PyFunc|Sql|LMDB|Snapshot|Rpc|Grpc|Remote|Collective|Socket|Http|"
    r"Queue|Enqueue|Dequeue")


def check(folder: Path) -> None:
    """Refuse the SavedModel in `folder` if its serving function reaches an operation
    that goes outside the computation (`_OUTSIDE`); a `ModelError` naming it."""
    found = sorted(op for op in reached_ops(folder) if _OUTSIDE.search(op))
    if found:
        raise ModelError(
            f"the SavedModel runs {', '.join(found[:5])}" + (" and more" if len(found) > 5
                                                              else "")
            + ": operations that reach files, the network or other processes, not those of "
            "an image classifier", file=str(folder),
            hint="a SavedModel is a program: run only those you trust; cnncli export's "
                 "SavedModels have none of these")


def reached_ops(folder: Path) -> set[str]:
    """The operation types the ``serving_default`` signature of the SavedModel in
    `folder` reaches (every node and function of its first graph if it has none)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception as exc:  # OSError, protobuf's DecodeError
        raise ModelError(f"saved_model.pb cannot be read ({exc})", file=str(folder),
                         hint="export the model again") from None
    if not saved.meta_graphs:
        raise ModelError("saved_model.pb holds no graph", file=str(folder),
                         hint="export the model again")
    meta = saved.meta_graphs[0]
    graph = meta.graph_def
    nodes = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    if SIGNATURE in meta.signature_def:
        todo = [t.name for t in meta.signature_def[SIGNATURE].outputs.values()]
    else:
        todo = list(nodes)
    ops: set[str] = set()
    called: list[str] = []
    seen: set[str] = set()
    while todo:  # the graph's nodes the outputs depend on
        name = todo.pop().lstrip("^").split(":")[0]
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        called += _visit(nodes[name], ops, functions)
        todo += list(nodes[name].input)
    done: set[str] = set()
    while called:  # the functions they call, and those those call
        name = called.pop()
        if name in done or name not in functions:
            continue
        done.add(name)
        for node in functions[name].node_def:
            called += _visit(node, ops, functions)
    return ops


def _visit(node, ops: set[str], functions: dict) -> list[str]:
    """Record `node`'s operation; the functions it calls (as its operation, or in an
    attribute: a call's `f`, a branch, a loop's body)."""
    ops.add(node.op)
    called = [node.op] if node.op in functions else []
    for attr in node.attr.values():
        if attr.HasField("func"):
            called.append(attr.func.name)
        called += [f.name for f in attr.list.func]
    return called
