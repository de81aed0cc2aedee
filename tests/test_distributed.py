"""Tests for cnncli.distributed: our own `fit`, on one process and on a real two-worker
cluster on localhost (two processes, each with its own TF_CONFIG).

Each worker of a cluster run calls `cnncli.run.train.train`, as `cnncli train` does.
Run as a script, this file is one worker (or the one-process reference run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import trainkit  # noqa: E402

from cnncli.errors import CnnError  # noqa: E402
from cnncli.runtime import import_keras  # noqa: E402

HERE = Path(__file__).resolve()
TIMEOUT = 300  # seconds for one cluster run (another test process may run beside it); a hung
# collective must not hang the suite
LIMIT = 245  # 196 training images: 12 steps of 16; 49 validation ones: a last batch of 1

# --------------------------------------------------------------------------- #
# What the worker processes run (python tests/test_distributed.py ...)
# --------------------------------------------------------------------------- #


def _load_config(path: str, overrides: list[str] = ()):
    from cnncli import config

    return config.load(path, [f"data.limit={LIMIT}", *overrides])


def _signal_at(at: list[int] | None):
    """A train.Reporter that sends SIGTERM to its own process after step (epoch, step)."""
    from cnncli.run import train

    class SignalAt(train.Reporter):
        epoch = None
        started = False

        def begin(self, plan, run, resumed):
            self.plan, self.run, self.started = plan, run, True

        def epoch_begin(self, epoch, epochs, steps, first_step):
            self.epoch = epoch

        def step(self, step, logs):
            if at and [self.epoch, step] == at:
                os.kill(os.getpid(), signal.SIGTERM)

    return SignalAt()


def _worker(args: dict) -> dict:
    """One worker of the cluster: `cnncli.run.train.train` as the CLI runs it."""
    import numpy as np

    from cnncli.devices import distributed, tf_layer
    from cnncli.run import train

    if "cpu_bf16" in args:  # this machine's CPU has bfloat16 units, or not
        tf_layer.cpu_bf16_units = lambda: args["cpu_bf16"]
    if "devices" in args:  # this machine trains on these (their count is what matters)
        real_decide = tf_layer.decide

        def decide(*a, **kw):
            placement = real_decide(*a, **kw)
            placement.devices = args["devices"]
            placement.replicas = placement.workers * len(args["devices"])
            return placement

        tf_layer.decide = decide
    cfg = _load_config(args["config"], args.get("set", []))
    cfg.output.name = args["name"]
    reporter = _signal_at(args.get("signal_at"))
    weights_file = Path(args["result"]).with_suffix(".weights.npz")
    fit_and_finish = train._fit_and_finish

    def keeping_the_weights(p, model, *rest, **kw):  # a worker's copy is removed after
        result = fit_and_finish(p, model, *rest, **kw)
        np.savez(weights_file, *model.get_weights())
        return result

    train._fit_and_finish = keeping_the_weights
    decoded = _log_decodes(reporter) if args.get("log_decodes") else []
    try:
        cfg.train.device = "cpu"
        done = train.train(cfg, config_file=args["config"], resume=args.get("resume"),
                           reporter=reporter)
        outcome = {"interrupted": None, "result_run": done.run and str(done.run),
                   "metrics_run": done.metrics.run, "task": done.task}
    except train.Interrupted as exc:
        outcome = {"interrupted": exc.signum, "hint": exc.hint}
    except CnnError as exc:
        return {"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__}
    run, p = reporter.run, reporter.plan
    backup = run / "backup.npz"
    if backup.is_file():
        with np.load(backup) as data:
            outcome["state"] = json.loads(bytes(data["state"]).decode())
    return {"run": str(run), "chief": distributed.is_chief(p.placement),
            "weights": str(weights_file) if weights_file.exists() else None,
            "backup": backup.is_file(),
            "status": json.loads((run / "state.json").read_text())["status"]
            if run.exists() else None,  # (a worker's copy of a finished run is removed)
            "describe": p.placement.describe(), "replicas": p.placement.replicas,
            "precision": p.placement.precision, "warnings": p.placement.warnings,
            "steps_per_epoch": p.steps_per_epoch, "decoded": decoded, **outcome}


def _log_decodes(reporter) -> list[str]:
    """The files the one decoder opens once training has begun (`reporter.started`)."""
    from cnncli.data import images

    decoded, real = [], images._decode

    def logged(source, *args, **kwargs):
        if reporter.started:
            decoded.append(str(source))
        return real(source, *args, **kwargs)

    images._decode = logged
    return decoded


def _reference(args: dict) -> dict:
    """One process, two logical CPUs mirrored, Keras' own model.fit: what two workers
    with one replica each must reproduce."""
    from cnncli import devices
    from cnncli.run import train
    from cnncli.runtime import import_keras, import_tf

    tf = import_tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    # The precision the workers' `--precision auto` agree on: one says its CPU has
    # bfloat16 units, the other that it has none (`cluster`)
    precision = "float32"
    mirrored = devices.Placement("mirrored", ["/cpu:0", "/cpu:1"], replicas=2,
                                 precision=precision)

    def setup(*args, **kwargs):
        import_keras().config.set_dtype_policy(precision)
        return mirrored

    devices.setup = setup
    cfg = _load_config(args["config"])
    cfg.output.name = "reference"
    return {"run": str(train.train(cfg, config_file=args["config"]).run)}


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    result = _worker(args) if argv[0] == "worker" else _reference(args)
    Path(args["result"]).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- #
# Helpers of the tests
# --------------------------------------------------------------------------- #


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_processes(commands: list[tuple[list[str], dict]], folder: Path) -> list[int]:
    """Start the commands together; kill them all if they are not done in TIMEOUT s."""
    procs = []
    for i, (command, env) in enumerate(commands):
        log = open(folder / f"process{i}.log", "w")
        procs.append((subprocess.Popen(command, env=env, stdout=log, stderr=log), log))
    deadline = time.monotonic() + TIMEOUT
    try:
        return [proc.wait(timeout=max(0.1, deadline - time.monotonic())) for proc, _ in procs]
    except subprocess.TimeoutExpired:
        pytest.fail(f"not done after {TIMEOUT} s (a hung collective?); logs in {folder}")
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def _log(folder: Path, i: int) -> str:
    return (folder / f"process{i}.log").read_text()[-3000:]


def run_cluster(folder: Path, config: Path, worker1: dict | None = None,
                **options) -> list[dict]:
    """Train on two workers (two processes on localhost); each worker's result.

    `options` go to both workers, `worker1` to worker 1 only."""
    folder.mkdir(parents=True)
    hosts = [f"localhost:{port}" for port in _free_ports(2)]
    commands = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        args = {"config": str(config), "result": str(folder / f"worker{index}.json"),
                "name": folder.name, **options}
        if index == 1:
            args.update(worker1 or {})
        commands.append(([sys.executable, str(HERE), "worker", json.dumps(args)], env))
    codes = _run_processes(commands, folder)
    for i, code in enumerate(codes):
        assert code == 0, f"worker {i} exited with {code}:\n{_log(folder, i)}"
    return [json.loads((folder / f"worker{i}.json").read_text()) for i in range(2)]


def run_reference(folder: Path, config: Path) -> Path:
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    args = {"config": str(config), "result": str(folder / "reference.json")}
    [code] = _run_processes([([sys.executable, str(HERE), "reference", json.dumps(args)],
                              env)], folder)
    assert code == 0, _log(folder, 0)
    return Path(json.loads((folder / "reference.json").read_text())["run"])


def final_weights(result: dict) -> list:
    """The weights a worker's model ended with (a worker's run folder is removed)."""
    with np.load(result["weights"]) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def assert_same_weights(a: list, b: list, atol: float = 0.0) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def history_floats(run: Path) -> list[dict]:
    return [{k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in trainkit.history_rows(run)]


def assert_same_history(run: Path, expected: Path, atol: float) -> None:
    rows, expected_rows = history_floats(run), history_floats(expected)
    assert len(rows) == len(expected_rows)
    for row, other in zip(rows, expected_rows, strict=True):
        assert row.keys() == other.keys()
        for key in row:
            assert row[key] == pytest.approx(other[key], abs=atol), (row["epoch"], key)


# --------------------------------------------------------------------------- #
# One process
# --------------------------------------------------------------------------- #


def _train_once(folder: Path, use_distributed: bool, steps_per_execution: int):
    from cnncli import config, devices
    from cnncli.devices import distributed
    from cnncli.run import train

    folder.mkdir()
    path = trainkit.write_config(folder, epochs=2)
    cfg = config.load(path, ["train.device=cpu"])
    p = train.plan(cfg, config_file=str(path))
    # set after `plan`, which refuses uneven executions for Keras' fit: this test drives
    # distributed.fit (and Keras' fit) directly
    p.steps_per_execution = steps_per_execution
    model = train.compile_model(p)
    t = p.cfg.train
    val = p.feed.validation(batch_size=t.batch_size, seed=t.seed,
                            preprocessing=p.preprocessing)
    batches = p.feed.training(batch_size=t.batch_size, seed=t.seed, epochs=2,
                              preprocessing=p.preprocessing)
    calls = []

    class Record(import_keras().callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("epoch_begin", epoch))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("batch_end", batch, round(logs["loss"], 5),
                          round(logs["accuracy"], 5)))

        def on_epoch_end(self, epoch, logs=None):
            calls.append(("epoch_end", epoch, {k: round(float(v), 5) for k, v in logs.items()}))

    kwargs = {"epochs": 2, "steps_per_epoch": p.steps_per_epoch, "validation_data": val,
              "callbacks": [Record()]}
    if use_distributed:
        distributed.fit(model, devices.strategy(p.placement), batches, **kwargs)
    else:
        model.fit(batches, shuffle=False, verbose=0, **kwargs)
    return model.get_weights(), calls


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_fit_under_default_strategy_matches_model_fit(tmp_path, steps_per_execution):
    keras_weights, keras_calls = _train_once(tmp_path / "keras", False, steps_per_execution)
    our_weights, our_calls = _train_once(tmp_path / "ours", True, steps_per_execution)
    assert_same_weights(our_weights, keras_weights, atol=1e-6)
    assert our_calls == keras_calls
    assert our_calls[-1][2].keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_last_execution_of_an_epoch_is_cut_to_the_epoch(tmp_path):
    # 16 steps per epoch, 5 per execution: 5, 5, 5, 1 (Keras 3.15's fit runs 5, 5, 5, 5).
    _, calls = _train_once(tmp_path / "ours", True, steps_per_execution=5)
    ends = [call[1] for call in calls if call[0] == "batch_end"]
    assert ends == [4, 9, 14, 15] * 2


def test_build_metrics_makes_the_variables_test_on_batch_makes():
    from cnncli.devices import distributed

    keras = import_keras()
    x, y = np.zeros((2, 8, 8, 1), "float32"), np.array([0, 2])

    def compiled():
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    by_keras, ours = compiled(), compiled()
    by_keras.test_on_batch(x, y)
    by_keras.reset_metrics()
    distributed.build_metrics(ours, x, y)

    def variables(model):
        return [(v.path, tuple(v.shape), float(np.sum(v.numpy())))
                for m in model.metrics for v in m.variables]

    assert variables(ours) == variables(by_keras)
    assert len(variables(ours)) == 4  # loss and accuracy: total and count each


def test_build_metrics_reports_an_unknown_metric_as_keras_does():
    from cnncli.devices import distributed

    keras = import_keras()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["acurracy"])
    with pytest.raises(ValueError, match="^Could not interpret metric identifier: acurracy"):
        distributed.build_metrics(model, np.zeros((1, 4), "float32"), np.zeros(1))


def test_fit_honours_stop_training_after_the_batch(tmp_path):
    from cnncli import config, devices
    from cnncli.devices import distributed
    from cnncli.run import train

    path = trainkit.write_config(tmp_path, epochs=2, extra_train="steps_per_execution: 1")
    p = train.plan(config.load(path, ["train.device=cpu"]), config_file=str(path))
    model = train.compile_model(p)
    batches = p.feed.training(batch_size=16, seed=1, epochs=2)
    seen = []

    class StopAtThree(import_keras().callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)
            if batch == 2:
                self.model.stop_training = True

    logs = distributed.fit(model, devices.strategy(p.placement), batches, epochs=2,
                           steps_per_epoch=p.steps_per_epoch, callbacks=[StopAtThree()])
    assert seen == [0, 1, 2]
    assert int(model.optimizer.iterations.numpy()) == 3
    assert "val_loss" not in logs  # an epoch cut short is not validated


# --------------------------------------------------------------------------- #
# Two workers on localhost
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A reference run, a two-worker run, and a two-worker run stopped by SIGTERM on
    worker 1 then resumed; run one after another (never more than two processes). Worker
    0's CPU has bfloat16 units, worker 1's has none."""
    root = tmp_path_factory.mktemp("cluster")
    config = trainkit.write_config(root, epochs=2, batch_size=8)
    units = {"cpu_bf16": True, "worker1": {"cpu_bf16": False}}
    out = {"reference": run_reference(root / "reference", config),
           "plain": run_cluster(root / "plain", config, **units),
           "stopped": run_cluster(root / "stopped", config, cpu_bf16=True,
                                  worker1={"signal_at": [1, 3], "cpu_bf16": False})}
    out["resumed"] = run_cluster(root / "resumed", config, **units,
                                 resume=out["stopped"][0]["run"], name="stopped")
    out["logs"] = [_log(root / "plain", i) for i in (0, 1)]
    yield out
    for name in ("plain", "stopped", "resumed"):  # the workers' temporary folders
        shutil.rmtree(out[name][1]["run"], ignore_errors=True)


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(cluster):
    chief, worker = cluster["plain"]
    assert chief["chief"] and not worker["chief"]
    assert_same_weights(trainkit.weights(Path(chief["run"])), final_weights(worker))
    assert_same_weights(final_weights(chief), final_weights(worker))  # (the harness's)


