"""Bigger networks (issue 17): the CIFAR VGG and ResNet50, cnncli against the peers.

The lecture's ConvNet (bench/run.py) is mostly one dense layer; here the work is in
convolutions and batch normalisation: configs/cifar10_vgg.yaml's network on 32x32x3
images, and Keras' ResNet50 on 224x224x3. The images are synthetic (random pixels and
labels, `_common.write_synthetic`): a step's speed does not depend on them. Every
contender trains the same network with the same optimizer (SGD, momentum 0.9, weight
decay 5e-4) for 2 epochs; the first is warm-up, the second is timed.

The peers are the strongest for this CPU: the Keras and PyTorch scripts in bfloat16
(`tuned-bf16`, `torch-bf16`) where the CPU has bfloat16 matrix units (Intel AMX,
AVX512-BF16), and in float32 (`tuned`, `torch`) where it has not, since bfloat16 is
emulated there and several times slower. `--peers` picks them by hand.

    .venv/bin/python bench/networks.py                      # 3 rounds, ~30-60 minutes
    .venv/bin/python bench/networks.py --quick --out /tmp/n # smoke test

Writes bench/NETWORKS_RESULTS.md and bench/networks.json (with --quick: --out).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

sys.path.insert(0, str(Path(__file__).resolve().parent / "contenders"))

import _common  # noqa: E402  (bench/contenders/_common.py)
import run  # noqa: E402  (bench/run.py: processes, records, statistics)

#: contender -> the script and arguments (those of bench/run.py).
CONTENDERS = {name: run.TRAINERS[name] for name in
              ("cnncli", "tuned", "tuned-bf16", "torch", "torch-bf16")}
#: cnncli / peer, training images/s: at least (the issue's targets, as bench/run.py's).
TARGETS = {name: run.SPEED_TARGETS[name] for name in CONTENDERS if name != "cnncli"}


class Case:
    """One network at one batch size: `images` per epoch."""

    def __init__(self, network: str, batch_size: int, images: int):
        self.network, self.batch_size, self.images = network, batch_size, images

    @property
    def label(self) -> str:
        return f"{self.network} b{self.batch_size}"


def cases(args) -> list[Case]:
    if args.quick:
        return [Case("cifar_vgg", 32, 128)] + (
            [Case("resnet50", 4, 8)] if args.resnet_images else [])
    out = [Case("cifar_vgg", b, args.cifar_images) for b in (128, 50)]
    if args.resnet_images:
        out.append(Case("resnet50", args.resnet_batch, args.resnet_images))
    return out


def cpu_has_bf16_units() -> bool:
    from cnncli.devices.hardware import cpu_bf16_units

    return cpu_bf16_units()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny runs")
    p.add_argument("--peers", default=None,
                   help="comma-separated peers (" + ", ".join(TARGETS) + "); default: the "
                        "bfloat16 ones on a CPU with bfloat16 units, else the float32 ones")
    p.add_argument("--cifar-images", type=int, default=5120,
                   help="CIFAR-shaped images per epoch (default 5,120)")
    p.add_argument("--resnet-images", type=int, default=320,
                   help="224x224 images per ResNet50 epoch; 0 leaves ResNet50 out")
    p.add_argument("--resnet-batch", type=int, default=16)
    p.add_argument("--out", default=None, help="folder for NETWORKS_RESULTS.md and "
                   "networks.json (default bench/; with --quick a temporary folder)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one process may take")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.bf16_units = cpu_has_bf16_units()
    default = ["tuned-bf16", "torch-bf16"] if args.bf16_units else ["tuned", "torch"]
    args.peers = [n.strip() for n in args.peers.split(",")] if args.peers else default
    unknown = set(args.peers) - set(TARGETS)
    if unknown:
        p.error(f"--peers: unknown {', '.join(sorted(unknown))}; use {', '.join(TARGETS)}")
    args.notes = []
    if not run.torch_available():
        args.peers = [n for n in args.peers if not n.startswith("torch")]
        args.notes.append(f"PyTorch left out: not installed ({run.TORCH_INSTALL})")
    if args.quick:
        args.notes.append("QUICK SMOKE RUN: tiny epochs; these numbers mean nothing")
    elif args.rounds < 3:
        args.notes.append(f"only {args.rounds} round(s): the issue asks for at least 3")
    args.out = args.out or (tempfile.mkdtemp(prefix="cnncli-networks-") if args.quick
                            else str(run.BENCH))
    return args


def command(name: str, case: Case, data: Path) -> list[str]:
    script, *extra = CONTENDERS[name]
    return [run.PYTHON, str(run.CONTENDERS / script), *extra, "--network", case.network,
            "--npz", str(data), "--batch-size", str(case.batch_size), "--epochs", "2"]


def summarize(args, records: list[dict], all_cases: list[Case]) -> dict:
    """Per case: each contender's images/s and peak RSS; cnncli / each peer."""
    out = {"cases": [], "targets": [], "rounds": len({r["round"] for r in records})}
    for case in all_cases:
        mine = [r for r in records if r["case"] == case.label and r["exit_code"] == 0]
        rows = {}
        for name in ["cnncli", *args.peers]:
            runs = [r for r in mine if r["name"] == name]
            rows[name] = {
                "images_per_s": run.stats([r["result"]["steady_images_per_s"] for r in runs]),
                "peak_rss_mb": run.stats([r["peak_rss_mb"] for r in runs]),
                "precision": runs[0]["result"].get("precision") if runs else None}
        ips = {name: run.by_round([r for r in mine if r["name"] == name],
                                  lambda r: r["result"]["steady_images_per_s"])
               for name in rows}
        for peer in args.peers:
            ratio = run.ratio_stats(ips["cnncli"], ips[peer])
            rows[peer]["ratio"] = ratio
            value = ratio["value"] if ratio else None
            out["targets"].append({
                "what": f"training images/s, {case.network} at batch {case.batch_size}: "
                        f"cnncli / {peer}", "value": value, "target": TARGETS[peer],
                "pass": None if value is None else value >= TARGETS[peer],
                "detail": run.range_text(ratio)})
        out["cases"].append({"case": case.label, "network": case.network,
                             "batch_size": case.batch_size, "images": case.images,
                             "rows": rows})
    return out


