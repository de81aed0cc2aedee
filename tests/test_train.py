"""`cnncli train`: a complete run folder, reproducible, resumable, and safe when things fail."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from trainkit import SPEC, history_rows, make_npz, weights, write_config

from cnncli import config, files
from cnncli.errors import ConfigError, DataError, DeviceError, TrainingError
from cnncli.run import checkpoint, loop, rundir
from cnncli.run import plan as planning
from cnncli.run import train as training
from cnncli.run.callbacks import Interrupted
from cnncli.run.record import RunMetrics
from cnncli.run.state import TrainState
from cnncli.runtime import import_tf


def run_train(path, *overrides, **kw):
    return training.train(config.load(path, list(overrides)), config_file=str(path), **kw)


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_a_run_folder_has_everything(tmp_path):
    result = run_train(write_config(tmp_path, epochs=2))
    run = result.run
    assert run == tmp_path / "runs" / "toy" / "1"
    for name in ("config.yaml", "model.keras", "best.keras", "history.csv", "metrics.json",
                 "curves.png"):
        assert (run / name).stat().st_size > 0, name
    assert any((run / "logs").iterdir())  # TensorBoard event file
    assert (run.parent / "latest").resolve() == run
    assert files.read_json(run / "state.json") == {"status": "finished"}
    assert not rundir.has_backup(run)  # a finished run keeps no backup
    assert len(history_rows(run)) == 2


@pytest.mark.parametrize("name", ["猫モデル", "[v2] net", "-x"])
def test_a_network_named_in_any_letters_trains(tmp_path, name):
    spec = SPEC.replace("input:", f"name: {json.dumps(name)}\n  input:")
    result = run_train(write_config(tmp_path, epochs=1, spec=spec))
    assert len(history_rows(result.run)) == 1


def test_metrics_json_says_what_was_used(tmp_path):
    result = run_train(write_config(tmp_path, epochs=1))
    metrics = result.metrics
    assert metrics.dataset.train == 256 and metrics.dataset.validation == 64
    assert metrics.dataset.sample is False
    assert metrics.device.startswith("CPU (") and ":" not in metrics.device  # no note
    assert {"tensorflow", "keras", "cnncli"} <= set(metrics.versions)
    import PIL

    from cnncli.devices import hardware
    assert metrics.versions["pillow"] == PIL.__version__  # what decoded every image
    assert metrics.versions["cpu"] == hardware.cpu_name()  # its kernels: the last bits
    p = planning.plan(config.load(write_config(tmp_path, epochs=1)))
    assert (metrics.network, metrics.dataset.digest) == (p.spec.digest(),
                                                         p.feed.fingerprint()["digest"])
    assert metrics.images_per_s > 0 and metrics.best.metric == "val_accuracy"
    written = files.read_json(result.run / "metrics.json")
    assert written["dataset"]["train"] == 256 and written["best"]["epoch"] == 1
    assert RunMetrics.read(result.run) == metrics  # the file reads back as the record


def test_metrics_json_names_the_run_by_its_full_path_given_a_relative_output(tmp_path,
                                                                           monkeypatch):
    path = write_config(tmp_path, epochs=1)
    path.write_text(path.read_text().replace(f"dir: {tmp_path / 'runs'}", "dir: runs"))
    monkeypatch.chdir(tmp_path)
    result = run_train(path)
    assert str(result.run) == "runs/toy/1"  # said as given
    assert result.metrics.run == str(tmp_path / "runs" / "toy" / "1")  # as a resume's


def test_the_toy_problem_is_learned(tmp_path):
    result = run_train(write_config(tmp_path, epochs=4))
    assert result.history[-1]["val_accuracy"] > 0.9


def test_runs_are_numbered_and_never_overwritten(tmp_path):
    path = write_config(tmp_path, epochs=1)
    first, second = run_train(path).run, run_train(path).run
    assert (first.name, second.name) == ("1", "2")
    assert (first / "model.keras").exists()


def test_same_seed_gives_identical_weights_and_history(tmp_path):
    path = write_config(tmp_path, epochs=2)
    a, b = run_train(path).run, run_train(path).run
    assert history_rows(a) == history_rows(b)
    for wa, wb in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_steps_can_end_mid_epoch(tmp_path):
    path = write_config(tmp_path, epochs=1, extra_train="steps: 20")  # 16 steps per epoch
    cfg = config.load(path)
    cfg.train.epochs = None
    result = training.train(cfg, config_file=str(path))
    assert result.metrics.steps == 20 and result.metrics.epochs == 2


def test_the_training_line_of_steps_that_end_mid_epoch_says_so(tmp_path):
    from cnncli.cli import render

    path = write_config(tmp_path, epochs=1, extra_train="steps: 20")
    cfg = config.load(path)
    cfg.train.epochs = None
    assert render.training_line(planning.plan(cfg)) == \
        "Training toy for 20 steps (2 epochs of 16 steps, the last cut to 4) (batch 16)"
    whole = planning.plan(config.load(path, ["train.steps=32"]))
    assert render.training_line(whole) == "Training toy for 2 epochs of 16 steps (batch 16)"


def test_nan_loss_stops_at_once_and_keeps_the_last_good_backup(tmp_path):
    path = write_config(tmp_path, epochs=3, lr=1e30, optimizer="sgd", backup_every=1,
                        extra_train="steps_per_execution: 1")  # a backup after every step
    with pytest.raises(TrainingError, match=r"NaN or infinite at epoch 1, step \d+") as e:
        run_train(path)
    assert "the learning rate 1e+30 is high: lower it (--lr)" == e.value.hint
    run = tmp_path / "runs" / "toy" / "1"
    assert not (run / "model.keras").exists()
    model = training.compile_model(training.plan(config.load(path)))
    checkpoint.load(run, model)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_weights_gone_non_finite_at_an_epochs_last_step_leave_no_model_file(tmp_path,
                                                                              monkeypatch):
    """A step's loss comes before its update: the epoch whose last update left NaN weights
    ends with a finite loss, and its best model would hold NaN (evaluate, predict and
    export would then take it). It stops there, said as that step."""
    path = write_config(tmp_path, epochs=2, extra_train="steps_per_execution: 1")
    models, compile_model = [], training.compile_model
    monkeypatch.setattr(training, "compile_model",
                        lambda p: models.append(compile_model(p)) or models[-1])

    class BreakingAtTheEpochsLastStep(training.Reporter):
        def begin(self, plan, run, resumed):
            self.last = plan.steps_per_epoch

        def step(self, step, logs):
            if step == self.last:
                w = models[-1].trainable_variables[0]
                w.assign(np.full(w.shape, np.nan, w.dtype))

    with pytest.raises(TrainingError, match="the weights became NaN or infinite at epoch 1, "
                                            "step 16; "):
        run_train(path, reporter=BreakingAtTheEpochsLastStep())
    run = tmp_path / "runs" / "toy" / "1"
    assert not (run / "best.keras").exists() and not (run / "model.keras").exists()


def test_images_that_stop_decoding_stop_the_run_and_the_backup_is_kept(tmp_path,
                                                                        monkeypatch):
    from PIL import Image

    from cnncli.data import images
    from cnncli.errors import DataError

    data = np.load(write_config(tmp_path).parent / "toy.npz")
    for i, (x, y) in enumerate(zip(data["x_train"][:96], data["y_train"][:96], strict=True)):
        (tmp_path / "photos" / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[..., 0]).save(tmp_path / "photos" / str(y) / f"{i}.png")
    path = write_config(tmp_path, epochs=2, backup_every=1)
    seen, real = set(), images.load_resized

    def disk_gone_bad_after_the_first_epoch(source, *args, **kw):
        if source in seen:  # not cached: the second epoch reads every file again
            raise DataError("the image is truncated or corrupt", file=str(source))
        seen.add(source)
        return real(source, *args, **kw)

    monkeypatch.setattr(images, "load_resized", disk_gone_bad_after_the_first_epoch)
    with pytest.raises(DataError, match=r"of the \d+ images read so far could not be decoded"
                                        r".*training stopped at epoch \d, step \d, and the last "
                                        r"backup was kept") as e:
        run_train(path, f"data.name={tmp_path / 'photos'}", "data.cache=none")
    run = tmp_path / "runs" / "toy" / "1"
    assert e.value.hint.endswith(f"then resume with: cnncli train --resume {run}")
    assert files.read_json(run / "state.json")["status"] == "failed"
    assert rundir.has_backup(run) and not (run / "model.keras").exists()


def test_resume_auto_starts_anew_after_a_finished_run_and_goes_on_with_a_stopped_one(tmp_path):
    """The same command again, after a machine stopped (a preempted VM, a pod restarted):
    it goes on with the config's latest run when that has a backup."""
    path = write_config(tmp_path, epochs=1, backup_every=4)
    finished = run_train(path).run
    new = cli("train", str(path), "--resume", "auto")
    assert new.returncode == 0, new.stderr
    assert f"--resume auto: no run under {finished.parent} to go on with (none, or all " \
           "finished): starting a new one" in new.stderr
    second = finished.parent / "2"
    assert (second / "metrics.json").exists()
    checkpoint.save(second, training.compile_model(training.plan(config.load(path))),
                    TrainState(epoch=0, step=8))  # as if stopped in mid-epoch
    again = cli("train", str(path), "--resume", "auto", "--json")
    assert again.returncode == 0, again.stderr
    assert f"--resume auto: going on with {second}, which stopped with a backup" in again.stderr
    assert json.loads(again.stdout)["resumed"] is True  # (a script cannot read stderr's note)
    assert json.loads(again.stdout)["run"] == str(second)
    assert not (finished.parent / "3").exists()
    checkpoint.save(second, training.compile_model(training.plan(config.load(path))),
                    TrainState(epoch=0, step=8))  # stopped again; then the options change
    changed = cli("train", str(path), "--resume", "auto", "--lr", "0.5")
    assert changed.returncode == 2  # (every restart would stop here: say the way out)
    assert "or start a new run: the same command without --resume auto" in changed.stderr
    fixed = cli("train", str(path), "--resume", "auto", "--batch-size", "8")  # not --force's
    said = " ".join(fixed.stderr.split())
    assert said.count("or start a new run") == 1, said
    assert said.endswith("or start a new run: the same command without --resume auto")


def test_resume_refuses_a_changed_config(tmp_path):
    path = write_config(tmp_path, epochs=2, backup_every=4)
    run = run_train(path).run
    checkpoint.save(run, training.compile_model(training.plan(config.load(path))),
                    TrainState(epoch=1))
    changed = config.load(path, ["train.batch_size=8"])
    with pytest.raises(ConfigError, match="in what its backup was made with: "
                                          "train.batch_size 16 -> 8"):
        training.train(changed, resume=run, force=True)


@pytest.mark.parametrize("override,change", [
    ("data.image_size=[16,16]", "data.image_size unset -> [16, 16]"),
    ("data.limit=100", "data.limit unset -> 100"),
    ("data.validation_split=0.1", "data.validation_split 0.2 -> 0.1"),
    ("data.preprocessing=scale", "data.preprocessing unset -> scale"),
    ("model.classes=4", "model.classes 3 -> 4"),
    ("train.batch_size=8", "train.batch_size 16 -> 8"),
    ("train.seed=2", "train.seed 1 -> 2"),
    ("train.optimizer.name=sgd", "train.optimizer.name adam -> sgd"),
    ("train.label_smoothing=0.1", "train.label_smoothing 0.0 -> 0.1"),
    # (the one other loss class indices take: the check refuses the rest first)
    ("train.loss=SparseCategoricalCrossentropy",
     "train.loss sparse_categorical_crossentropy -> SparseCategoricalCrossentropy"),
    ("train.scale_lr=true", "train.scale_lr False -> True"),
    ("train.freeze=1", "train.freeze unset -> 1"),
    # a rate the optimizer keeps as a number to one computed from the step (a variable less)
    ("train.schedule.name=cosine", "train.schedule.name constant -> cosine"),
])
def test_resume_refuses_even_with_force_each_setting_its_backup_was_made_with(
        tmp_path, override, change):
    from cnncli.run import record

    path = write_config(tmp_path)
    run = rundir.create(tmp_path / "runs", "toy")
    record.write_config(run, config.load(path))  # refused before its backup is read
    (run / rundir.BACKUP).mkdir()  # there: a run without one is refused for that first
    with pytest.raises(ConfigError) as err:
        training.train(config.load(path, [override]), resume=run, force=True)
    assert err.value.message == ("the config differs from the run's in what its backup was "
                                 f"made with: {change}")


def test_every_key_resume_and_a_cluster_treat_apart_is_a_key_of_the_config():
    """A key renamed or mistyped in these lists would silently become one a resume
    changes with --force (or one the machines of a cluster must share)."""
    from cnncli.run import agreement, resume

    keys = set(resume.flat(config.parse({"model": "mnist_net"}).resolved()))
    sections = {k.rsplit(".", n)[0] for k in keys for n in range(1, k.count(".") + 1)}
    for listed in (resume.FIXED, resume.IGNORED, agreement.OWN_SETTINGS):
        assert [k for k in listed if k not in keys | sections] == []


