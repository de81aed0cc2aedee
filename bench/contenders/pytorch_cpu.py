"""The same network in PyTorch on the CPU: a plain training loop over tensors in memory.

The whole training set is one float tensor (x / 255, N x 1 x 28 x 28); each epoch
draws a `torch.randperm` order and slices batches from it (faster than a
`DataLoader` over a `TensorDataset`, which collates image by image). The model is
the lecture's ConvNet (the last layer outputs logits; `CrossEntropyLoss` applies the
softmax), Adam 1e-3. Thread settings: PyTorch's defaults (``torch.get_num_threads()``).

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


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__.splitlines()[0], batch_size=128, epochs=2)
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

    epochs = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(n)
        total = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i:i + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
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
        "name": "torch", "batch_size": args.batch_size, "data": source, "train_images": n,
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
