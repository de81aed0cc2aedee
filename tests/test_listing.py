"""`cnncli runs`: damaged or foreign runs are listed as such and the listing goes on; a run
whose process died is told from one training now."""

import json
import subprocess
import sys
import zipfile

import pytest

from cnncli import config
from cnncli.run import listing, rundir


def make_run(root, name, number, state=None, metrics=None):
    """A run folder with these files; a finished one has a model file (a zip: `runs`
    looks no further)."""
    run = root / name / number
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: linear\ndigest: {LINEAR_DIGEST}\n")
    for file, content in (("state.json", state), ("metrics.json", metrics)):
        if content is not None:
            (run / file).write_bytes(content if isinstance(content, bytes)
                                     else content.encode() if isinstance(content, str)
                                     else json.dumps(content).encode())
    if state == FINISHED:
        with zipfile.ZipFile(run / "best.keras", "w") as archive:
            archive.writestr("config.json", "{}")
    return run


FINISHED = {"status": "finished"}
LINEAR_DIGEST = config.digest_of({"model": "linear"})
METRICS = {"epochs": 3, "best": {"metric": "val_accuracy", "value": 0.9}, "images_per_s": 10}


@pytest.mark.parametrize("state,metrics,problem", [
    ("not json", METRICS, "state.json is not JSON (Expecting value"),
    ({}, METRICS, "state.json has no status cnncli writes"),
    ({"status": "[bold]done"}, METRICS, "state.json has no status cnncli writes ('[bold]done')"),
    (None, METRICS, "state.json is missing"),
    (FINISHED, [1, 2], "metrics.json is not a JSON object"),
    (FINISHED, {"best": {"value": "high"}}, "best value 'high' is not a number"),
    (FINISHED, {"best": "x"}, "best is not an object"),
    (FINISHED, {**METRICS, "images_per_s": "fast"}, "images_per_s 'fast' is not a number"),
    (FINISHED, {**METRICS, "images_per_s": float("inf")}, "images_per_s inf is not a number"),
    (FINISHED, {**METRICS, "epochs": "3"}, "epochs '3' is not a whole number"),
    (FINISHED, {**METRICS, "dataset": []}, "dataset is not an object"),
    ({"status": "finished", "error": 3}, b"\xff", "metrics.json is not JSON"),
    (FINISHED, "[" * 100_000, "metrics.json is not JSON (it is nested too deeply to be read)"),
])
def test_a_damaged_run_is_listed_as_damaged(tmp_path, state, metrics, problem):
    make_run(tmp_path, "a", "1", state, metrics)
    make_run(tmp_path, "b", "1", FINISHED, METRICS)
    rows = listing.summaries(tmp_path)
    assert [r.status for r in rows] == ["damaged", "finished"]
    assert problem in rows[0].problem and rows[1].best == 0.9


def test_a_run_of_an_older_version_with_other_fields_is_listed_with_its_figures(tmp_path):
    make_run(tmp_path, "a", "1", FINISHED, {**METRICS, "gone_field": 1, "dataset": {
        "train": 5, "old_key": 2}})
    [row] = listing.summaries(tmp_path)
    assert (row.status, row.epochs, row.best_metric, row.best, row.images_per_s) == (
        "finished", 3, "val_accuracy", 0.9, 10.0)


@pytest.mark.parametrize("text", [
    f"model: vgg16\ndigest: {LINEAR_DIGEST}\n",  # edited by hand
    "model: linear\n",  # cut short before its digest
])
def test_a_run_whose_config_is_not_the_one_it_wrote_is_damaged(tmp_path, text):
    run = make_run(tmp_path, "a", "1", FINISHED, METRICS)
    (run / "config.yaml").write_text(text)
    [row] = listing.summaries(tmp_path)
    assert (row.status, row.problem) == (
        "damaged", "config.yaml is not the one the run wrote (edited, or cut short)")


