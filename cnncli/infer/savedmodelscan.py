"""Checking a SavedModel before TensorFlow loads it: none of its operations may touch
files, the network or other processes.

A SavedModel is a TensorFlow program, not only weights: its graph may read and write
files (``tf.io.write_file``), print into one, open datasets, write summaries or call
other machines, and some of it runs as it is loaded (resource initialisers), the rest
the moment cnncli predicts with it. Keras' safe mode does not look into SavedModels.
`check` reads ``saved_model.pb`` and walks every node of its graph and every function
of its library (the functions they call, branches, loop bodies), and refuses an
operation of those kinds, naming it. Only the saver's own functions are left out (the
``_traced_save``/``_traced_restore`` its ``saver_def`` names: TensorFlow 2 loads the
variables itself and never runs them), unless something else calls them too. The
files cnncli export writes pass.

>>> check(Path("export/saved_model"))     # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

from cnncli.errors import ModelError

SIGNATURE = "serving_default"

#: Operations that reach outside the computation: files (read, write, match, memory-map),
#: checkpoints, summaries and events, debug dumps, datasets and readers, lookup tables
#: read from files, protobuf descriptors read from files, Python functions, databases,
#: other machines. (Printing is judged by where it prints: `_prints_into_a_file`.)
_OUTSIDE = re.compile(
    r"File|Reader|Writer|Summary|Save|Restore|Checkpoint|Dataset|Debug|Event|"
    r"ImmutableConst|LoadAndRemap|Proto|PyFunc|Sql|LMDB|Rpc|Grpc|Remote|Collective|"
    r"Socket|Http|Queue|Enqueue|Dequeue")
#: Matched by `_OUTSIDE`'s words, yet computing only (a gradient's identity).
_HARMLESS = frozenset({"DebugGradientIdentity", "DebugGradientRefIdentity"})


def check(folder: Path) -> None:
    """Refuse the SavedModel in `folder` if it has no ``serving_default`` signature, or
    if any of its operations (`reached_ops`) goes outside the computation; a
    `ModelError` naming them."""
    found = sorted(op for op in reached_ops(folder) if _reaches_outside(op))
    if found:
        raise ModelError(
            f"the SavedModel runs {', '.join(found[:5])}" + (" and more" if len(found) > 5
                                                              else "")
            + ": operations that reach files, the network or other processes, not those of "
            "an image classifier", file=str(folder),
            hint="a SavedModel is a program: run only those you trust; cnncli export's "
                 "SavedModels have none of these")


#: How `reached_ops` lists a print into a file (PrintV2 to stderr is harmless).
_PRINT_TO_FILE = "PrintV2 (into a file)"


def _reaches_outside(op: str) -> bool:
    """True for an operation named as one that reaches outside (`_OUTSIDE`), or one whose
    arguments name a file (``GenerateVocabRemapping``'s ``new_vocab_file``,
    ``RecordInput``'s ``file_pattern``: names that say nothing of it)."""
    if op == _PRINT_TO_FILE or (_OUTSIDE.search(op) and op not in _HARMLESS):
        return True
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op)  # (None: an operation TensorFlow cannot run anyway)
    return op_def is not None and any(
        "file" in arg.name.lower() for arg in [*op_def.input_arg, *op_def.attr])


def reached_ops(folder: Path) -> set[str]:
    """The operation types of the SavedModel in `folder`: of every node of its graph and
    every function of its library, but the saver's (see the module docstring)."""
    meta = _meta_graph(folder)
    graph = meta.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    saver = {meta.saver_def.save_tensor_name.split(":")[0],
             meta.saver_def.restore_op_name.split(":")[0]} - {""}
    ops: set[str] = set()
    kept_out = _called(functions, [n for n in graph.node if n.name in saver], set())
    roots = [n for n in graph.node if n.name not in saver]
    _called(functions, roots, ops, also=[f for f in functions if f not in kept_out])
    return ops


def _meta_graph(folder: Path):
    """The SavedModel's graph, or a `ModelError`: unreadable, or no serving signature."""
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
    if SIGNATURE not in meta.signature_def:
        have = sorted(k for k in meta.signature_def if not k.startswith("__"))
        raise ModelError(f"the SavedModel has no {SIGNATURE} signature (it has: "
                         f"{', '.join(have) or 'none'})", file=str(folder),
                         hint="save it with signatures={'serving_default': ...}, taking "
                              "uint8 images; cnncli export writes one")
    return meta


def _called(functions: dict, nodes: list, ops: set[str], also=()) -> set[str]:
    """The names of the functions `nodes` (and the functions `also`) call, transitively;
    the operations of every node met go into `ops`."""
    done: set[str] = set()
    todo = list(also)
    for node in nodes:
        todo += _visit(node, ops, functions)
    while todo:
        name = todo.pop()
        if name in done or name not in functions:
            continue
        done.add(name)
        for node in functions[name].node_def:
            todo += _visit(node, ops, functions)
    return done


def _visit(node, ops: set[str], functions: dict) -> list[str]:
    """Record `node`'s operation (a call of a library function is not one); the functions
    it calls (as its operation, or in an attribute: a call's `f`, a branch, a body)."""
    called = [node.op] if node.op in functions else []
    if not called:
        ops.add(_PRINT_TO_FILE if _prints_into_a_file(node) else node.op)
    for attr in node.attr.values():
        if attr.HasField("func"):
            called.append(attr.func.name)
        called += [f.name for f in attr.list.func]
    return called


def _prints_into_a_file(node) -> bool:
    """A PrintV2 whose output stream is a file (``file://...``), not stdout or stderr."""
    return node.op == "PrintV2" and "output_stream" in node.attr and \
        node.attr["output_stream"].s.decode(errors="replace").startswith("file://")
