"""The same network in PyTorch on the CPU: a plain training loop over tensors in memory.

The whole training set is one float tensor (x / 255, N x 1 x 28 x 28); each epoch
draws a `torch.randperm` order and slices batches from it (faster than a
`DataLoader` over a `TensorDataset`, which collates image by image). The model is
the lecture's ConvNet (the last layer outputs logits; `CrossEntropyLoss` applies the
softmax), Adam 1e-3. Thread settings: PyTorch's defaults (``torch.get_num_threads()``).

``--bf16`` trains as a skilled PyTorch user does on a CPU with bfloat16 units: the
forward pass and the loss under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (weights
and optimizer stay float32), the model and the images in ``channels_last`` memory format,
and ``torch.compile`` on the model when it works offline (the result says whether it did).

Needs ``pip install torch==2.13.0`` (on the benchmark machine it installs from a local
wheel; other versions download gigabytes).

    .venv/bin/python bench/contenders/pytorch_cpu.py --epochs 2 --json-out /tmp/p.json
    .venv/bin/python bench/contenders/pytorch_cpu.py --limit 1000 --epochs 2   # smoke
"""

from __future__ import annotations

import sys
import time

import _common


def lecture_torch_model(nn):
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024), nn.ReLU(),
        nn.Linear(1024, 10),
    )


def try_compile(torch, model, x, y, loss_fn):
    """``torch.compile(model)`` if a training step with it runs here (it needs a C++
    compiler, and nothing from the network); else the model as it was, and why."""
    try:
        candidate = torch.compile(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(candidate(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return candidate, "used"
    except Exception as exc:  # noqa: BLE001 - any failure means: train without it
        print(f"torch.compile failed, training without it: {exc!r}"[:500], file=sys.stderr)
        return model, f"failed: {type(exc).__name__}"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__.splitlines()[0], batch_size=128, epochs=2)
    p.add_argument("--bf16", action="store_true",
                   help="autocast to bfloat16, channels_last, torch.compile if it works")
    args = p.parse_args(argv)
    try:
        import torch
        from torch import nn
    except ImportError:
        print("PyTorch is not installed: pip install torch==2.13.0", file=sys.stderr)
        return 3

    x_train, y_train, _x_test, _y_test, source = _common.load_fashion_mnist(args.limit,
                                                                            args.data_dir)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(x_train).permute(0, 3, 1, 2).float().div(255).contiguous()
    y = torch.from_numpy(y_train.astype("int64"))
    n = len(x)

    model = lecture_torch_model(nn)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    compiled = None
    if args.bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        model, compiled = try_compile(torch, model, x[:args.batch_size], y[:args.batch_size],
                                      loss_fn)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else \
        (lambda: __import__("contextlib").nullcontext())

    epochs = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(n)
        total = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i:i + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)  # what a training loop logs
        seconds = time.perf_counter() - start
        epochs.append({"epoch": epoch + 1, "images": n, "seconds": round(seconds, 4),
                       "eval_seconds": 0.0, "end_time": time.time(), "loss": total / n})
        print(f"epoch {epoch + 1}: {seconds:.2f} s, {n / seconds:,.0f} images/s, "
              f"loss {total / n:.4f}", file=sys.stderr, flush=True)

    result = {
        "name": "torch-bf16" if args.bf16 else "torch", "batch_size": args.batch_size,
        "precision": "autocast bfloat16, channels_last" if args.bf16 else "float32",
        "torch_compile": compiled, "data": source, "train_images": n,
        "epochs": epochs, "steady_images_per_s": _common.steady_images_per_s(epochs),
        "script_start": _common.SCRIPT_START, "peak_rss_mb": _common.peak_rss_mb(),
        "threads": {"intra_op": torch.get_num_threads(),
                    "inter_op": torch.get_num_interop_threads(),
                    "note": "PyTorch defaults"},
        "recipe": "float tensor in memory, randperm slices, Adam 1e-3, CrossEntropyLoss",
        "versions": _common.versions(torch=torch.__version__),
    }
    _common.write_json(args.json_out, result)
    print(_common.report_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