@pytest.mark.slow
def test_a_cluster_run_says_nothing_of_tensorflows_own_notes(cluster):
    """TensorFlow's note on reading a dataset's options, as it traces the validation
    loop, was a warning line of every run on several machines."""
    assert all("preserve tf.data options" not in log for log in cluster["logs"])


@pytest.mark.slow
def test_machines_whose_auto_precisions_differ_all_train_in_float32_and_say_so(cluster):
    chief, worker = cluster["plain"]
    assert chief["precision"] == worker["precision"] == "float32"
    said = ("precision auto chose float32 on some machines, mixed_bfloat16 on others: all "
            "train in float32; give --precision to choose one for all")
    assert chief["warnings"] == worker["warnings"] == [said]
    assert json.loads((Path(chief["run"]) / "metrics.json").read_text())["precision"] == \
        "float32"


@pytest.mark.slow
def test_two_workers_match_keras_fit_on_two_mirrored_replicas(cluster):
    chief = Path(cluster["plain"][0]["run"])
    reference = cluster["reference"]
    assert_same_weights(trainkit.weights(chief), trainkit.weights(reference), atol=1e-5)
    assert [r["epoch"] for r in history_floats(chief)] == [1.0, 2.0]
    assert_same_history(chief, reference, atol=1e-5)