def test_resume_with_force_may_change_between_schedules_of_one_kind():
    from cnncli.run import resume

    assert resume.refused({"train.schedule.name": ("constant", "plateau")}) == []
    assert resume.refused({"train.schedule.name": ("cosine", "step")}) == []
    assert resume.refused({"train.schedule.name": ("cosine", "plateau")}) == [
        "train.schedule.name"]


def _interrupted_run(path: Path, *overrides: str, record_data: bool = True,
                     **state) -> Path:
    """A run of the config at `path` stopped after its first epoch, with its backup (one
    made before backups recorded the data, without `record_data`; `state`: more of the
    backup's `TrainState`)."""
    cfg = config.load(path, list(overrides))
    result = run_train(path, *overrides)
    run = result.run
    p = training.plan(cfg)
    checkpoint.save(run, training.compile_model(p), TrainState(
        epoch=1, history=result.history[:1], precision=p.placement.precision,
        backup_every=cfg.train.backup_every,
        data=p.feed.fingerprint() if record_data else {},
        network=p.spec.digest() if record_data else "", **state))
    (run / "metrics.json").unlink()
    return run


def _config_naming_a_spec_file(tmp_path: Path) -> Path:
    """The toy config, its network in ``net.yaml`` beside it, named by a relative path."""
    (tmp_path / "net.yaml").write_text(textwrap.dedent(SPEC))
    path = write_config(tmp_path, epochs=2)
    path.write_text(path.read_text().replace(
        "model:" + textwrap.indent(SPEC, "  "), "model: net.yaml\n"))
    return path


def test_a_spec_file_edited_since_the_run_started_is_refused_on_resuming(tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _interrupted_run(_config_naming_a_spec_file(tmp_path))
    spec = tmp_path / "net.yaml"
    spec.write_text(spec.read_text().replace("activation: relu", "activation: tanh"))
    with pytest.raises(ConfigError, match="the network is not the one this run's backup "
                                          f"was made with: its spec file, {spec}, was "
                                          "changed since the run started") as e:
        training.train(config.load(run / "config.yaml"), resume=run)
    assert e.value.hint.startswith("put the spec file back as it was")


def test_a_run_naming_its_spec_file_relatively_resumes_from_another_folder(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _interrupted_run(_config_naming_a_spec_file(tmp_path))
    assert config.load(run / "config.yaml").model == str(tmp_path / "net.yaml")
    monkeypatch.chdir(run)  # where net.yaml is not
    result = training.train(config.load(run / "config.yaml"), resume=run)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_a_built_in_network_defined_otherwise_now_is_refused_on_resuming(tmp_path):
    from cnncli.model import spec as specs

    with pytest.raises(ConfigError, match="the built-in network 'lenet5' is defined "
                                          "otherwise in this version of cnncli"):
        training._check_same_network("0123456789abcdef", specs.load("lenet5"), "lenet5",
                                     tmp_path)
    lenet = specs.load("lenet5")
    training._check_same_network(lenet.digest(), lenet, "lenet5", tmp_path)
    training._check_same_network("", lenet, "lenet5", tmp_path)  # an older backup


def test_a_networks_fingerprint_is_not_its_name():
    """An inline network is named after the run's output.name, which a resume may
    change (--set output.name=x): the same network."""
    from cnncli.model import spec as specs

    lenet = specs.load("lenet5")
    renamed = specs.Spec(**{**vars(lenet), "name": "another"})
    assert renamed.digest() == lenet.digest()
    assert lenet.with_overrides(classes=3).digest() != lenet.digest()


def test_a_networks_fingerprint_across_machines_names_its_weights_files_by_contents():
    """Several machines compare their networks: a backbone's weights file at another path
    on each is the same network when its contents (SHA-256) are the same."""
    from cnncli.model import spec as specs

    def net(path):
        return specs.Spec("ft", [{"pretrained": {"name": "vgg16", "weights": path}},
                                 {"Dense": {"units": 2}}], input=[32, 32, 3], classes=2)

    here, there = net("/home/a/w.h5"), net("/mnt/b/w.h5")
    assert here.digest() != there.digest()  # one machine: the path is the setting
    assert here.digest({"/home/a/w.h5": "ab12"}) == there.digest({"/mnt/b/w.h5": "ab12"})
    assert here.digest({"/home/a/w.h5": "ab12"}) != there.digest({"/mnt/b/w.h5": "cd34"})


def test_a_run_records_the_precision_and_device_auto_chose(tmp_path):
    run = run_train(write_config(tmp_path, epochs=1)).run
    saved = config.load(run / "config.yaml").train
    assert saved.precision in ("float32", "mixed_bfloat16") and saved.device == "cpu"


def test_resume_may_read_the_same_data_offline_or_uncached_without_force(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2))
    result = training.train(config.load(run / "config.yaml", [
        "data.offline=true", "data.cache=none", f"data.data_dir={tmp_path}"]), resume=run)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert not result.metrics.resumes  # nothing changed that matters


def test_resume_with_another_precision_is_refused_without_force(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2), "train.precision=float32")
    with pytest.raises(ConfigError, match="train.precision float32 -> mixed_bfloat16"):
        training.train(config.load(run / "config.yaml", ["train.precision=mixed_bfloat16"]),
                       resume=run)


def test_resume_with_force_applies_and_records_a_new_precision(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2), "train.precision=float32")
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    result = training.train(config.load(run / "config.yaml",
                                        ["train.precision=mixed_bfloat16"]),
                            resume=run, force=True, reporter=Notes())
    assert notes == ["--force: continuing with train.precision float32 -> mixed_bfloat16 "
                     "(recorded in config.yaml and metrics.json)"]
    assert result.metrics.precision == "mixed_bfloat16"
    assert result.metrics.resumes == [{"epoch": 2, "step": 0, "changed": {
        "train.precision": ["float32", "mixed_bfloat16"]}}]
    assert config.load(run / "config.yaml").train.precision == "mixed_bfloat16"


def test_a_resume_on_another_number_of_cpu_threads_says_it_is_not_exact(tmp_path):
    """oneDNN's convolutions split their sums by the threads: a run stopped on 7 CPUs
    and resumed on 2 goes on with other last bits than one never stopped."""
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    here = training.plan(config.load(write_config(tmp_path, epochs=2))).placement.cpu_threads
    for threads, said in ((here, []), (here + 5, [f"this run trained on {here + 5} CPU "
                                                  f"threads, here {here}: "])):
        notes.clear()
        run = _interrupted_run(write_config(tmp_path, epochs=2), cpu_threads=threads)
        training.train(config.load(run / "config.yaml"), resume=run, reporter=Notes())
        assert [n[:len(said[0])] for n in notes if "CPU threads" in n] == said


def test_an_augmented_run_stopped_mid_epoch_resumes_to_the_weights_of_one_never_stopped(
        tmp_path):
    """Its random changes came from the run's first draws again: the weights ended
    elsewhere (README said a resume with augmentation "draws new augmentations")."""
    class StopMidEpoch(training.Reporter):
        sent = False

        def step(self, step, logs):
            if self.epoch == 1 and step >= 6 and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

        def epoch_begin(self, epoch, epochs, steps, first_step):
            self.epoch = epoch

    def augmented(folder):
        folder.mkdir()
        path = write_config(folder, epochs=2, backup_every=4)
        path.write_text(path.read_text().replace("validation_split: 0.2", (
            "validation_split: 0.2\n  augment: {flip: horizontal, translate: 0.2, zoom: "
            "0.2, contrast: 0.3}")))
        return path

    never = run_train(augmented(tmp_path / "never")).run
    path = augmented(tmp_path / "stopped")
    with pytest.raises(Interrupted):
        run_train(path, reporter=StopMidEpoch())
    stopped = tmp_path / "stopped" / "runs" / "toy" / "1"
    run_train(path, resume=stopped)
    assert history_rows(stopped) == history_rows(never)
    for a, b in zip(weights(stopped), weights(never), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_cpu_threads_of_a_cluster_of_cpus_are_recorded_and_a_gpus_are_not():
    from types import SimpleNamespace

    from cnncli.devices.placement import GpuInfo, Placement

    cluster = Placement("multiworker", ["/cpu:0"], cpu_threads=8, workers=2)
    gpu = Placement("gpu", ["/gpu:0"], gpus=[GpuInfo("T4")], cpu_threads=8)
    assert [training._cpu_threads(SimpleNamespace(placement=p)) for p in (cluster, gpu)] == [
        8, 0]


def test_resume_with_force_applies_a_new_learning_rate(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2, lr=0.01))
    result = training.train(config.load(run / "config.yaml",
                                        ["train.optimizer.learning_rate=0.05"]),
                            resume=run, force=True)
    assert result.history[-1]["learning_rate"] == pytest.approx(0.05)
    assert config.load(run / "config.yaml").train.optimizer.learning_rate == 0.05


@pytest.mark.filterwarnings("ignore:--precision mixed_float16 on this CPU")
@pytest.mark.parametrize("before,after", [("float32", "mixed_float16"),
                                          ("mixed_float16", "float32")])
def test_resume_with_force_may_gain_or_lose_mixed_float16s_loss_scaling(tmp_path, before,
                                                                       after):
    """Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer, whose
    variables a backup of another precision has not (the resume failed: 'the backup
    holds 10 optimizer variables, the model has 14')."""
    run = _interrupted_run(write_config(tmp_path, epochs=2), f"train.precision={before}")
    result = training.train(config.load(run / "config.yaml", [f"train.precision={after}"]),
                            resume=run, force=True)
    assert result.metrics.precision == after and len(result.history) == 2


def test_jit_compile_asked_for_on_several_machines_is_said_not_to_apply_and_not_recorded(
        tmp_path):
    import warnings

    from cnncli.model import builder
    from cnncli.run import compile as compiling

    p = training.plan(config.load(write_config(tmp_path, extra_train="jit_compile: true")))
    p.placement.kind = "multiworker"  # cnncli's own loop, which does not use XLA
    model = builder.build(p.spec)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        compiling.compile_stage(p, model, 0.01, 10)
    assert not model.jit_compile
    assert any("train.jit_compile: true does not apply on several machines" in str(w.message)
               for w in said)


@pytest.mark.parametrize("capability,said", [
    ((7, 5), "float16 overflows easily: try --precision float32"),  # slow bfloat16 there
    ((8, 0), "float16 overflows easily: try --precision mixed_bfloat16 or float32")])
def test_a_nan_loss_in_float16_suggests_bfloat16_only_where_it_is_fast(capability, said):
    from cnncli.devices import GpuInfo, Placement
    from cnncli.run.callbacks import nan_hint

    t = config.TrainSection(epochs=1, optimizer={"name": "adam", "learning_rate": 1e-3})
    gpu = Placement("gpu", ["/gpu:0"], [GpuInfo("G", None, capability, 0)],
                    precision="mixed_float16")
    assert nan_hint(t, gpu) == said


def test_too_few_images_for_a_batch_on_several_replicas_says_the_batch_is_per_replica(
        tmp_path, monkeypatch):
    from cnncli import devices

    two = devices.Placement("mirrored", ["/cpu:0", "/cpu:1"], replicas=2)
    monkeypatch.setattr(devices, "setup", lambda *args, **kw: two)
    with pytest.raises(ConfigError, match=r"fewer than one batch of 400 \(200 a replica x 2 "
                                          r"replicas\)"):
        training.plan(config.load(write_config(tmp_path, batch_size=200)))


def test_a_new_learning_rate_on_resume_is_scaled_for_the_replicas_as_the_first_was(tmp_path):
    from types import SimpleNamespace

    from cnncli.runtime import import_keras

    keras = import_keras()
    cfg = config.load(write_config(tmp_path, lr=0.01, extra_train="scale_lr: true"),
                      ["train.optimizer.learning_rate=0.05"])
    p = SimpleNamespace(cfg=cfg, placement=SimpleNamespace(replicas=4, is_chief=False,
                                                           precision="float32"))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.04), "mse")  # 0.01 on 4 replicas
    model.optimizer.build(model.trainable_variables)
    training._apply(p, model, TrainState(), {"train.optimizer.learning_rate": (0.01, 0.05)},
                    tmp_path, training.Reporter())
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.2)


def test_resume_with_force_trains_the_new_epochs_and_records_them(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2))
    result = training.train(config.load(run / "config.yaml", ["train.epochs=3"]),
                            resume=run, force=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert config.load(run / "config.yaml").train.epochs == 3


def test_resume_with_force_to_fewer_epochs_than_were_trained_is_refused(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2))  # stopped after epoch 1
    with pytest.raises(ConfigError, match="this run has trained 16 steps already \\(1 epoch\\), "
                                          "and the config asks for 8 in all: nothing would "
                                          "be left to train"):
        training.train(config.load(run / "config.yaml", ["train.epochs=null", "train.steps=8"]),
                       resume=run, force=True)
    assert config.load(run / "config.yaml").train.epochs == 2  # not recorded either