def render(args, info: dict, summary: dict, command_line: str, started: str,
           seconds: float) -> str:
    m = info["machine"]
    lines = [
        "# Bigger networks: cnncli against the peers (issue 17)", "",
        "Written by `bench/networks.py`; see its docstring for what is measured.", "",
        f"- Command: `{command_line}`",
        f"- Date: {started}, {seconds / 60:.1f} minutes, {summary['rounds']} of "
        f"{args.rounds} round(s) done, interleaved",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; bfloat16 matrix "
        f"units: {'yes' if args.bf16_units else 'no'}",
        f"- Versions: TensorFlow {m['tensorflow']}, Keras {m['keras']}, PyTorch "
        f"{m['torch'] or 'not installed'}, cnncli {m['cnncli']}",
        f"- Load average when it started: {info['loadavg_start']:.2f} (1 min)"
        + ("  **(the machine was not quiet)**" if info["loadavg_start"] > 0.5 else ""),
        f"- Peers: {', '.join(args.peers)}; every contender with its framework's default "
        "threads; optimizer " + _common.optimizer_text("cifar_vgg"),
    ]
    lines += [f"- **Note:** {note}" for note in args.notes]
    lines += ["", "## Targets", "", "| measure | value | target | result | spread |",
              "| --- | --- | --- | --- | --- |"]
    for t in summary["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}x"
        result = {True: "pass", False: "**FAIL**", None: "n/a"}[t["pass"]]
        lines.append(f"| {t['what']} | {value} | >= {t['target']}x | {result} | "
                     f"{t['detail']} |")
    lines += ["", "## Training throughput", "",
              "Images / seconds of the second epoch (the first traces the graph: warm-up); "
              "peak RSS of the training process.", "",
              "| network | batch | images/epoch | contender | precision | images/s (median) "
              "| min - max | cnncli / it | peak RSS MB |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in summary["cases"]:
        for name, row in c["rows"].items():
            median, spread = run.fmt(row["images_per_s"], ",.1f")
            ratio = f"{row['ratio']['value']:.2f}x" if row.get("ratio") else ""
            lines.append(f"| {c['network']} | {c['batch_size']} | {c['images']:,} | {name} | "
                         f"{row['precision'] or ''} | {median} | {spread} | {ratio} | "
                         f"{run.fmt(row['peak_rss_mb'])[0]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cnncli-networks-work-"))
    command_line = shlex.join(["bench/networks.py"] + (sys.argv[1:] if argv is None else argv))
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info = {"machine": run.machine_info(), "loadavg_start": os.getloadavg()[0]}
    all_cases = cases(args)
    print(f"networks benchmark: {args.rounds} round(s); {', '.join(c.label for c in all_cases)};"
          f" cnncli against {', '.join(args.peers)}")
    runner = run.Runner(args, work)
    clock = time.perf_counter()
    networks = {c.network for c in all_cases}  # one data file each, the largest case's size
    data = {n: _common.write_synthetic(work / f"{n}.npz", n, max(
        c.images for c in all_cases if c.network == n)) for n in networks}

    def save() -> None:
        summary = summarize(args, runner.records, all_cases)
        _common.write_json(out / "networks.json", {
            "command": command_line, "started": started, **info,
            "settings": {k: v for k, v in vars(args).items() if k != "notes"},
            "notes": args.notes, "summary": summary, "runs": runner.records})
        report.write(out / "NETWORKS_RESULTS.md", render(
            args, info, summary, command_line, started, time.perf_counter() - clock))

    try:
        for r in range(1, args.rounds + 1):
            for case in all_cases:
                for name in ["cnncli", *args.peers]:
                    cmd = command(name, case, data[case.network])
                    cmd += ["--limit", str(case.images)]
                    record = runner.run(r, case.label.replace(" ", "-"), name, cmd,
                                        batch_size=case.batch_size)
                    record["case"] = case.label
            save()
    finally:
        run.drop_work(work, keep=args.keep_logs)
    print((out / "NETWORKS_RESULTS.md").read_text())
    return 0 if all(r["exit_code"] == 0 for r in runner.records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
