"""Everything cnncli shows people: tables, lines, JSON, and error paragraphs.

Results go to stdout; logs, warnings and errors go to stderr. Colour and
animation only when the stream is a terminal (rich decides; ``NO_COLOR`` works).

Text is never read as rich markup: file names and class names such as
``photos [2024]`` or ``IMG_0001 [edited].jpg`` are printed as they are. Both consoles
have markup off (tables included); cnncli's own colours are `rich.text.Text` styles.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import TextColumn
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from cnncli import files, text
from cnncli.errors import CnnError, Stopped
from cnncli.infer import metrics
from cnncli.text import count, printable, significant  # also the commands' render.printable

if TYPE_CHECKING:
    from cnncli.run.state import EpochRow


class _Console(Console):
    """A rich Console whose text never carries control characters: they are escaped in
    every segment it renders (its own colours and cursor moves are styles and control
    segments, kept), and in any text given to print before rich would drop some of them
    (a bell or a carriage return in a file name would vanish from it)."""

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(printable(text), **kwargs)

    def _render_buffer(self, buffer) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(printable(segment.text), segment.style)
            for segment in buffer)


def _width(stream) -> int | None:
    """Not a terminal (CI, pipes, a log file): lines not wrapped at 80 columns; a terminal:
    its own width (each stream's: ``cnncli train cfg.yaml > log`` draws its progress on
    the terminal's stderr, at the terminal's width)."""
    return None if stream.isatty() else 200


# Not a terminal: no colour, no animation either (rich's own test of each stream).
out = _Console(highlight=False, soft_wrap=True, width=_width(sys.stdout), markup=False,
               emoji=False)  # a name ":x:" is shown as typed, not as an emoji
err = _Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr),
               markup=False, emoji=False)


def print_json(data: Any, *, one_line: bool = False) -> None:
    """Machine-readable output on stdout: one document (`one_line`: on one line, as
    ``--format jsonl`` writes each)."""
    sys.stdout.write(files.json_text(data, one_line=one_line) + "\n")
    sys.stdout.flush()


def error(exc) -> None:
    """One paragraph per problem on stderr, prefixed with 'error:', or 'stopped:' for a
    command stopped by Ctrl-C or SIGTERM as asked (a newline in a problem, e.g. from a
    file name, is shown escaped)."""
    problems = getattr(exc, "errors", None) or [exc]
    if isinstance(exc, str) or not all(isinstance(p, CnnError) for p in problems):
        lines = str(exc).splitlines() or [type(exc).__name__]  # a library's text
    else:
        lines = [printable(str(p), one_line=True) for p in problems]
    word = "stopped:" if isinstance(exc, Stopped) else "error:"
    for line in lines:
        err.print(Text.assemble((word, "bold red"), " ", line))


def warn(message: str) -> None:
    err.print(Text.assemble(("warning:", "yellow"), " ", printable(str(message),
                                                                   one_line=True)))


def warn_all(messages) -> None:
    """Each of `messages` as a warning on stderr: with ``--json`` too (the JSON holds
    them as well; a script's log shows what a person would have read)."""
    for message in messages:
        warn(message)


def unread(errors, *, skipped: bool) -> None:
    """The images a command could not read beside those it did (predict, explain):
    warnings when `skipped` (``--skip-bad``), else errors (its exit is then 1)."""
    for problem in errors:
        if skipped:
            warn(f"skipped {problem}")
        else:
            error(problem)


def info(message: str) -> None:
    """One line on stderr (a newline in a name it quotes is shown escaped)."""
    err.print(printable(message, one_line=True), markup=False)


def summary(s, *, explain: bool = False) -> None:
    """The lecture's table (Layer, Volume size, Description, Parameters) and totals."""
    table = Table(title=f"{s.name}", title_justify="left", show_lines=False)
    frozen = s.frozen_params > 0  # a column of its own only when something is frozen
    named = any("/" in row.name for row in s.rows)  # --expand: what --layer takes
    columns = [("Name", "left")] * named + [
        ("Layer", "left"), ("Volume size", "left"), ("Description", "left"),
        ("Parameters", "right")] + ([("Frozen", "right")] if frozen else [])
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    for row in s.rows:
        if not row.shown:
            continue
        cells = [row.name] * named + [row.layer, row.volume, row.description,
                                      f"{row.params:,}" if row.params else ""]
        table.add_row(*cells, *([f"{row.frozen:,}" if row.frozen else ""] if frozen else []))
    out.print(table)
    if explain and not any(row.explain for row in s.rows):
        out.print("Output sizes: no convolution or pooling layer here, so no (W - F + 2P)/S "
                  "+ 1 to work out")
    elif explain:
        out.print("Output sizes, (W - F + 2P)/S + 1 for each convolution and pooling layer:")
        for row in s.rows:
            for line in row.explain:
                out.print(f"  {row.name} ({row.layer}) {line}", markup=False)
    out.print(f"Parameters: {s.params:,} ({text.short_count(s.params)}; "
              f"trainable {s.trainable_params:,}"
              + (f", frozen {s.frozen_params:,})" if frozen else ")"))
    out.print(f"Activation memory per image: {text.size(s.forward_bytes)} forward, "
              f"~{text.size(s.backward_bytes)} backward (estimated at 2x forward)")
    names = text.some(printable(name, one_line=True) for name in s.uncounted)
    left_out = f"; not counting {names}: convolution and dense layers are counted" \
        if s.uncounted else ""
    out.print(f"Multiply-adds per image: {s.macs:,} ({text.short_count(s.macs)}{left_out})")
    warn_all(s.warnings)


def data_line(plan) -> str:
    """``Data: photos from /home/me/photos (class folders, streamed): 18 training, 2
    validation images, ...``: what a run trains on and how the images reach the model."""
    d = plan.data
    how = "; ".join(filter(None, [plan.feed.describe(), *plan.data_notes]))
    held = f", {len(d.test):,} held out for evaluate (a seeded {d.held_out:.0%} of " \
        "each class; train/ and test/ folders, or a CSV's split column, choose them)" \
        if d.held_out else ""
    return (f"Data: {d.name} from {d.source}: {len(plan.feed.train):,} training, "
            f"{len(plan.feed.val):,} validation images{held}"
            + (" (SAMPLE)" if d.sample else "") + (f"; {how}" if how else ""))


def training_line(plan, verb: str = "Training") -> str:
    """``Training mnist_net for 3 epochs of 1,080 steps (batch 50)``; with
    ``train.steps`` cutting the last epoch short, ``for 5 steps (2 epochs of 3 steps, the
    last cut to 2)``; with `train.fine_tune`, its second stage (``; stage 2 from epoch 3:
    7 more layers trained, learning rate 1e-05``)."""
    epochs = f"{count(plan.epochs, 'epoch')} of {count(plan.steps_per_epoch, 'step')}"
    cut = plan.total_steps - (plan.epochs - 1) * plan.steps_per_epoch
    if cut != plan.steps_per_epoch:
        epochs = f"{count(plan.total_steps, 'step')} ({epochs}, the last cut to {cut})"
    line = f"{verb} {plan.spec.name} for {epochs} (batch {plan.cfg.train.batch_size})"
    t = plan.transfer
    if t is not None and t.fine_tune is not None:  # said before it starts, as the plan
        line += (f"; stage 2 from epoch {t.fine_tune.after_epochs + 1}: "
                 f"{count(len(t.unfrozen), 'more layer')} trained, learning rate "
                 f"{t.fine_tune.learning_rate:g}")
    return line


#: Seconds between progress lines inside an epoch when progress is not animated (CI,
#: pipes): a long epoch says how far it has come, and a CI service that stops a job
#: silent for 10 minutes (Travis CI) does not stop it.
HEARTBEAT = 60.0


class PlainTrainReporter:
    """One line per epoch (and one a minute within a long epoch), no colour, no
    animation: for CI, pipes and --quiet (which prints no progress)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.warned: list[str] = []  # every warning and note, in order (train --json's)

    def begin(self, plan, run, resumed):
        if not self.quiet:
            info(plan.placement.describe())
            mine = "" if plan.placement.is_chief else \
                " (this worker's copy, read by nobody: the chief writes the run)"
            info(f"{'Resuming' if resumed else 'Run'}: {run}{mine}")
            info(data_line(plan))
            info(training_line(plan))
        for w in plan.warnings:  # with --quiet too: a CI log needs them most
            self.note(w)

    def epoch_begin(self, epoch, epochs, steps, first_step):
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.said = time.monotonic()

    def step(self, step, logs):
        now = time.monotonic()
        if self.quiet or now - self.said < HEARTBEAT:
            return
        self.said = now
        info("  ".join([f"epoch {self.epoch + 1}/{self.epochs}",
                        f"step {step:,}/{self.steps:,}", *step_figures(logs)]))

    def epoch_end(self, row: EpochRow):
        if not self.quiet:
            info(epoch_line(row, self.epochs))

    def note(self, text):
        self.warned.append(text)
        warn(text)

    def info(self, text):
        if not self.quiet:
            info(text)

    def end(self):
        pass


#: Terminal columns below which the progress line has no bar: its figures fit first.
BAR_FROM = 80


class RichTrainReporter(PlainTrainReporter):
    """A progress bar per epoch with loss, accuracy, images/s and ETA, in a terminal; in
    one narrower than `BAR_FROM` columns the figures alone, folded onto more lines
    rather than cut (a 40-column terminal showed `epo…`)."""

    def __init__(self):
        super().__init__(quiet=False)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        def folded(template: str) -> TextColumn:
            return TextColumn(template, markup=False, table_column=Column(overflow="fold"))

        # the figures last: folded onto more lines, they read on from the line's start
        columns = [folded("epoch {task.fields[epoch]}"), MofNCompleteColumn(),
                   TimeRemainingColumn(), folded("{task.fields[stats]}")]
        if err.width >= BAR_FROM:
            columns.insert(1, BarColumn())
        self.progress = Progress(*columns, console=err, transient=True)
        self.task = None

    def epoch_begin(self, epoch, epochs, steps, first_step):
        super().epoch_begin(epoch, epochs, steps, first_step)
        self.started, self.first = time.perf_counter(), first_step
        if self.task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("", total=steps, completed=first_step,
                                           epoch=f"{epoch + 1}/{epochs}", stats="")

    def step(self, step, logs):
        elapsed = time.perf_counter() - self.started
        speed = (step - self.first) * self.batch / elapsed if elapsed > 0 else 0
        stats = " ".join(step_figures(logs))
        self.progress.update(self.task, completed=step, stats=f"{stats} {speed:,.0f} img/s")

    def begin(self, plan, run, resumed):
        super().begin(plan, run, resumed)
        self.batch = plan.placement.global_batch_size(plan.cfg.train.batch_size)

    def epoch_end(self, row: EpochRow):
        self.progress.console.print(epoch_line(row, self.epochs), markup=False)

    def end(self):
        self.progress.stop()


def step_figures(logs) -> list[str]:
    """A step's figures as the progress lines show them: ``loss 0.2345``."""
    return [f"{k} {float(v):.4f}" for k, v in logs.items()]


def epoch_line(row: EpochRow, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}"]
    if "stage" in row:  # fine-tuning: 1 with the backbone frozen, 2 after unfreezing
        parts.append(f"stage {row['stage']}")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"lr {row['learning_rate']:.2g}")
    parts.append(f"{row['images_per_s']:,.0f} img/s")
    parts.append(f"{row['seconds']:.1f}s")
    if row.get("unreadable_images"):
        parts.append(f"{count(int(row['unreadable_images']), 'unreadable image')} skipped")
    return "  ".join(parts)