@pytest.mark.slow
def test_chief_writes_the_run_and_the_worker_a_temporary_folder(cluster):
    chief, worker = (Path(r["run"]) for r in cluster["plain"])
    assert sorted(p.name for p in chief.parent.iterdir()) == ["1", "latest"]
    for name in ("config.yaml", "model.keras", "best.keras", "history.csv", "metrics.json",
                 "curves.png", "state.json"):
        assert (chief / name).is_file(), name
    assert json.loads((chief / "state.json").read_text())["status"] == "finished"
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["batch_size_is_per_replica"]
    assert cluster["plain"][0]["steps_per_epoch"] == 12  # 196 images, 2 x 8 a step
    assert metrics["device"].startswith("2 workers x CPU (multi-worker mirrored")
    assert worker.parent == Path(tempfile.gettempdir())
    assert worker.name.startswith("cnncli-worker1-")
    assert not worker.exists()  # a finished run's copy is nobody's record
    said = [(r["result_run"], r["metrics_run"], r["task"]) for r in cluster["plain"]]
    assert said == [(str(chief), str(chief.resolve()), ""),  # (--json's run)
                    (None, None, "worker 1")]  # the Done line's "worker 1's part"


@pytest.mark.slow
def test_sigterm_on_one_worker_stops_both_at_the_same_step(cluster):
    chief, worker = cluster["stopped"]
    assert chief["interrupted"] == signal.SIGTERM and worker["interrupted"] == signal.SIGTERM
    assert chief["state"]["epoch"] == worker["state"]["epoch"] == 1
    assert chief["state"]["step"] == worker["state"]["step"] == 4
    assert chief["backup"] and worker["backup"]
    assert chief["status"] == worker["status"] == "interrupted"
    assert chief["hint"] == f"resume with: cnncli train --resume {chief['run']}"
    assert worker["hint"] == "resume with: cnncli train --resume RUN (the chief's run " \
        "folder: every worker resumes from it)"  # not its own temporary folder


