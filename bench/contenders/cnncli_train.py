"""cnncli itself: `cnncli train CONFIG` as a user runs it, in its own process.

Writes a run config to a temporary folder (the lecture's `mnist_net` on Fashion-MNIST,
no validation split, Adam 1e-3, the batch size and epochs asked for; or ``--network``
on ``--npz`` with that network's optimizer, `_common.NETWORKS`), runs the
`cnncli` command on it, waits for it (its peak RSS comes from `os.wait4`), and
reads the run's ``history.csv`` (seconds and images/s of every epoch, as cnncli
measures them) and ``metrics.json``.

With ``--config FILE`` it trains that config instead (e.g. the default recipe
``configs/fashion_mnist.yaml``), with ``--set`` overrides; ``--evaluate`` then runs
``cnncli evaluate`` on the run for its test accuracy (not counted in the wall time).

    .venv/bin/python bench/contenders/cnncli_train.py --epochs 2 --json-out /tmp/c.json
    .venv/bin/python bench/contenders/cnncli_train.py --limit 1280 --epochs 2    # smoke
    .venv/bin/python bench/contenders/cnncli_train.py --config configs/fashion_mnist.yaml \\
        --evaluate
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

THROUGHPUT_CONFIG = """\
# Written by bench/contenders/cnncli_train.py: the same network, data and optimizer
# as the other contenders; no validation split, so an epoch is training only.
model: {model}
data:
  name: {data}
  validation_split: 0
  offline: true
{limit}train:
  epochs: {epochs}
  batch_size: {batch_size}
  optimizer: {optimizer}
  weight_decay: {weight_decay}
  freeze: none
  seed: {seed}
output:
  dir: {runs}
  name: bench
