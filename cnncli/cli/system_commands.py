"""Commands about this machine and its data: datasets, doctor."""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.cli.options import JsonOpt


def datasets(
    data_dir: Annotated[str | None, typer.Option(help="Where to look first (also "
                                                 "CNNCLI_DATA_DIR).")] = None,
    offline: Annotated[bool, typer.Option(help="Do not count on downloads.")] = False,
    json: JsonOpt = False,
) -> None:
    """Where each known dataset is found (or would be downloaded from), and its size."""
    from cnncli.cli import render
    from cnncli.data import datasets as data

    rows = data.describe_all(data_dir=data_dir, offline=offline)
    if json:
        render.print_json(rows)
    else:
        render.datasets(rows)


def doctor(json: JsonOpt = False) -> None:
    """TensorFlow, Keras, CUDA and GPUs: what this machine has, and what `auto` picks."""
    from cnncli import devices
    from cnncli.cli import render

    info = devices.doctor_info()
    if json:
        render.print_json(info)
    else:
        render.doctor(info)
