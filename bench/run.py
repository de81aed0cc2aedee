"""The benchmark of issue 7: cnncli against the Keras and PyTorch ways of doing the same.

Every measurement runs in its own process, one at a time, interleaved round by round
(cnncli, tutorial, tuned, torch, cnncli, tutorial, ...), so a slow minute of the
machine hits every contender alike. Medians over the rounds are compared; min and
max are shown. See bench/README.md for what each number means.

    make bench                                  # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --rounds 5
    .venv/bin/python bench/run.py --quick       # smoke test: tiny runs, results in /tmp
    .venv/bin/python bench/run.py --only throughput --only torch --skip-torch ...

Writes bench/RESULTS.md and bench/results.json (with --quick: a temporary folder,
unless --out is given). Run it on a quiet machine: 3 rounds take about 1 to 1.5 hours.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CONTENDERS = BENCH / "contenders"
sys.path.insert(0, str(CONTENDERS))

import _common  # noqa: E402  (bench/contenders/_common.py: JSON writing, shared numbers)

PYTHON = sys.executable
TARGET_ACCURACY = 0.916  # TensorFlow's docs: this network on Fashion-MNIST
MULTIPLY_ADDS = 13_883_904  # per image, forward: conv1 627,200 + conv2 10,035,200 + fc 3,221,504
FLOP_PER_TRAINING_IMAGE = 3 * MULTIPLY_ADDS * 2  # forward + 2x backward, 2 FLOP per multiply-add
LECTURE_IMAGES = 20_000 * 50  # the lecture's 20,000 iterations of 50 images
LECTURE_MINUTES = 57
RECIPE = "configs/fashion_mnist.yaml"  # cnncli's default Fashion-MNIST recipe
LECTURE_CONFIG = "configs/mnist.yaml"  # the lecture's hyper-parameters (20,000 x 50)
TORCH_INSTALL = "pip install torch==2.13.0"

#: contender -> its script and arguments. `cnncli-fp32` is cnncli with its precision
#: forced to float32: what cnncli's other levers give without bfloat16 matrix units.
TRAINERS = {"cnncli": ["cnncli_train.py"],
            "cnncli-fp32": ["cnncli_train.py", "--precision", "float32"],
            "tutorial": ["keras_tutorial.py"], "tuned": ["keras_tuned.py"],
            "tuned-bf16": ["keras_tuned.py", "--precision", "mixed_bfloat16"],
            "torch": ["pytorch_cpu.py"], "torch-bf16": ["pytorch_cpu.py", "--bf16"]}
#: matmul dtype -> the name of its record; the contender trained in that precision here.
MATMULS = {"float32": "tensorflow", "bfloat16": "tensorflow-bf16"}
SECTIONS = ("matmul", "startup", "throughput", "accuracy", "predict", "lecture")
ALIASES = {"tta": "accuracy", "help": "startup", "pytorch": "torch", "memory": "throughput",
           "rss": "throughput", "gflops": "matmul"}
#: cnncli / other, training images per second at the same batch size: at least this.
SPEED_TARGETS = {"tuned": 1.0, "tutorial": 1.3, "torch": 1.2, "tuned-bf16": 1.0,
                 "torch-bf16": 1.2}
TTA_TARGET = 0.5  # cnncli's time to the target accuracy / the tutorial's: at most
HELP_TARGET = 0.3  # seconds, at most
#: The plain Keras prediction script, in float32 and as a user who knows about bfloat16
#: writes it; `cnncli predict`'s speed (wall time of the whole process) against each: at least
#: the plain predict script's runs: name -> (precision, its other arguments). `raw-batches`
#: is `raw` with `model.predict_on_batch`: no tf.data iterator, so none of the wait
#: `model.predict` may add at its end (`predict_raw.py --by-batch`); the float32 target
#: applies to both.
PREDICT_SCRIPTS = {"raw": ("float32", []), "raw-bf16": ("mixed_bfloat16", []),
                   "raw-batches": ("float32", ["--by-batch"])}
PREDICT_TARGETS = {"raw": 3.0, "raw-bf16": 1.0, "raw-batches": 3.0}
#: Networks `cnncli predict` is timed with (random weights from a file); the targets are
#: VGG16's (the issue's), ResNet50's ratios are reported beside them.
PREDICT_NETWORKS = {"vgg16": "VGG16", "resnet50": "ResNet50"}
TARGET_NETWORK = "vgg16"
RSS_TARGET = 1.1  # cnncli's peak RSS / the tuned script's: at most
MATMUL_SHARE_AIM = 0.65  # cnncli's training GFLOP/s / the same precision's matmul: aim


# --------------------------------------------------------------------------- #
# Settings
# --------------------------------------------------------------------------- #


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1,280 images, short runs, 8 images to predict; the "
                        "numbers mean nothing")
    p.add_argument("--full", action="store_true",
                   help="also measure the lecture's 1,000,000 images with cnncli (~15 min) "
                        "instead of only extrapolating")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only these sections (" + ", ".join(SECTIONS) + ") and/or "
                        "contenders (" + ", ".join(TRAINERS) + "); repeatable or "
                        "comma-separated")
    p.add_argument("--skip-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--batch-sizes", default="128,50",
                   help="batch sizes of the throughput runs (default 128,50)")
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs per throughput run; the first is warm-up (default 2)")
    p.add_argument("--max-epochs", type=int, default=15,
                   help="most epochs the tutorial gets to reach the accuracy (default 15)")
    p.add_argument("--help-runs", type=int, default=10, help="`cnncli --help` runs per round")
    p.add_argument("--images", type=int, default=256, help="images to predict (default 256)")
    p.add_argument("--predict-networks", default=",".join(PREDICT_NETWORKS),
                   help="networks to predict with (default: " + ",".join(PREDICT_NETWORKS)
                        + ")")
    p.add_argument("--data-dir", default=None, help="where Fashion-MNIST is")
    p.add_argument("--out", default=None,
                   help="folder for RESULTS.md and results.json (default: bench/; "
                        "with --quick a temporary folder)")
    p.add_argument("--keep-logs", action="store_true", help="keep every process's log")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one process may take")
    args = p.parse_args(argv)

    names = {ALIASES.get(n.strip(), n.strip()) for item in args.only for n in item.split(",")
             if n.strip()}
    unknown = names - set(SECTIONS) - set(TRAINERS)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}; use "
                f"{', '.join(SECTIONS + tuple(TRAINERS))}")
    args.sections = [s for s in SECTIONS if s in names] or [
        s for s in SECTIONS if s != "lecture" or args.full]
    if "lecture" in args.sections and not args.full:
        args.sections.remove("lecture")  # without --full the lecture figure is extrapolated
    args.trainers = [t for t in TRAINERS if t in names] or list(TRAINERS)
    args.notes = []
    torch_names = [t for t in args.trainers if t.startswith("torch")]
    if torch_names and (args.skip_torch or not torch_available()):
        for name in torch_names:
            args.trainers.remove(name)
        args.notes.append("PyTorch left out: " + ("--skip-torch" if args.skip_torch else
                          f"torch is not installed (install it with `{TORCH_INSTALL}`)"))
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    args.predict_networks = [n.strip() for n in args.predict_networks.split(",") if n.strip()]
    if bad := [n for n in args.predict_networks if n not in PREDICT_NETWORKS]:
        p.error(f"--predict-networks: unknown {', '.join(bad)}; use "
                f"{', '.join(PREDICT_NETWORKS)}")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.quick:
        args.limit, args.images, args.help_runs = 1280, min(args.images, 8), min(args.help_runs, 3)
        args.matmul_size, args.matmul_repeats = 1024, 2
        args.notes.append("QUICK SMOKE RUN: 1,280 training images, 1-2 epochs, "
                          f"{args.images} images to predict; these numbers mean nothing")
    else:
        args.limit, args.matmul_size, args.matmul_repeats = None, 4096, 5
        if args.rounds < 3:
            args.notes.append(f"only {args.rounds} round(s): the issue asks for at least 3")
    if args.out is None:
        args.out = (tempfile.mkdtemp(prefix="cnncli-bench-quick-") if args.quick
                    else str(BENCH))
    return args


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def cnncli_command() -> list[str]:
    script = Path(PYTHON).parent / "cnncli"
    return [str(script)] if script.exists() else [PYTHON, "-m", "cnncli"]


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                               / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "tensorflow": version("tensorflow"), "keras": version("keras"),
            "torch": version("torch"), "numpy": version("numpy"),
            "cnncli": version("cnncli")}


# --------------------------------------------------------------------------- #
# Running one process
# --------------------------------------------------------------------------- #


def run_child(cmd: list[str], log: Path | None, *, timeout: float, stdout: Path | None = None
              ) -> dict:
    """Run `cmd` from the repository root and wait for it with `os.wait4`: exit code,
    wall seconds, peak RSS (MB) of it and its waited-for children, launch time."""
    out = open(stdout, "w") if stdout else (open(log, "w") if log else subprocess.DEVNULL)
    err = (open(log, "a") if stdout else subprocess.STDOUT) if log else subprocess.DEVNULL
    try:
        launch = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=ROOT)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    finally:
        for f in (out, err):
            if hasattr(f, "close"):
                f.close()
    return {"exit_code": code, "wall_seconds": round(wall, 4), "launch_time": launch,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


class Runner:
    """Runs the processes one after another and keeps every record."""

    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.records: list[dict] = []
        self.started = time.perf_counter()

    def run(self, round_: int, section: str, name: str, cmd: list[str], *,
            batch_size: int | None = None, json_out: bool = True,
            stdout: Path | None = None) -> dict:
        tag = f"r{round_}-{section}-{name}" + (f"-b{batch_size}" if batch_size else "")
        log = self.work / f"{tag}.log"
        out = self.work / f"{tag}.json"
        if json_out:
            cmd = cmd + ["--json-out", str(out)]
        load = os.getloadavg()[0]
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed / 60:5.1f} min] round {round_} {section:<10} {name:<9}"
              + (f" batch {batch_size:<4}" if batch_size else "") + " ...",
              end="", flush=True)
        child = run_child(cmd, log, timeout=self.args.timeout, stdout=stdout)
        record = {"round": round_, "section": section, "name": name,
                  "batch_size": batch_size, "command": cmd, "loadavg_before": load, **child}
        if child["exit_code"] == 0 and json_out:
            try:
                record["result"] = json.loads(out.read_text())
            except (OSError, ValueError) as exc:
                record["exit_code"] = -1
                record["error"] = f"no result file: {exc}"
        if record["exit_code"] != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            record.setdefault("error", f"exit {record['exit_code']}")
            record["log_tail"] = tail
            print(f" FAILED ({record['error']}); log: {log}")
        else:
            print(f" {child['wall_seconds']:.1f} s" + describe(record))
        self.records.append(record)
        return record


def describe(record: dict) -> str:
    r = record.get("result") or {}
    parts = []
    if r.get("steady_images_per_s"):
        parts.append(f"{r['steady_images_per_s']:,.0f} images/s")
    if r.get("test_accuracy") is not None:
        parts.append(f"test accuracy {r['test_accuracy']:.4f}")
    if r.get("gflops_median"):
        parts.append(f"{r['gflops_median']:,.1f} GFLOP/s")
    if record["section"] in ("throughput", "accuracy", "predict"):
        parts.append(f"peak RSS {record['peak_rss_mb']:,.0f} MB")
    return (": " + ", ".join(parts)) if parts else ""


# --------------------------------------------------------------------------- #
# The sections
# --------------------------------------------------------------------------- #


def trainer_cmd(name: str, args, batch_size: int | None, epochs: int | None) -> list[str]:
    script, *extra = TRAINERS[name]
    cmd = [PYTHON, str(CONTENDERS / script), *extra]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return cmd


def one_round(runner: Runner, args, r: int, predict_setup: dict | None) -> None:
    s = args.sections
    if "matmul" in s:
        for dtype in ("float32", "bfloat16"):
            runner.run(r, "matmul", MATMULS[dtype],
                       [PYTHON, str(CONTENDERS / "matmul.py"), "--size", str(args.matmul_size),
                        "--repeats", str(args.matmul_repeats), "--dtype", dtype])
    if "startup" in s:
        help_cmd = cnncli_command() + ["--help"]
        run_child(help_cmd, None, timeout=60)  # warm the page cache; not counted
        for i in range(args.help_runs):
            runner.run(r, "startup", f"help{i + 1}", help_cmd, json_out=False)
    if "throughput" in s:
        for bs in args.batch_sizes:
            for name in args.trainers:
                runner.run(r, "throughput", name, trainer_cmd(name, args, bs, args.epochs),
                           batch_size=bs)
    if "accuracy" in s:
        if "cnncli" in args.trainers:
            cmd = [PYTHON, str(CONTENDERS / "cnncli_train.py"), "--config", RECIPE,
                   "--evaluate"]
            if args.quick:
                cmd += ["--limit", str(args.limit), "--epochs", "1"]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            runner.run(r, "accuracy", "cnncli", cmd)
        if "tutorial" in args.trainers:
            cmd = trainer_cmd("tutorial", args, 50, 1 if args.quick else args.max_epochs)
            runner.run(r, "accuracy", "tutorial", cmd + ["--target-accuracy",
                                                         str(TARGET_ACCURACY)])
    if "predict" in s and predict_setup:
        folder = predict_setup["images"]
        for network, weights in predict_setup["weights"].items():
            name = predict_name("cnncli", network)
            runner.run(r, "predict", name,
                       cnncli_command() + ["predict", folder, "--model", network, "--weights",
                                           weights, "--format", "jsonl", "--quiet",
                                           "--offline"],
                       json_out=False, stdout=runner.work / f"r{r}-predict-{name}.jsonl")
            for script, (precision, extra) in PREDICT_SCRIPTS.items():
                name = predict_name(script, network)
                runner.run(r, "predict", name,
                           [PYTHON, str(CONTENDERS / "predict_raw.py"), folder, "--network",
                            network, "--weights", weights, "--precision", precision, *extra],
                           stdout=runner.work / f"r{r}-predict-{name}.jsonl")


def script_label(entry: dict) -> str:
    """How the tables name a plain predict script's runs."""
    return f"the plain Keras script in {entry['precision']}" + (
        " (predict_on_batch)" if entry.get("by_batch") else "")


