"""The same network in PyTorch on the CPU: a plain training loop over tensors in memory.

The whole training set is one float tensor (x / 255, N x 1 x 28 x 28); each epoch
draws a `torch.randperm` order and slices batches from it (faster than a
`DataLoader` over a `TensorDataset`, which collates image by image). The model is
the lecture's ConvNet (the last layer outputs logits; `CrossEntropyLoss` applies the
softmax), Adam 1e-3; or, with ``--network``, another one and its optimizer
(`_common.NETWORKS`). Thread settings: PyTorch's defaults (``torch.get_num_threads()``).

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


def cifar_vgg_torch_model(nn, classes=10):
    """configs/cifar10_vgg.yaml's network (batch-norm epsilon and momentum as Keras')."""
    layers, channels = [], 3
    for filters in (32, 64, 128):
        for _ in range(2):
            layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False),
                       nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01), nn.ReLU()]
            channels = filters
        layers += [nn.MaxPool2d(2), nn.Dropout(0.2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 128), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(128, classes))


def resnet50_torch_model(nn, classes=10):
    """Keras' ResNet50 (`keras.applications.ResNet50`): v1, the stride in each stage's
    first 1x1 convolution, convolutions with biases, batch-norm epsilon 1.001e-5.
    Written out because PyPI's torchvision does not load beside the CPU build of torch
    installed here ('operator torchvision::nms does not exist'); torchvision's resnet50
    is v1.5 (stride in the 3x3), a little more work per image."""

    def bn(channels):
        return nn.BatchNorm2d(channels, eps=1.001e-5, momentum=0.01)

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride, project):
            super().__init__()
            cout = 4 * width
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, stride), bn(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1), bn(width), nn.ReLU(),
                nn.Conv2d(width, cout, 1), bn(cout))
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride), bn(cout))
                             if project else nn.Identity())
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.body(x) + self.shortcut(x))

    layers = [nn.ZeroPad2d(3), nn.Conv2d(3, 64, 7, 2), bn(64), nn.ReLU(), nn.ZeroPad2d(1),
              nn.MaxPool2d(3, 2)]
    channels = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(channels, width, stride if i == 0 else 1, i == 0))
            channels = 4 * width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2048, classes))


MODELS = {"lecture": lecture_torch_model, "cifar_vgg": cifar_vgg_torch_model,
          "resnet50": resnet50_torch_model}


def torch_optimizer(torch, network, parameters):
    name = _common.NETWORKS[network].optimizer
    settings = dict(_common.OPTIMIZERS[name])
    settings["lr"] = settings.pop("learning_rate")
    return (torch.optim.Adam(parameters, **settings) if name == "adam"
            else torch.optim.SGD(parameters, **settings))


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

    x_train, y_train, source = _common.load_training_data(args)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(x_train).permute(0, 3, 1, 2).float().div(255).contiguous()
    y = torch.from_numpy(y_train.astype("int64"))
    n = len(x)

    model = MODELS[args.network](nn)
    optimizer = torch_optimizer(torch, args.network, model.parameters())
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
        "network": args.network,
        "epochs": epochs, "steady_images_per_s": _common.steady_images_per_s(epochs),
        "script_start": _common.SCRIPT_START, "peak_rss_mb": _common.peak_rss_mb(),
        "threads": {"intra_op": torch.get_num_threads(),
                    "inter_op": torch.get_num_interop_threads(),
                    "note": "PyTorch defaults"},
        "recipe": "float tensor in memory, randperm slices, CrossEntropyLoss, "
                  + _common.optimizer_text(args.network),
        "versions": _common.versions(torch=torch.__version__),
    }
    _common.write_json(args.json_out, result)
    print(_common.report_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