def animated() -> bool:
    """Whether progress may be animated: on a terminal, and not in CI (``CI`` set, as CI
    services set it: their logs keep every frame of an animation, even on a terminal).
    A terminal is stderr's own: ``FORCE_COLOR`` asks for colour in a pipe, not for the
    frames of an animation in a log file."""
    return (err.is_terminal and stderr_is_a_terminal()
            and os.environ.get("CI", "").lower() in ("", "0", "false"))


def stderr_is_a_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file
        return False


@contextlib.contextmanager
def warnings_to(say):
    """Python warnings raised inside (a data set's `DataWarning`s, a device's) go to
    `say`, a reporter's `note`, which prints them and keeps them for its JSON."""
    import warnings

    previous = warnings.showwarning
    warnings.showwarning = lambda message, *args, **kwargs: say(str(message))
    try:
        yield
    finally:
        warnings.showwarning = previous


def train_reporter(quiet: bool):
    """Rich progress in a terminal; plain lines otherwise (CI, a pipe) or with --quiet."""
    if not quiet and animated():
        return RichTrainReporter()
    return PlainTrainReporter(quiet=quiet)


#: Classes listed in evaluate's per-class table (all are in evaluation.json and --json):
#: of more, those with the lowest F1, the ones to look at.
CLASS_ROWS = 100


