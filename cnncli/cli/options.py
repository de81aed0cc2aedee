"""Options several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.model.pretrained import REGISTRY

#: The pretrained networks, for help texts (as the registry names them, in its order).
PRETRAINED = ", ".join(REGISTRY)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
#: Where a model runs (predict, evaluate, explain, visualize).
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, gpu or gpu:N.")]
#: A pretrained network's weights from a file (predict, evaluate, explain, visualize).
WeightsOpt = Annotated[str | None, typer.Option(help="A local weights file for a pretrained "
                                                "model.")]
#: No download of a pretrained network's weights (predict, explain, visualize).
OfflineOpt = Annotated[bool, typer.Option(help="Never download weights.")]
#: Images that cannot be read: said, and exit 1 unless skipped (predict, explain).
SkipBadOpt = Annotated[bool, typer.Option(help="Exit 0 even if some images could not be "
                                          "read (3 if none could).")]
#: How a model computes when it runs (predict, evaluate, explain alike: the same numbers).
PrecisionOpt = Annotated[str, typer.Option(
    help="auto (mixed_bfloat16 on a CPU with bfloat16 units, mixed precision on GPUs with "
         "Tensor Cores, else float32), float32, mixed_float16 or mixed_bfloat16.")]