def test_folders_named_with_other_digits_are_not_runs(tmp_path):
    make_run(tmp_path, "a", "²", FINISHED, METRICS)
    make_run(tmp_path, "a", "٣", FINISHED, METRICS)
    make_run(tmp_path, "a", "2", FINISHED, METRICS)
    assert [r.run for r in listing.summaries(tmp_path)] == [str(tmp_path / "a" / "2")]


def test_runs_of_one_name_a_run_itself_and_an_output_dir_inside_are_listed(tmp_path):
    first, second = (make_run(tmp_path, "lenet", n, FINISHED, METRICS) for n in ("1", "2"))
    (tmp_path / "lenet" / "latest").symlink_to(second)  # listed once, by its number
    nested = make_run(tmp_path / "exp", "vgg", "1", FINISHED, METRICS)  # output.dir: runs/exp
    listed = [r.run for r in listing.summaries(tmp_path)]
    assert listed == [str(nested), str(first), str(second)]
    assert [r.run for r in listing.summaries(tmp_path / "lenet")] == [str(first), str(second)]
    assert [r.run for r in listing.summaries(second)] == [str(second)]
    assert [r.run for r in listing.summaries(tmp_path / "lenet" / "latest")] == [str(second)]


def test_a_run_copied_to_a_folder_of_another_name_is_listed_when_given(tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(make_run(tmp_path / "runs", "lenet", "1", FINISHED, METRICS), moved)
    [row] = listing.summaries(moved)
    assert (row.run, row.status, row.best) == (str(moved), "finished", 0.9)
    (tmp_path / "project").mkdir()  # a folder with a config of its own is no run
    (tmp_path / "project" / "config.yaml").write_text("model: linear\n")
    assert listing.summaries(tmp_path / "project") == []


def test_a_run_folder_without_its_config_is_listed_as_damaged_not_left_out(tmp_path):
    run = make_run(tmp_path, "a", "1", FINISHED, METRICS)
    (run / "config.yaml").unlink()
    [summary] = listing.summaries(tmp_path)
    assert summary.status == "damaged" and "config.yaml" in summary.problem


@pytest.mark.parametrize("record", ["state.json", ".lock", "history.csv", "config.yaml"])
def test_a_device_or_pipe_in_place_of_a_record_is_damaged_not_a_hang(tmp_path, record):
    """A run folder from someone else: /dev/zero would fill the memory, a pipe would wait
    for ever; `cnncli runs` lists the run and goes on."""
    import os

    run = make_run(tmp_path, "a", "1", {"status": "running"})
    (run / record).unlink(missing_ok=True)
    if record == "state.json":
        (run / record).symlink_to("/dev/zero")
    else:
        os.mkfifo(run / record)
    [summary] = listing.summaries(tmp_path)
    if record == "state.json":
        assert summary.status == "damaged" and "state.json is not a file" in summary.problem
    elif record == "config.yaml":  # (a pipe nobody writes to reads as empty)
        assert summary.status == "damaged" and "config.yaml" in summary.problem
    else:
        assert summary.status == "killed"  # (no process holds the run)


def test_a_running_run_whose_process_died_is_killed(tmp_path):
    run = make_run(tmp_path, "a", "1", {"status": "running"})
    with rundir.writer(run):
        assert listing.summarize(run).status == "running"
    assert listing.summarize(run).status == "killed"


def test_a_run_that_failed_for_want_of_space_is_failed_not_killed(tmp_path, monkeypatch):
    import errno

    from cnncli import files
    from cnncli.run.status import FAILED, RunStatus

    run = make_run(tmp_path, "a", "1", {"status": "running"})

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files, "write_atomic", full)  # no new file can be made
    RunStatus(FAILED, "cannot write history.csv").write(run)
    assert listing.summarize(run).status == "failed"
    assert RunStatus.read(run).error == "cannot write history.csv"
    RunStatus(FAILED, "cannot write /data/" + "é" * 2000).write(run)  # one block at most
    assert (run / "state.json").stat().st_size < 4096 and listing.summarize(run).status == \
        "failed"