#: How evaluate names an exported file's precision (`ExportedClassifier.precision`).
QUANTIZED = {"float16": "float16 weights, quantized when exported",
             "dynamic": "int8 weights (dynamic quantization when exported)",
             "int8": "computing in int8, quantized when exported",
             "as exported": "computing in the precision it was exported in"}


def evaluation(rep) -> None:
    """Figures, per-class table, most-confused pairs and the worst mistakes."""
    r = rep.result
    how = QUANTIZED.get(rep.precision, f"computing in {printable(rep.precision, one_line=True)}")
    out.print(f"Model: {printable(rep.model, one_line=True)} ({how})")
    out.print(f"Data: {printable(rep.dataset, one_line=True)}, {r.count:,} test images")
    line = (f"loss {r.loss:.4f}  " if r.loss is not None else "") + \
        f"accuracy {text.fraction(r.accuracy)}"
    if r.top5_accuracy is not None:
        line += f"  top-5 accuracy {text.fraction(r.top5_accuracy)}"
    line += f"  macro F1 {text.fraction(r.macro_f1)}"
    if r.macro_classes < len(r.per_class):  # a test set of some of the model's classes
        line += f" (over the {r.macro_classes} of {len(r.per_class)} classes seen)"
    out.print(line)
    seen = [r.per_class[c] for c in metrics.seen_classes(r.confusion)]  # as the averages
    listed = seen if len(seen) <= CLASS_ROWS else sorted(  # the worst first (ties: in order)
        seen, key=lambda c: c.f1)[:CLASS_ROWS]
    table = Table(title="Per class" if listed is seen else
                  f"Per class: the {CLASS_ROWS} of lowest F1, lowest first", title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right", overflow="fold")
    for c in listed:
        table.add_row(printable(str(c.name), one_line=True),
                      *(text.fraction(v, 3) for v in (c.precision, c.recall, c.f1)),
                      f"{c.support:,}")
    out.print(table)
    left = [f"{len(seen) - CLASS_ROWS:,} of higher F1"] * (len(seen) > CLASS_ROWS) + [
        f"{len(r.per_class) - len(seen):,} neither in the data nor predicted"] * (
        len(seen) < len(r.per_class))
    if left:
        every = "evaluation.json and --json have" if "evaluation" in rep.files else \
            "--json has"
        out.print(f"(classes not listed: {'; '.join(left)}; {every} every class)")
    if r.most_confused:
        out.print("Most confused (true -> predicted: count):")
        for pair in r.most_confused[:5]:
            out.print(printable(f"  {pair.true_name} -> {pair.predicted_name}: {pair.count}",
                                one_line=True), markup=False)
    if r.misclassified:
        out.print("Worst mistakes (id: true -> predicted, confidence):")
        for m in r.misclassified[:5]:
            out.print(printable(f"  {m.id}: {m.true_name} -> {m.predicted_name} "
                                f"({text.probability(m.confidence, 1)})", one_line=True),
                      markup=False)
    for name, path in rep.files.items():
        out.print(f"{name.replace('_', ' ')}: {printable(str(path), one_line=True)}",
                  markup=False)
    warn_all(rep.notes)


def predictions(result, fmt: str = "text") -> None:
    """A whole `cnncli.infer.predict.Result` on stdout (see `Predictions`)."""
    out = Predictions(fmt)
    out.add(result, result.images)
    out.end(result)


class Predictions:
    """Results on stdout: the lecture's lines, or json, jsonl, csv (file, rank, class, p),
    as they come: `add` a batch's (text, jsonl and csv are written at once, so memory
    stays flat and a pipe reads them while the rest are classified), then `end` (json is
    one document, written whole then).

    A model giving raw scores (no softmax) gets them as scores: ``score``, not a
    ``probability`` nor a percentage. An ImageNet model's classes also carry their
    WordNet ID (``wordnet_id``, as Keras' ``decode_predictions`` gives it); a line of
    text shows it for a name two classes share (``crane (n03126707)``)."""

    def __init__(self, fmt: str = "text"):
        self.fmt, self.kept, self.csv = fmt, [], None
        #: whether the figures written are scores, as the first results written said
        self.scores: bool | None = None

    def add(self, result, images) -> None:
        """Write (or, for json, keep) `images`, results of `result`."""
        if self.fmt == "json":
            self.kept += images
            return
        if self.scores is None and images:
            self.scores = result.scores
        key = "score" if self.scores else "probability"
        if self.fmt == "csv":
            self._csv_header(result)
        rows = ({"file": r.file, "rank": k + 1, **_entry(*t, key), **_heat_map(r)}
                for r in images for k, t in enumerate(_top(r)))
        if self.fmt == "jsonl":
            sys.stdout.writelines(files.json_text(row, one_line=True) + "\n" for row in rows)
        elif self.fmt == "csv":
            self.csv.writerows({**row, "file": text.cell(row["file"]),
                                "class": text.cell(row["class"])} for row in rows)
        else:
            self._lines(result, images)
        sys.stdout.flush()

    def end(self, result) -> None:
        """What is left to write: json's document, csv's header when no image was read.
        A model whose outputs showed they are not probabilities only after the first
        results were written (as probabilities) is warned of."""
        if self.fmt == "json":
            key = "score" if result.scores else "probability"
            print_json([{"file": r.file, "top": [_entry(*t, key) for t in _top(r)],
                         **_heat_map(r)} for r in self.kept])
        elif self.fmt == "csv":
            self._csv_header(result)
        sys.stdout.flush()
        if result.scores and self.scores is False:
            warn(f"{result.model}'s outputs showed they are not probabilities only after the "
                 "first results were written: those written as `probability` or "
                 "percentages are raw scores too (`--format json` is written at the end, "
                 "and says `score` then)")

    def _csv_header(self, result) -> None:
        if self.csv is None:
            import csv

            key = "score" if (result.scores if self.scores is None else self.scores) \
                else "probability"
            self.csv = csv.DictWriter(sys.stdout, fieldnames=["file", "rank", "class", *(
                ["wordnet_id"] if result.wordnet else []), key], extrasaction="ignore")
            self.csv.writeheader()  # (no heat map column)

    def _lines(self, result, images) -> None:
        from cnncli.model import imagenet

        # name files when several were given (errors too)
        many = max(result.inputs, len(result.images) + len(result.errors)) > 1
        shared = imagenet.shared_names()
        for r in images:
            if many:
                sys.stdout.write(f"{printable(r.file, one_line=True)}\n")
            for i, (name, wordnet_id, p) in enumerate(_top(r)):
                shown = f"{p:.4g}" if self.scores else text.probability(p)
                if name in shared and wordnet_id:  # which crane
                    name = f"{name} ({wordnet_id})"
                sys.stdout.write(f"{'  ' if many else ''}{i + 1}. "
                                 f"{printable(name, one_line=True)}: {shown}\n")


def _heat_map(r) -> dict:
    """predict --explain: each image's Grad-CAM file."""
    return {"gradcam": r.gradcam} if r.gradcam else {}


def _top(r) -> list[tuple[str, str | None, float]]:
    """An image's (class, WordNet ID, p), best first."""
    ids = r.wordnet_ids or [None] * len(r.top)
    return [(name, w, p) for (name, p), w in zip(r.top, ids, strict=True)]


def _entry(name: str, wordnet_id: str | None, p: float, key: str) -> dict:
    return {"class": name, **({"wordnet_id": wordnet_id} if wordnet_id else {}),
            key: significant(p)}


def datasets(rows) -> None:
    """`cnncli.data.known.DatasetRow`s as a table."""
    table = Table(title="Datasets", title_justify="left")
    for col in ("name", "found", "train", "test", "image", "classes"):
        table.add_column(col, justify="right" if col in ("train", "test", "classes") else
                         "left", overflow="fold")
    for r in rows:
        where = r.where if r.found or r.kind == "download" else "not found"
        if r.problem:
            where += f" ({r.problem})"
        table.add_row(r.name, where, f"{r.train:,}", f"{r.test:,}",
                      text.dims_text(r.image_shape), str(r.num_classes))
    out.print(table)


def caches(rows, folder, *, cleared: bool = False) -> None:
    """`cnncli.data.caches.Cache`s as a table, or what `--clear` removed."""
    total = text.size(sum(c.bytes for c in rows))
    shown = printable(str(folder), one_line=True)
    if cleared:
        out.print(f"{shown}: removed {count(len(rows), 'cache')} ({total})", markup=False)
        return
    if not rows:
        out.print(f"{shown}: no image caches", markup=False)
        return
    table = Table(title=f"Image caches in {shown}: {total}", title_justify="left")
    for col in ("folder", "images", "decoded", "size", "last written"):
        table.add_column(col, justify="left" if col in ("folder", "last written")
                         else "right", overflow="fold")
    for c in rows:
        table.add_row(c.path.name, f"{c.images:,}", text.percent(c.filled / c.images, 0)
                      if c.images else "-", text.size(c.bytes),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(c.modified)))
    out.print(table)


