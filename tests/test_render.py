"""Names with square brackets ("photos [2024]", "IMG_0001 [edited].jpg") are printed as
they are on every output path: errors, warnings, tables, progress lines, predictions.
Rich would read them as markup (dropping them, or failing on "[/b]")."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from trainkit import write_config

from cnncli import config
from cnncli.cli import render
from cnncli.errors import ConfigError
from cnncli.infer import evaluate, metrics
from cnncli.run import train as training


def cnncli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_an_error_in_a_bracketed_folder_names_it_whole(tmp_path):
    folder = tmp_path / "photos [2024]"
    folder.mkdir()
    (folder / "x.yaml").write_text("input: [8, 8, 1]\nlayers: [Conv2d]\n")
    result = cnncli("check", str(folder / "x.yaml"))
    assert result.returncode == 2
    assert f"error: {folder / 'x.yaml'}:2: layer 1: unknown layer 'Conv2d'" in result.stderr


def test_a_path_with_a_closing_tag_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "a[").mkdir()
    path = tmp_path / "a[" / "b].yaml"
    path.write_text("layers: [Flatten]\n")
    result = cnncli("check", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:1: the spec has no input shape" in result.stderr


def test_a_command_stopped_as_asked_says_stopped_not_error(tmp_path, capsys):
    import signal

    from cnncli.errors import DataError
    from cnncli.run.callbacks import Interrupted

    render.error(Interrupted(signal.SIGTERM, tmp_path))
    render.error(DataError("no images"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"stopped: {tmp_path}: SIGTERM") and lines[-1] == "error: no images"


def test_our_own_hints_keep_their_brackets(capsys):
    render.error(ConfigError("no GPU", hint="pip install 'cnncli[gpu]'"))
    render.warn("data [old] has 2 unreadable files")
    err = capsys.readouterr().err
    assert "pip install 'cnncli[gpu]'" in err
    assert "warning: data [old] has 2 unreadable files" in err


def test_tables_show_bracketed_class_and_file_names(capsys):
    result = metrics.compute([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]],
                             ["cat [old]", "dog [new]"])
    result.loss = 0.5
    render.evaluation(evaluate.Report("runs/x [1]/best.keras", result, "photos [2024]",
                                      {}, [], []))
    from cnncli.data.known import DatasetRow

    render.datasets([DatasetRow("mnist", True, "data_dir", "/data [old]/mnist.npz", 1, 1,
                                (28, 28, 1), 10)])
    out = capsys.readouterr().out
    for text in ("cat [old]", "dog [new]", "runs/x [1]/best.keras", "photos [2024]",
                 "/data [old]/mnist.npz"):
        assert text in out


def test_names_that_read_as_emoji_codes_are_shown_as_typed(capsys):
    result = metrics.compute([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]],
                             [":thumbs_up:", ":x:"])
    result.loss = 0.5
    render.evaluation(evaluate.Report("runs/:rocket:/best.keras", result, ":tada:", {}, [], []))
    out = capsys.readouterr().out
    for text in (":thumbs_up:", ":x:", "runs/:rocket:/best.keras", ":tada:"):
        assert text in out


def test_the_per_class_table_lists_the_classes_seen_and_says_how_many_are_not(capsys):
    import numpy as np

    labels = np.arange(105)  # 105 of 120 classes in the data, each predicted right...
    probs = np.eye(120)[labels] * 0.9 + 0.1 / 120
    probs[[50, 104]] = np.eye(120)[[51, 0]]  # ...but c50 and c104
    result = metrics.compute(labels, probs, [f"c{i}" for i in range(120)])
    render.evaluation(evaluate.Report("m.keras", result, "photos", {}, [], []))
    out = capsys.readouterr().out
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("│ c")]
    assert rows[:5] == ["c50", "c104", "c0", "c51", "c1"] and len(rows) == 100  # worst first
    assert "c99 " not in out and "c110" not in out
    assert "Per class: the 100 of lowest F1, lowest first" in out
    assert "(classes not listed: 5 of higher F1; 15 neither in the data nor predicted; " \
           "--json has every class)" in out.replace("\n", " ")  # no evaluation.json


def test_progress_bar_stats_are_not_markup(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(render, "err", Console(file=buffer, force_terminal=True, width=120,
                                               markup=False))
    reporter = render.RichTrainReporter()
    reporter.batch = 16
    reporter.epoch_begin(0, 1, 10, 0)
    reporter.step(1, {"acc [top]": 0.5})
    reporter.progress.refresh()
    reporter.end()
    assert "acc [top] 0.5000" in buffer.getvalue()


def test_the_progress_line_of_a_narrow_terminal_drops_its_bar_and_keeps_every_figure(
        monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(render, "err", Console(file=buffer, force_terminal=True, width=40,
                                               markup=False, color_system=None))
    reporter = render.RichTrainReporter()
    reporter.batch = 16
    reporter.epoch_begin(0, 12, 1100, 0)
    reporter.step(400, {"accuracy": 0.44, "loss": 2.1512})
    reporter.progress.refresh()
    reporter.end()
    shown = " ".join(buffer.getvalue().split())
    for figure in ("epoch 1/12", "400/1100", "accuracy 0.4400", "loss 2.1512"):
        assert figure in shown, shown
    assert "━" not in shown and "…" not in shown


def test_the_data_line_says_how_many_images_a_class_folder_run_held_out(tmp_path,
                                                                       monkeypatch):
    """60,000 photos trained as 43,200 without a word of the 12,000 kept for evaluate."""
    from trainkit import SPEC

    from cnncli.run import plan as planning

    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (8, 8), i * 20).save(tmp_path / "photos" / name / f"{i}.png")
    path = tmp_path / "photos.yaml"
    path.write_text(f"model:{SPEC.replace('classes: 3', 'classes: 2')}\n"
                    f"data: {{name: '{tmp_path / 'photos'}'}}\ntrain: {{batch_size: 4}}\n")
    buffer = io.StringIO()
    monkeypatch.setattr(render, "err", Console(file=buffer, width=400, markup=False))
    render.PlainTrainReporter().begin(planning.plan(config.load(path)), tmp_path / "run",
                                      resumed=False)
    assert "14 training, 2 validation images, 4 held out for evaluate (a seeded 20% of each " \
           "class; train/ and test/ folders, or a CSV's split column, choose them)" in \
        buffer.getvalue()


def test_training_and_prediction_lines_keep_bracketed_names(tmp_path):
    path = write_config(tmp_path, epochs=1)
    data = tmp_path / "toy [1].npz"
    (tmp_path / "toy.npz").rename(data)
    path.write_text(path.read_text().replace(str(tmp_path / "toy.npz"), f"'{data}'"))
    result = cnncli("train", str(path))
    assert result.returncode == 0, result.stderr
    assert f"Data: toy [1] from {data}: 256 training" in result.stderr
    run = training.train(config.load(path), config_file=str(path)).run
    good, bad = tmp_path / "IMG_0001 [edited].png", tmp_path / "bad [1].png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    bad.write_text("not an image")
    result = cnncli("predict", str(good), str(bad), "--model", str(run))
    assert result.returncode == 1
    assert f"{good}\n  1. " in result.stdout
    assert f"error: {bad}: " in result.stderr


def test_control_characters_in_names_reach_no_terminal_raw(capsys):
    """ESC starts sequences a terminal acts on (colour, its title, clearing the screen);
    a newline in an error could forge a second line."""
    render.error(ConfigError("unknown layer", file="net\x1b]0;pwned\x07.yaml"))
    render.warn("skipped photos/z\x1b[2J.png")
    render.out.print("class \x1b[31mred")
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in err
    assert "net\\x1b]0;pwned\\x07.yaml" in err and "z\\x1b[2J.png" in err
    assert "class \\x1b[31mred" in out
    render.error(ConfigError("not found", file="x\nerror: forged.yaml"))
    assert capsys.readouterr().err.splitlines() == [
        "error: x\\nerror: forged.yaml: not found"]


def test_bells_carriage_returns_and_bidi_overrides_in_names_are_shown_escaped(capsys):
    """rich drops a bell or a carriage return from text (the name shown would not be
    the file's); a right-to-left override makes a name look like another."""
    render.out.print("runs/a\x07bell/1 runs/c\rcr/1 runs/d\u202eevil/1")
    out = capsys.readouterr().out
    assert out == "runs/a\\x07bell/1 runs/c\\rcr/1 runs/d\\u202eevil/1\n"


def test_predictions_escape_control_characters_in_file_and_class_names(capsys):
    from cnncli.infer.predict import ImageResult, Result

    image = ImageResult(file="e\x1b[31m.jpg", top=[("cat\x1b[0m", 0.9)])
    result = Result(model="m", images=[image, image])
    for fmt in ("text", "csv", "jsonl"):
        render.predictions(result, fmt)
        assert "\x1b" not in capsys.readouterr().out, fmt


def test_a_probability_float32_rounded_to_one_is_not_shown_as_a_certainty(capsys):
    """The others' 2e-14 were rounded away: showing 100.00% beside <0.01% sums to more."""
    from cnncli.infer.predict import ImageResult, Result

    image = ImageResult(file="b.bmp", top=[("square", 1.0), ("circle", 2.2e-14),
                                            ("star", 0.0)])
    render.predictions(Result(model="m", images=[image]), "text")
    assert capsys.readouterr().out.splitlines()[:3] == ["1. square: >99.99%",
                                                        "2. circle: <0.01%", "3. star: <0.01%"]


def test_names_with_newlines_stay_on_one_line(capsys):
    """A newline in a file or class name must not split a report line (or forge one)."""
    from types import SimpleNamespace

    render.info("Grad-CAM: cams/gradcam_nl\nline.png")
    check = SimpleNamespace(accuracy=None, quantized=False, max_difference=0.0,
                            agreement=1.0, images=3)
    render.exports(SimpleNamespace(
        model="runs/a\nb/model.keras", images="3 images", notes=[],
        results=[SimpleNamespace(check=check, format="onnx", quantization="none",
                                 path="out/x\ny.onnx", size=2000, kept=True)]))
    out, err = capsys.readouterr()
    assert err.splitlines() == ["Grad-CAM: cams/gradcam_nl\\nline.png"]
    assert "Model: runs/a\\nb/model.keras" in out.splitlines()
    assert any("out/x\\ny.onnx" in line for line in out.splitlines())
    result = metrics.compute([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["cat", "dog"])
    result.loss = 0.5
    render.evaluation(evaluate.Report("runs/a\nb/best.keras", result, "photos\nx", {}, [], []))
    lines = capsys.readouterr().out.splitlines()
    assert "Model: runs/a\\nb/best.keras (computing in float32)" in lines
    assert "Data: photos\\nx, 2 test images" in lines


def test_an_export_path_is_folded_in_a_narrow_terminal_not_cut(monkeypatch):
    from types import SimpleNamespace

    buffer = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buffer, width=80, markup=False))
    check = SimpleNamespace(accuracy=0.9, keras_accuracy=0.9, quantized=True, drop=0.0,
                            max_difference=0.01, agreement=1.0, images=200)
    path = "exports/a_rather_long_folder_name/another_long_folder/model_int8.onnx"
    render.exports(SimpleNamespace(model="m.keras", images="200 images", notes=[],
                                   results=[SimpleNamespace(check=check, format="onnx",
                                                            quantization="int8", path=path,
                                                            size=2000, kept=True)]))
    cells = "".join(line.split("│")[2].strip() for line in buffer.getvalue().splitlines()
                    if line.count("│") > 3)
    assert path in cells