def interrupted_with_history(tmp_path, history: str):
    """An interrupted run whose history.csv is `history`."""
    run = make_run(tmp_path, "a", "1", {"status": "interrupted"})
    (run / "history.csv").write_text(history)
    return run


def test_an_interrupted_run_shows_what_its_finished_epochs_reached(tmp_path):
    run = interrupted_with_history(
        tmp_path, "epoch,accuracy,loss,val_accuracy,val_loss,images_per_s\n"
        "1,0.80,0.6,0.8812,0.41,900.5\n2,0.88,0.4,0.9069,0.33,950.0\n")
    row = listing.summarize(run)
    assert (row.status, row.epochs, row.best_metric, row.best, row.images_per_s) == (
        "interrupted", 2, "val_accuracy", 0.9069, 950.0)
    (run / "history.csv").write_text("epoch,loss\n1,0.7\n2,0.5\n3,nan\n")
    assert (listing.summarize(run).best_metric, listing.summarize(run).best) == ("loss", 0.5)
    (run / "history.csv").unlink()
    assert listing.summarize(run).best is None


def test_an_older_run_of_acc_shows_its_best_validation_accuracy(tmp_path):
    """`metrics: [acc]` wrote acc and val_acc (Keras' accuracy): its best was shown as
    the validation loss; resumed since, its rows have both pairs, each half empty."""
    run = interrupted_with_history(
        tmp_path, "epoch,acc,loss,val_acc,val_loss,images_per_s\n"
        "1,0.80,0.6,0.8812,0.41,900.5\n2,0.88,0.4,0.9069,0.33,950.0\n")
    row = listing.summarize(run)
    assert (row.best_metric, row.best) == ("val_accuracy", 0.9069)
    (run / "history.csv").write_text(
        "epoch,acc,accuracy,loss,val_acc,val_accuracy,val_loss,images_per_s\n"
        "1,0.80,,0.6,0.9500,,0.41,900.5\n2,,0.88,0.4,,0.9069,0.33,950.0\n")
    assert listing.summarize(run).best == 0.95


def test_an_interrupted_run_without_validation_shows_its_best_loss(tmp_path):
    """history.csv heads accuracy and validation columns even when they stay empty."""
    run = interrupted_with_history(
        tmp_path, "epoch,loss,accuracy,val_loss,val_accuracy,seconds,images_per_s\n"
        "1,0.9,,,,3.1,900.5\n2,0.5,,,,3.0,950.0\n")
    row = listing.summarize(run)
    assert (row.best_metric, row.best) == ("loss", 0.5)