def predict_name(contender: str, network: str) -> str:
    """A predict record's name: the contender's for VGG16 (as before ResNet50 was added),
    with the network's appended for the others (``raw-bf16-resnet50``)."""
    return contender if network == TARGET_NETWORK else f"{contender}-{network}"


def make_predict_inputs(runner: Runner, args) -> dict | None:
    """256 JPEG photos-to-be (500 x 375, seeded smooth noise) and a weights file of each
    network of ``--predict-networks``."""
    import numpy as np
    from PIL import Image

    folder = runner.work / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(args.images):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:04d}.jpg", quality=90)
    weights = {}
    for network in args.predict_networks:
        path = runner.work / f"{network}.weights.h5"
        record = runner.run(0, "setup", f"{network}-weights",
                            [PYTHON, str(CONTENDERS / "predict_raw.py"), "--network", network,
                             "--make-weights", str(path)], json_out=False)
        if record["exit_code"] == 0:
            weights[network] = str(path)
    return {"images": str(folder), "weights": weights} if weights else None


# --------------------------------------------------------------------------- #
# Summary
# --------------------------------------------------------------------------- #


def stats(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def ok(records, section, name=None, batch_size=None):
    return [r for r in records if r["section"] == section and r["exit_code"] == 0
            and (name is None or r["name"] == name)
            and (batch_size is None or r["batch_size"] == batch_size)]


def by_round(records, key) -> dict[int, float]:
    return {r["round"]: key(r) for r in records if key(r) is not None}


def ratio_stats(num: dict[int, float], den: dict[int, float]) -> dict | None:
    """Median of num / median of den, and the range of the same-round ratios."""
    if not num or not den:
        return None
    rounds = sorted(set(num) & set(den))
    per_round = [num[k] / den[k] for k in rounds if den[k]]
    value = statistics.median(num.values()) / statistics.median(den.values())
    return {"value": value, "min": min(per_round, default=None),
            "max": max(per_round, default=None), "n": len(per_round)}


def tutorial_time_to_target(record: dict) -> dict:
    """From the tutorial's launch to the end of the first epoch at the target, minus the
    test-set evaluations (the benchmark's probe, not part of the tutorial's work)."""
    rows = record["result"]["epochs"]
    evals = 0.0
    for row in rows:
        evals += row.get("eval_seconds") or 0.0
        if (row.get("test_accuracy") or 0) >= TARGET_ACCURACY:
            return {"seconds": row["end_time"] - record["launch_time"] - evals,
                    "reached": True, "epochs": row["epoch"],
                    "test_accuracy": row["test_accuracy"], "eval_seconds": evals}
    last = rows[-1] if rows else {"end_time": record["launch_time"], "epoch": 0}
    return {"seconds": last["end_time"] - record["launch_time"] - evals, "reached": False,
            "epochs": last["epoch"], "test_accuracy": last.get("test_accuracy"),
            "eval_seconds": evals}


def top1(path: Path) -> dict[str, str]:
    """{image file name: top-1 class} from `--format jsonl` rows (file, rank, class)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("rank") == 1:
                out[Path(row["file"]).name] = row.get("class")
    return out


def predict_summary(args, records: list[dict], work: Path, network: str, target) -> dict:
    """`cnncli predict` with `network` against the plain scripts: wall times, their parts,
    top-1 agreement, speed ratios; the issue's targets for VGG16 (through `target`)."""
    pc = ok(records, "predict", predict_name("cnncli", network))
    scripts = {name: ok(records, "predict", predict_name(name, network))
               for name in PREDICT_SCRIPTS}
    if not pc and not any(scripts.values()):
        return {}
    pred = {"network": PREDICT_NETWORKS[network],
            "cnncli_wall": stats([r["wall_seconds"] for r in pc]),
            "cnncli_rss": stats([r["peak_rss_mb"] for r in pc]),
            "images": args.images, "scripts": {}}
    for name, rows in scripts.items():
        entry = {"precision": PREDICT_SCRIPTS[name][0],
                 "by_batch": "--by-batch" in PREDICT_SCRIPTS[name][1],
                 "wall": stats([r["wall_seconds"] for r in rows]),
                 "rss": stats([r["peak_rss_mb"] for r in rows]),
                 "parts": {k: stats([r["result"]["seconds"].get(k) for r in rows])
                           for k in ("import", "load_model", "read_images", "predict",
                                     "top_k")} if rows else {}}
        agree = []
        for r in {x["round"] for x in pc} & {x["round"] for x in rows}:
            a = top1(work / f"r{r}-predict-{predict_name('cnncli', network)}.jsonl")
            b = top1(work / f"r{r}-predict-{predict_name(name, network)}.jsonl")
            if common := set(a) & set(b):
                agree.append(sum(a[k] == b[k] for k in common) / len(common))
        entry["top1_agreement"] = stats(agree)
        if pc and rows:  # speed = the script's wall time / cnncli's
            rs = ratio_stats(by_round(rows, lambda r: r["wall_seconds"]),
                             by_round(pc, lambda r: r["wall_seconds"]))
            entry["speedup"] = rs
            if network == TARGET_NETWORK:
                target(f"`cnncli predict` ({pred['network']}) speed / {script_label(entry)}",
                       rs["value"], PREDICT_TARGETS[name], True,
                       f"per round {rs['min']:.2f}x to {rs['max']:.2f}x" if rs["n"] > 1
                       else "")
        pred["scripts"][name] = entry
    return pred


def summarize(args, records: list[dict], work: Path) -> dict:
    s: dict = {"targets": []}
    targets = s["targets"]

    def target(what, value, limit, at_least, detail=""):
        passed = None if value is None else (value >= limit if at_least else value <= limit)
        targets.append({"what": what, "value": value, "target": limit, "at_least": at_least,
                        "pass": passed, "detail": detail})

    s["matmul_gflops"] = stats([r["result"]["gflops_median"]
                                for r in ok(records, "matmul", MATMULS["float32"])])
    s["matmul_gflops_bf16"] = stats([r["result"]["gflops_median"]
                                     for r in ok(records, "matmul", MATMULS["bfloat16"])])

    # (a) throughput and (c) memory
    s["throughput"] = {}
    for bs in args.batch_sizes:
        rows = {}
        for name in TRAINERS:
            recs = ok(records, "throughput", name, bs)
            rows[name] = {
                "images_per_s": stats([r["result"]["steady_images_per_s"] for r in recs]),
                "peak_rss_mb": stats([r["peak_rss_mb"] for r in recs]),
                "wall_seconds": stats([r["wall_seconds"] for r in recs]),
                "failed": len([r for r in records if r["section"] == "throughput"
                               and r["name"] == name and r["batch_size"] == bs
                               and r["exit_code"] != 0])}
        s["throughput"][bs] = rows
        mine = by_round(ok(records, "throughput", "cnncli", bs),
                        lambda r: r["result"]["steady_images_per_s"])
        for other, limit in SPEED_TARGETS.items():
            if other not in args.trainers or "throughput" not in args.sections:
                continue
            theirs = by_round(ok(records, "throughput", other, bs),
                              lambda r: r["result"]["steady_images_per_s"])
            rs = ratio_stats(mine, theirs)
            rows[other]["ratio"] = rs
            target(f"training images/s at batch {bs}: cnncli / {other}",
                   rs and rs["value"], limit, True, range_text(rs))
            if "cnncli-fp32" in args.trainers and other in ("tutorial", "torch"):
                rs32 = ratio_stats(by_round(ok(records, "throughput", "cnncli-fp32", bs),
                                            lambda r: r["result"]["steady_images_per_s"]),
                                   theirs)
                target(f"(float32 only) training images/s at batch {bs}: "
                       f"cnncli-fp32 / {other}", rs32 and rs32["value"], limit, True,
                       range_text(rs32))
        if "throughput" in args.sections and {"cnncli", "tuned"} <= set(args.trainers):
            rss = ratio_stats(by_round(ok(records, "throughput", "cnncli", bs),
                                       lambda r: r["peak_rss_mb"]),
                              by_round(ok(records, "throughput", "tuned", bs),
                                       lambda r: r["peak_rss_mb"]))
            rows["tuned"]["rss_ratio"] = rss
            target(f"training peak RSS at batch {bs}: cnncli / tuned", rss and rss["value"],
                   RSS_TARGET, False, range_text(rss))
        for name in ("cnncli", "cnncli-fp32"):
            cn = rows[name]["images_per_s"]
            if cn:
                rows[name]["gflops"] = cn["median"] * FLOP_PER_TRAINING_IMAGE / 1e9
                rows[name]["precision"] = ok(records, "throughput", name, bs)[0]["result"].get(
                    "precision")
                same = s["matmul_gflops_bf16"] if rows[name]["precision"] == \
                    "mixed_bfloat16" else s["matmul_gflops"]
                if same:
                    target(f"training GFLOP/s at batch {bs}: {name} / TensorFlow's "
                           f"{'bfloat16' if same is s['matmul_gflops_bf16'] else 'float32'} "
                           "matmul", rows[name]["gflops"] / same["median"], MATMUL_SHARE_AIM,
                           True, "medians; an aim, not a target")

    # (b) time to the target accuracy
    acc: dict = {}
    cn = ok(records, "accuracy", "cnncli")
    if cn:
        acc["cnncli"] = {
            "seconds": stats([r["result"]["wall_seconds"] for r in cn]),
            "test_accuracy": stats([r["result"]["test_accuracy"] for r in cn]),
            "reached": [r["result"]["test_accuracy"] >= TARGET_ACCURACY for r in cn],
            "epochs": stats([len(r["result"]["epochs"]) for r in cn]),
            "evaluated_model": cn[0]["result"].get("evaluated_model"),
            "peak_rss_mb": stats([r["peak_rss_mb"] for r in cn])}
    tu = ok(records, "accuracy", "tutorial")
    if tu:
        times = [tutorial_time_to_target(r) for r in tu]
        acc["tutorial"] = {
            "seconds": stats([t["seconds"] for t in times]),
            "test_accuracy": stats([t["test_accuracy"] for t in times]),
            "reached": [t["reached"] for t in times],
            "epochs": stats([t["epochs"] for t in times]),
            "eval_seconds_excluded": stats([t["eval_seconds"] for t in times]),
            "peak_rss_mb": stats([r["peak_rss_mb"] for r in tu])}
    if cn and tu:
        mine = {r["round"]: r["result"]["wall_seconds"] for r in cn
                if r["result"]["test_accuracy"] >= TARGET_ACCURACY}
        theirs = {r["round"]: t["seconds"] for r, t in zip(tu, times, strict=True)}
        rs = ratio_stats(mine, theirs)
        acc["ratio"] = rs
        detail = range_text(rs)
        if not mine:
            detail = "cnncli's recipe did not reach the accuracy"
        elif not all(acc["tutorial"]["reached"]):
            detail += ("; the tutorial did not reach it in some rounds (its time is then "
                       "its capped time, so the ratio is an upper bound)")
        target(f"time to {TARGET_ACCURACY} test accuracy: cnncli recipe / tutorial",
               rs and rs["value"] if mine else None, TTA_TARGET, False, detail)
        if not mine:
            targets[-1]["pass"] = False
    s["accuracy"] = acc

    # (d) start-up
    help_runs = ok(records, "startup")
    s["startup"] = stats([r["wall_seconds"] for r in help_runs])
    if s["startup"]:
        target("`cnncli --help` start-up, seconds", s["startup"]["median"], HELP_TARGET, False,
               f"median of {s['startup']['n']}; min {s['startup']['min']:.3f}, "
               f"max {s['startup']['max']:.3f}")

    # (e) prediction
    s["predict"] = {}
    for network in PREDICT_NETWORKS:
        if pred := predict_summary(args, records, work, network, target):
            s["predict"][network] = pred

    # (f) the lecture's 1,000,000 images
    lec: dict = {"images": LECTURE_IMAGES, "lecture_minutes": LECTURE_MINUTES}
    b50 = s["throughput"].get(50, {}).get("cnncli", {}).get("images_per_s")
    if b50:
        lec["extrapolated_minutes"] = LECTURE_IMAGES / b50["median"] / 60
        lec["from_images_per_s"] = b50["median"]
    full = ok(records, "lecture", "cnncli")
    if full:
        lec["measured_minutes"] = full[0]["result"]["wall_seconds"] / 60
        lec["measured_train_minutes"] = full[0]["result"]["train_seconds"] / 60
    s["lecture"] = lec
    return s


def range_text(rs: dict | None) -> str:
    if not rs or rs.get("min") is None or rs["n"] < 2:
        return ""
    return f"per round {rs['min']:.2f}x to {rs['max']:.2f}x"


# --------------------------------------------------------------------------- #
# RESULTS.md
# --------------------------------------------------------------------------- #


def fmt(st: dict | None, spec: str = ",.0f", unit: str = "") -> tuple[str, str]:
    """('median', 'min - max') of a stats dict."""
    if not st:
        return "n/a", ""
    return (f"{st['median']:{spec}}{unit}",
            f"{st['min']:{spec}} - {st['max']:{spec}}{unit}" if st["n"] > 1 else "")


def render(args, info: dict, summary: dict, records: list[dict], command: str,
           started: str, seconds: float) -> str:
    m = info["machine"]
    lines = [
        "# cnncli benchmark (issue 7)", "",
        "Written by `bench/run.py`; what each figure means: [README.md](README.md).", "",
        f"- Command: `{command}`",
        f"- Date: {started}, {seconds / 60:.1f} minutes, {args.rounds} round(s), interleaved",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{m['memory_gb']} GB; {m['os']}",
        f"- Versions: Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"PyTorch {m['torch'] or 'not installed (' + TORCH_INSTALL + ')'}, "
        f"NumPy {m['numpy']}, cnncli {m['cnncli']}",
        f"- Load average when it started: {info['loadavg_start']:.2f} (1 min)"
        + ("  **(the machine was not quiet)**" if info["loadavg_start"] > 0.5 else ""),
        "- Threads: every contender runs with its framework's default thread settings",
    ]
    for note in args.notes:
        lines.append(f"- **Note:** {note}")
    failed = [r for r in records if r["exit_code"] != 0]
    if failed:
        lines.append(f"- **{len(failed)} run(s) failed**: "
                     + ", ".join(f"round {r['round']} {r['section']} {r['name']}"
                                 for r in failed) + " (see results.json)")
    lines += ["", "## Targets", "",
              "| measure | value | target | result | spread |", "| --- | --- | --- | --- | --- |"]
    for t in summary["targets"]:
        if t["value"] is None:
            value = "n/a"
        elif "overhead" in t["what"]:
            value = f"{t['value']:+.1%}"
        elif "seconds" in t["what"]:
            value = f"{t['value']:.3f} s"
        else:
            value = f"{t['value']:.2f}x"
        limit = (f"{'>=' if t['at_least'] else '<='} "
                 + (f"{t['target']:.0%}" if "overhead" in t["what"] else
                    f"{t['target']} s" if "seconds" in t["what"] else f"{t['target']}x"))
        result = {True: "pass", False: "**FAIL**", None: "n/a"}[t["pass"]]
        lines.append(f"| {t['what']} | {value} | {limit} | {result} | {t['detail']} |")
    if not summary["targets"]:
        lines.append("| (no target measured in this run) | | | | |")

    if any(row["images_per_s"] or row["failed"] for rows in summary["throughput"].values()
           for row in rows.values()):
        lines += throughput_table(args, summary)
    lines += accuracy_section(args, summary)
    lines += rest_sections(args, summary)
    return "\n".join(lines) + "\n"


def throughput_table(args, summary: dict) -> list[str]:
    lines = ["", "## (a) Training throughput, (c) peak memory", "",
              "Steady state: images / seconds over every epoch after the first (epoch 1 "
              "traces the graph and fills caches), full Fashion-MNIST training set "
              f"({'1,280 images, quick' if args.quick else '60,000 images'}), "
              f"{args.epochs} epochs per run; peak RSS of the training process.", "",
              "| batch | contender | images/s (median) | min - max | cnncli / it | "
              "peak RSS MB (median) | min - max | GFLOP/s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for bs, rows in summary["throughput"].items():
        for name, row in rows.items():
            if not row["images_per_s"] and not row["failed"]:
                continue
            ips, ips_range = fmt(row["images_per_s"])
            rss, rss_range = fmt(row["peak_rss_mb"])
            ratio = row.get("ratio")
            ratio_text = f"{ratio['value']:.2f}x" if ratio else ""
            gf = row["images_per_s"]["median"] * FLOP_PER_TRAINING_IMAGE / 1e9 \
                if row["images_per_s"] else None
            failed = f" ({row['failed']} failed)" if row["failed"] else ""
            lines.append(f"| {bs} | {name}{failed} | {ips} | {ips_range} | {ratio_text} | "
                         f"{rss} | {rss_range} | {'' if gf is None else f'{gf:.1f}'} |")

    return lines


def accuracy_section(args, summary: dict) -> list[str]:
    lines: list[str] = []
    acc = summary["accuracy"]
    if acc:
        lines += ["", f"## (b) Time to {TARGET_ACCURACY} test accuracy", "",
                  f"cnncli: `cnncli train {RECIPE}` as shipped (its validation passes, model "
                  "files and plots included), wall time of the process; its test accuracy "
                  "comes from `cnncli evaluate RUN` afterwards (not timed). Tutorial: batch "
                  f"50, Adam 1e-3, the test set evaluated after every epoch (that time is "
                  f"subtracted), stopped at the first epoch >= {TARGET_ACCURACY} or after "
                  f"{1 if args.quick else args.max_epochs} epochs; time from its launch.", "",
                  "| contender | seconds (median) | min - max | epochs | test accuracy | "
                  "reached |", "| --- | --- | --- | --- | --- | --- |"]
        for name in ("cnncli", "tutorial"):
            a = acc.get(name)
            if not a:
                continue
            sec, sec_range = fmt(a["seconds"], ",.1f")
            ep, _ = fmt(a["epochs"], ".0f")
            ta, ta_range = fmt(a["test_accuracy"], ".4f")
            ta_text = f"{ta} ({ta_range})" if ta_range else ta
            lines.append(f"| {name} | {sec} | {sec_range} | {ep} | {ta_text} | "
                         f"{sum(a['reached'])} of {len(a['reached'])} |")
        if acc.get("cnncli", {}).get("evaluated_model"):
            lines.append(f"\ncnncli's accuracy is that of the run's "
                         f"`{acc['cnncli']['evaluated_model']}` (what `cnncli evaluate RUN` "
                         "uses).")

    return lines


def rest_sections(args, summary: dict) -> list[str]:
    lines: list[str] = []
    st = summary["startup"]
    if st:
        med, rng = fmt(st, ".3f", " s")
        lines += ["", "## (d) Start-up", "",
                  f"`cnncli --help`: median {med} of {st['n']} runs ({rng}); the wall time "
                  "of the process, after one untimed run to warm the page cache."]

    for network, pred in summary["predict"].items():
        net = pred["network"]
        cw, cw_range = fmt(pred["cnncli_wall"], ",.2f", " s")
        heading = "## (e) Prediction" + ("" if network == TARGET_NETWORK else f": {net}")
        lines += ["", heading, "",
                  f"{pred['images']} JPEGs (500x375) with {net} from a weights file "
                  f"(`keras.applications.{net}(weights=None).save_weights`). All are whole "
                  f"processes, timed from launch to exit: `cnncli predict FOLDER --model "
                  f"{network} --weights FILE --format jsonl --quiet` (its default "
                  "`--precision auto`) and `bench/contenders/predict_raw.py` (imports Keras, "
                  f"builds {net}, loads the weights, reads and resizes the images with PIL, "
                  "`preprocess_input`, `model.predict` in batches of 32, top 5), once in "
                  "float32, once with "
                  "`keras.mixed_precision.set_global_policy(\"mixed_bfloat16\")` and once in "
                  "float32 with `model.predict_on_batch` per batch (no tf.data iterator, so "
                  "none of the wait `model.predict` may add as its iterator ends). Speed = "
                  "the script's wall time / cnncli's (medians; range of same-round ratios). "
                  "Random weights: the top-1 agreement of near-uniform probabilities is "
                  "fragile (bench/PRECISION_RESULTS.md measures agreement on a trained "
                  "network).",
                  "", "| what | median | min - max |", "| --- | --- | --- |",
                  f"| `cnncli predict` wall | {cw} | {cw_range} |"]
        for entry in pred.get("scripts", {}).values():
            label = script_label(entry).removeprefix("the ")
            med, rng = fmt(entry["wall"], ",.2f", " s")
            lines.append(f"| {label} wall | {med} | {rng} |")
            for part, st_part in entry.get("parts", {}).items():
                med, rng = fmt(st_part, ",.2f", " s")
                lines.append(f"| ... of which {part.replace('_', ' ')} | {med} | {rng} |")
            if entry.get("speedup"):
                o = entry["speedup"]
                spread = f"{o['min']:.2f}x - {o['max']:.2f}x" if o["n"] > 1 else ""
                lines.append(f"| cnncli's speed / {label} | {o['value']:.2f}x | {spread} |")
            if entry.get("top1_agreement"):
                lines.append(f"| same top-1 class as {label} | "
                             f"{entry['top1_agreement']['median']:.0%} | |")

    mm, mm16 = summary["matmul_gflops"], summary.get("matmul_gflops_bf16")
    if mm or any(rows["cnncli"].get("gflops") for rows in summary["throughput"].values()):
        lines += ["", "## Machine speed and cnncli's share of it", ""]
    for dtype, st in (("float32", mm), ("bfloat16", mm16)):
        if st:
            med, rng = fmt(st, ",.1f")
            spread = f"median of {st['n']} rounds, {rng}" if st["n"] > 1 else "1 round"
            lines.append(f"- TensorFlow {dtype} matmul {args.matmul_size}x{args.matmul_size}: "
                         f"{med} GFLOP/s ({spread}; each round the median of "
                         f"{args.matmul_repeats} products)")
    for bs, rows in summary["throughput"].items():
        for name in ("cnncli", "cnncli-fp32"):
            gf, precision = rows[name].get("gflops"), rows[name].get("precision")
            if not gf:
                continue
            same = mm16 if precision == "mixed_bfloat16" else mm
            share = (f" = {gf / same['median']:.0%} of the "
                     f"{'bfloat16' if same is mm16 else 'float32'} matmul figure") if same else ""
            lines.append(f"- {name} ({precision}) training at batch {bs}: {gf:.1f} GFLOP/s"
                         f"{share} ({FLOP_PER_TRAINING_IMAGE / 1e6:.1f} MFLOP per training "
                         f"image: 3 x {MULTIPLY_ADDS / 1e6:.2f} M multiply-adds x 2)")

    lec = summary["lecture"]
    lines += ["", "## (f) The lecture's 57 minutes", "",
              f"The lecture trained this network on {LECTURE_IMAGES:,} images (20,000 "
              f"iterations of 50) in {LECTURE_MINUTES} minutes on a laptop."]
    if lec.get("extrapolated_minutes"):
        lines.append(f"On this machine cnncli would take **{lec['extrapolated_minutes']:.1f} "
                     f"minutes** (extrapolated: {LECTURE_IMAGES:,} / its steady "
                     f"{lec['from_images_per_s']:,.0f} images/s at batch 50; start-up and "
                     "validation not included).")
    if lec.get("measured_minutes"):
        lines.append(f"Measured (--full, `cnncli train {LECTURE_CONFIG} --set "
                     f"data.name=fashion_mnist`): {lec['measured_minutes']:.1f} minutes wall, "
                     f"{lec['measured_train_minutes']:.1f} minutes of training epochs.")
    if not lec.get("extrapolated_minutes") and not lec.get("measured_minutes"):
        lines.append("Not measured in this run (needs the batch-50 throughput runs).")
    return lines


def drop_work(work: Path, *, keep: bool) -> None:
    """Remove the folder of logs and result files, or say where it is kept."""
    if keep:
        print(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cnncli-bench-work-"))
    command = shlex.join([os.path.relpath(PYTHON, ROOT) if PYTHON.startswith(str(ROOT))
                          else PYTHON, os.path.relpath(__file__, ROOT)]
                         + (sys.argv[1:] if argv is None else argv))
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = {"machine": machine_info(), "loadavg_start": os.getloadavg()[0]}
    print(f"cnncli benchmark: {args.rounds} round(s), sections {', '.join(args.sections)}; "
          f"contenders {', '.join(args.trainers)}; batch sizes "
          f"{', '.join(map(str, args.batch_sizes))}")
    for note in args.notes:
        print(f"note: {note}")
    if info["loadavg_start"] > 0.5:
        print(f"warning: load average {info['loadavg_start']:.2f}: the machine is not quiet, "
              "the numbers will be noisy")
    runner = Runner(args, work)
    clock = time.perf_counter()

    def save() -> None:
        summary = summarize(args, runner.records, work)
        results = {"command": command, "started": started,
                   "seconds": time.perf_counter() - clock, "settings": {
                       k: v for k, v in vars(args).items() if k != "notes"},
                   "notes": args.notes, **info, "summary": summary,
                   "runs": runner.records}
        _common.write_json(out / "results.json", results)
        report.write(out / "RESULTS.md", render(args, info, summary, runner.records, command,
                                                started, time.perf_counter() - clock))

    try:
        predict_setup = make_predict_inputs(runner, args) if "predict" in args.sections \
            else None
        for r in range(1, args.rounds + 1):
            one_round(runner, args, r, predict_setup)
            save()  # partial results survive an interrupted benchmark
        if "lecture" in args.sections:
            cmd = [PYTHON, str(CONTENDERS / "cnncli_train.py"), "--config", LECTURE_CONFIG,
                   "--set", "data.name=fashion_mnist"]
            if args.quick:
                cmd += ["--limit", str(args.limit), "--set", "train.steps=20"]
            runner.run(1, "lecture", "cnncli", cmd)
        save()
    finally:
        drop_work(work, keep=args.keep_logs)
    print((out / "RESULTS.md").read_text())
    print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}")
    return 0 if all(r["exit_code"] == 0 for r in runner.records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