def write_folder_config(folder: Path) -> Path:
    """The toy data as PNG files in class folders, streamed: decoded as used, not cached,
    no validation part, so what each worker decodes is its part of the training batches."""
    from PIL import Image

    with np.load(trainkit.make_npz(folder, n_train=96, n_test=12)) as data:
        for i, (x, y) in enumerate(zip(data["x_train"], data["y_train"], strict=True)):
            (folder / "photos" / f"c{y}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[..., 0]).save(folder / "photos" / f"c{y}" / f"{i}.png")
    path = trainkit.write_config(folder, epochs=1, batch_size=8, name="folder")
    text = path.read_text().replace(f"name: {folder / 'toy.npz'}",
                                    f"name: {folder / 'photos'}\n  cache: none")
    path.write_text(text.replace("validation_split: 0.2", "validation_split: 0"))
    return path


@pytest.mark.slow
def test_two_workers_on_a_folder_decode_disjoint_halves_and_end_identical(tmp_path):
    config = write_folder_config(tmp_path)
    chief, worker = run_cluster(tmp_path / "cluster", config, log_decodes=True)
    try:
        steps = chief["steps_per_epoch"]  # of 2 x 8 images
        assert chief["replicas"] == 2 and steps >= 4
        for result in (chief, worker):  # each its half of every batch, each file once
            assert len(result["decoded"]) == len(set(result["decoded"])) == steps * 8
        assert not set(chief["decoded"]) & set(worker["decoded"])
        assert_same_weights(trainkit.weights(Path(chief["run"])), final_weights(worker))
    finally:
        shutil.rmtree(worker["run"], ignore_errors=True)


@pytest.mark.slow
def test_an_image_one_worker_cannot_decode_stops_every_worker_at_the_same_step(tmp_path):
    """`data.strict`: a file cut short (its header whole: it passes the check before
    training) fails when decoded, on whichever worker's part it falls; the other
    worker, which never saw it, stops at the same step (it trained on alone before)."""
    from cnncli import config as configs
    from cnncli.run import plan as planning

    config = write_folder_config(tmp_path)
    config.write_text(config.read_text().replace("cache: none", "cache: none\n  strict: true")
                      .replace("epochs: 1", "epochs: 3"))
    png = Path(planning.plan(configs.load(config)).feed.train.images[-1])  # a training
    png.write_bytes(png.read_bytes()[:60])  # image, not among the first (metrics' build)
    results = run_cluster(tmp_path / "cluster", config)
    stopped = [re.search(r"training stopped at (epoch \d+, step \d+)", r["error"])
               for r in results]
    assert [r["kind"] for r in results] == ["DataError", "DataError"], results
    assert stopped[0] and stopped[0][1] == stopped[1][1]
    assert sorted("1 image could not be decoded on other machines of the cluster" in
                  r["error"] for r in results) == [False, True]  # one saw it


@pytest.mark.slow
def test_machines_with_different_device_counts_both_refuse_naming_each(tmp_path):
    # TensorFlow's own replica count agrees with each machine's (its devices x machines):
    # only comparing the machines' counts finds this, on every machine, before training
    config = trainkit.write_config(tmp_path, epochs=1, batch_size=8)
    results = run_cluster(tmp_path / "cluster", config, devices=["/cpu:0"],
                          worker1={"devices": ["/cpu:0", "/cpu:1"]})
    for result in results:
        assert result["error"] == (
            "the machines of the cluster train on different numbers of devices (worker 0: "
            "1, worker 1: 2): each trains one replica a device, and every machine must "
            "train as many")
        assert "same number of GPUs" in result["hint"]


def test_what_each_machine_says_it_trains_leaves_out_what_is_its_own(tmp_path):
    from cnncli import config
    from cnncli.run import agreement
    from cnncli.run import plan as planning

    path = trainkit.write_config(tmp_path)
    p = planning.plan(config.load(path))
    said = agreement.what_is_trained(p, "as a new run")
    assert said["config"]["train.seed"] == 1 and said["data"] == p.feed.fingerprint()
    elsewhere = tmp_path / "elsewhere"  # another machine: its data and run elsewhere, read
    elsewhere.mkdir()  # without a cache, offline
    shutil.copy(tmp_path / "toy.npz", elsewhere / "toy.npz")
    other = planning.plan(config.load(path, [
        f"data.name={elsewhere / 'toy.npz'}", "data.cache=none", "data.offline=true",
        f"output.dir={elsewhere / 'runs'}"]))
    assert agreement.differences({"worker 0": said, "worker 1": agreement.what_is_trained(
        other, "as a new run")}) == []
    longer = planning.plan(config.load(path, ["train.epochs=5", "model.classes=4"]))
    assert agreement.differences({"worker 0": said, "worker 1": agreement.what_is_trained(
        longer, "as a new run")}) == [
        "the network differs (its layers, classes, input or pretrained weights): worker 0 "
        "builds one; worker 1 builds another", "`train.epochs` is 3 on worker 0 and 5 on "
        "worker 1"]


@pytest.mark.parametrize("started, again", [
    (True, "`cnncli train CONFIG --resume auto`"), (False, "the same command")])
def test_a_collective_whose_other_side_went_is_said_as_a_stopped_worker(started, again):
    """Mid-run, a backup may or may not have been written yet: --resume auto does either."""
    from cnncli.devices import distributed
    from cnncli.errors import TrainingError
    from cnncli.runtime import import_tf

    tf = import_tf()
    with pytest.raises(TrainingError) as stopped, distributed.peers_watched(started):
        raise tf.errors.UnavailableError(None, None, "task 1 unhealthy")
    assert stopped.value.message.startswith("training stopped because another worker")
    assert stopped.value.hint.startswith(f"see the other workers' logs, then start every "
                                         f"worker again with {again}")


def test_machines_that_start_differently_or_hold_other_images_are_told_apart():
    from cnncli.run import agreement

    same = {"train": 8, "validation": 2, "digest": "a"}
    records = {"worker 0": {"config": {"train.seed": 1}, "data": same,
                            "start": "resuming at epoch 2 (step 0)"},
               "worker 1": {"config": {"train.seed": 1}, "data": same | {"digest": "b"},
                            "start": "resuming at epoch 1 (step 30)"},
               "worker 2": {"config": {"train.seed": 1}, "data": same,
                            "start": "resuming at epoch 2 (step 0)"}}
    assert agreement.differences(records) == [
        "the data is as many images on each machine, but not the same images or labels: "
        "worker 0 and worker 2 hold one set; worker 1 holds another",
        'the machines start differently: "resuming at epoch 2 (step 0)" on worker 0 and '
        'worker 2 and "resuming at epoch 1 (step 30)" on worker 1']
    assert agreement.differences({t: records["worker 0"] for t in records}) == []


def test_a_worker_whose_port_is_taken_names_it_and_how_to_find_who_holds_it(tmp_path):
    config = trainkit.write_config(tmp_path, epochs=1, batch_size=8)
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TF_CONFIG": json.dumps({
            "cluster": {"worker": [f"localhost:{port}", "localhost:1"]},
            "task": {"type": "worker", "index": 0}})}
        result = subprocess.run([sys.executable, "-m", "cnncli", "train", str(config)],
                                env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 3, result.stderr
    assert f"Joining the cluster as worker 0 of 2 (localhost:{port}): training starts when " \
        "every worker of TF_CONFIG has started" in result.stderr  # (it would wait there)
    assert f"cannot join the TF_CONFIG cluster as worker 0 (localhost:{port})" in result.stderr
    assert f"another process may be using port {port} here" in result.stderr


@pytest.mark.slow
def test_machines_that_would_train_different_runs_all_refuse_naming_what_differs(tmp_path):
    """Another seed on one machine (another order of batches, other validation images)
    and another data file (one image more): said on every machine before anything is
    written; the place of the data and the run's name may differ."""
    config = trainkit.write_config(tmp_path, epochs=1, batch_size=8)
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(tmp_path / "toy.npz", other / "toy.npz")  # the same data, elsewhere
    results = run_cluster(tmp_path / "cluster", config, worker1={"set": [
        "train.seed=7", f"data.name={other / 'toy.npz'}", f"data.limit={LIMIT + 1}"]})
    for result in results:
        assert result["error"] == (
            "the machines of the cluster would not train the same run: `data.limit` is "
            f"{LIMIT} on worker 0 and {LIMIT + 1} on worker 1; `train.seed` is 1 on worker 0 "
            "and 7 on worker 1; the data has 196 training and 49 validation images on "
            "worker 0, 197 and 49 on worker 1")
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.slow
def test_machines_that_would_build_different_networks_refuse_before_building_them(tmp_path):
    """Building the model is done together (its first weights are sent to all): a
    network of another shape on one machine met a collective that failed instead."""
    config = trainkit.write_config(tmp_path, epochs=1, batch_size=8)
    for result in run_cluster(tmp_path / "cluster", config,
                              worker1={"set": ["model.classes=4"]}):
        assert result["error"] == (
            "the machines of the cluster would not train the same run: the network differs "
            "(its layers, classes, input or pretrained weights): worker 0 builds one; "
            "worker 1 builds another"), result


@pytest.mark.slow
def test_a_worker_that_cannot_read_its_data_is_said_by_the_others_as_a_stopped_worker(
        tmp_path):
    """Worker 1 stops at its data, after joining the cluster; the chief, building the
    model, waits on it in a collective that fails: that is another worker stopping, not
    a layer of the spec that cannot take its input."""
    config = trainkit.write_config(tmp_path, epochs=1, batch_size=8)
    chief, worker = run_cluster(tmp_path / "cluster", config, worker1={"set": [
        f"data.name={tmp_path / 'nothere.npz'}"]})
    assert worker["kind"] == "DataError"
    assert chief["kind"] == "TrainingError", chief
    assert chief["error"].startswith("training stopped because another worker of the "
                                     "cluster stopped or cannot be reached")


@pytest.mark.slow
def test_resumed_two_worker_run_matches_the_uninterrupted_one(cluster):
    chief, worker = cluster["resumed"]
    assert chief["run"] == cluster["stopped"][0]["run"]  # the chief continues its run
    assert worker["run"] != cluster["stopped"][1]["run"]
    plain = Path(cluster["plain"][0]["run"])
    assert_same_weights(trainkit.weights(Path(chief["run"])), trainkit.weights(plain))
    assert_same_weights(final_weights(worker), trainkit.weights(plain))
    assert_same_history(Path(chief["run"]), plain, atol=1e-6)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