def test_a_quantized_export_that_loses_accuracy_is_shown_losing_it(monkeypatch):
    from types import SimpleNamespace

    buffer = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buffer, width=200, markup=False))
    check = SimpleNamespace(accuracy=0.888, keras_accuracy=0.9, quantized=True, drop=1.2,
                            max_difference=0.05, agreement=0.98, images=500)
    render.exports(SimpleNamespace(model="m.keras", images="500 images", notes=[],
                                   results=[SimpleNamespace(check=check, format="onnx",
                                                            quantization="int8", path="m.onnx",
                                                            size=2000, kept=True)]))
    assert "90.00% -> 88.80% (-1.20 points)" in buffer.getvalue()


@pytest.mark.parametrize("ci,moving", [(None, True), ("true", False), ("1", False),
                                       ("false", True)])
def test_progress_moves_on_a_terminal_unless_in_ci(monkeypatch, ci, moving):
    monkeypatch.setattr(render, "err", Console(stderr=True, force_terminal=True))
    monkeypatch.setattr(render, "stderr_is_a_terminal", lambda: True)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert render.animated() is moving
    assert isinstance(render.train_reporter(quiet=False), render.RichTrainReporter) is moving


def test_force_color_in_a_pipe_colours_the_text_but_does_not_animate(monkeypatch):
    """FORCE_COLOR makes rich call a pipe a terminal: a log got 24 frames of a progress
    bar for 18 steps."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(render, "err", Console(stderr=True))
    monkeypatch.setattr(render, "stderr_is_a_terminal", lambda: False)  # a pipe, a file
    assert render.err.is_terminal and not render.animated()
    assert isinstance(render.train_reporter(quiet=False), render.PlainTrainReporter)


def test_a_long_epoch_in_a_log_says_how_far_it_has_come_once_a_minute(monkeypatch, capsys):
    clock = iter([0.0, 30.0, 61.0, 90.0, 122.0])
    monkeypatch.setattr(render.time, "monotonic", lambda: next(clock))
    reporter = render.PlainTrainReporter()
    reporter.epoch_begin(2, 20, 1100, 0)  # at 0 s
    for step in (100, 200, 300, 400):  # at 30, 61, 90 and 122 s
        reporter.step(step, {"loss": 0.5 - step / 1000, "accuracy": step / 1000})
    assert capsys.readouterr().err.splitlines() == [
        "epoch 3/20  step 200/1,100  loss 0.3000  accuracy 0.2000",
        "epoch 3/20  step 400/1,100  loss 0.1000  accuracy 0.4000"]


def test_quiet_training_prints_no_progress_lines_however_long_an_epoch(monkeypatch, capsys):
    monkeypatch.setattr(render.time, "monotonic", iter([0.0, 500.0, 1000.0]).__next__)
    reporter = render.PlainTrainReporter(quiet=True)
    reporter.epoch_begin(0, 1, 10, 0)
    reporter.step(5, {"loss": 1.0})
    assert capsys.readouterr().err == ""


def test_tables_in_a_narrow_terminal_fold_their_cells_and_lose_no_figure(monkeypatch):
    """At 40 columns `cnncli datasets` showed `cif…` for cifar10 and cifar100 alike and
    `4,0…` for 4,000; `summary` cut 64 and 128 channels to the same `224x22…`."""
    from cnncli.data.known import DatasetRow

    buffer = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buffer, width=40, markup=False))
    render.datasets([DatasetRow("cifar100", True, "keras", "/home/someone/.keras/datasets/"
                                "cifar-100-python", 50_000, 10_000, (32, 32, 3), 100),
                     DatasetRow("cifar10", True, "keras", "/data/cifar-10", 4_000, 1_000,
                                (32, 32, 3), 10)])
    table = buffer.getvalue()
    assert "…" not in table
    columns: dict[int, str] = {}  # each column's cells read down, their folds joined
    for line in table.splitlines():
        if line.startswith("│"):
            for i, cell in enumerate(line.strip("│").split("│")):
                columns[i] = columns.get(i, "") + cell.strip()
    assert columns[0] == "cifar100cifar10"
    assert columns[1] == "/home/someone/.keras/datasets/cifar-100-python/data/cifar-10"
    assert (columns[2], columns[3]) == ("50,0004,000", "10,0001,000")
    assert columns[4] == "32x32x332x32x3"


def test_an_exported_files_own_word_for_its_precision_is_escaped(capsys):
    """It comes from the file's JSON (`quantization`), which can hold a newline."""
    result = metrics.compute([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    render.evaluation(evaluate.Report("m.onnx", result, "photos", {}, [], [],
                                      "int8\nPASS: all good"))
    out = capsys.readouterr().out
    assert "Model: m.onnx (computing in int8\\nPASS: all good)" in out


def test_evaluate_never_rounds_a_figure_to_a_certainty_it_is_not(capsys):
    """20,000 images right and one wrong: accuracy short of 1, and the class the mistake
    went to short of a precision of 1, whatever the digits shown."""
    import numpy as np

    labels = np.array([0] * 10_000 + [1] * 10_001)
    probabilities = np.eye(2)[labels] * 0.9 + 0.05
    probabilities[-1] = [0.9, 0.1]  # the last image, of class 1, taken for class 0
    result = metrics.compute(labels, probabilities, ["a", "b"])
    render.evaluation(evaluate.Report("m.keras", result, "photos", {}, [], []))
    out = capsys.readouterr().out
    assert "accuracy >0.9999  macro F1 >0.9999" in out
    rows = [[cell.strip() for cell in line.split("│")[2:5]] for line in out.splitlines()
            if line.startswith(("│ a ", "│ b "))]
    assert rows == [[">0.999", "1.000", ">0.999"], ["1.000", ">0.999", ">0.999"]]