def test_resume_with_force_to_the_epochs_trained_ends_the_run_there(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2))  # stopped after epoch 1
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    result = training.train(config.load(run / "config.yaml", ["train.epochs=1"]), resume=run,
                            force=True, reporter=Notes())
    assert result.metrics.epochs == 1 and (run / "model.keras").is_file()
    assert config.load(run / "config.yaml").train.epochs == 1
    assert "the run ends at the 1 epoch it has trained: its results are saved, with no " \
        "more training" in notes


def test_resume_with_force_to_the_steps_trained_in_mid_epoch_is_refused(tmp_path):
    """No epoch would end there (no validation, no history row); Keras took `fit` with
    0 steps for "the whole data"."""
    run = _interrupted_run(write_config(tmp_path, epochs=3), step=5)  # epoch 2, step 5
    with pytest.raises(ConfigError, match="has trained 21 steps already .* asks for 21 in "
                                          "all: nothing would be left to train"):
        training.train(config.load(run / "config.yaml", ["train.epochs=null",
                                                         "train.steps=21"]),
                       resume=run, force=True)


def test_more_steps_for_a_run_whose_last_epoch_its_steps_cut_short_are_refused(tmp_path):
    """Its backup was made at the end of that epoch (its results then not all saved: a
    full disk): going on from there would skip the rest of the epoch, not train it."""
    path, sets = write_config(tmp_path), ["train.epochs=null", "train.steps=20"]
    result = run_train(path, *sets)  # 16 steps an epoch: the second has 4
    p = training.plan(config.load(path, sets))
    checkpoint.save(result.run, training.compile_model(p), TrainState(
        epoch=2, history=result.history, precision=p.placement.precision,
        backup_every=1000, data=p.feed.fingerprint(), network=p.spec.digest()))
    (result.run / "metrics.json").unlink()
    with pytest.raises(ConfigError, match=r"this run's last epoch \(2\) was cut short by its "
                                          r"`train.steps` \(20\) after 4 of its 16 steps"):
        training.train(config.load(result.run / "config.yaml", ["train.steps=30"]),
                       resume=result.run, force=True)
    again = training.train(config.load(result.run / "config.yaml"), resume=result.run)
    assert again.metrics.steps == 20 and (result.run / "metrics.json").is_file()


def test_a_best_model_removed_from_an_interrupted_run_is_said_on_resuming(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2), best=0.5, best_epoch=1)
    (run / "best.keras").unlink()
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    training.train(config.load(run / "config.yaml"), resume=run, reporter=Notes())
    assert any(n.startswith("best.keras, the model of epoch 1 (the best so far), is not in the "
                            "run folder") for n in notes)


def test_resuming_on_a_machine_without_the_runs_gpu_names_the_run_and_force(tmp_path):
    # the device comes from the run's config.yaml, not from an option the user gave, and
    # another device is a change of that config: --force
    import yaml

    from cnncli.config.sections import digest_of

    run = _interrupted_run(write_config(tmp_path, epochs=2))
    doc = yaml.safe_load((run / "config.yaml").read_text())
    assert doc["train"]["device"] == "cpu"
    doc["train"]["device"] = "gpu:0"  # as a run on a GPU machine writes it
    doc["digest"] = digest_of({k: v for k, v in doc.items() if k != "digest"})
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DeviceError) as err:
        training.train(config.load(run / "config.yaml"), resume=run)
    assert err.value.message == ("this run trained on gpu:0 (train.device in its "
                                 "config.yaml), but TensorFlow sees no GPU")
    assert err.value.hint.startswith(f"to go on here: cnncli train --resume {run} --force "
                                     "--device cpu")


def test_other_device_errors_on_resuming_are_said_as_they_are(tmp_path, monkeypatch):
    run = _interrupted_run(write_config(tmp_path, epochs=2))
    said = DeviceError("the machines of the cluster train on different numbers of devices")

    def plan(*args, **kwargs):
        raise said

    monkeypatch.setattr(training, "plan", plan)
    with pytest.raises(DeviceError) as err:
        training.train(config.load(run / "config.yaml"), resume=run)
    assert err.value is said


def test_resuming_a_run_stopped_before_its_first_backup_says_how_to_start_it_again(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=2))
    for backup in run.glob("backup*.npz"):
        backup.unlink()
    with pytest.raises(ConfigError, match=r"no backup to resume from \(it stopped before its "
                                          r"first backup\)") as err:
        training.train(config.load(run / "config.yaml"), resume=run)
    assert err.value.hint == f"start it again as a new run: cnncli train {run}/config.yaml"


def test_no_backup_is_written_between_an_epochs_last_step_and_its_end(tmp_path, monkeypatch):
    """A backup there would resume into an epoch with no steps left (and no loss)."""
    saved, real = [], checkpoint.save

    def spy(run, model, state):
        saved.append((state.epoch, state.step))
        real(run, model, state)

    monkeypatch.setattr(checkpoint, "save", spy)
    run_train(write_config(tmp_path, epochs=2, backup_every=1,
                           extra_train="steps_per_execution: 1"))  # 16 steps an epoch
    assert (0, 15) in saved and (1, 0) in saved and (2, 0) in saved
    assert all(step < 16 for _, step in saved)


def test_curves_are_drawn_when_their_time_allows_and_at_the_end(tmp_path, monkeypatch):
    """Short epochs are not each followed by a plot that takes longer than the epoch:
    the first epoch is drawn, then once enough time has passed, and every epoch at the
    end."""
    from cnncli import plots
    from cnncli.run.callbacks import outputs

    drawn, real = [], plots.training_curves

    def counted(history, path):
        drawn.append(len(history))
        return real(history, path)

    monkeypatch.setattr(plots, "training_curves", counted)
    monkeypatch.setattr(outputs, "CURVES_SPACING", 10_000)  # never again before the end
    run = run_train(write_config(tmp_path, epochs=4)).run
    assert drawn == [1, 4]
    assert (run / "curves.png").is_file()


def test_resume_of_a_finished_run_is_explained(tmp_path):
    run = run_train(write_config(tmp_path, epochs=1)).run
    result = cli("train", "--resume", str(run))
    assert result.returncode == 2
    assert "no backup to resume from (it finished)" in result.stderr
    assert f"Hint: use it as it is (cnncli evaluate {run}), or start a new run: cnncli " \
           f"train {run}/config.yaml" in result.stderr.replace("\n", " ")
    # with another config: said first, not what differs from it (nor its data read)
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other", epochs=1, batch_size=8)
    result = cli("train", str(other), "--resume", str(run))
    assert result.returncode == 2
    assert "no backup to resume from (it finished)" in result.stderr
    assert "differs" not in result.stderr


def test_dry_run_prints_config_and_summary_and_writes_nothing(tmp_path):
    path = write_config(tmp_path)
    result = cli("train", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "batch_size: 16" in result.stdout and "CONV3-4 + ReLU" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_dry_run_json_is_one_document_of_the_config_and_the_model(tmp_path):
    path = write_config(tmp_path)
    result = cli("train", str(path), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["config"]["train"]["epochs"] == config.load(path).train.epochs
    assert doc["model"]["rows"] and doc["model"]["params"] > 0
    assert not (tmp_path / "runs").exists()


def test_dry_run_refuses_what_training_would_refuse(tmp_path):
    path = write_config(tmp_path)
    result = cli("train", str(path), "--dry-run", "--set", "train.optimizer.name=sgdd")
    assert result.returncode == 2 and "unknown optimizer 'sgdd'" in result.stderr
    assert result.stdout == ""  # no config printed as if it were fine


def test_a_dry_run_refused_for_its_data_says_the_datas_warnings_too(tmp_path):
    """The files skipped explain a refusal for too few images (training said them)."""
    import catalogue_files as cf

    data = cf.image_folder(tmp_path / "few", {"a": 2, "b": 2})
    (data / "a" / "broken.png").write_text("not an image")
    result = cli("train", str(write_config(tmp_path)), "--dry-run", "--json", "--data",
                 str(data), "--batch-size", "64")
    assert result.returncode != 0
    said = json.loads(result.stdout)["warnings"]
    assert any("broken.png" in w for w in said), said


@pytest.mark.parametrize("where, said", [
    ("afile/runs", "cannot create the run folder: Not a directory"),
    ("made/toy", "'latest' here is not the link cnncli keeps"),
])
def test_dry_run_refuses_an_output_folder_the_run_could_not_make(tmp_path, where, said):
    """A file in the way, a `latest` of the user's own: the run failed at once where
    the dry run had passed it; it still makes nothing."""
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "made" / "toy" / "toy" / "latest").mkdir(parents=True)
    path = write_config(tmp_path)
    result = cli("train", str(path), "--dry-run", "--set", f"output.dir={tmp_path / where}")
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "made", "toy.npz",
                                                          "toy.yaml"]


def test_dry_run_refuses_a_fine_tuning_stage_that_would_never_start(tmp_path):
    path = tmp_path / "late.yaml"
    path.write_text("model: {from: mobilenet_v2, classes: 3}\n"
                    f"data: {{name: '{make_npz(tmp_path)}', image_size: [32, 32]}}\n"
                    "train: {epochs: 2, fine_tune: {after_epochs: 7}}\n")
    result = cli("train", str(path), "--dry-run")
    assert result.returncode == 2 and result.stdout == ""
    assert "late.yaml:3: `train.fine_tune.after_epochs` (7) is not below the number of " \
           "epochs (2)" in result.stderr


def test_dry_run_refuses_a_device_that_is_not_there(tmp_path):
    from cnncli import devices

    if devices.visible_gpus():
        pytest.skip("this machine has a GPU")
    result = cli("train", str(write_config(tmp_path)), "--dry-run", "--device", "gpu")
    assert result.returncode == 3 and result.stdout == ""
    assert "--device gpu" in result.stderr


def test_dry_run_says_what_training_would_read_and_makes_no_cache(tmp_path, monkeypatch):
    """The folder is listed (its images counted, split, batched) as training would, and
    the disk cache it would fill is named, not made."""
    from PIL import Image

    for i in range(24):
        folder = tmp_path / "photos" / ("cat", "dog")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (i, 0, 0)).save(folder / f"{i}.png")
    monkeypatch.setenv("CNNCLI_CACHE_DIR", str(tmp_path / "cache"))
    path = write_config(tmp_path, epochs=2, batch_size=4)
    path.write_text(path.read_text().replace(str(tmp_path / "toy.npz"), str(tmp_path / "photos"))
                    .replace("validation_split: 0.2", "validation_split: 0.2\n  cache: disk"))
    result = cli("train", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"Data: photos from {tmp_path / 'photos'} (class folders, streamed): 16 training, " \
           "4 validation images, 4 held out for evaluate" in result.stdout
    assert f"cached on disk ({tmp_path / 'cache'}/" in result.stdout
    assert "Would train toy for 2 epochs of 4 steps (batch 4)" in result.stdout
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_dry_run_json_has_the_data_and_refuses_what_the_data_makes_impossible(tmp_path):
    """Its classes too: the network's output layer is the data's (not a guess of 10)."""
    path = write_config(tmp_path, batch_size=64, spec=SPEC.replace("  classes: 3\n", ""))
    doc = json.loads(cli("train", str(path), "--dry-run", "--json").stdout)
    data = doc["data"]
    assert (data["train"], data["validation"], data["steps_per_epoch"]) == (256, 64, 4)
    assert data["class_names"] == ["0", "1", "2"] and data["batch_size"] == 64
    assert data["on_this_machine"] is True
    assert doc["model"]["rows"][-1]["volume"] == "3"
    assert not any("known only when training reads it" in w for w in doc["warnings"])
    result = cli("train", str(path), "--dry-run", "--batch-size", "512")
    assert result.returncode == 2 and result.stdout == ""
    assert "the 256 training images are fewer than one batch of 512" in result.stderr


def test_dry_run_says_the_data_with_the_keys_and_values_of_the_runs_own_record(tmp_path):
    """A script reads `data` of ``--dry-run --json`` as `dataset` of ``train --json``: the
    same keys, the same values (classes a count, held_out the digest, in both)."""
    path = write_config(tmp_path, epochs=1, batch_size=64)
    said = json.loads(cli("train", str(path), "--dry-run", "--json").stdout)["data"]
    done = cli("train", str(path), "--json")
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)["dataset"]
    assert {k: said[k] for k in recorded} == recorded


