"""Where a training step's time goes (issue 17): TensorFlow's profiler on cnncli's step.

Builds the run a config describes exactly as `cnncli train` does (its precision, its
optimizer, its input pipeline), trains `--warmup` steps, then traces `--steps` steps
with ``tf.profiler`` and sums the operations' own time by kind (TensorFlow's
"framework_op_stats" tool). Idle time is left out: the shares are of the time the
cores spent in operations. Writes PROFILE.md and profile.json.

    .venv/bin/python bench/profile_step.py                         # mnist_net, batch 128
    .venv/bin/python bench/profile_step.py --steps 5 --warmup 3 --out /tmp/p   # smoke
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: What each kind of operation is, for the table (TensorFlow's oneDNN op names).
KINDS = {"Conv2D": "matrix (convolution)", "MatMul": "matrix (dense)",
         "ApplyAdam": "optimizer", "ReluGrad": "elementwise", "Cast": "elementwise",
         "BiasAddGrad": "reduction", "MaxPool": "pooling", "Dataset": "input pipeline",
         "Softmax": "elementwise"}


def kind_of(op_type: str) -> str:
    return next((kind for key, kind in KINDS.items() if key in op_type), "other")


def profile(config: str, batch_size: int, steps: int, warmup: int) -> dict:
    from cnncli import config as configs
    from cnncli.run import train as training
    from cnncli.run.compile import compile_model
    from cnncli.runtime import import_tf

    tf = import_tf()
    cfg = configs.load(config, [f"train.batch_size={batch_size}"])
    p = training.plan(cfg)
    model = compile_model(p)

    def batches():
        return p.feed.training(batch_size=batch_size, seed=0, epochs=1,
                               preprocessing=p.preprocessing, one_hot=p.one_hot)

    model.fit(batches(), steps_per_epoch=warmup, epochs=1, verbose=0)
    logdir = tempfile.mkdtemp(prefix="cnncli-profile-")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    [xplane] = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    data, _ = plugin.xspace_to_tools_data([xplane], "framework_op_stats")
    shutil.rmtree(logdir)
    table = json.loads(data)[0]
    names = [c["id"] for c in table["cols"]]
    rows = [dict(zip(names, [c.get("v") if c else None for c in r["c"]], strict=True))
            for r in table["rows"]]
    ops = collections.Counter()
    for r in rows:
        if r["type"] != "IDLE":
            ops[r["type"]] += r["total_self_time"]
    return {"config": config, "batch_size": batch_size, "steps": steps,
            "precision": p.placement.precision, "images_per_s": steps * batch_size / seconds,
            "step_ms": 1000 * seconds / steps,
            "ops_ms_per_step": {k: v / 1000 / steps for k, v in ops.most_common()}}


def write_report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(result, indent=1))
    ops = result["ops_ms_per_step"]
    busy = sum(ops.values())
    kinds = collections.Counter()
    for op, ms in ops.items():
        kinds[kind_of(op)] += ms
    lines = [f"# Where a training step's time goes (`{result['config']}`, batch "
             f"{result['batch_size']}, {result['precision']})", "",
             f"`{' '.join(['python', f'bench/{Path(__file__).name}', *sys.argv[1:]])}`",
             "", f"{result['steps']} steps traced by TensorFlow's profiler: "
             f"{result['step_ms']:.1f} ms a step ({result['images_per_s']:,.0f} images/s "
             f"under the profiler); the operations' own time adds up to {busy:.1f} ms a "
             "step (both cores; idle time left out).", "",
             "| kind | ms a step | share |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v:.2f} | {v / busy:.1%} |" for k, v in kinds.most_common()]
    lines += ["", "| operation | kind | ms a step | share |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {op} | {kind_of(op)} | {ms:.2f} | {ms / busy:.1%} |"
              for op, ms in list(ops.items())[:15]]
    report.write(out / "PROFILE.md", "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/fashion_mnist.yaml")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--out", default=str(HERE))
    args = p.parse_args(argv)
    result = profile(args.config, args.batch_size, args.steps, args.warmup)
    write_report(Path(args.out), result)
    print((Path(args.out) / "PROFILE.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
