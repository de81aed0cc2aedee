"""Run folders: numbered, never shared, written atomically."""

import multiprocessing
import os
import re
from pathlib import Path

import pytest

from cnncli import files
from cnncli.errors import ConfigError, DataError
from cnncli.run import rundir
from cnncli.run.status import FAILED, FINISHED, RunStatus


def write_run_config(run: Path, text: str = "model: mnist_net\n") -> None:
    """A run's config.yaml as the run writes it (with its digest)."""
    import yaml

    from cnncli import config

    doc = yaml.safe_load(text)
    (run / rundir.CONFIG).write_text(yaml.safe_dump({**doc, "digest": config.digest_of(doc)}))


def _create(root):
    return str(rundir.create(root, "race"))


def test_concurrent_runs_never_get_the_same_folder(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        runs = pool.map(_create, [tmp_path] * 16)
    assert len(set(runs)) == 16


def test_latest_points_at_the_newest_run(tmp_path):
    rundir.create(tmp_path, "m")
    second = rundir.create(tmp_path, "m")
    (second / rundir.CONFIG).write_text("model: x\n")
    rundir.point_latest(second)
    assert rundir.find(tmp_path / "m" / "latest") == second.resolve()
    assert rundir.find(tmp_path / "m") == second.resolve()


def test_a_folder_in_place_of_the_lock_file_is_a_clear_error(tmp_path):
    from cnncli.errors import WriteError

    run = rundir.create(tmp_path, "m")
    (run / rundir.LOCK).mkdir()
    with pytest.raises(WriteError, match="cannot open the run's lock file: Is a directory"):
        with rundir.writer(run):
            pass


def test_a_teammates_live_run_is_said_to_be_training_not_to_have_a_bad_lock_file(
        tmp_path, monkeypatch):
    """The lock file of a run another user trains into cannot be opened for writing: it
    is taken read only, so the one writer is named, where the error said "remove what is
    in its place" (and removing it let a second writer in)."""
    import fcntl

    run = rundir.create(tmp_path, "m")
    theirs = os.open(run / rundir.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(theirs, fcntl.LOCK_EX)  # the teammate's training
    opened = rundir._open_lock

    def as_another_user(path, flags):
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied")
        return opened(path, flags)

    monkeypatch.setattr(rundir, "_open_lock", as_another_user)
    try:
        with pytest.raises(ConfigError, match="another process is training into this run now"):
            with rundir.writer(run):
                pass
    finally:
        os.close(theirs)
    from cnncli.errors import WriteError

    with pytest.raises(WriteError, match="Permission denied") as caught:  # once it ended:
        with rundir.writer(run):  # not a writer that fails later, at its first write
            pass
    assert caught.value.hint == "the run folder is another user's: train into a copy of " \
        "your own (cp -r), or ask them"


def test_resume_auto_goes_on_with_the_newest_stopped_run_not_only_the_latest(tmp_path):
    """A colleague's run of the same config finished after this one stopped: the stopped
    one is gone on with (it was given up, and trained anew from scratch); one that a
    process trains into now is not a stopped run."""
    runs = [rundir.create(tmp_path, "m") for _ in range(3)]
    for run in runs:
        write_run_config(run)
    rundir.point_latest(runs[2])  # run 3 finished: no backup
    (runs[0] / rundir.BACKUP).write_bytes(b"")  # run 1 stopped with one
    assert rundir.resumable(tmp_path / "m") == runs[0].resolve()
    (runs[1] / rundir.BACKUP).write_bytes(b"")  # run 2 too, newer, but training now
    with rundir.writer(runs[1]):
        assert rundir.resumable(tmp_path / "m") == runs[0].resolve()
    assert rundir.resumable(tmp_path / "m") == runs[1].resolve()


def test_resume_auto_passes_over_a_run_this_user_cannot_write(tmp_path, monkeypatch):
    runs = [rundir.create(tmp_path, "m") for _ in range(2)]
    for run in runs:
        write_run_config(run)
        (run / rundir.BACKUP).write_bytes(b"")
    theirs = runs[1].resolve()
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: Path(path) != theirs)
    assert rundir.resumable(tmp_path / "m") == runs[0].resolve()


def test_resume_auto_passes_over_a_run_whose_config_was_edited(tmp_path):
    """Its resume is refused every time: a job restarted on failure looped on it."""
    runs = [rundir.create(tmp_path, "m") for _ in range(2)]
    for run in runs:
        write_run_config(run)
        (run / rundir.BACKUP).write_bytes(b"")
    (runs[1] / rundir.CONFIG).write_text((runs[1] / rundir.CONFIG).read_text() + "x: 1\n")
    assert rundir.resumable(tmp_path / "m") == runs[0].resolve()
    assert rundir.edited_configs(tmp_path / "m") == [runs[1].resolve()]


def test_resume_auto_names_the_edited_run_it_passes_over(tmp_path, capsys):
    from types import SimpleNamespace

    from cnncli.cli import train_commands

    run = rundir.create(tmp_path, "m")
    (run / rundir.CONFIG).write_text("model: mnist_net\n")  # edited: no digest
    (run / rundir.BACKUP).write_bytes(b"")
    cfg = SimpleNamespace(output=SimpleNamespace(dir=str(tmp_path), name="m"))
    assert train_commands._resume_auto(cfg, quiet=False) is None
    said = " ".join(capsys.readouterr().err.split())
    assert f"passed over {run.resolve()}: config.yaml edited or unreadable since" in said
    older = rundir.create(tmp_path, "m")  # (numbered 2: newer; made the one to go on with)
    write_run_config(older)
    (older / rundir.BACKUP).write_bytes(b"")
    run.rename(tmp_path / "m" / "3")  # the edited one newest
    assert train_commands._resume_auto(cfg, quiet=False) == str(older.resolve())
    said = " ".join(capsys.readouterr().err.split())
    assert said.startswith(f"--resume auto: going on with {older.resolve()}, which stopped "
                           f"with a backup; passed over {tmp_path / 'm' / '3'}: config.yaml")


def test_a_run_number_that_is_a_link_is_ordered_by_its_own_number(tmp_path):
    """`runs/m/3 -> keep/best`: the newest-first order took the target's name for a
    number and failed."""
    keep = tmp_path / "keep" / "best"
    keep.mkdir(parents=True)
    write_run_config(keep)
    one = rundir.create(tmp_path, "m")
    write_run_config(one)
    (tmp_path / "m" / "3").symlink_to(keep)
    assert rundir.numbered(tmp_path / "m") == [keep.resolve(), one.resolve()]


def test_the_lock_file_is_made_as_the_umask_says(tmp_path):
    run = rundir.create(tmp_path, "m")
    old = os.umask(0o002)
    try:
        with rundir.writer(run):
            pass
    finally:
        os.umask(old)
    assert (run / rundir.LOCK).stat().st_mode & 0o777 == 0o664


def test_a_lock_file_that_is_a_link_is_refused_and_what_it_points_at_kept(tmp_path):
    """A run folder from someone else whose .lock links to a file of the user's: taking
    the lock must not write the process's number over that file."""
    from cnncli.errors import WriteError

    run = rundir.create(tmp_path, "m")
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    (run / rundir.LOCK).symlink_to(victim)
    with pytest.raises(WriteError, match="cannot open the run's lock file: it is a link "
                                         "\\(to .*notes.txt\\), not a file of the run's own"):
        with rundir.writer(run):
            pass
    assert victim.read_text() == "precious"
    assert not rundir.is_live(run)


def test_a_pipe_in_place_of_the_lock_file_is_refused_not_waited_on(tmp_path):
    from cnncli.errors import WriteError

    run = rundir.create(tmp_path, "m")
    os.mkfifo(run / rundir.LOCK)
    assert not rundir.is_live(run)  # (opening a pipe to read would wait for a writer)
    with pytest.raises(WriteError, match="not a file"):
        with rundir.writer(run):
            pass


def test_of_two_runs_started_at_once_the_one_linking_last_leaves_latest_at_the_later(
        tmp_path):
    first = rundir.create(tmp_path, "m")  # A makes 1, B makes 2, B links, then A links
    second = rundir.create(tmp_path, "m")
    rundir.point_latest(second)
    rundir.point_latest(first)
    assert (tmp_path / "m" / "latest").resolve() == second.resolve()


def test_a_latest_folder_of_the_users_own_is_refused_before_a_run_is_made(tmp_path):
    own = tmp_path / "m" / "latest"
    own.mkdir(parents=True)
    (own / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not the link cnncli keeps") as e:
        rundir.create(tmp_path, "m")
    assert "move or rename it" in e.value.hint
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["latest"]
    assert (own / "notes.txt").read_text() == "precious"


def test_find_explains_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(DataError, match="not a cnncli run folder"):
        rundir.find(tmp_path)


def test_a_built_in_architecture_given_as_a_run_is_said_to_have_no_trained_weights(tmp_path,
                                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="no such run") as e:
        rundir.find("mnist_net")
    assert e.value.hint.startswith("'mnist_net' is a built-in architecture, with no "
                                   "trained weights: train it first")
    with pytest.raises(DataError) as other:
        rundir.find("runs/nope")
    assert other.value.hint.startswith("list runs with `cnncli runs`")


def test_an_output_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ConfigError, match="cannot create the run folder") as e:
        rundir.create(blocker / "runs", "m")
    assert "output.dir" in e.value.hint


def test_a_run_folder_too_deep_for_its_files_paths_is_refused_before_it_is_made(tmp_path):
    """Its folder was made, then TensorFlow's event writer failed on a path longer than
    a path may be ("a bug in cnncli"), and the run was left as `running`."""
    root = tmp_path.joinpath(*["a" * 200] * 19)  # 3,800 bytes and more
    with pytest.raises(ConfigError, match="the run's files would have paths longer than the "
                                          "4,096 bytes a path may have") as e:
        rundir.create(root, "mnist")
    assert "output.dir" in e.value.hint and list(tmp_path.iterdir()) == []
    assert rundir.create(tmp_path.joinpath(*["a" * 200] * 17), "mnist").name == "1"


def test_json_files_are_strict_a_nan_is_null(tmp_path):
    """metrics.json and evaluation.json are read by scripts too: no Python `NaN`."""
    import json

    files.write_json(tmp_path / "m.json", {"loss": float("nan"), "rows": [float("inf")]})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=pytest.fail) == {"loss": None, "rows": [None]}