def doctor(info) -> None:
    """`cnncli.devices.tf_layer.Doctor` as lines."""
    out.print(f"TensorFlow {info.tensorflow}, Keras {info.keras}")
    cuda = (f"built with CUDA {info.cuda_version}, cuDNN {info.cudnn_version}"
            if info.cuda_build else "built without CUDA (CPU only)")
    out.print(f"TensorFlow is {cuda}")
    if info.cuda_visible_devices is not None:
        out.print(f"CUDA_VISIBLE_DEVICES={info.cuda_visible_devices}")
    out.print(f"NVIDIA driver: {'present' if info.nvidia_driver else 'not found'}")
    for g in info.gpus:
        memory = text.size(g.memory_bytes, memory=True) if g.memory_bytes else "memory unknown"
        cc = g.to_dict()["compute_capability"] or "?"  # "8.0"
        out.print(f"GPU {g.index}: {g.name}, {memory}, compute capability {cc}")
    if not info.gpus:
        out.print("GPUs: none visible to TensorFlow")
    cpu = info.cpu
    out.print(f"CPU: {cpu.available} threads available (TensorFlow intra-op "
              f"{cpu.intra_op_threads or 'auto'}, inter-op {cpu.inter_op_threads or 'auto'})"
              + ("; bfloat16 units (AMX or AVX512-BF16): mixed_bfloat16 pays off"
                 if cpu.bf16_units else "; no bfloat16 units: float32 is fastest"))
    if cpu.allocator:
        out.print("CPU memory: " + ("TensorFlow's BFC allocator (reuses freed memory)"
                                    if cpu.allocator == "bfc" else
                                    "TensorFlow's default allocator (TF_CPU_ALLOCATOR_USE_BFC)"))
    auto = info.auto
    several = (f" over {auto.replicas} replicas" + (
        f" on {auto.workers} machines (TF_CONFIG; this is {auto.task})"
        if auto.kind == "multiworker" else "")) if auto.replicas > 1 else ""
    out.print(f"auto picks: {auto.kind}{several}, precision {auto.precision}")
    if info.warning:
        warn(info.warning)