def test_the_runs_command_lists_every_run_and_exits_0(tmp_path):
    make_run(tmp_path, "a", "1", "{", METRICS)
    make_run(tmp_path, "b", "1", FINISHED, METRICS)
    make_run(tmp_path, "a_much_longer_name", "1", FINISHED, METRICS)
    make_run(tmp_path, "c", "1", {"status": "interrupted"})  # no figures yet
    done = subprocess.run([sys.executable, "-m", "cnncli", "runs", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "damaged" in done.stdout and "val_accuracy 0.9000" in done.stdout
    lines = done.stdout.splitlines()  # a column each, whatever the paths' lengths
    statuses = [line.index(s) for line in lines for s in (" damaged", " finished",
                                                         " interrupted") if s in line]
    assert len(statuses) == 4 and len(set(statuses)) == 1
    assert all(line == line.rstrip() for line in lines)


def test_runs_json_names_each_run_by_its_full_path_as_train_json_does(tmp_path,
                                                                     monkeypatch):
    """Listed from `runs` (relative), a run is the same string `train --json` gave."""
    run = make_run(tmp_path, "a", "1", FINISHED, METRICS)
    monkeypatch.chdir(tmp_path)
    [row] = listing.summaries("a")
    assert row.run == "a/1" and row.to_dict()["run"] == str(run.resolve())


def test_the_error_that_ended_a_run_is_shown_on_its_line_escaped(tmp_path):
    """Its error may name any file: an ESC or a newline in it is shown, not obeyed."""
    make_run(tmp_path, "a", "1", {"status": "failed", "error": "x\x1b[31m.png: bad\nline"})
    done = subprocess.run([sys.executable, "-m", "cnncli", "runs", str(tmp_path)],
                          capture_output=True, text=True)
    [line] = done.stdout.splitlines()
    assert line.endswith("failed  (x\\x1b[31m.png: bad\\nline)")


@pytest.mark.parametrize("damage,problem", [
    (lambda run: [(run / n).unlink(missing_ok=True) for n in ("best.keras", "model.keras")],
     "its model files (best.keras, model.keras) are gone"),
    (lambda run: (run / "best.keras").write_bytes((run / "best.keras").read_bytes()[:20]),
     "best.keras is not a Keras model file (cut short or damaged)"),
    (lambda run: (run / "best.keras").unlink() or (run / "best.keras").mkdir(),
     "best.keras is not a Keras model file"),
    (lambda run: (run / "config.yaml").write_text(": : :"), "config.yaml: "),
    (lambda run: (run / "config.yaml").write_text("- a list"), "config.yaml is not a run "
                                                              "config"),
])
def test_a_finished_run_whose_model_or_config_is_damaged_is_listed_as_damaged(
        tmp_path, damage, problem):
    run = make_run(tmp_path, "a", "1", FINISHED, METRICS)
    assert listing.summarize(run).status == "finished"
    damage(run)
    row = listing.summarize(run)
    assert row.status == "damaged" and problem in row.problem


def test_a_model_keras_cut_short_beside_a_good_best_keras_is_damaged(tmp_path):
    run = make_run(tmp_path, "a", "1", FINISHED, METRICS)
    (run / "model.keras").write_bytes(b"PK\x03\x04 cut short")
    row = listing.summarize(run)
    assert (row.status, row.problem) == (
        "damaged", "model.keras is not a Keras model file (cut short or damaged)")


def test_an_interrupted_run_whose_backups_are_all_cut_short_is_damaged(tmp_path):
    run = make_run(tmp_path, "a", "1", {"status": "interrupted"})
    for name in (rundir.BACKUP, rundir.PREVIOUS_BACKUP):
        with zipfile.ZipFile(run / name, "w") as archive:
            archive.writestr("state.json", "{}")
    assert listing.summarize(run).status == "interrupted"
    for name in (rundir.BACKUP, rundir.PREVIOUS_BACKUP):
        (run / name).write_bytes((run / name).read_bytes()[:30])
    row = listing.summarize(run)
    assert (row.status, row.problem) == (
        "damaged", "its backups are cut short or damaged: --resume has nothing to continue "
                   "from")


def test_a_run_without_state_yet_that_is_being_written_is_running(tmp_path):
    run = make_run(tmp_path, "a", "1")
    with rundir.writer(run):
        assert listing.summarize(run).status == "running"


def test_runs_of_a_folder_that_does_not_exist_is_an_error_not_no_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cnncli", "runs", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no such folder" in done.stderr
    empty = subprocess.run([sys.executable, "-m", "cnncli", "runs"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert empty.returncode == 0 and "No runs under runs/" in empty.stderr + empty.stdout


def test_a_failed_or_interrupted_run_says_what_ended_it(tmp_path):
    """As its state.json records it: `runs --json` is where a script looks."""
    make_run(tmp_path, "a", "1", {"status": "failed", "error": "the loss became NaN"})
    make_run(tmp_path, "b", "1", {"status": "interrupted", "error": "Ctrl-C at epoch 2"})
    make_run(tmp_path, "c", "1", FINISHED, METRICS)
    rows = listing.summaries(tmp_path)
    assert [(r.status, r.problem) for r in rows] == [
        ("failed", "the loss became NaN"), ("interrupted", "Ctrl-C at epoch 2"),
        ("finished", None)]