def test_write_atomic_keeps_the_old_file_when_the_disk_is_full(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"ok": 1})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.write_json(path, {"ok": 2})
    assert files.read_json(path) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_written_files_are_readable_by_others(tmp_path):
    files.write_json(tmp_path / "x.json", {})
    assert (tmp_path / "x.json").stat().st_mode & 0o044


def test_a_run_has_one_writer_at_a_time(tmp_path):
    run = rundir.create(tmp_path, "m")
    with rundir.writer(run):
        with pytest.raises(ConfigError, match=r"another process is training into this run "
                                              r"now \(process \d+ on "):
            with rundir.writer(run):
                pass
    with rundir.writer(run):  # released when the first writer ended
        pass


def test_a_second_resume_of_a_run_being_trained_is_refused(tmp_path):
    import subprocess
    import sys

    from trainkit import write_config

    path = write_config(tmp_path, epochs=1)
    run = rundir.create(tmp_path / "runs", "toy")
    (run / rundir.CONFIG).write_text(path.read_text())
    (run / rundir.BACKUP).write_bytes(b"")
    with rundir.writer(run):
        done = subprocess.run([sys.executable, "-m", "cnncli", "train", "--resume", str(run)],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "another process is training into this run now" in done.stderr


def test_a_model_files_suffix_is_read_in_any_case_in_the_hint(tmp_path):
    (tmp_path / "MODEL.ONNX").write_bytes(b"onnx")  # as `cnncli predict` takes it
    with pytest.raises(DataError) as caught:
        rundir.find(tmp_path)
    assert caught.value.hint.endswith("MODEL.ONNX")


def test_a_folder_of_exported_models_is_not_a_run_and_the_hint_names_one(tmp_path):
    exports = tmp_path / "export"
    exports.mkdir()
    (exports / "model.onnx").write_bytes(b"onnx")
    (exports / "labels.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="not a cnncli run folder") as caught:
        rundir.find(exports)
    assert caught.value.hint == ("it holds model files: give one of them, e.g. "
                                 f"{exports.resolve()}/model.onnx")
    with pytest.raises(DataError, match="this is a file, not a run folder"):
        rundir.find(exports / "model.onnx")  # e.g. train --resume model.onnx
    with pytest.raises(DataError) as caught:
        rundir.find(tmp_path)
    assert caught.value.hint == "give a run folder such as runs/mnist/1"


@pytest.mark.parametrize("status", [RunStatus(FINISHED), RunStatus(FAILED, "out of memory")])
def test_a_run_status_reads_back_as_written(tmp_path, status):
    status.write(tmp_path)
    assert RunStatus.read(tmp_path) == status
    assert ("error" in files.read_json(tmp_path / "state.json")) == (status.error is not None)


@pytest.mark.parametrize("content,problem", [
    (None, "state.json is missing"), ("{", "state.json is not JSON"),
    ('["finished"]', "state.json is not a JSON object"),
    ('{"status": "done"}', "state.json has no status cnncli writes ('done')"),
])
def test_a_damaged_run_status_says_what_is_wrong(tmp_path, content, problem):
    if content is not None:
        (tmp_path / "state.json").write_text(content)
    with pytest.raises(ValueError, match=re.escape(problem)):
        RunStatus.read(tmp_path)


@pytest.mark.parametrize("option,hint", [
    (None, "give a folder you can write to"),
    ("--output", "give a folder you can write to with --output DIR")])
def test_a_folder_nobody_can_write_to_is_refused_naming_the_option_to_give_another(
        option, hint):
    with pytest.raises(ConfigError, match="cannot write to the output folder") as e:
        files.writable_folder("/sys/cnncli-nowhere", option)  # not even root may
    assert e.value.hint == hint


@pytest.mark.parametrize("below", ["", "model.onnx"])
def test_an_output_through_a_link_to_nowhere_says_so(tmp_path, below):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match=re.escape(
            f"the output folder cannot be made: '{tmp_path / 'out'}' is a link to "
            f"'{tmp_path / 'gone'}', which does not exist")):
        files.writable_folder(tmp_path / "out" / below)
    assert not (tmp_path / "gone").exists()


def test_a_file_that_could_not_be_written_is_named_in_the_error(tmp_path, monkeypatch):
    """A full disk at the write or the fsync: the OSError names the file (the command
    then says which file it could not write), and no temporary file is left."""
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        files.write_json(tmp_path / "metrics.json", {"a": 1})
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(tmp_path / "metrics.json"))
    assert list(tmp_path.iterdir()) == []


def test_an_attempt_that_left_a_backup_or_an_epoch_is_not_removed(tmp_path):
    """`--auto-batch` removes the folder of an attempt that ran out of memory only when it
    holds nothing of value."""
    base = tmp_path / "runs" / "x"
    kept = {}
    for name, extra in (("1", "backup.npz"), ("2", "history.csv"), ("3", None)):
        run = rundir.create(tmp_path / "runs", "x")
        if extra:
            (run / extra).write_bytes(b"1")
        rundir.point_latest(run)
        kept[name] = run
    for run in kept.values():
        rundir.remove_unstarted(run)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "latest"]
    assert (base / "latest").resolve() == kept["2"].resolve()