def exports(report) -> None:
    """One row per exported file: size, largest difference, top-1 agreement, accuracy."""
    from rich.text import Text

    out.print(f"Model: {printable(report.model, one_line=True)}", markup=False)
    out.print(f"Checked on {printable(report.images, one_line=True)}", markup=False)
    table = Table(title="Exports", title_justify="left")
    for col in ("export", "file", "size", "max diff", "top-1 agreement", "accuracy",
                "result"):
        table.add_column(col, justify="right" if col in ("size", "max diff") else "left",
                         overflow="fold")
    for r in report.results:
        c = r.check
        accuracy = ""
        if c.accuracy is not None:
            accuracy = f"{text.percent(c.keras_accuracy)} -> {text.percent(c.accuracy)}"
            if c.quantized:
                accuracy += f" ({0.0 - c.drop:+.2f} points)"
        label = r.format + ("" if r.quantization == "none" else f" ({r.quantization})")
        table.add_row(*(Text(s) for s in (
            label, printable(str(r.path), one_line=True), text.size(r.size),
            f"{c.max_difference:.2g}",
            f"{text.percent(c.agreement)} of {c.images:,}", accuracy,
            "ok" if r.kept else "FAILED, not kept")))
    out.print(table)
    warn_all(report.notes)


@contextlib.contextmanager
def progress_bar(what: str, total: int, *, quiet: bool = False):
    """A progress bar on stderr in a terminal (nothing elsewhere); yields advance(done,
    total) for the library function doing the work."""
    if quiet or not animated():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(TextColumn(what, markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done, total: bar.update(task, completed=done)
