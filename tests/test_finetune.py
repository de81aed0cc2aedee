"""Fine-tuning a model of your own (`model.from` a run): where it is cut, what is frozen
in each stage, the switch between the stages, and resuming in either stage."""

import os
import signal
import textwrap

import numpy as np
import pytest
from trainkit import history_rows, make_npz, weights

from cnncli import config
from cnncli.errors import ConfigError
from cnncli.model import backbone, modelfile, spec
from cnncli.model.expand import expand
from cnncli.run import checking, finetune, transfer
from cnncli.run import train as training
from cnncli.run.callbacks import Interrupted

#: The source network: a convolution with batch normalisation, then a head.
SOURCE = """
model:
  name: src
  input: [8, 8, 1]
  classes: 3
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}
    - BatchNormalization
    - MaxPooling2D
    - Flatten
    - Dense: {units: 8, activation: relu}
    - Dropout: 0.1
    - Dense: {units: $classes, activation: softmax}
data: {name: DATA, validation_split: 0.2}
train: {epochs: 2, batch_size: 16, optimizer: {name: adam, learning_rate: 0.01}, seed: 1}
output: {dir: RUNS, name: src}
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained run of `SOURCE` (its BatchNormalization statistics have moved)."""
    folder = tmp_path_factory.mktemp("source")
    data = make_npz(folder)
    path = folder / "src.yaml"
    path.write_text(SOURCE.replace("DATA", str(data)).replace("RUNS", str(folder / "runs")))
    return training.train(config.load(path), config_file=str(path)).run


def write_finetune(folder, source, *, epochs=4, train="fine_tune: {after_epochs: 2, "
                   "learning_rate: 0.001}", model="", name="ft"):
    folder.mkdir(parents=True, exist_ok=True)
    data = make_npz(folder, seed=5)
    path = folder / f"{name}.yaml"
    path.write_text(f"model: {{from: {source}{model}}}\n"
                    f"data: {{name: {data}, validation_split: 0.2}}\n"
                    f"train:\n  epochs: {epochs}\n  batch_size: 16\n"
                    "  optimizer: {name: adam, learning_rate: 0.01}\n"
                    "  backup_every: 1000\n  seed: 3\n"
                    + textwrap.indent(train, "  ") + "\n"
                    f"output: {{dir: {folder / 'runs'}, name: {name}}}\n")
    return path


def run_train(path, **kw):
    return training.train(config.load(path), config_file=str(path), **kw)


def layer_weights(model) -> dict:
    """Each layer's weights (nested layers by their path), copied."""
    return {path: [np.array(w) for w in layer.get_weights()]
            for path, layer in backbone.leaf_layers(model)}


# -------------------------------------------------------------------- the network


def test_the_default_cut_is_the_last_pooling_before_flatten_and_the_head_is_rebuilt(source):
    s = spec.from_run_config(config.parse({"model": {"from": str(source)}}), classes=5)
    nodes = expand(s).nodes
    assert [(n.name, n.layer) for n in nodes] == [
        ("src", "Pretrained"), ("flatten1", "Flatten"), ("fc1", "Dense"),
        ("dropout1", "Dropout"), ("fc2", "Dense")]
    assert nodes[0].args == {"model": str(source), "cut": "pool1"}
    assert nodes[2].args == {"units": 8, "activation": "relu"}
    assert nodes[3].args == {"rate": 0.1}
    assert nodes[4].args == {"units": 5, "activation": "softmax"}
    assert (s.input, s.preprocessing) == ([8, 8, 1], "scale")


def test_a_nested_network_followed_by_flatten_is_cut_at_and_keeps_its_outputs(tmp_path):
    """A run whose backbone (a nested model) comes right before Flatten: the cut takes
    the backbone's output in the run's graph (its own `.output` is not connected)."""
    from cnncli.runtime import import_keras

    keras = import_keras()
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 3, name="c")(inner_in), name="bb")
    outer_in = keras.Input((8, 8, 3))
    head = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inner(outer_in)))
    modelfile.save_model_atomic(keras.Model(outer_in, head), tmp_path / "nested.keras")
    x = np.random.default_rng(0).random((2, 8, 8, 3), np.float32)
    for cut in (None, "bb"):
        args = {"model": str(tmp_path / "nested.keras")} | ({"cut": cut} if cut else {})
        cut_model = backbone.build(args, (8, 8, 3), "src")
        np.testing.assert_allclose(cut_model(x), inner(x), rtol=1e-6)