def test_a_training_error_in_json_keeps_the_warnings_said_before_it(tmp_path):
    """``train --json`` promises `warnings`: a run that stops with an error keeps them
    in its error's document (a file skipped, then a batch larger than the data)."""
    import catalogue_files as cf

    photos = cf.image_folder(tmp_path / "photos", {"a": 6, "b": 6})
    (photos / "a" / "bad.png").write_bytes(b"not a picture")
    path = write_config(tmp_path, epochs=1)
    result = cli("train", str(path), "--data", str(photos), "--batch-size", "512", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 2 and "fewer than one batch" in doc["message"]
    assert any("skipped 1 unreadable file" in w for w in doc["warnings"]), doc
    early = cli("train", str(path), "--set", "output.name=a/b", "--json")  # the config's
    assert early.returncode == 2 and json.loads(early.stdout)["warnings"] == []


def test_a_training_leaves_the_processs_dtype_policy_and_random_draws_as_they_were(
        tmp_path):
    """A notebook's own Keras layers computed in bfloat16 after a training, and its
    seeded draws repeated after each one."""
    import random

    import keras

    path = write_config(tmp_path, epochs=1)
    keras.config.set_dtype_policy("float32")
    np.random.seed(999)
    random.seed(999)
    numpy, python = np.random.get_state()[1][:4].tolist(), random.getstate()
    training.train(config.load(path, ["train.precision=mixed_bfloat16"]))
    assert keras.config.dtype_policy().name == "float32"
    assert np.random.get_state()[1][:4].tolist() == numpy and random.getstate() == python


def test_a_dry_run_leaves_the_processs_dtype_policy_as_it_was(tmp_path):
    import keras

    from cnncli.run import dryrun

    path = write_config(tmp_path, epochs=1)
    keras.config.set_dtype_policy("float32")
    planned = dryrun.dry_run(config.load(path, ["train.precision=mixed_bfloat16"]), str(path))
    assert planned.config.train.precision == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_many_trainings_in_one_process_retrace_no_function_of_cnnclis(tmp_path):
    """A notebook's sixth training: TensorFlow warned that build_metrics' function was
    traced again and again (each traced function counts against one shared count)."""
    import io
    import logging

    import tensorflow as tf

    said = io.StringIO()
    handler = logging.StreamHandler(said)
    tf.get_logger().addHandler(handler)
    try:
        path = write_config(tmp_path, epochs=1)
        for i in range(6):
            training.train(config.load(path, [f"output.name=r{i}"]))
    finally:
        tf.get_logger().removeHandler(handler)
    assert "build_metrics" not in said.getvalue()


def test_a_training_in_another_thread_than_the_main_one_runs(tmp_path):
    """Signals are the main thread's: a web app's worker thread failed at once."""
    import threading

    path = write_config(tmp_path, epochs=1)
    done = []
    thread = threading.Thread(target=lambda: done.append(
        training.train(config.load(path))))
    thread.start()
    thread.join(timeout=300)
    assert done and done[0].metrics.epochs == 1


def test_dry_run_downloads_no_pretrained_weights(tmp_path, monkeypatch):
    """ImageNet's weights not cached: training would download them; a dry run notes it."""
    from cnncli import devices
    from cnncli.model import backbone_weights, pretrained

    monkeypatch.setattr(pretrained, "cached", lambda file: None)
    monkeypatch.setattr(backbone_weights, "downloads_on_stderr",
                        lambda: pytest.fail("a download was tried"))
    path = tmp_path / "ft.yaml"
    path.write_text("model: {from: mobilenet_v2, classes: 3}\n"
                    f"data: {{name: '{make_npz(tmp_path)}', image_size: [32, 32]}}\n"
                    "train: {epochs: 1, batch_size: 8}\n")
    shown = planning.shown(config.load(path), devices.setup("cpu", "float32"),
                           config_file=str(path))
    assert shown.transfer.weights == [] and shown.steps_per_epoch == 36


def test_dry_run_json_lists_the_datas_warnings_as_training_does(tmp_path):
    from PIL import Image

    for i in range(24):
        folder = tmp_path / "photos" / ("cat", "dog")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (i, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "photos" / "cat" / "notes.png").write_text("not an image")
    path = write_config(tmp_path, batch_size=4)
    path.write_text(path.read_text().replace(str(tmp_path / "toy.npz"), str(tmp_path / "photos")))
    result = cli("train", str(path), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout)["warnings"]
    assert any("skipped 1 unreadable file" in w for w in said), said


def test_dry_run_offline_refuses_imagenet_weights_not_here_as_training_does(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # nothing cached there
    path = tmp_path / "ft.yaml"
    path.write_text("model: {from: mobilenet_v2, classes: 3}\n"
                    f"data: {{name: '{make_npz(tmp_path)}', image_size: [32, 32]}}\n"
                    "train: {epochs: 1, batch_size: 8}\n")
    result = cli("train", str(path), "--dry-run", "--offline")
    assert result.returncode == 3 and result.stdout == "", result.stderr
    assert "mobilenet_v2" in result.stderr


def test_dry_run_of_a_resume_is_refused_as_one_it_cannot_check(tmp_path):
    result = cli("train", "--resume", str(tmp_path / "runs/toy/1"), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "a dry run shows a new run; a resume's checks" in result.stderr


def test_dry_run_that_read_the_data_says_no_guess_of_its_classes(tmp_path):
    """Ten classes, as many as the guess: the data was read all the same."""
    data = tmp_path / "ten.npz"
    x, y = np.zeros((200, 8, 8, 1), np.uint8), np.arange(200) % 10
    np.savez(data, x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    path = write_config(tmp_path, spec=SPEC.replace("  classes: 3\n", ""))
    path.write_text(path.read_text().replace(str(tmp_path / "toy.npz"), str(data)))
    result = cli("train", str(path), "--dry-run")
    assert result.returncode == 0 and "Would train" in result.stdout, result.stderr
    assert "known only when training reads it" not in result.stderr


def test_dry_run_of_a_known_dataset_not_here_says_training_downloads_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    path = write_config(tmp_path)
    result = cli("train", str(path), "--dry-run", "--data", "cifar10",
                 "--set", "model.input=[32, 32, 3]", "--set", "model.classes=10")
    assert result.returncode == 0, result.stderr
    assert "Data: cifar10 is not on this machine yet: training will download 170 MB " \
           "(Keras)" in result.stdout
    assert not (tmp_path / "keras" / "datasets").exists()  # (keras.json is made)
    doc = json.loads(cli("train", str(path), "--dry-run", "--data", "cifar10", "--json",
                         "--set", "model.input=[32, 32, 3]", "--set", "model.classes=10").stdout)
    assert doc["data"] == {"name": "cifar10", "on_this_machine": False, "note": "cifar10 is "
                           "not on this machine yet: training will download 170 MB (Keras); "
                           "what depends on its size (batches, steps) is checked when "
                           "training reads it"}


def test_dry_run_of_mnist_not_here_says_the_sample_is_what_trains_without_internet(
        tmp_path, monkeypatch):
    """It said only that training downloads MNIST, and passed settings that training then
    refused on the 5,000-digit sample it fell back to (a steps_per_execution that does not
    divide its steps)."""
    from cnncli.run.dryrun import _not_here_yet

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    note = _not_here_yet(config.DataSection(name="mnist"))
    assert "(without internet: the 5,000 digits shipped with cnncli); what depends on its " \
        "size (batches, steps) is checked when training reads it" in note


def test_dry_run_refuses_an_image_cache_folder_it_could_not_make(tmp_path, monkeypatch):
    """A dry run with `data.cache: disk` passed a CNNCLI_CACHE_DIR that is a file; the
    training then failed at once, and its hint said to free some disk space."""
    import catalogue_files as cf

    from cnncli.data import loader

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv(loader.CACHE_DIR_ENV, str(tmp_path / "afile" / "cache"))
    path = write_config(tmp_path)
    result = cli("train", str(path), "--dry-run", "--set", "data.cache=disk",
                 "--set", f"data.name={cf.image_folder(tmp_path / 'photos', {'a': 6, 'b': 6})}")
    assert result.returncode == 3, result.stdout
    said = " ".join(result.stderr.split())
    assert f"cannot make the image cache: {tmp_path / 'afile'} is a file" in said
    assert "free some disk space" not in said


def test_a_large_share_of_images_left_for_the_next_epoch_is_said_before_training(tmp_path):
    said = planning.plan(config.load(write_config(tmp_path, batch_size=100))).warnings
    assert "256 training images make 2 batches of 100 an epoch: 56 (22%) wait for the " \
           "next epoch each time" in " ".join(said)
    assert not any("wait for the next epoch" in w for w in planning.plan(
        config.load(write_config(tmp_path, batch_size=16))).warnings)  # 256 / 16


def test_a_network_with_more_classes_than_the_data_is_warned_of_and_names_its_outputs(
        tmp_path):
    five = write_config(tmp_path, spec=SPEC.replace("classes: 3", "classes: 5"))
    data = config.load(five).data.name  # its classes named, as a folder's are
    np.savez(data, **dict(np.load(data)), class_names=np.array(["top", "middle", "bottom"]))
    p = planning.plan(config.load(five))
    assert "the network outputs 5 classes and the data has 3: outputs 3 to 4 (numbered " \
           "from 0) never get a training image" in " ".join(p.warnings)
    assert p.meta().class_names == ("top", "middle", "bottom", "3", "4")
    assert not any("never get a training image" in w for w in planning.plan(
        config.load(write_config(tmp_path))).warnings)


def test_a_class_whose_images_all_went_to_validation_is_warned_of(tmp_path):
    """One photo of a class: a random validation split (`data.stratify: false`, as runs
    before it was by class) may take it, and the model then has an output it never
    trains; split by class, the class keeps its photo."""
    from cnncli.data.feed import validation_indices

    path = write_config(tmp_path)
    cfg = config.load(path)
    d = dict(np.load(cfg.data.name))
    _, held = validation_indices(d["y_train"], cfg.data.validation_split, cfg.train.seed,
                                 stratify=False)
    d["y_train"][held[0]] = 3  # a fourth class, its one image among those held out
    np.savez(cfg.data.name, **{**d, "class_names": np.array(["a", "b", "c", "rare"])})
    random = ["model.classes=4", "data.stratify=false"]
    p = planning.plan(config.load(path, random))
    assert "no training image is left of 'rare' (the validation split took all of its " \
           "images): the model never learns it" in " ".join(p.warnings)
    by_class = planning.plan(config.load(path, ["model.classes=4"]))
    assert 3 in by_class.feed.train.labels and 3 not in by_class.feed.val.labels
    assert not any("no training image is left" in w for w in by_class.warnings)
    d["y_train"][held[0]] = 0  # back among the three: nothing to say
    np.savez(cfg.data.name, **{**d, "class_names": np.array(["a", "b", "c"])})
    assert not any("no training image is left" in w for w in planning.plan(
        config.load(path, ["data.stratify=false"])).warnings)


def test_classes_a_limit_leaves_without_a_training_image_are_named_once(tmp_path):
    """A limit of 500 of 1,000 classes' images trained on 404 of them without a word,
    and evaluate scored the model on all 1,000."""
    path = write_config(tmp_path)
    cfg = config.load(path)
    d = dict(np.load(cfg.data.name))
    order = np.argsort(d["y_train"], kind="stable")  # arrays sorted by class
    np.savez(cfg.data.name, **{**d, "x_train": d["x_train"][order],
                               "y_train": d["y_train"][order]})
    n = int((d["y_train"] == 0).sum())  # the first n: class 0's alone
    said = [w for w in planning.plan(config.load(path, [f"data.limit={n}"])).warnings
            if "no training image is left" in w]
    assert said == [f"no training image is left of '1', '2' (data.limit keeps {n} training "
                    f"images of {len(order)}, and the validation split takes its part): the "
                    "model never learns them; raise data.limit, or lower "
                    "data.validation_split"]


def test_a_class_without_any_image_is_not_said_to_be_taken_by_the_validation_split():
    """Arrays' labels may leave a gap (EMNIST's letters start at 1): no image of class 0
    is anywhere, so the split took none; only 'rare', whose images it took, is named."""
    from types import SimpleNamespace

    from cnncli.data.dataset import Split

    x = np.zeros((5, 4, 4, 1), np.uint8)
    data = SimpleNamespace(class_names=["gap", "a", "b", "rare"],
                           train=Split(x, np.array([1, 1, 2, 1, 3])))
    feed = SimpleNamespace(train=Split(x[:3], np.array([1, 1, 2])))
    [warning] = planning._classes_without_training_images(data, feed, None)
    assert warning.startswith("no training image is left of 'rare' (the validation split")


def test_a_run_made_before_the_split_by_class_resumes_with_its_random_split(tmp_path):
    import yaml

    from cnncli.config.sections import digest_of

    path = write_config(tmp_path, epochs=2)
    run = _interrupted_run(path, "data.stratify=false")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["data"]["stratify"], saved["digest"]  # as cnncli wrote it before the key
    (run / "config.yaml").write_text(yaml.safe_dump({**saved, "digest": digest_of(saved)}))
    assert config.load_run_config(run / "config.yaml").data.stratify is False
    assert config.load(run / "config.yaml").data.stratify is False  # --resume RUN's way
    import shutil

    again = shutil.copytree(run, tmp_path / "runs" / "toy" / "9")  # (resumed to its end)
    for given, stopped in ((run / "config.yaml", run), (path, again)):  # its own config,
        result = training.train(config.load(given), resume=stopped)  # or the file it was
        assert result.metrics.epochs == 2, given  # started from; the same data: its split


def test_check_summary_and_dry_run_show_the_network_image_size_gives(tmp_path):
    """`data.image_size` resizes the images and the network's input: what is shown is
    what training builds (its first Dense layer's weights depend on it)."""
    from cnncli.run import checking

    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("  validation_split: 0.2",
                                             "  validation_split: 0.2\n  image_size: [16, 16]"))
    cfg = config.load(path)
    shown = [checking.check(str(path)).model, checking.build(str(path)).model,
             checking.dry_run(cfg, str(path)).model]
    trained = planning.plan(config.load(path), config_file=str(path)).spec
    assert trained.input[:2] == [16, 16]
    assert [m.input_shape[1:3] for m in shown] == [(16, 16)] * 3
    assert len({m.count_params() for m in shown}) == 1


def test_an_inline_networks_own_input_resized_by_image_size_is_said(tmp_path):
    """Two sizes in one config (the spec's `input: [8, 8, 1]`, the data's 16x16)."""
    from cnncli.run import checking

    path = write_config(tmp_path)
    said = "`data.image_size` [16, 16] sizes the network's input, not its `input` (8x8)"
    path.write_text(path.read_text().replace("  validation_split: 0.2",
                                             "  validation_split: 0.2\n  image_size: [16, 16]"))
    assert said in checking.check(str(path)).warnings
    assert said in planning.plan(config.load(path), config_file=str(path)).warnings
    same = config.load(path, ["data.image_size=[8, 8]"])
    assert not any("sizes the network" in w for w in planning.plan(same).warnings)


@pytest.mark.parametrize("written, read", [(" GPU:1 ", "gpu:1"), ("CPU", "cpu"),
                                           ("/gpu:0", "/gpu:0")])
def test_a_configs_device_is_read_as_device_takes_it(written, read):
    assert config.parse({"model": "linear", "train": {"device": written}}).train.device == read


def test_errors_in_command_line_values_name_the_option_not_a_line_of_the_file(tmp_path):
    path = write_config(tmp_path)
    with pytest.raises(ConfigError) as e:
        config.load(path, ["train.epochs=0"], {"train.epochs": "--epochs 0"})
    assert (e.value.file, e.value.line, e.value.where) == (None, None, "--epochs 0")
    with pytest.raises(ConfigError) as e:
        config.load(path, ["train.schedule={name: step, factor: 2}"])
    assert str(e.value).startswith("--set train.schedule={name: step, factor: 2}: "
                                   "`train.schedule.factor`: input should be less than 1")
    with pytest.raises(ConfigError) as e:  # the unknown key is the override's first part
        config.load(path, ["nonsense.key=1"])
    assert str(e.value).startswith("--set nonsense.key=1: unknown key 'nonsense'")


def test_bad_config_writes_no_run_folder(tmp_path):
    path = write_config(tmp_path)
    result = cli("train", str(path), "--set", "train.optimizer.name=adamm")
    assert result.returncode == 2 and "train.optimizer" in result.stderr
    assert not (tmp_path / "runs" / "toy" / "1").exists()


def test_command_line_shortcuts_override_the_config(tmp_path):
    path = write_config(tmp_path, epochs=3)
    result = cli("train", str(path), "--epochs", "1", "--batch-size", "32", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["epochs"] == 1 and metrics["batch_size"] == 32


@pytest.mark.parametrize("option,offline", [("--no-offline", False), ("--offline", True)])
def test_offline_and_no_offline_set_the_configs_data_offline(tmp_path, option, offline):
    """--no-offline was accepted and dropped: a config's `offline: true` stayed, and the
    hint to run "without offline mode" could not be followed with it."""
    path = write_config(tmp_path, epochs=1)
    text = path.read_text()
    path.write_text(text.replace("data:\n", f"data:\n  offline: {str(not offline).lower()}\n"))
    result = cli("train", str(path), option, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["data"]["offline"] is offline


def test_epochs_and_set_steps_together_are_refused_before_training(tmp_path):
    path = write_config(tmp_path, epochs=3)
    result = cli("train", str(path), "--epochs", "1", "--set", "train.steps=25")
    assert result.returncode == 2 and "give --epochs or --set train.steps, not both" in \
        result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option,setting", [(["--epochs", "2"], "train.epochs=x"),
                                            (["--lr", "0.1"], "train.optimizer.learning_rate=1"),
                                            (["--epochs", "2"], "train={epochs: 3}"),
                                            (["--offline"], "data.offline=false")])
def test_an_option_and_a_set_of_the_same_key_are_refused_not_one_dropped(tmp_path, option,
                                                                         setting):
    path = write_config(tmp_path, epochs=3)
    result = cli("train", str(path), *option, "--set", setting, "--dry-run")
    key = setting.partition("=")[0]
    assert result.returncode == 2
    assert f"give {option[0]} or --set {key}, not both" in " ".join(result.stderr.split())


@pytest.mark.parametrize("sets,said", [
    (["data.validation_split=0", "train.early_stopping={patience: 1}"],
     "error: --set train.early_stopping={patience: 1}: `train.early_stopping.monitor`"),
    (["train.fine_tune.after_epochs=1"],
     "error: --set train.fine_tune.after_epochs=1: `train.fine_tune` unfreezes layers")])
def test_a_problem_with_a_section_only_set_on_the_command_line_names_the_set(tmp_path, sets,
                                                                              said):
    path = write_config(tmp_path, epochs=3)
    result = cli("train", str(path), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 2 and said in result.stderr, result.stderr


def test_a_bad_pretrained_setting_given_on_the_command_line_names_it_not_the_configs_line(
        tmp_path):
    """`model: {from: ...}` is checked apart from the rest: its errors named the config's
    line of the key, which holds the file's good value."""
    path = tmp_path / "ft.yaml"
    path.write_text("model:\n  from: mobilenet_v2\n  weights: mine.weights.h5\n"
                    "data: {name: photos}\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, ["model.weights=photos"])
    assert (caught.value.where, caught.value.line) == ("--set model.weights=photos", None)
    path.write_text(path.read_text().replace("mine.weights.h5", "photos"))
    with pytest.raises(ConfigError) as in_the_file:  # the file's own mistake: its line
        config.load(path, ["model.dropout=0.1"])
    assert in_the_file.value.line == 3


def test_a_pretrained_networks_problems_are_said_with_the_rest_of_the_configs(tmp_path):
    """`model: {from: ...}` is checked apart: its typo came only once the rest was right."""
    from cnncli.errors import ManyErrors

    path = tmp_path / "ft.yaml"
    path.write_text("model: {from: mobilenet_v2, weights: none, dropot: 0.2}\n"
                    "data: {name: photos}\ntrain: {epochs: ten}\n")
    with pytest.raises(ManyErrors) as caught:
        config.load(path)
    first, second = caught.value.errors
    assert (first.line, first.message) == (1, "unknown key 'model.dropot'")
    assert second.line == 3 and second.message.startswith("`train.epochs`")


def test_acc_is_accuracy_one_column_and_the_figure_best_keras_follows():
    t = config.TrainSection(metrics=["acc", "sparse_top_k_categorical_accuracy"])
    assert t.metrics == ["accuracy", "sparse_top_k_categorical_accuracy"]
    twice = config.TrainSection(metrics=["acc", "accuracy", "sparse_top_k_categorical_accuracy"])
    assert twice.metrics == t.metrics  # one column each (not accuracy, weighted_accuracy)


def test_early_stopping_on_val_acc_follows_val_accuracy(tmp_path):
    """A config an older cnncli trained (and a run folder it left) stays readable."""
    path = write_config(tmp_path, extra_train="""
        metrics: [acc]
        early_stopping: {monitor: val_acc}
    """)
    assert config.load(path).train.early_stopping.monitor == "val_accuracy"


def test_plain_output_when_not_a_terminal(tmp_path):
    result = cli("train", str(write_config(tmp_path, epochs=2)))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert "\x1b[" not in result.stderr  # no colour codes, no progress animation


def test_early_stopping_stops_and_says_so(tmp_path):
    path = write_config(tmp_path, epochs=30, lr=1e-7,
                        extra_train="early_stopping: {patience: 2, monitor: val_loss, "
                                    "min_delta: 1.0}")
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    result = training.train(config.load(path), reporter=Notes())
    assert result.metrics.stopped_early and result.metrics.epochs == 3
    assert result.metrics.steps == 3 * 16  # those trained (256 images, batch 16)
    assert notes == ["early stopping: val_loss has not improved for 2 epochs: the run ends "
                     "after epoch 3 of 30"]


@pytest.mark.parametrize("ending", ["all epochs", "stopped early", "steps mid-epoch"])
def test_a_run_stopped_saving_its_results_resumes_to_save_them_with_no_more_training(
        tmp_path, monkeypatch, ending):
    """The disk filled up at the run's last and biggest write, model.keras: its backup is of
    its end. Resuming (as the error says) saves its results, as a run not stopped would
    have; it trains no more, not even the epochs early stopping left out (nor counts a
    last epoch `train.steps` cut short as whole: "trained 48 steps, asks for 40")."""
    early = ending == "stopped early"
    extra = {"all epochs": "", "stopped early": "early_stopping: {patience: 1, monitor: "
             "val_loss, min_delta: 1.0}", "steps mid-epoch": "steps: 40"}[ending]
    path = write_config(tmp_path, epochs=4, lr=1e-7 if early else 0.01, extra_train=extra)
    whole = run_train(path, "output.name=whole")
    real = training.save_model_atomic

    def disk_full(model, target, meta):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(training, "save_model_atomic", disk_full)
    with pytest.raises(Exception, match="No space left on device"):
        run_train(path)
    run = tmp_path / "runs" / "toy" / "1"
    monkeypatch.setattr(training, "save_model_atomic", real)
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    result = run_train(path, resume=run, reporter=Notes())
    assert files.read_json(run / "state.json")["status"] == "finished"
    assert result.metrics.epochs == whole.metrics.epochs == {
        "all epochs": 4, "stopped early": 2, "steps mid-epoch": 3}[ending]
    assert result.metrics.steps == whole.metrics.steps
    assert result.metrics.stopped_early == early
    assert history_rows(run) == history_rows(whole.run)
    for mine, theirs in zip(weights(run), weights(whole.run), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert any("saved now, with no more training" in n for n in notes), notes


def test_a_last_epoch_row_whose_write_failed_is_in_history_csv_once_the_resume_saves(
        tmp_path, monkeypatch):
    """The disk filled up writing the last epoch's row of history.csv, after that epoch's
    backup: the run says how to resume (and its status records that, as it was said),
    and the resume that saves its results writes the row."""
    from cnncli.run.callbacks import outputs

    path = write_config(tmp_path, epochs=2)
    whole = run_train(path, "output.name=whole")
    real = outputs.files.write_atomic

    def full_at_the_last_row(target, data):
        if target.name == rundir.HISTORY and len(str(data).splitlines()) == 3:
            raise OSError(28, "No space left on device", str(target))
        return real(target, data)

    monkeypatch.setattr(outputs.files, "write_atomic", full_at_the_last_row)
    with pytest.raises(TrainingError) as said:
        run_train(path)
    run = tmp_path / "runs" / "toy" / "1"
    assert files.read_json(run / "state.json")["error"] == str(said.value)
    assert "then: cnncli train --resume" in said.value.hint
    monkeypatch.setattr(outputs.files, "write_atomic", real)
    run_train(path, resume=run)
    assert len(history_rows(run)) == 2
    assert [r["loss"] for r in history_rows(run)] == [r["loss"] for r in history_rows(whole.run)]


def test_a_ctrl_c_before_a_new_runs_first_step_leaves_no_run_behind(tmp_path, monkeypatch):
    path = write_config(tmp_path, epochs=1)

    def stopped(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "RunCallback", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_train(path)
    assert not (tmp_path / "runs" / "toy" / "1").exists()


def test_a_lowered_rate_is_said_after_the_line_of_the_epoch_that_lowered_it(tmp_path):
    path = write_config(tmp_path, epochs=3, lr=1e-30,  # nothing moves: no improvement
                        extra_train="schedule: {name: plateau, patience: 1, factor: 0.5}")
    said = []

    class Lines(training.Reporter):
        def epoch_end(self, row):
            said.append(f"epoch {row['epoch']}")

        def note(self, text):
            said.append(text.split(":")[0])

    training.train(config.load(path), reporter=Lines())
    assert said[:3] == ["epoch 1", "epoch 2", "val loss has not improved for 1 epoch"]
    assert said[3:] == ["epoch 3"]  # no rate announced after the last epoch: none trains at it


def test_early_stopping_due_at_the_last_epoch_is_no_early_stop(tmp_path):
    path = write_config(tmp_path, epochs=3, lr=1e-7,
                        extra_train="early_stopping: {patience: 2, monitor: val_loss, "
                                    "min_delta: 1.0}")
    result = run_train(path)
    assert not result.metrics.stopped_early and result.metrics.epochs == 3


def _uninterrupted(tmp_path, **kw):
    folder = tmp_path / "reference"
    folder.mkdir()
    return run_train(write_config(folder, **kw)).run


def _wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def _rows(run):
    path = run / "history.csv"
    return path.read_text().count("\n") - 1 if path.exists() else 0


SETTINGS = {"epochs": 5, "batch_size": 8, "backup_every": 5}  # 32 steps an epoch


@pytest.mark.slow
def test_kill_9_again_and_again_then_resume_gives_the_uninterrupted_result(tmp_path):
    reference = _uninterrupted(tmp_path, **SETTINGS)
    path = write_config(tmp_path, **SETTINGS)
    run = tmp_path / "runs" / "toy" / "1"
    rng = np.random.default_rng(0)
    args = ["train", str(path)]
    kills = 0
    while True:
        proc = subprocess.Popen([sys.executable, "-m", "cnncli", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 3:
            _wait_for(lambda p=proc: rundir.has_backup(run) or p.poll() is not None)
            time.sleep(rng.uniform(0.0, 0.6))  # at a random moment, backup writes included
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
        proc.wait(timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        args = ["train", "--resume", str(run)]
    assert kills >= 2
    assert history_rows(run) == history_rows(reference)
    for a, b in zip(weights(run), weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)


#: `cnncli` as on a CPU with bfloat16 matrix units, where `--precision auto` picks
#: mixed_bfloat16 (this test machine may have none).
ON_AMX = ("import sys\n"
          "from cnncli.devices import tf_layer\n"
          "tf_layer.cpu_bf16_units = lambda *args, **kwargs: True\n"
          "from cnncli.cli.app import main\n"
          "sys.argv = ['cnncli', *sys.argv[1:]]\n"
          "main()\n")


@pytest.mark.slow
def test_a_float32_run_killed_on_an_amx_cpu_resumes_in_float32_to_the_same_weights(tmp_path):
    reference = _uninterrupted(tmp_path, **SETTINGS, extra_train="precision: float32")
    assert config.load(reference / "config.yaml").train.precision == "float32"
    path = write_config(tmp_path, **SETTINGS)
    run = tmp_path / "runs" / "toy" / "1"
    proc = subprocess.Popen([sys.executable, "-c", ON_AMX, "train", str(path), "--precision",
                             "float32"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: _rows(run) >= 1 or proc.poll() is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = subprocess.run([sys.executable, "-c", ON_AMX, "train", "--resume", str(run)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "mixed_bfloat16" not in resumed.stderr
    assert history_rows(run) == history_rows(reference)
    for a, b in zip(weights(run), weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sigint_writes_a_backup_exits_130_and_resume_matches(tmp_path):
    reference = _uninterrupted(tmp_path, **SETTINGS)
    path = write_config(tmp_path, **SETTINGS)
    run = tmp_path / "runs" / "toy" / "1"
    proc = subprocess.Popen([sys.executable, "-m", "cnncli", "train", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _rows(run) >= 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"resume with: cnncli train --resume {run}" in err
    assert "Traceback" not in err
    assert files.read_json(run / "state.json")["status"] == "interrupted"
    result = cli("train", "--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert history_rows(run) == history_rows(reference)
    for a, b in zip(weights(run), weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)


class CtrlCTwice(training.Reporter):
    """Presses Ctrl-C twice after step 5: the second before training could stop."""

    pressed_at = None

    def step(self, step, logs):
        if step > 5 and self.pressed_at is None:
            self.pressed_at = step
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the first is handled (training will stop after this step)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)


def test_a_second_ctrl_c_stops_at_once_and_resume_uses_the_last_backup(tmp_path):
    path = write_config(tmp_path, epochs=2, batch_size=8, backup_every=2)
    run = tmp_path / "runs" / "toy" / "1"
    keys = CtrlCTwice()
    with pytest.raises(Interrupted, match="Ctrl-C twice: training stopped at once") as stop:
        try:
            run_train(path, reporter=keys)
        except KeyboardInterrupt:
            pytest.fail("the second Ctrl-C left training as a bare KeyboardInterrupt")
    assert stop.value.exit_code == 130 and f"--resume {run}" in stop.value.hint
    assert files.read_json(run / "state.json")["status"] == "interrupted"
    backup, _ = checkpoint.load(run, training.compile_model(training.plan(config.load(path))))
    assert 0 < backup.step < keys.pressed_at  # an earlier one: none at the step pressed
    assert len(history_rows(run_train(path, resume=run).run)) == 2


class CtrlCAtEpochEnd(training.Reporter):
    """Presses Ctrl-C as the first epoch ends."""

    def epoch_end(self, row):
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)


class SlowThenCtrlC(training.Reporter):
    """From step 6 on (a step Keras reports: it may run several at once), is slow for
    2.5 s, then presses Ctrl-C (training stops after writing a backup there)."""

    pressed = False

    def step(self, step, logs):
        if step >= 6 and not self.pressed:
            self.pressed = True
            time.sleep(2.5)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)


def test_an_epoch_resumed_mid_way_counts_its_time_before_the_stop_in_its_row(tmp_path):
    path = write_config(tmp_path, epochs=1, batch_size=8)  # 32 steps
    with pytest.raises(Interrupted):
        run_train(path, reporter=SlowThenCtrlC())
    run = tmp_path / "runs" / "toy" / "1"
    result = run_train(path, resume=run)
    [row] = result.history
    assert row["seconds"] >= 2.5  # the slow part, before the stop
    # every image of the epoch, once (images/s leaves the validation's time out)
    assert 32 * 8 <= row["images_per_s"] * row["seconds"] < 2 * 32 * 8
    assert result.metrics.train_seconds >= 2.5


def test_a_ctrl_c_between_two_epochs_says_it_stopped_at_the_end_of_the_first(tmp_path):
    with pytest.raises(Interrupted, match="Ctrl-C: training stopped at the end of epoch 1 "
                                          "after writing a backup"):
        run_train(write_config(tmp_path, epochs=3), reporter=CtrlCAtEpochEnd())


def test_a_second_ctrl_c_before_any_backup_says_to_start_again_not_to_resume(tmp_path):
    run = tmp_path / "runs" / "toy" / "1"
    run.mkdir(parents=True)
    stop = Interrupted(signal.SIGINT, run)  # as training raises it at a second Ctrl-C
    assert stop.hint == f"there was no backup yet: start it again: cnncli train " \
                        f"{run / 'config.yaml'}"


def test_a_hints_command_quotes_a_run_folder_a_shell_would_split(tmp_path):
    """Copied into a shell, `runs/my photos/1` is two arguments (and `[...]` a glob)."""
    run = tmp_path / "my photos" / "1"
    run.mkdir(parents=True)
    assert Interrupted(signal.SIGINT, run, "epoch 1, step 3").hint == \
        f"resume with: cnncli train --resume '{run}'"
    assert Interrupted(signal.SIGINT, run).hint == \
        f"there was no backup yet: start it again: cnncli train '{run / 'config.yaml'}'"
    assert rundir.no_model_hint(run) == "it stopped before its first backup; start it " \
        f"again: cnncli train '{run / 'config.yaml'}'"


def _photos(tmp_path: Path, count: int = 48) -> Path:
    """A folder of class folders of PNGs (the toy data's first `count` images)."""
    from PIL import Image

    data = np.load(write_config(tmp_path).parent / "toy.npz")
    for i, (x, y) in enumerate(zip(data["x_train"][:count], data["y_train"][:count],
                                   strict=True)):
        (tmp_path / "photos" / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[..., 0]).save(tmp_path / "photos" / str(y) / f"{i}.png")
    return tmp_path / "photos"


def _resume_with_data_at(run: Path, folder: Path):
    """``cnncli train --resume RUN --set data.name=FOLDER --force``."""
    return training.train(config.load(run / "config.yaml", [f"data.name={folder}"]),
                          resume=run, force=True)


@pytest.mark.parametrize("change,says", [
    ("add", "it had 30 training and 8 validation images, now 31 and 8"),
    ("rename", "as many images as before, but other files, images or labels"),
    ("add a class", "it had 30 training and 8 validation images, now "),  # not "the model"
])
def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path, change, says):
    photos = _photos(tmp_path)
    data = f"data.name={photos}"
    classes_of_the_data = SPEC.replace("  classes: 3\n", "")
    run = _interrupted_run(write_config(tmp_path, epochs=2, spec=classes_of_the_data), data)
    first = sorted(photos.glob("*/*.png"))[0]
    if change == "add":
        (first.parent / "new.png").write_bytes(first.read_bytes())
    elif change == "rename":
        first.rename(first.with_name("renamed.png"))
    else:
        for i in range(4):
            (photos / "new class").mkdir(exist_ok=True)
            (photos / "new class" / f"{i}.png").write_bytes(first.read_bytes())
    with pytest.raises(DataError, match="the data is not the one this run trained on") as e:
        training.train(config.load(run / "config.yaml"), resume=run)
    assert says in e.value.message


def test_a_resumed_run_counts_the_unreadable_images_its_backup_found_each_once(tmp_path):
    """As the uninterrupted run would: found once, a file stays counted (gone.png: the
    resumed epoch does not reach it), and found again after the data moved (bad.png),
    it is the same file."""
    photos = _photos(tmp_path)
    (photos / "0" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = f"data.name={photos}"
    images = len(planning.plan(config.load(write_config(tmp_path), [data])).feed.train)
    path = write_config(tmp_path, epochs=2, batch_size=images)  # every image, each epoch
    run = _interrupted_run(path, data, unreadable=["0/bad.png", "gone.png"])
    assert history_rows(run)[1]["unreadable_images"] == "1"  # bad.png, found
    resumed = _resume_with_data_at(run, photos.rename(tmp_path / "elsewhere")).run
    assert history_rows(resumed)[1]["unreadable_images"] == "2"


def test_a_run_whose_data_folder_moved_resumes_there_with_force(tmp_path):
    photos = _photos(tmp_path)
    run = _interrupted_run(write_config(tmp_path, epochs=2), f"data.name={photos}")
    moved = photos.rename(tmp_path / "elsewhere")  # another name, another place
    with pytest.raises(DataError, match=f"the run's data is no longer at {photos}") as e:
        training.train(config.load(run / "config.yaml"), resume=run)
    assert e.value.hint.startswith(f"if it moved, resume from its new place: cnncli train "
                                   f"--resume {run} --set data.name=NEW_PLACE --force")
    there = config.load(run / "config.yaml", [f"data.name={moved}"])
    with pytest.raises(ConfigError, match="pass --force to apply the changes"):
        training.train(there, resume=run)
    result = training.train(there, resume=run, force=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert config.load(run / "config.yaml").data.name == str(moved)  # recorded


def test_another_data_folder_given_on_resuming_is_refused_even_with_force(tmp_path):
    photos = _photos(tmp_path)
    run = _interrupted_run(write_config(tmp_path, epochs=2), f"data.name={photos}")
    (tmp_path / "other").mkdir()
    other = _photos(tmp_path / "other", count=47)  # one image fewer
    with pytest.raises(DataError, match="the data is not the one this run trained on"):
        _resume_with_data_at(run, other)


def _older_backup(tmp_path: Path, photos: Path) -> Path:
    """A run on `photos` stopped after its first epoch, its backup recording the data as
    cnncli did before data folders could move (the files' full paths hashed)."""
    path = write_config(tmp_path, epochs=2)
    run = _interrupted_run(path, f"data.name={photos}")
    p = training.plan(config.load(path, [f"data.name={photos}"]))
    state, _ = checkpoint.load(run, training.compile_model(p))
    state.data = p.feed.fingerprint(absolute=True)
    assert state.data != p.feed.fingerprint()
    checkpoint.save(run, training.compile_model(p), state)
    return run


def test_a_backup_recording_its_files_by_full_path_still_resumes(tmp_path):
    run = _older_backup(tmp_path, _photos(tmp_path))
    result = training.train(config.load(run / "config.yaml"), resume=run)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_a_moved_folder_holding_other_file_names_is_refused_even_with_force(tmp_path):
    photos = _photos(tmp_path)
    run = _interrupted_run(write_config(tmp_path, epochs=2), f"data.name={photos}")
    moved = photos.rename(tmp_path / "elsewhere")
    first = sorted(moved.glob("*/*.png"))[0]
    first.rename(first.with_name("renamed.png"))  # as many files, one of another name
    with pytest.raises(DataError, match="as many images as before, but other files") as e:
        _resume_with_data_at(run, moved)
    assert "before 2026-12-05" not in e.value.hint  # its backup knows files as they are now


def test_a_backup_recording_no_data_resumes_only_where_its_data_was(tmp_path):
    photos = _photos(tmp_path)
    run = _interrupted_run(write_config(tmp_path, epochs=2), f"data.name={photos}",
                           record_data=False)
    moved = photos.rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="this run's backup does not record its data") as e:
        _resume_with_data_at(run, moved)
    assert e.value.hint.startswith(f"put the data back at {photos}")


def test_an_older_backup_of_data_moved_since_says_to_resume_once_where_it_was(tmp_path):
    photos = _photos(tmp_path)
    run = _older_backup(tmp_path, photos)
    moved = photos.rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="the data is not the one") as e:
        _resume_with_data_at(run, moved)
    assert e.value.hint.endswith(f"resume it once with the data at {photos}, then it may move")


def test_a_network_without_a_name_is_named_after_the_run_also_when_resumed(tmp_path):
    sweep = write_config(tmp_path, epochs=1, name="exp1").rename(tmp_path / "sweep.yaml")
    run = run_train(sweep).run  # output.name: exp1, in a file named sweep.yaml
    saved = run / "config.yaml"  # what --resume RUN plans from
    for path in (sweep, saved):
        p = training.plan(config.load(path), config_file=str(path))
        assert training.compile_model(p).name == "exp1", path


def test_a_run_without_output_name_is_named_after_its_config_file_from_python_too(tmp_path):
    """The documented default, for `cnncli train` and for `train(config.load(...))`."""
    path = write_config(tmp_path, epochs=1)
    path.write_text(path.read_text().replace("  name: toy\n", ""))
    path = path.rename(tmp_path / "my_photos.yaml")
    assert config.load(path).output.name == "my_photos"
    assert training.train(config.load(path), config_file=str(path)).run == \
        tmp_path / "runs" / "my_photos" / "1"


def test_a_config_file_whose_name_is_no_folder_name_is_refused_before_any_run(tmp_path):
    """``..yaml`` would name its runs '.': they would go in `output.dir`'s parent."""
    path = write_config(tmp_path, epochs=1)
    path.write_text(path.read_text().replace("  name: toy\n", ""))
    path = path.rename(tmp_path / "..yaml")
    with pytest.raises(ConfigError, match="the name the config's file gives its runs, '.', "
                                          "is not a plain folder name") as e:
        config.load(path)
    assert e.value.file == str(path) and "set `output.name`" in e.value.hint


def test_an_output_name_longer_than_a_folder_name_is_refused_by_check_too():
    """A dry run or `cnncli check` passing a name the run then cannot make (a CI gate)."""
    with pytest.raises(ConfigError, match="longer than a folder name may be"):
        config.parse({"model": "mnist_net", "output": {"name": "n" * 256}})
    assert config.parse({"model": "mnist_net", "output": {"name": "n" * 255}})


def test_a_run_named_like_a_number_reads_back_its_own_config(tmp_path):
    from cnncli.run import record

    cfg = config.parse({"model": "mnist_net", "output": {"name": "1e-3"}})
    record.write_config(tmp_path, cfg)
    assert config.load_run_config(tmp_path / "config.yaml").output.name == "1e-3"


def test_a_backup_from_before_the_data_was_recorded_resumes_and_records_it(tmp_path):
    run = _interrupted_run(write_config(tmp_path, epochs=3), record_data=False)
    with pytest.raises(Interrupted):  # stopped again at the end of epoch 2
        training.train(config.load(run / "config.yaml"), resume=run,
                       reporter=CtrlCAfterTheLastEpoch(epochs=2))
    state, _ = checkpoint.load(run, training.compile_model(training.plan(
        config.load(run / "config.yaml"))))
    assert state.epoch == 2 and state.data["train"] == 256


def test_dry_run_names_the_set_that_keras_refuses(tmp_path):
    result = cli("train", str(write_config(tmp_path)), "--dry-run",
                 "--set", "train.optimizer.momentum=0.9")
    assert result.returncode == 2
    assert "--set train.optimizer.momentum=0.9: `train.optimizer`: Argument(s) not " \
           "recognized" in result.stderr


def test_resume_refuses_a_run_whose_config_yaml_was_edited_by_hand(tmp_path):
    run = run_train(write_config(tmp_path, epochs=1, batch_size=8)).run
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("batch_size: 8", "batch_size: 4"))
    with pytest.raises(ConfigError, match="not the one the run wrote") as refused:
        training.train(config.load(saved), resume=run)
    assert "--set KEY=VALUE --force" in refused.value.hint


def test_a_set_without_a_key_is_refused_as_malformed(tmp_path):
    with pytest.raises(ConfigError, match="--set '=3' is not of the form key=value"):
        config.load(write_config(tmp_path), ["=3"])


class CtrlCAfterTheLastEpoch(training.Reporter):
    """Presses Ctrl-C as the last epoch's line is shown, and keeps the notes."""

    def __init__(self, epochs):
        self.epochs, self.notes = epochs, []

    def epoch_end(self, row):
        if row["epoch"] == self.epochs:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)

    def note(self, text):
        self.notes.append(text)


def test_ctrl_c_after_the_last_epoch_still_finishes_the_run(tmp_path):
    path = write_config(tmp_path, epochs=2, batch_size=8)
    keys = CtrlCAfterTheLastEpoch(epochs=2)
    result = run_train(path, reporter=keys)
    assert files.read_json(result.run / "state.json")["status"] == "finished"
    assert (result.run / "model.keras").is_file() and not rundir.has_backup(result.run)
    assert len(history_rows(result.run)) == 2
    assert keys.notes == ["Ctrl-C came as the run's last steps ran (or after them): they "
                          "were finished and the run saved"]


def test_a_run_whose_files_cannot_be_made_is_failed_not_left_running(tmp_path, monkeypatch):
    """TensorFlow's event writer refusing its path left the run `running` ("killed" in
    `cnncli runs`)."""
    def refused(*args, **kwargs):
        raise import_tf().errors.InvalidArgumentError(None, None, "Could not initialize "
                                                      "events writer.")

    monkeypatch.setattr(training, "RunCallback", refused)
    with pytest.raises(Exception, match="events writer"):
        run_train(write_config(tmp_path, epochs=1))
    state = files.read_json(tmp_path / "runs" / "toy" / "1" / "state.json")
    assert state["status"] == "failed" and "events writer" in state["error"]


def test_ctrl_c_while_the_results_are_saved_still_finishes_the_run(tmp_path, monkeypatch):
    real = training.record.final_metrics

    def pressed_while_saving(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        return real(*args, **kwargs)

    monkeypatch.setattr(training.record, "final_metrics", pressed_while_saving)
    try:
        result = run_train(write_config(tmp_path, epochs=1, batch_size=8))
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C while the results were saved stopped the run unfinished")
    assert files.read_json(result.run / "state.json")["status"] == "finished"
    assert (result.run / "metrics.json").is_file() and not rundir.has_backup(result.run)


def test_ctrl_c_exits_130_at_once_with_a_line_saying_so(tmp_path):
    # Typer turns Ctrl-C into a silent exit 130; cnncli says so and leaves at once, without
    # Python's shutdown (which could wait forever on a TensorFlow input pipeline's threads)
    code = ("import atexit\n"
            "from cnncli.cli import app\n"
            "atexit.register(lambda: print('shut down'))\n"
            "def pressed(): raise KeyboardInterrupt\n"
            "app.app.command('pressed')(pressed)\n"
            "app.main()\n")
    done = subprocess.run([sys.executable, "-c", code, "pressed"], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        130, "stopped: Ctrl-C: the command stopped before it finished. Hint: run it again")
    assert "shut down" not in done.stdout


def test_sigterm_exits_143(tmp_path):
    path = write_config(tmp_path, epochs=50, batch_size=8)
    run = tmp_path / "runs" / "toy" / "1"
    proc = subprocess.Popen([sys.executable, "-m", "cnncli", "train", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _rows(run) >= 1)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert rundir.has_backup(run)


def _fit_needing_small_batches(limit):
    """A stand-in for the fit loop that runs out of memory above `limit` images a batch."""
    real_fit = loop.fit

    def fit(p, model, state, callback, relay=None):
        if p.cfg.train.batch_size > limit:
            raise import_tf().errors.ResourceExhaustedError(None, None, "OOM when allocating")
        return real_fit(p, model, state, callback, relay)

    return fit


def test_out_of_memory_names_the_batch_size_and_exits_3(tmp_path, monkeypatch):
    from cnncli.errors import DeviceError

    monkeypatch.setattr(loop, "fit", _fit_needing_small_batches(8))
    with pytest.raises(DeviceError, match="at batch size 16") as e:
        run_train(write_config(tmp_path, epochs=1))
    assert e.value.exit_code == 3 and "--auto-batch" in e.value.hint


def test_auto_batch_halves_until_it_fits(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "fit", _fit_needing_small_batches(4))
    notes = []

    class Notes(training.Reporter):
        def note(self, text):
            notes.append(text)

    path = write_config(tmp_path, epochs=1)
    result = training.train(config.load(path), auto_batch=True, reporter=Notes())
    assert result.metrics.batch_size == 4
    assert notes == ["out of memory at batch size 16: starting again with 8 (--auto-batch)",
                     "out of memory at batch size 8: starting again with 4 (--auto-batch)"]


def test_steps_per_execution_trains_the_same_steps(tmp_path):
    path = write_config(tmp_path, epochs=2, backup_every=3,
                        extra_train="steps_per_execution: 4")
    result = run_train(path)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.metrics.steps == 32


def test_steps_per_execution_auto_takes_4_when_it_divides_the_epoch(tmp_path):
    result = run_train(write_config(tmp_path, epochs=1))  # 16 steps an epoch
    assert result.metrics.steps_per_execution == 4


def test_steps_per_execution_auto_takes_1_when_nothing_divides_the_epoch(tmp_path):
    path = write_config(tmp_path, epochs=1, batch_size=17)  # 15 steps an epoch
    assert run_train(path).metrics.steps_per_execution == 1


def test_steps_per_execution_that_does_not_divide_the_epoch_is_refused(tmp_path):
    path = write_config(tmp_path, extra_train="steps_per_execution: 5")
    with pytest.raises(ConfigError, match="must divide the 16 steps"):
        run_train(path)
    assert not (tmp_path / "runs").exists()


def _two_devices(monkeypatch):
    from cnncli import devices

    mirrored = devices.Placement("mirrored", ["/cpu:0", "/cpu:1"], replicas=2)
    monkeypatch.setattr(devices, "setup", lambda *args, **kwargs: mirrored)


def test_steps_per_execution_auto_is_1_over_several_devices(tmp_path, monkeypatch):
    _two_devices(monkeypatch)
    assert training.plan(config.load(write_config(tmp_path))).steps_per_execution == 1


def test_steps_per_execution_over_several_devices_names_the_keras_bug(tmp_path, monkeypatch):
    _two_devices(monkeypatch)
    path = write_config(tmp_path, extra_train="steps_per_execution: 4")
    with pytest.raises(ConfigError, match="keras-team/keras#19246"):
        training.plan(config.load(path))


@pytest.mark.parametrize("value", ["0", "fast", "2.5", "true"])
def test_steps_per_execution_must_be_auto_or_a_whole_number(tmp_path, value):
    path = write_config(tmp_path, extra_train=f"steps_per_execution: {value}")
    with pytest.raises(ConfigError, match="should be auto or a whole number >= 1"):
        config.load(path)


def test_jit_compile_auto_leaves_xla_off_on_the_cpu(tmp_path):
    assert run_train(write_config(tmp_path, epochs=1)).metrics.jit_compile is False


def test_jit_compile_true_trains_with_xla(tmp_path):
    path = write_config(tmp_path, epochs=1, extra_train="jit_compile: true")
    result = run_train(path)
    assert result.metrics.jit_compile is True
    assert result.history[0]["loss"] > 0


#: trainkit's network with a BatchNormalization layer.
BN_SPEC = SPEC.replace("    - MaxPooling2D", "    - BatchNormalization\n    - MaxPooling2D")


def test_batch_norm_trains_with_the_fused_kernel_by_default(tmp_path):
    assert "BatchNormalization" in BN_SPEC
    path = write_config(tmp_path, epochs=1, spec=BN_SPEC)
    assert run_train(path).metrics.fused_batch_norm_layers == 1


def test_fused_norm_false_keeps_keras_own_batch_norm(tmp_path):
    path = write_config(tmp_path, epochs=1, spec=BN_SPEC, extra_train="fused_norm: false")
    assert run_train(path).metrics.fused_batch_norm_layers == 0


def test_a_step_too_big_for_the_gpu_is_warned_about_before_training():
    from cnncli import devices
    from cnncli.model import builder, spec

    built = builder.build_checked(spec.load("mnist_net"))
    small = devices.Placement("gpu", ["/gpu:0"], gpus=[devices.GpuInfo("Tiny GPU", 64 * 2**20,
                                                                       (7, 5))])
    big = devices.Placement("gpu", ["/gpu:0"], gpus=[devices.GpuInfo("Big GPU", 80 * 2**30,
                                                                     (8, 0))])
    assert "try a smaller --batch-size" in planning.memory_warnings(built, small, 128)[0]
    assert planning.memory_warnings(built, big, 128) == []


def test_a_step_too_big_for_the_machines_memory_is_warned_about_on_the_cpu():
    """On the CPU, running out of memory ends TensorFlow with no message (std::bad_alloc):
    say so before training, against the memory available."""
    from cnncli import devices
    from cnncli.model import builder, spec

    built = builder.build_checked(spec.load("mnist_net"))
    cpu = devices.Placement("cpu", ["/cpu:0"])
    [warning] = planning.memory_warnings(built, cpu, 128, available=64 * 2**20)
    assert warning.endswith("of memory is available; try a smaller --batch-size")
    assert planning.memory_warnings(built, cpu, 128, available=16 * 2**30) == []
    machines = devices.Placement("multiworker", ["/cpu:0"], replicas=2, workers=2)
    [warning] = planning.memory_warnings(built, machines, 128, available=64 * 2**20)
    assert warning.endswith("of memory is available; try a smaller --batch-size")


def test_a_network_whose_weights_alone_cannot_train_in_memory_is_refused():
    """16 billion weights take 60 GiB: the process would be killed while building them,
    with no message; it is refused, naming the largest layer."""
    from cnncli import devices
    from cnncli.errors import DeviceError
    from cnncli.model import builder, spec

    huge = spec.parse({"input": [200, 200, 1], "layers": [
        "Flatten", {"Dense": {"units": 40_000}, "repeat": 10}, {"Dense": 10}]}, default_name="huge")
    with builder.weightless():  # as training plans it: 64 GB of weights otherwise
        built = builder.build_checked(huge)
    cpu = devices.Placement("cpu", ["/cpu:0"])
    with pytest.raises(DeviceError, match="the network has 16,000,800,010 weights: they "
                                          "alone take 59.6 GiB") as e:
        planning.memory_warnings(built, cpu, 10, available=23 * 2**30)
    assert e.value.message.endswith("this machine has 23.0 GiB of memory available")
    assert e.value.hint.startswith("make the network smaller: its largest layer, fc1, "
                                   "has 1,600,040,000 weights")


def test_runs_lists_runs_with_their_best_figures(tmp_path):
    run = run_train(write_config(tmp_path, epochs=1)).run
    result = cli("runs", str(tmp_path / "runs"), "--json")
    rows = json.loads(result.stdout)
    assert [r["run"] for r in rows] == [str(run)]
    assert rows[0]["status"] == "finished" and rows[0]["best_metric"] == "val_accuracy"
    assert 0 < rows[0]["best"] <= 1


def test_label_smoothing_trains_and_its_model_files_load_safely(tmp_path):
    from cnncli.infer import evaluate as evaluation

    result = run_train(write_config(tmp_path, epochs=2, extra_train="label_smoothing: 0.1"))
    assert result.history[-1]["accuracy"] > 0.5
    assert evaluation.evaluate(result.run).result.count == 60


def test_with_label_smoothing_the_plain_cross_entropy_is_recorded_beside_the_loss(tmp_path):
    """`loss` is then the smoothed labels' cross-entropy, another figure than evaluate's
    `loss`: the labels' own is recorded too, under its own name."""
    from cnncli.run.compile import plain_loss

    [metric] = plain_loss(config.TrainSection(label_smoothing=0.2))
    metric.update_state([[0.0, 1.0]], [[0.2, 0.8]])
    assert float(metric.result()) == pytest.approx(-np.log(0.8), rel=1e-6)  # not smoothed
    assert plain_loss(config.TrainSection()) == []  # (no smoothing: the loss is that)
    result = run_train(write_config(tmp_path, epochs=1, extra_train="label_smoothing: 0.2"))
    row = result.history[-1]
    assert {"crossentropy", "val_crossentropy"} <= set(row)
    assert row["crossentropy"] < row["loss"]  # smoothed labels: a larger figure here


def test_an_exception_inside_a_callback_keeps_the_last_backup_loadable(tmp_path, monkeypatch):
    from cnncli import plots

    calls = []

    def broken_plot(history, path):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("plotting broke")
        return path

    monkeypatch.setattr(plots, "training_curves", broken_plot)
    path = write_config(tmp_path, epochs=3)
    with pytest.raises(RuntimeError, match="plotting broke"):
        run_train(path)
    run = tmp_path / "runs" / "toy" / "1"
    assert files.read_json(run / "state.json")["status"] == "failed"
    model = training.compile_model(training.plan(config.load(path)))
    state, note = checkpoint.load(run, model)
    assert state.epoch == 2 and len(state.history) == 2 and note is None


def test_a_metric_that_runs_on_class_indices_but_reads_them_wrongly_is_refused():
    """categorical_accuracy passed the check (it raises nothing on class indices) and
    recorded 0.06 beside an accuracy of 0.71: each accuracy is tried on predictions that
    are all right. With label smoothing the labels are one-hot, which it reads right."""
    from cnncli.run.compile import check_training

    with pytest.raises(ConfigError, match="'categorical_accuracy' gives wrong figures for "
                                          "cnncli's labels, which are class indices: 0.5 "
                                          "for predictions that are all right"):
        check_training(config.TrainSection(metrics=["accuracy", "categorical_accuracy"]), 10)
    check_training(config.TrainSection(metrics=["accuracy", "sparse_categorical_accuracy",
                                                "sparse_top_k_categorical_accuracy"]), 10)
    check_training(config.TrainSection(metrics=["categorical_accuracy"], label_smoothing=0.1),
                   10)
    check_training(config.TrainSection(), 1)  # one output: accuracy as before (a warning)


def test_a_metric_for_class_indices_with_label_smoothing_gets_the_one_hot_metrics_named():
    """Label smoothing makes the labels one-hot: the hint named the sparse metrics, the
    very one refused among them."""
    from cnncli.run.compile import check_training

    with pytest.raises(ConfigError) as e:
        check_training(config.TrainSection(metrics=["sparse_top_k_categorical_accuracy"],
                                           label_smoothing=0.1), 10)
    assert "sparse_top_k" not in e.value.hint and "top_k_categorical_accuracy" in e.value.hint
    assert "cnncli's labels, which are one-hot rows (label smoothing)" in e.value.message
    check_training(config.TrainSection(metrics=["accuracy", "top_k_categorical_accuracy"],
                                       label_smoothing=0.1), 10)


@pytest.mark.parametrize("name", ["crossentropy", "CrossEntropyLoss", "nll_loss"])
def test_other_libraries_cross_entropy_names_are_taken_for_the_sparse_one(name):
    """By spelling, `crossentropy` was "did you mean 'binary_crossentropy'", which
    cnncli's labels (class indices) do not fit: it was refused once written."""
    from cnncli.run.compile import make_loss

    with pytest.raises(ConfigError) as caught:
        make_loss(config.TrainSection(loss=name))
    assert caught.value.hint == "did you mean 'sparse_categorical_crossentropy' (class " \
        "indices, as cnncli's labels are)?"


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_batch_loss_is_the_mean_over_the_images_that_count(smoothing):
    # An image that could not be decoded comes with weight 0: it must not lower the loss.
    from cnncli.run.compile import make_loss
    from cnncli.runtime import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(loss=make_loss(config.TrainSection(label_smoothing=smoothing)))
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    y = np.array([0, 2, 1])
    labels = keras.utils.to_categorical(y, 3) if smoothing else y
    both = model.evaluate(x[:2], labels[:2], batch_size=3, verbose=0)
    weighted = model.evaluate(x, labels, sample_weight=np.array([1.0, 1.0, 0.0]),
                              batch_size=3, verbose=0)
    assert weighted == pytest.approx(both, rel=1e-6)


@pytest.mark.parametrize("signum,error", [(signal.SIGINT, "Interrupted"),
                                          (signal.SIGTERM, "Terminated")])
def test_training_stopped_by_a_signal_names_it_in_json_as_every_command_does(
        tmp_path, signum, error):
    stopped = Interrupted(signum, tmp_path, where="the end of epoch 1")
    assert (stopped.to_dict()["error"], stopped.exit_code) == (error, 128 + signum)


def test_train_reports_every_problem_of_a_config_at_once_as_check_does(tmp_path):
    """The unknown optimizer came out of `check` but not out of `train`."""
    from cnncli.errors import ManyErrors
    from cnncli.run import checking

    path = tmp_path / "bad.yaml"
    path.write_text("model: {input: [8, 8, 1], layers: [Flatten, {Dense: {units: 2, "
                    "activation: sofmax}}]}\ndata: {name: mnist}\n"
                    "train: {epochs: ten, optimizer: {name: adamm}}\n")
    for load in (checking.check, checking.load_config):
        with pytest.raises(ManyErrors) as e:
            load(str(path))
        assert [err.message for err in e.value.errors] == [  # in the file's order
            "`activation: sofmax` is not one of Keras' activations",
            "`train.epochs`: input should be a valid integer, got 'ten'",
            "`train.optimizer.name`: unknown optimizer 'adamm'"], load
    with pytest.raises(ConfigError) as e:  # given on the command line, the file's is gone
        checking.load_config(str(path), ["train.optimizer.name=adam"])
    assert "adamm" not in str(e.value)
    with pytest.raises(ManyErrors) as e:  # and a name given there is placed there
        checking.load_config(str(path), ["train.optimizer.name=nadamm"])
    unknown = e.value.errors[1]
    assert (unknown.where, unknown.line) == ("--set train.optimizer.name=nadamm", None)


@pytest.mark.parametrize("quiet", ["--quiet", "--json"])
def test_quiet_and_json_runs_still_print_their_warnings(tmp_path, quiet):
    from typer.testing import CliRunner

    from cnncli.cli.app import app

    cfg = write_config(tmp_path, epochs=1, batch_size=100)  # 256 images: 56 left over
    done = CliRunner().invoke(app, ["train", str(cfg), quiet])
    assert done.exit_code == 0, done.output
    warning = "256 training images make 2 batches of 100 an epoch: 56 (22%) wait"
    assert warning in done.stderr and "epoch 1/1" not in done.stderr
    if quiet == "--json":
        [said] = json.loads(done.stdout)["warnings"]
        assert said.startswith(warning)


def test_train_json_lists_the_datas_warnings_too(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from cnncli.cli.app import app

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (8, 8), np.uint8)).save(
                tmp_path / "photos" / label / f"{i}.png")
    (tmp_path / "photos" / "a" / "IMG_1.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (tmp_path / "run.yaml").write_text(f"""
model: {{input: [8, 8, 1], layers: [Flatten, {{Dense: {{units: $classes}}}}]}}
data: {{name: {tmp_path / "photos"}}}
train: {{epochs: 1, batch_size: 4}}
output: {{dir: {tmp_path / "runs"}}}
""")
    done = CliRunner().invoke(app, ["train", str(tmp_path / "run.yaml"), "--json"])
    assert done.exit_code == 0, done.output
    warned = json.loads(done.stdout)["warnings"]
    assert any(w.startswith("skipped 1 photo in formats cnncli cannot read") for w in warned)


def test_an_epochs_images_per_second_leave_its_validation_time_out(tmp_path):
    """`seconds` is the epoch's (validation included); images/s the training's own."""
    import csv

    path = write_config(tmp_path, epochs=1, batch_size=16)
    cfg = config.load(path)
    result = training.train(cfg, config_file=str(path))
    [row] = list(csv.DictReader(open(result.run / "history.csv")))
    record = RunMetrics.read(result.run)
    images = -(-record.dataset.train // 16) * 16  # every step's batch
    assert float(row["images_per_s"]) > 1.005 * images / float(row["seconds"])


@pytest.mark.parametrize("given,hint", [
    ("mnist_net", "'mnist_net' is a network, not a run config: a run config is a YAML file "
                  "such as configs/mnist.yaml, whose `model:` names the network (`model: "
                  "mnist_net`)"),
    ("nosuch.yaml", "check the path; a run config is a YAML file such as configs/mnist.yaml, "
                    "whose `model:` names the network")])
def test_a_missing_run_config_gets_a_hint_that_does_not_loop(tmp_path, given, hint):
    """`train nosuch.yaml` said to "use a built-in name", and `train mnist_net` then said
    the same: a network's name is not a run config."""
    result = cli("train", str(tmp_path / given) if given.endswith(".yaml") else given)
    assert result.returncode == 2
    assert f"Hint: {hint}" in " ".join(result.stderr.split())
