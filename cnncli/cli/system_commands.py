"""Commands about this machine and its data: datasets (and datasets pack), doctor."""

from __future__ import annotations

from typing import Annotated

import typer

from cnncli.cli.options import JsonOpt

datasets_app = typer.Typer(
    name="datasets", rich_markup_mode=None, no_args_is_help=False,
    help="Where each known dataset is found (or would be downloaded from), and its size; "
         "`datasets pack` writes any dataset as TFRecord shards.")


@datasets_app.callback(invoke_without_command=True)
def datasets(
    ctx: typer.Context,
    data_dir: Annotated[str | None, typer.Option(help="Where to look first (also "
                                                 "CNNCLI_DATA_DIR).")] = None,
    offline: Annotated[bool, typer.Option(help="Do not count on downloads.")] = False,
    json: JsonOpt = False,
) -> None:
    """Where each known dataset is found (or would be downloaded from), and its size."""
    if ctx.invoked_subcommand is not None:  # `datasets --json pack ...`: pack's options
        ctx.obj = {"data_dir": data_dir, "offline": offline, "json": json}
        return
    from cnncli.cli import render
    from cnncli.data import datasets as data

    rows = data.describe_all(data_dir=data_dir, offline=offline)
    if json:
        render.print_json([r.to_dict() for r in rows])
    else:
        render.datasets(rows)


@datasets_app.command()
def pack(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="A dataset name or path "
                                          "(folder, CSV, .npz, "
                                          "IDX folder...).")],
    out: Annotated[str, typer.Argument(metavar="OUT", help="The folder to write.")],
    image_size: Annotated[tuple[int, int] | None, typer.Option(
        min=1, metavar="H W", help="Resize every image to this size (stored as PNG).")] = None,
    resize: Annotated[str | None, typer.Option(
        help="How --image-size resizes: stretch (the default), center_crop or pad "
             "(training must use the same data.resize).")] = None,
    shard_mb: Annotated[float, typer.Option(min=0.001, help="Megabytes per shard.")] = 200,
    data_dir: Annotated[str | None, typer.Option(help="Where to look for named datasets "
                                                 "first.")] = None,
    offline: Annotated[bool, typer.Option(help="Never download.")] = False,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    json: JsonOpt = False,
) -> None:
    """Write a dataset as sharded TFRecords that `data.name: OUT` trains from."""
    from cnncli.cli import render
    from cnncli.data import datasets as data
    from cnncli.data import packing
    from cnncli.text import count

    given = ctx.obj or {}  # before `pack`: `cnncli datasets --json pack ...` means the same
    data_dir, offline, json = (data_dir or given.get("data_dir"),
                               offline or given.get("offline", False),
                               json or given.get("json", False))
    packing.pack_resize_mode(image_size, resize)  # known before the data is read
    ds, said = data.load_noting(source, data_dir=data_dir, offline=offline)  # in --json too
    said += packing.outside_note(ds, source)  # (images of this machine's, copied into it)
    render.warn_all(said)
    with render.progress_bar("packing", len(ds.train) + len(ds.test), quiet=json) as advance:
        packed = packing.pack(ds, out, image_size=image_size, resize=resize,
                              shard_mb=shard_mb, force=force, source=source, progress=advance)
    if packed.skipped:
        said.append(f"{count(packed.skipped, 'image')} could not be read and "
                    f"{'is' if packed.skipped == 1 else 'are'} left out, "
                    f"e.g. {'; '.join(packed.examples)}")
        render.warn(said[-1])
    if json:
        render.print_json({**packed.to_dict(), "out": out, "warnings": said})  # out as given
    else:
        shown = render.printable(str(out), one_line=True)
        render.out.print(f"{shown}: {packed.counts['train']:,} training and "
                         f"{packed.counts['test']:,} test images in {packed.shards} "
                         f"shards; train with data.name: {shown}", markup=False)


@datasets_app.command()
def caches(
    ctx: typer.Context,
    clear: Annotated[bool, typer.Option("--clear", help="Remove them all (a run then "
                                        "decodes its images again in its first epoch).")]
    = False,
    json: JsonOpt = False,
) -> None:
    """The disk caches of decoded images (data.cache: disk), their size; --clear removes
    them."""
    from cnncli.cli import render
    from cnncli.data import caches as cached
    from cnncli.data.loader import cache_dir

    given = ctx.obj or {}
    json = json or given.get("json", False)  # `datasets --json caches`, as pack
    for option, key in (("--data-dir", "data_dir"), ("--offline", "offline")):
        if given.get(key):  # (the caches' folder: CNNCLI_CACHE_DIR, not the data's)
            raise typer.BadParameter(f"is for finding datasets; the caches are in "
                                     f"{cache_dir()} (CNNCLI_CACHE_DIR)", param_hint=option)
    rows = cached.clear() if clear else cached.found()
    if json:
        render.print_json({"folder": str(cache_dir()), "caches": [c.to_dict() for c in rows],
                           "removed": clear})  # (one shape: --clear says them removed)
    else:
        render.caches(rows, cache_dir(), cleared=clear)


def doctor(json: JsonOpt = False) -> None:
    """TensorFlow, Keras, CUDA and GPUs: what this machine has, and what `auto` picks."""
    from cnncli import devices
    from cnncli.cli import render

    info = devices.doctor_info()
    if json:
        from cnncli import __version__

        render.print_json({"cnncli": __version__, **info.to_dict()})
        render.warn_all([info.warning] if info.warning else [])
    else:
        render.doctor(info)