"""
#: --network -> the `model:` of the generated config. `cifar_vgg` is configs/cifar10_vgg.yaml's
#: model section (its data augmentation is left out: the other contenders have none).
MODELS = {"lecture": "mnist_net", "resnet50": "{from: resnet50, weights: none}"}
CIFAR_VGG = Path(__file__).resolve().parents[2] / "configs" / "cifar10_vgg.yaml"


def model_section(network: str) -> str:
    if network != "cifar_vgg":
        return MODELS[network]
    import yaml

    return json.dumps(yaml.safe_load(CIFAR_VGG.read_text())["model"])


def generated_config(args, runs: Path) -> str:
    """The run config of a throughput run: `args.network` on `args.npz` (or
    Fashion-MNIST), with the optimizer every contender uses for that network."""
    optimizer = _common.OPTIMIZERS[_common.NETWORKS[args.network].optimizer]
    name = _common.NETWORKS[args.network].optimizer
    settings = {k: v for k, v in optimizer.items() if k != "weight_decay"}
    return THROUGHPUT_CONFIG.format(
        model=model_section(args.network),
        data=json.dumps(str(Path(args.npz).resolve())) if args.npz else "fashion_mnist",
        epochs=args.epochs or 2, batch_size=args.batch_size or 128, seed=args.seed,
        optimizer=json.dumps({"name": name, **settings}),
        weight_decay=optimizer.get("weight_decay", 0), runs=runs,
        limit=f"  limit: {args.limit}\n" if args.limit else "")


def cnncli_command() -> list[str]:
    """The `cnncli` console script next to this Python, as a user runs it."""
    script = Path(sys.executable).parent / "cnncli"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cnncli"]


def run_waited(cmd: list[str], log) -> tuple[int, float, float]:
    """Run `cmd` with output to `log`; (exit code, wall seconds, peak RSS in MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024


def read_history(run: Path) -> list[dict]:
    rows = []
    with open(run / "history.csv", newline="") as f:
        for row in csv.DictReader(f):
            seconds, ips = float(row["seconds"]), float(row["images_per_s"])
            out = {"epoch": int(row["epoch"]), "images": round(ips * seconds),
                   "seconds": seconds, "eval_seconds": None, "cnncli_images_per_s": ips,
                   "loss": float(row["loss"])}
            if row.get("val_accuracy"):
                out["val_accuracy"] = float(row["val_accuracy"])
            rows.append(out)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__.splitlines()[0], batch_size=128, epochs=2)
    p.set_defaults(batch_size=None, epochs=None)
    p.add_argument("--config", default=None,
                   help="train this run config instead of the generated one")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="passed on to cnncli train (repeatable)")
    p.add_argument("--evaluate", action="store_true",
                   help="then run `cnncli evaluate` on the run for its test accuracy")
    p.add_argument("--precision", default=None,
                   help="passed on to cnncli train (default: its own, auto)")
    p.add_argument("--keep", action="store_true", help="keep the run folder")
    p.add_argument("--log", default=None, help="cnncli's output goes here (default: "
                   "the temporary folder; printed on failure)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="cnncli-bench-"))
    runs = tmp / "runs"
    overrides = list(args.overrides)
    if args.config:
        config = Path(args.config)
        overrides.append(f"output.dir={runs}")
        name = config.stem
        for key, value in (("train.batch_size", args.batch_size), ("data.limit", args.limit),
                           ("train.seed", None if args.seed == 0 else args.seed)):
            if value is not None:
                overrides.append(f"{key}={value}")
        if args.epochs is not None:
            overrides += [f"train.epochs={args.epochs}", "train.steps=null"]
    else:
        config = tmp / "bench.yaml"
        name = "bench"
        config.write_text(generated_config(args, runs))
    cmd = cnncli_command() + ["train", str(config), "--offline"]
    if args.precision:
        cmd += ["--precision", args.precision]
    for item in overrides:
        cmd += ["--set", item]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]

    log_path = Path(args.log) if args.log else tmp / "cnncli.log"
    try:
        with open(log_path, "w") as log:
            launch = time.time()
            code, wall, rss = run_waited(cmd, log)
        if code != 0:
            print(f"cnncli train failed (exit {code}): {' '.join(cmd)}", file=sys.stderr)
            print(log_path.read_text()[-3000:], file=sys.stderr)
            return 1
        run = (runs / name / "latest").resolve()
        metrics = json.loads((run / "metrics.json").read_text())
        epochs = read_history(run)
        for e in epochs:
            print(f"epoch {e['epoch']}: {e['seconds']:.2f} s, "
                  f"{e['cnncli_images_per_s']:,.0f} images/s", file=sys.stderr)
        result = {
            "name": "cnncli" + (f"-{args.precision}" if args.precision else ""),
            "batch_size": metrics["batch_size"], "precision": metrics.get("precision"),
            "steps_per_execution": metrics.get("steps_per_execution"),
            "data": metrics["dataset"]["source"], "train_images": metrics["dataset"]["train"],
            "network": args.network,
            "epochs": epochs, "steady_images_per_s": _common.steady_images_per_s(epochs),
            "cnncli_metrics_images_per_s": metrics["images_per_s"],
            "train_seconds": metrics["train_seconds"], "launch_time": launch,
            "wall_seconds": round(wall, 3), "end_time": launch + wall,
            "peak_rss_mb": rss, "device": metrics["device"], "command": cmd,
            "config": None if args.config else config.read_text(),
            "threads": {"note": "TensorFlow defaults, as cnncli leaves them"},
            "versions": metrics["versions"],
        }
        if args.evaluate:
            ev = subprocess.run(cnncli_command() + ["evaluate", str(run), "--json",
                                                    "--offline"],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if ev.returncode != 0:
                print(f"cnncli evaluate failed (exit {ev.returncode}):\n{ev.stderr[-3000:]}",
                      file=sys.stderr)
                return 1
            report = json.loads(ev.stdout)
            result.update(test_accuracy=report["accuracy"],
                          evaluated_model=Path(report["model"]).name)
        _common.write_json(args.json_out, result)
        print(_common.report_line(result) + f", wall {wall:.1f} s")
        return 0
    finally:
        if args.keep:
            print(f"kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
