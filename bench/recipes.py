"""Which training recipe reaches 0.916 Fashion-MNIST test accuracy soonest with cnncli.

Each recipe is ``configs/fashion_mnist.yaml`` with a few ``--set`` overrides (batch
size with a scaled learning rate, schedule, epochs), trained by the real `cnncli train`
(through ``contenders/cnncli_train.py``) and scored by `cnncli evaluate` on the 10,000
test images. Time is the whole `cnncli train` process, launch to exit. Recipes run
interleaved over the rounds, one at a time.

    .venv/bin/python bench/recipes.py                 # every recipe, 1 round
    .venv/bin/python bench/recipes.py --only shipped,batch256 --rounds 2
    .venv/bin/python bench/recipes.py --only shipped --quick --out /tmp/r   # smoke run

Writes bench/RECIPES.md and bench/recipes.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py: keeps the hand-written sections)

HERE = Path(__file__).resolve().parent
TARGET = 0.916

#: name -> (what it is, overrides of configs/fashion_mnist.yaml).
RECIPES: dict[str, tuple[str, list[str]]] = {
    "shipped": ("as shipped: batch 128, Adam 2e-3, one-cycle, 5 epochs", []),
    "constant": ("constant learning rate 1e-3 instead of one-cycle",
                 ["train.schedule.name=constant", "train.optimizer.learning_rate=1e-3"]),
    "cosine": ("cosine decay instead of one-cycle", ["train.schedule.name=cosine"]),
    "epochs4": ("4 epochs", ["train.epochs=4"]),
    "epochs3": ("3 epochs", ["train.epochs=3"]),
    "batch50": ("batch 50, Adam 1e-3 (the tutorial's batch)",
                ["train.batch_size=50", "train.optimizer.learning_rate=1e-3"]),
    "batch256": ("batch 256, Adam 4e-3 (learning rate scaled with the batch)",
                 ["train.batch_size=256", "train.optimizer.learning_rate=4e-3"]),
    "batch512": ("batch 512, Adam 4e-3", ["train.batch_size=512",
                                          "train.optimizer.learning_rate=4e-3"]),
    "float32": ("as shipped, --precision float32", ["--precision=float32"]),
}


#: ``--quick``: each recipe on 512 images for one epoch (the tests' smoke run).
QUICK = ["--limit", "512", "--epochs", "1"]


def run(name: str, folder: Path, extra: list[str] = ()) -> dict:
    """Train and evaluate one recipe (`extra`: more arguments for the trainer); its result
    (or an error)."""
    sets = [s for s in RECIPES[name][1] if not s.startswith("--")]
    flags = [s.split("=", 1) for s in RECIPES[name][1] if s.startswith("--")]
    cmd = [sys.executable, str(HERE / "contenders" / "cnncli_train.py"), "--config",
           "configs/fashion_mnist.yaml", "--evaluate", "--json-out", str(folder / "r.json")]
    for item in sets:
        cmd += ["--set", item]
    for flag, value in flags:
        cmd += [flag, value]
    cmd += list(extra)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    r = json.loads((folder / "r.json").read_text())
    return {"seconds": r["wall_seconds"], "train_seconds": r["train_seconds"],
            "batch_size": r["batch_size"], "precision": r["precision"],
            "test_accuracy": r["test_accuracy"], "epochs": len(r["epochs"]),
            "val_accuracy": [e.get("val_accuracy") for e in r["epochs"]],
            "images_per_s": r["cnncli_metrics_images_per_s"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="comma-separated recipe names")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--quick", action="store_true",
                   help="512 images, one epoch a recipe: checks that the script runs")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(RECIPES)
    if unknown := [n for n in names if n not in RECIPES]:
        p.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    results: dict[str, list[dict]] = {}
    started = time.time()
    for r in range(args.rounds):
        for name in names:
            with tempfile.TemporaryDirectory() as tmp:
                row = run(name, Path(tmp), QUICK if args.quick else [])
            results.setdefault(name, []).append(row)
            shown = (f"{row['test_accuracy']:.4f} in {row['seconds']:.1f} s" if "seconds" in row
                     else f"failed: {row['error']}")
            print(f"round {r + 1} {name}: {shown}", flush=True)
    out = Path(args.out)
    (out / "recipes.json").write_text(json.dumps({"recipes": {n: RECIPES[n] for n in names},
                                                  "results": results}, indent=2))
    lines = ["# Recipes: time to 0.916 test accuracy (issue 7)", "",
             f"Written by `bench/recipes.py`; {args.rounds} round(s), "
             f"{(time.time() - started) / 60:.1f} minutes, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Each recipe is "
             "`configs/fashion_mnist.yaml` with overrides; time is the `cnncli train` "
             "process (validation, model files, plots included); accuracy from "
             "`cnncli evaluate` on the 10,000 test images (the run's best.keras).", "",
             "| recipe | what | seconds (median) | test accuracy (median) | min - max | "
             f"reached {TARGET} | images/s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        rows = [r for r in results[name] if "seconds" in r]
        if not rows:
            lines.append(f"| {name} | {RECIPES[name][0]} | failed | | | | |")
            continue
        acc = [r["test_accuracy"] for r in rows]
        lines.append(
            f"| {name} | {RECIPES[name][0]} | {statistics.median(r['seconds'] for r in rows):.1f}"
            f" | {statistics.median(acc):.4f} | {min(acc):.4f} - {max(acc):.4f} | "
            f"{sum(a >= TARGET for a in acc)} of {len(acc)} | "
            f"{statistics.median(r['images_per_s'] for r in rows):,.0f} |")
    report.write(out / "RECIPES.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