def test_cut_chooses_another_layer(source):
    s = spec.from_run_config(config.parse({"model": {"from": str(source), "cut": "fc1"}}),
                             classes=5)
    assert [n.name for n in expand(s).nodes] == ["src", "dropout1", "fc2"]


def test_the_kept_layers_hold_the_source_weights(source):
    from cnncli.model import builder

    s = spec.from_run_config(config.parse({"model": {"from": str(source)}}), classes=5)
    ours = layer_weights(builder.build(s))
    theirs = layer_weights(modelfile.load_model(source / "best.keras"))
    for name in ("conv1_1", "batch_normalization1"):
        for a, b in zip(ours[f"src/{name}"], theirs[name], strict=True):
            np.testing.assert_array_equal(a, b)


def test_the_folder_of_a_runs_name_starts_from_its_latest_run(source):
    """`from: runs/src`, as `cnncli evaluate runs/src` takes it."""
    from cnncli.model import builder

    assert source.parent.name == "src" and (source.parent / "latest").exists()
    s = spec.from_run_config(config.parse({"model": {"from": str(source.parent)}}), classes=5)
    ours = layer_weights(builder.build(s))
    theirs = layer_weights(modelfile.load_model(source / "best.keras"))
    for a, b in zip(ours["src/conv1_1"], theirs["conv1_1"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_run_started_from_a_runs_name_folder_records_the_run_it_meant(source):
    """A resume, or a summary of the run, starts from that run, not from a later one
    whose training moved the `latest` link since."""
    from cnncli.run import plan as planning

    cfg = config.parse({"model": {"from": str(source.parent)}, "data": {"name": "mnist"}})
    planning.absolute_paths(cfg)
    assert cfg.start_from.from_ == str(source.resolve())


def test_a_from_section_is_saved_as_written_and_read_back_alike():
    """The run's config.yaml holds the keys the user gave (no nulls for the rest), and
    reading it again (resume, evaluate) gives the same typed section."""
    cfg = config.parse({"model": {"from": "mobilenet_v2", "classes": 3},
                        "data": {"name": "mnist"}})
    assert cfg.resolved()["model"] == {"from": "mobilenet_v2", "classes": 3}
    assert config.parse(cfg.resolved()).start_from == cfg.start_from


@pytest.mark.parametrize("model", [{"classes": 10}, {"input": [32, 32, 3]}])
def test_a_model_mapping_without_from_is_an_inline_spec_said_to_lack_layers(model):
    """Not a `from:` section with nothing to start from (that was a bug's traceback)."""
    from cnncli.run import checking

    with pytest.raises(ConfigError, match="layers"):
        checking.dry_run(config.parse({"model": model, "data": {"name": "mnist"}}), None)


def test_a_runs_config_written_before_the_section_was_typed_reads_back_alike(tmp_path):
    """Runs of before 2026-12-07 saved every key of `model:` (nulls too): a resume or an
    evaluation of them reads the same section, and the file is still as the run wrote."""
    from cnncli import yamlio
    from cnncli.config import digest_of

    doc = {"model": {"from": "mobilenet_v2", "classes": None, "input": None,
                     "weights": "none", "cut": None, "dropout": None},
           "data": {"name": "mnist"}}
    path = tmp_path / "config.yaml"
    path.write_text(yamlio.dumps({**doc, "digest": digest_of(doc)}))
    section = config.load_run_config(path).start_from
    assert (section.from_, section.weights, section.classes) == ("mobilenet_v2", "none", None)


def test_parsing_a_runs_saved_config_leaves_the_callers_mapping_whole():
    """`parse` took the `digest` out of the dict it was given (a notebook's own)."""
    doc = {"model": "mnist_net", "data": {"name": "mnist"}, "digest": "0123"}
    config.parse(doc)
    assert doc["digest"] == "0123"


def test_a_config_built_in_python_gets_its_from_mapping_checked_and_typed():
    cfg = config.RunConfig(model={"from": "mobilenet_v2", "weights": "none"})
    assert cfg.start_from.from_ == "mobilenet_v2" and cfg.resolved()["model"] == {
        "from": "mobilenet_v2", "weights": "none"}


def test_a_model_of_another_type_is_one_error_not_one_per_form():
    with pytest.raises(ConfigError) as e:
        config.parse({"model": 5})
    assert str(e.value) == ("`model`: should be a built-in name or a spec file (text), or a "
                            "mapping: `from:` a network, or an inline spec, got 5")


def test_a_weights_file_given_by_a_relative_path_is_recorded_absolute(tmp_path, monkeypatch):
    """--weights mine.weights.h5: a resume from another folder must find it too."""
    from cnncli.run import plan as planning

    monkeypatch.chdir(tmp_path)
    cfg = config.parse({"model": {"from": "mobilenet_v2", "weights": "mine.weights.h5"},
                        "data": {"name": "mnist"}})
    planning.absolute_paths(cfg)
    assert cfg.start_from.weights == str(tmp_path / "mine.weights.h5")


def test_a_model_with_no_layer_to_cut_at_is_refused_before_the_run_folder(tmp_path):
    from cnncli.model import builder
    from cnncli.model.modelfile import save_model_atomic

    linear = builder.build(spec.load("linear"))
    save_model_atomic(linear, tmp_path / "linear.keras")
    path = write_finetune(tmp_path, tmp_path / "linear.keras", train="")
    with pytest.raises(ConfigError, match="no convolution or pooling layer before its "
                                          "fully-connected layers to cut at"):
        run_train(path)
    assert not (tmp_path / "runs").exists()


def test_an_unknown_cut_says_which_layers_there_are(source, tmp_path):
    path = write_finetune(tmp_path, source, model=", cut: pool", train="")
    with pytest.raises(ConfigError, match="cannot cut .* at 'pool'.*did you mean 'pool1'"):
        checking.check(str(path))


def test_an_image_size_other_than_the_models_input_is_refused_not_ignored(source, tmp_path):
    path = write_finetune(tmp_path, source, train="")
    path.write_text(path.read_text().replace("validation_split: 0.2", "validation_split: "
                                             "0.2, image_size: [16, 16]"))
    with pytest.raises(ConfigError, match=r"`data.image_size`: the model of .* takes 8x8 "
                                          r"images.*Hint: remove `data.image_size`"):
        checking.check(str(path))
    with pytest.raises(ConfigError, match="`data.image_size`"):
        run_train(path)
    assert not (tmp_path / "runs").exists()
    path.write_text(path.read_text().replace("[16, 16]", "[8, 8]"))  # the same size: fine
    assert checking.check(str(path)).warnings == []


# -------------------------------------------------------------------- freezing


def test_freeze_names_that_match_no_layer_are_refused_before_the_run_folder(source,
                                                                            tmp_path):
    path = write_finetune(tmp_path, source, train="freeze: [conv1_2]")
    with pytest.raises(ConfigError, match="no layer is named 'conv1_2'.*did you mean "
                                          "'conv1_1'"):
        run_train(path)
    assert not (tmp_path / "runs").exists()


def test_check_reports_a_fine_tune_that_would_never_start_with_its_line(source, tmp_path):
    path = write_finetune(tmp_path, source, epochs=2)
    with pytest.raises(ConfigError, match=r"ft.yaml:\d+: `train.fine_tune.after_epochs` \(2\) "
                                          r"is not below the number of epochs \(2\)"):
        checking.check(str(path))


def test_fine_tune_needs_something_frozen(source, tmp_path):
    path = write_finetune(tmp_path, source, train="freeze: none\nfine_tune: "
                                                  "{after_epochs: 1}")
    with pytest.raises(ConfigError, match="freezes none"):
        checking.check(str(path))


def test_freeze_by_number_and_prefix_and_unfreeze_from_a_layer(source):
    from cnncli.model import builder

    s = spec.from_run_config(config.parse({"model": {"from": str(source)}}), classes=3)
    model = builder.build(s)
    assert transfer.frozen_paths(model, 2) == ["src/conv1_1", "src/batch_normalization1"]
    assert transfer.frozen_paths(model, ["src/", "fc1"]) == [
        "src/conv1_1", "src/batch_normalization1", "src/pool1", "fc1"]
    frozen = transfer.frozen_paths(model, "backbone")
    ft = config.FineTuneSection(after_epochs=1, unfreeze="conv1_1")
    assert transfer.unfrozen_paths(model, frozen, ft) == ["src/conv1_1"]  # BN stays frozen


@pytest.mark.parametrize("freeze", [20, 7])
def test_freezing_too_many_layers_says_how_many_may_be_frozen(freeze):
    """`freeze: 20` on the lecture's ConvNet said "freeze at most 7", and 7 was refused
    ("nothing would learn") with a hint of `freeze: backbone`, which it has not."""
    from cnncli.model import architectures, builder

    model = builder.build(spec.load(architectures.resolve("mnist_net")))
    [error] = transfer.problems(config.TrainSection(freeze=freeze), model, 5)
    assert error.hint == "freeze at most 6 (the layers before fc2, which must learn)"
    assert transfer.problems(config.TrainSection(freeze=6), model, 5) == []


def test_a_bad_freeze_does_not_hide_the_fine_tunings_own_problems(source):
    """Two freeze names that match nothing (one given twice: said once), an unfreeze name
    that matches nothing and a second stage that would never start: four problems, said
    at once; a prefix is answered with a prefix."""
    from cnncli.model import builder

    model = builder.build(spec.from_run_config(config.parse({"model": {"from": str(source)}}),
                                               classes=3))
    ft = config.FineTuneSection(after_epochs=3, unfreeze="conv1_2")
    train = config.TrainSection(epochs=3, freeze=["batch_norm_", "fc9", "fc9"], fine_tune=ft)
    errors = transfer.problems(train, model, 3)
    assert [(e.message, e.hint) for e in errors] == [
        ("`train.freeze`: no layer is named 'batch_norm_' or starts with it",
         "did you mean 'batch_norma'?"),
        ("`train.freeze`: no layer is named 'fc9' or starts with it", "did you mean 'fc2'?"),
        ("`train.fine_tune.after_epochs` (3) is not below the number of epochs (3): the "
         "fine-tuning stage would never start",
         "train for more epochs than 3, or unfreeze sooner"),
        ("`train.fine_tune.unfreeze`: no layer is named 'conv1_2'", "did you mean 'conv1_1'?")]


def test_a_second_stage_after_the_runs_last_step_says_the_steps_that_made_its_epochs(source):
    """With `train.steps`, the epochs are the steps' doing: the error says so and how many
    steps would reach the second stage; with `--epochs`, it names the option."""
    from cnncli.model import builder

    model = builder.build(spec.from_run_config(config.parse({"model": {"from": str(source)}}),
                                               classes=3))
    ft = config.FineTuneSection(after_epochs=3)
    train = config.TrainSection(steps=20, fine_tune=ft, freeze="backbone")
    [error] = transfer.problems(train, model, 2, steps_per_epoch=10)
    assert (error.message, error.hint) == (
        "`train.fine_tune.after_epochs` (3) is not below the run's 2 epochs (`train.steps: "
        "20` at 10 steps an epoch): the fine-tuning stage would never start",
        "train for more than 30 steps, or unfreeze sooner")
    train = config.TrainSection(epochs=2, fine_tune=ft, freeze="backbone")
    [error] = transfer.problems(train, model, 2, set_by={"train.epochs": "--epochs 2"})
    assert "not below the number of epochs (2, given by --epochs 2)" in error.message


def test_unfreezing_only_layers_without_weights_is_refused(source):
    """After the last BatchNormalization only a pooling layer is left: it learns nothing,
    so the second stage would train nothing new."""
    from cnncli.model import builder

    s = spec.from_run_config(config.parse({"model": {"from": str(source)}}), classes=3)
    model = builder.build(s)
    frozen = transfer.frozen_paths(model, "backbone")
    ft = config.FineTuneSection(after_epochs=1, unfreeze="batch_normalization1")
    assert transfer.unfrozen_paths(model, frozen, ft) == []  # src/pool1 has no weights
    train = config.TrainSection(epochs=3, fine_tune=ft)
    [error] = transfer.problems(train, model, 3)
    assert "unfreezes no layer with weights" in error.message


def test_check_and_summary_show_what_the_first_stage_freezes(source, tmp_path):
    from cnncli.model import summary

    path = write_finetune(tmp_path, source)
    checked = checking.check(str(path))
    frozen = [p for p, layer in backbone.leaf_layers(checked.model) if not layer.trainable]
    assert frozen == ["src/conv1_1", "src/batch_normalization1", "src/pool1"]
    s = summary.summarize(checking.build(str(path)))
    row = s.rows[1]
    assert (row.layer, row.volume, row.frozen, row.trainable) == ("SRC", "4x4x4", 56, 0)
    assert s.frozen_params == 56 and s.trainable_params == s.params - 56
    expanded = summary.summarize(checking.build(str(path)), expand=True)
    assert [r.name for r in expanded.rows[1:4]] == [
        "src/conv1_1", "src/batch_normalization1", "src/pool1"]



def test_summary_of_a_network_cut_from_a_run_reads_none_of_its_weights_and_check_once(
        source, tmp_path, monkeypatch):
    # summary shows layers and shapes: a large model's weights would only cost time and
    # memory; check reads them once, to refuse what training would (see below)
    from cnncli.model import summary

    loads = []
    real = modelfile.keras.saving.load_model
    monkeypatch.setattr(modelfile.keras.saving, "load_model",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    path = write_finetune(tmp_path, source)
    assert summary.summarize(checking.build(str(path))).frozen_params == 56
    assert loads == []
    assert checking.check(str(path)).model.count_params() > 0
    assert len(loads) == 1



def test_check_still_refuses_a_model_file_whose_weights_do_not_fit_its_layers(source,
                                                                              tmp_path):
    # summary reads only the layers; training reads the weights too, so check does
    import json
    import zipfile

    from cnncli.errors import ModelError

    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(source / "best.keras") as old, \
            zipfile.ZipFile(edited, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == "config.json":  # a 5x5 kernel where the weights are 3x3
                data = json.dumps(json.loads(data)).replace('"kernel_size": [3, 3]',
                                                            '"kernel_size": [5, 5]')
            new.writestr(item, data)
    path = write_finetune(tmp_path / "ft", edited)
    summary_rows = checking.build(str(path)).model.count_params()
    assert summary_rows > 0  # the layers alone are fine to show
    with pytest.raises(ModelError) as err:
        checking.check(str(path))
    assert "edited.keras" in str(err.value) and "variable.shape=(5, 5, 1, 4)" in str(err.value)


# -------------------------------------------------------------------- the two stages


def test_frozen_weights_and_statistics_stay_as_loaded_and_the_rest_learns(source, tmp_path,
                                                                          monkeypatch):
    """Stage 1: the cut layers (BatchNormalization's moving mean and variance included)
    are bit-identical to the source's, the head learned; stage 2: the convolution learns,
    the BatchNormalization statistics still have not moved."""
    seen = {}
    real_prepare, real_switch = transfer.prepare, finetune._switch

    def prepare(model, found, stage=0):
        real_prepare(model, found, stage)
        seen["start"] = layer_weights(model)

    def switch(p, model):
        seen["stage 1"] = layer_weights(model)
        real_switch(p, model)

    monkeypatch.setattr(transfer, "prepare", prepare)
    monkeypatch.setattr(finetune, "_switch", switch)
    run = run_train(write_finetune(tmp_path, source)).run
    loaded = layer_weights(modelfile.load_model(source / "best.keras"))
    end = layer_weights(modelfile.load_model(run / "model.keras"))
    for name in ("conv1_1", "batch_normalization1"):
        for a, b in zip(seen["stage 1"][f"src/{name}"], loaded[name], strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(seen["stage 1"]["fc1"], seen["start"]["fc1"], strict=True):
        assert not np.array_equal(a, b)
    for a, b in zip(end["src/conv1_1"], loaded["conv1_1"], strict=True):
        assert not np.array_equal(a, b)
    for a, b in zip(end["src/batch_normalization1"], loaded["batch_normalization1"],
                    strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory):
    """The fine-tuning run of `write_finetune`: 2 epochs in each stage; `said`: what its
    reporter was told, ("note" or "info", text)."""
    said = []

    class Said(training.Reporter):
        def note(self, text):
            said.append(("note", text))

        def info(self, text):
            said.append(("info", text))

    result = run_train(write_finetune(tmp_path_factory.mktemp("reference"), source),
                       reporter=Said())
    result.said = said
    return result


def test_history_and_progress_lines_show_the_stage(uninterrupted):
    from cnncli.cli import render

    result = uninterrupted
    assert [r["stage"] for r in history_rows(result.run)] == ["1", "1", "2", "2"]
    assert [r["stage"] for r in result.history] == [1, 1, 2, 2]
    assert render.epoch_line(result.history[2], 4).startswith("epoch 3/4  stage 2  ")
    rates = [round(r["learning_rate"], 6) for r in result.history]
    assert rates == [0.01, 0.01, 0.001, 0.001]
    # the second stage is said as news, not as a warning
    assert [kind for kind, text in result.said if text.startswith("stage 2 from epoch 3: ")
            ] == ["info"]


def test_a_run_early_stopping_ends_in_the_first_stage_records_nothing_unfrozen(source,
                                                                              tmp_path):
    # no epoch improves val_loss by 1000: the run stops after epoch 2, before stage 2
    result = run_train(write_finetune(tmp_path, source, train="fine_tune: {after_epochs: "
                                      "2, learning_rate: 0.001}\nearly_stopping: "
                                      "{patience: 1, min_delta: 1000}"))
    assert result.metrics.epochs == 2 and result.metrics.stopped_early
    found = result.metrics.transfer
    assert found["unfrozen_layers"] == 0 and found["fine_tuned_from_epoch"] is None
    assert found["fine_tune"]["after_epochs"] == 2  # what was asked, still said


def test_the_training_line_says_the_second_stage_before_it_starts(source, tmp_path):
    from cnncli.cli import render
    from cnncli.run import plan as planning
    from cnncli.text import count

    p = planning.plan(config.load(write_finetune(tmp_path, source)))
    assert render.training_line(p).endswith(
        f"(batch 16); stage 2 from epoch 3: {count(len(p.transfer.unfrozen), 'more layer')} "
        "trained, learning rate 0.001")


def test_metrics_json_and_the_model_file_record_what_it_started_from(source, uninterrupted):
    result = uninterrupted
    found = result.metrics.transfer
    assert found["backbone"] == str(source) and found["freeze"] == "backbone"
    assert found["frozen_layers"] == 3 and found["unfrozen_layers"] == 1  # not pool1: no weights
    assert found["fine_tuned_from_epoch"] == 3
    assert found["fine_tune"] == {"after_epochs": 2, "unfreeze": "all",
                                  "learning_rate": 0.001}
    import hashlib

    [record] = found["weights"]
    assert record["file"] == str(source / "best.keras") and record["cut"] == "pool1"
    assert record["sha256"] == hashlib.sha256((source / "best.keras").read_bytes()).hexdigest()
    meta = modelfile.read_meta(result.run / "model.keras")
    assert meta.backbone == str(source) and meta.input == (8, 8, 1)


class StopAt(training.Reporter):
    """Sends this process SIGINT at a step of an epoch (0-based), or at an epoch's end."""

    def __init__(self, epoch, step=None):
        self.at, self.step_at, self.epoch, self.sent = epoch, step, None, False

    def _stop(self):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    def epoch_begin(self, epoch, epochs, steps, first_step):
        self.epoch = epoch

    def step(self, step, logs):
        if self.step_at is not None and self.epoch == self.at and step >= self.step_at:
            self._stop()

    def epoch_end(self, row):
        if self.step_at is None and row["epoch"] == self.at + 1:
            self._stop()


@pytest.mark.parametrize("epoch, step", [(1, 8), (1, None), (2, 8)],
                         ids=["in stage 1", "at the switch", "in stage 2"])
def test_a_run_interrupted_in_either_stage_resumes_to_the_uninterrupted_result(
        source, uninterrupted, tmp_path, epoch, step):
    path = write_finetune(tmp_path, source)
    with pytest.raises(Interrupted):
        run_train(path, reporter=StopAt(epoch, step))
    run = tmp_path / "runs" / "ft" / "1"
    assert len(history_rows(run)) == (epoch if step else epoch + 1)
    run_train(path, resume=run)
    assert history_rows(run) == history_rows(uninterrupted.run)
    for a, b in zip(weights(run), weights(uninterrupted.run), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_new_learning_rate_in_the_fine_tuning_stage_leaves_its_rate_and_says_so(source,
                                                                                   tmp_path):
    from types import SimpleNamespace

    from cnncli.run.state import TrainState
    from cnncli.runtime import import_keras

    keras = import_keras()
    cfg = config.load(write_finetune(tmp_path, source), ["train.optimizer.learning_rate=0.5"])
    p = SimpleNamespace(cfg=cfg, placement=SimpleNamespace(replicas=1, is_chief=False,
                                                           precision="float32"))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.001), "mse")  # the second stage's optimizer
    model.optimizer.build(model.trainable_variables)
    notes = []
    reporter = training.Reporter()
    reporter.note = notes.append
    training._apply(p, model, TrainState(stage=1),
                    {"train.optimizer.learning_rate": (0.01, 0.5)}, tmp_path, reporter)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.001)
    assert "(the fine-tuning stage goes on at train.fine_tune.learning_rate, 0.001)" in notes[0]


def test_resume_refuses_a_changed_fine_tune(source, tmp_path):
    path = write_finetune(tmp_path, source)
    with pytest.raises(Interrupted):
        run_train(path, reporter=StopAt(1, 8))
    changed = config.load(path, ["train.fine_tune.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="train.fine_tune.learning_rate"):
        training.train(changed, config_file=str(path), resume=tmp_path / "runs" / "ft" / "1",
                       force=True)
