"""`cnncli evaluate`: figures people can read, JSON scripts can check, and --fail-under."""

import json
import os
import subprocess
import sys
from pathlib import Path

import catalogue_files as cf
import numpy as np
import pytest
from trainkit import write_config

from cnncli import config
from cnncli.data import datasets
from cnncli.data.dataset import DataWarning
from cnncli.errors import ConfigError, DataError, ModelError
from cnncli.infer import artefact
from cnncli.infer import evaluate as evaluation
from cnncli.run import train as training


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    path = write_config(folder, epochs=3)
    return training.train(config.load(path), config_file=str(path)).run


def cnncli(*args):
    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True)


def test_a_run_whose_data_moved_is_told_to_give_its_new_place_with_data(tmp_path):
    """In a command to copy: the run's folder quoted, as it has a space."""
    tmp_path = tmp_path / "my runs"
    tmp_path.mkdir()
    path = write_config(tmp_path, epochs=1)
    run = training.train(config.load(path), config_file=str(path)).run
    (tmp_path / "toy.npz").rename(tmp_path / "moved.npz")
    with pytest.raises(DataError, match="the data this run trained on is no longer at") as e:
        evaluation.evaluate(run)
    assert e.value.hint == f"if it moved, give its new place: cnncli evaluate '{run}' " \
                           "--data NEW_PLACE"
    assert evaluation.evaluate(run, data=str(tmp_path / "moved.npz")).result.count == 60


def test_evaluates_the_runs_test_split_with_its_best_model(run):
    rep = evaluation.evaluate(run)
    assert rep.model.endswith("best.keras")
    assert rep.result.count == 60 and rep.result.accuracy > 0.8
    assert rep.result.loss is not None and rep.result.top5_accuracy is None  # 3 classes
    assert len(rep.result.confusion) == 3


def test_a_model_giving_raw_scores_has_no_loss_nor_confidences_and_says_so(tmp_path):
    import warnings

    from trainkit import SPEC

    path = write_config(tmp_path, epochs=1, spec=SPEC.replace(", activation: softmax", ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the build's own warning about the output
        run = training.train(config.load(path), config_file=str(path)).run
    rep = evaluation.evaluate(run, fail_under=["loss=100"])
    assert rep.result.loss is None and rep.result.misclassified == []
    assert any(note.endswith("does not give probabilities (its last layer has no softmax): "
                             "the figures are by its highest score, with no loss and no "
                             "worst mistakes (they are ranked by confidence); end the model "
                             "with `activation: softmax`") for note in rep.notes)
    assert rep.failures == ["loss was not measured (no value was computed)"]
    assert 0 <= rep.result.accuracy <= 1


def test_writes_the_confusion_matrix_and_the_worst_mistakes(run):
    rep = evaluation.evaluate(run)
    assert (run / "confusion.png").exists() and (run / "evaluation.json").exists()
    assert set(rep.files) >= {"confusion_matrix", "evaluation"}


def test_evaluation_json_says_which_model_and_precision_gave_its_figures(run):
    rep = evaluation.evaluate(run, precision="float32")
    saved = json.loads((run / "evaluation.json").read_text())
    assert (saved["model"], saved["precision"], saved["notes"]) == (rep.model, "float32",
                                                                    rep.notes)
    assert saved["accuracy"] == rep.result.accuracy


def test_latest_link_and_model_file_work_too(run):
    assert evaluation.evaluate(run.parent / "latest").result.count == 60
    data = artefact.resolve(run).data.name
    rep = evaluation.evaluate(run / "model.keras")  # the file knows its dataset
    assert rep.result.count == 60 and data.endswith("toy.npz")


def test_the_runs_own_model_file_is_evaluated_as_the_run_writing_into_it(run):
    rep = evaluation.evaluate(run.parent / "latest" / "best.keras")
    assert Path(rep.files["evaluation"]).parent == run  # as `cnncli evaluate RUN` writes
    assert not any("--output" in note for note in rep.notes)
    other = evaluation.evaluate(run / "model.keras")  # not the model the run evaluates
    assert other.files == {} and "model.keras is not the model of its run (best.keras is): " \
        "confusion.png, misclassified.png and evaluation.json are written only with " \
        "--output DIR" in other.notes


def test_json_output(run):
    result = cnncli("evaluate", str(run), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"accuracy", "loss", "per_class", "confusion", "most_confused",
            "misclassified"} <= set(data)


def test_fail_under_exits_1_when_a_figure_is_below(run):
    ok = cnncli("evaluate", str(run), "--fail-under", "accuracy=0.5")
    below = cnncli("evaluate", str(run), "--fail-under", "accuracy=0.5",
                   "--fail-under", "loss=0.0001")  # loss: at most
    assert ok.returncode == 0, ok.stderr
    assert below.returncode == 1
    assert "FAIL: loss" in below.stderr and "FAIL: accuracy" not in below.stderr
    # a check list: a threshold met is said as well (it said nothing when all passed)
    assert "PASS: accuracy" in ok.stderr and "is at least 0.5" in ok.stderr
    assert "PASS: accuracy" in below.stderr and "PASS: loss" not in below.stderr


def test_unknown_threshold_is_a_usage_error(run):
    with pytest.raises(ConfigError, match="accurcy"):
        evaluation.evaluate(run, fail_under=["accurcy=0.9"])


def test_a_dataset_with_more_classes_than_the_model_is_refused(run, tmp_path):
    import numpy as np

    path = tmp_path / "five.npz"
    x = np.zeros((10, 8, 8, 1), np.uint8)
    y = np.arange(10) % 5
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(DataError, match="5 classes but the model predicts 3"):
        evaluation.evaluate(run, data=str(path))
    with pytest.raises(DataError, match="5 classes but the model predicts 3"):
        evaluation.evaluate(run, data=str(path), output=tmp_path / "new" / "evals")
    with pytest.raises(DataError, match="neither a dataset name"):
        evaluation.evaluate(run, data=str(tmp_path / "no-such-data"))
    assert sorted(p.name for p in run.iterdir()) == before  # no empty eval-five.npz/
    assert not (tmp_path / "new").exists()


def test_a_data_error_names_the_folder_given_not_its_description(run, tmp_path):
    from PIL import Image

    for name in "abcd":
        (tmp_path / "photos" / name).mkdir(parents=True)
        for k in range(2):
            Image.new("L", (8, 8)).save(tmp_path / "photos" / name / f"{k}.png")
    with pytest.raises(DataError, match="4 classes but the model predicts 3") as info:
        evaluation.evaluate(run, data=str(tmp_path / "photos"))
    assert info.value.file == str(tmp_path / "photos")  # not "... (class folders, streamed)"


def test_more_classes_than_the_model_names_the_ones_it_does_not_know(run, tmp_path):
    cf.image_folder(tmp_path / "four", {"0": 2, "1": 2, "2": 2, "bird": 2})
    with pytest.raises(DataError) as err:
        evaluation.evaluate(run, data=str(tmp_path / "four"), all_images=True)
    assert "the data has 4 classes but the model predicts 3: 'bird' is not among the " \
           "model's classes" in str(err.value)
    assert "name the class folders (or a CSV's labels) the same" in err.value.hint


def test_an_unknown_class_is_named_as_its_folder_is_and_escaped_once(run, tmp_path):
    """A Latin-1 folder's name read 'lat\\\\xe9' (escaped twice), a Mac's 'é' composed."""
    import unicodedata

    latin, mac = os.fsdecode(b"lat\xe9"), unicodedata.normalize("NFD", "café")
    cf.image_folder(tmp_path / "odd", {"0": 2, latin: 2, mac: 2})
    with pytest.raises(DataError) as err:
        evaluation.evaluate(run, data=str(tmp_path / "odd"), all_images=True)
    assert err.value.message.endswith(f"'{mac}', 'lat\\xe9' are not among the model's "
                                      "classes")


def test_an_npz_of_other_class_names_gets_a_hint_about_its_class_names(run, tmp_path):
    import numpy as np

    path = tmp_path / "named.npz"
    x, y = np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1])
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=["cat", "dog"])
    with pytest.raises(DataError, match="'cat', 'dog' are not among") as err:
        evaluation.evaluate(run, data=str(path), output=tmp_path / "e")
    assert "class_names array" in err.value.hint and "folders" not in err.value.hint


def test_a_test_set_of_some_classes_averages_over_those_and_says_so(run, tmp_path):
    import numpy as np

    path = tmp_path / "top-and-bottom.npz"
    x = np.zeros((6, 8, 8, 1), np.uint8)
    y = np.array([0, 0, 0, 2, 2, 2])
    x[:3, 1:3], x[3:, 7:9] = 240, 240  # the toy data's classes 0 and 2: a bright row
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    result = cnncli("evaluate", str(run), "--data", str(path), "--output", str(tmp_path / "e"))
    assert result.returncode == 0, result.stderr
    assert "accuracy 1.0000  macro F1 1.0000 (over the 2 of 3 classes seen)" in result.stdout


def test_a_missing_run_says_how_to_find_runs(tmp_path):
    result = cnncli("evaluate", str(tmp_path / "nope"))
    assert result.returncode == 3 and "cnncli runs" in result.stderr


def test_a_run_trained_on_a_relative_path_evaluates_from_any_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path, epochs=1)
    monkeypatch.chdir(tmp_path)
    run = training.train(config.load(path, ["data.name=toy.npz"])).run
    assert config.load(run / "config.yaml").data.name == str(tmp_path / "toy.npz")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert evaluation.evaluate(run).result.accuracy > 0


def test_a_model_file_outside_a_run_says_where_its_files_would_go(run, tmp_path):
    import shutil

    shutil.copy(run / "model.keras", tmp_path / "digits.keras")
    rep = evaluation.evaluate(tmp_path / "digits.keras")
    assert rep.files == {} and any("only with --output DIR" in n for n in rep.notes)
    rep = evaluation.evaluate(tmp_path / "digits.keras", output=tmp_path / "out")
    assert (tmp_path / "out" / "confusion.png").is_file()


def test_a_finished_run_whose_model_files_are_gone_says_so(tmp_path):
    run = tmp_path / "runs" / "toy" / "1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: linear\n")
    (run / "state.json").write_text('{"status": "finished"}')
    with pytest.raises(ModelError, match="finished, but its model files"):
        artefact.resolve(run)
    (run / "state.json").write_text('{"status": "running"}')
    with pytest.raises(ModelError, match="did not finish an epoch"):
        artefact.resolve(run)


def test_an_output_under_a_file_names_the_file_in_the_way(run, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"the output folder cannot be made: '{blocker}' is "
                                          "a file"):
        evaluation.evaluate(run, output=blocker / "out")
    with pytest.raises(ConfigError, match="the output folder is a file, not a folder"):
        evaluation.evaluate(run, output=blocker)
    assert blocker.read_text() == "not a folder"


def test_an_empty_run_name_is_a_usage_error_not_the_current_folder():
    with pytest.raises(ConfigError, match="the run or model to use is an empty name"):
        artefact.resolve("")



def test_a_folder_without_a_test_split_gives_its_seeded_fifth_and_says_how_to_use_all(
        run, tmp_path):
    rep = evaluation.evaluate(run, data=str(cf.image_folder(tmp_path / "new", {
        "0": 5, "1": 5, "2": 5})), output=tmp_path / "e")
    assert rep.result.count == 3
    assert "new has no test split of its own: its test images are the seeded fifth a " \
           "training run holds out (3 of 15); --all-images evaluates every image" in rep.notes


def test_an_evaluation_folder_that_is_a_link_out_of_the_run_is_not_written_through(
        run, tmp_path):
    """A run from someone else holding ``eval-new -> ~/work``: its confusion.png and
    evaluation.json would replace the user's files there."""
    from cnncli.errors import WriteError

    theirs = tmp_path / "work"
    theirs.mkdir()
    (theirs / "evaluation.json").write_text("mine")
    (run / "eval-new").symlink_to(theirs)
    try:
        with pytest.raises(WriteError, match="eval-new is a link .*not through links") as e:
            evaluation.evaluate(run, data=str(cf.image_folder(tmp_path / "new", {
                "0": 5, "1": 5, "2": 5})))
    finally:
        (run / "eval-new").unlink()
    assert "--output DIR" in e.value.hint
    assert [p.name for p in theirs.iterdir()] == ["evaluation.json"]
    assert (theirs / "evaluation.json").read_text() == "mine"


def test_all_images_evaluates_every_image_of_a_folder(run, tmp_path):
    rep = evaluation.evaluate(run, data=str(cf.image_folder(tmp_path / "new", {
        "0": 5, "1": 5, "2": 5})), output=tmp_path / "e", all_images=True)
    assert rep.result.count == 15 and rep.notes == []


def test_all_images_on_the_folder_a_run_trained_on_says_its_figures_are_flattered(
        run, tmp_path, monkeypatch):
    import dataclasses

    from cnncli.infer import classifier

    folder = cf.image_folder(tmp_path / "photos", {"0": 5, "1": 5, "2": 5})
    clf = classifier.load(str(run))  # as if the run had trained on the folder
    clf.artefact = dataclasses.replace(clf.artefact, data=config.DataSection(name=str(folder)))
    monkeypatch.chdir(tmp_path)
    own = run / "evaluation.json"
    before = own.read_bytes() if own.exists() else None
    for data in (None, "./photos"):  # the run's own data, named or by another path
        rep = evaluation.evaluate(run, model=clf, data=data, all_images=True)
        assert rep.result.count == 15
        assert any("--all-images on the data this run trained on" in n and "higher than on "
                   "photos it has not seen" in n for n in rep.notes), rep.notes
        # the run's own figures (its held-out images) are kept, not replaced by these
        assert rep.files["evaluation"] == str(run / "eval-photos-all" / "evaluation.json")
        assert (own.read_bytes() if own.exists() else None) == before


def test_all_images_on_data_with_a_test_split_of_its_own_is_not_said_to_be_every_image(run):
    """The notes said "evaluated on every image of the run's data", then that the data's
    own test images were evaluated (as they are: --all-images is for data without)."""
    rep = evaluation.evaluate(run, all_images=True)
    assert rep.result.count == 60  # the npz's test split, not its 240 + 60 images
    assert not [n for n in rep.notes if "every image" in n], rep.notes
    assert any(n.startswith("evaluated on the run's data with --all-images: the files are "
                            "in ") for n in rep.notes), rep.notes
    assert any("has a test split of its own: its 60 test images are evaluated" in n
               for n in rep.notes), rep.notes


def test_the_run_s_own_folder_says_its_test_images_are_the_fifth_it_held_out(
        run, tmp_path, monkeypatch):
    import dataclasses

    from cnncli.infer import classifier

    folder = cf.image_folder(tmp_path / "photos", {"0": 5, "1": 5, "2": 5})
    clf = classifier.load(str(run))  # as if the run had trained on the folder
    clf.artefact = dataclasses.replace(clf.artefact, data=config.DataSection(name=str(folder)))
    rep = evaluation.evaluate(run, model=clf, output=tmp_path / "e")
    assert "photos has no test split of its own: its test images are the seeded fifth " \
        "this run held out from training (3 of 15)" in rep.notes, rep.notes


def test_all_images_evaluates_a_folder_of_one_class(run, tmp_path):
    for k in range(5):
        cf.save_image(cf.band_image(2, seed=k), tmp_path / "twos" / "2" / f"{k}.png")
    rep = evaluation.evaluate(run, data=str(tmp_path / "twos"), output=tmp_path / "e",
                              all_images=True)
    assert rep.result.count == 5
    assert sum(rep.result.confusion[2]) == 5  # all five labelled with the model's class 2


def test_one_class_folder_without_all_images_is_refused_with_the_way(run, tmp_path):
    cf.image_folder(tmp_path / "twos", {"2": 3})
    with pytest.raises(DataError, match="only one class folder") as err:
        evaluation.evaluate(run, data=str(tmp_path / "twos"), output=tmp_path / "e")
    assert "--all-images" in err.value.hint


def test_an_npz_of_one_class_is_evaluated(run, tmp_path):
    """An npz has a test split of its own: one class in it is photos of one class."""
    zeros = np.stack([cf.band_image(0, seed=k) for k in range(4)])
    np.savez(tmp_path / "zeros.npz", x_train=zeros, y_train=np.zeros(4, int), x_test=zeros,
             y_test=np.zeros(4, int))  # class names: ["0"]
    rep = evaluation.evaluate(run, data=str(tmp_path / "zeros.npz"), output=tmp_path / "e")
    assert rep.result.count == 4 and sum(rep.result.confusion[0]) == 4


def test_all_images_evaluates_every_row_of_a_csv_without_a_split_column(run, tmp_path):
    photos = cf.image_folder(tmp_path / "p", {"0": 5, "1": 5})
    rows = [f"{c}/{k}.png,{c}" for c in (0, 1) for k in range(5)]
    (photos / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    rep = evaluation.evaluate(run, data=str(photos / "labels.csv"), output=tmp_path / "e",
                              all_images=True)
    assert rep.result.count == 10


def test_all_images_evaluates_the_test_folder_of_train_and_test_folders_of_one_class(
        run, tmp_path):
    for split, count in (("train", 2), ("test", 4)):
        for k in range(count):
            cf.save_image(cf.band_image(2, seed=k), tmp_path / "twos" / split / "2" / f"{k}.png")
    rep = evaluation.evaluate(run, data=str(tmp_path / "twos"), output=tmp_path / "e",
                              all_images=True)
    assert rep.result.count == 4 and sum(rep.result.confusion[2]) == 4


def test_all_images_on_data_with_its_own_test_split_evaluates_that_split(run, tmp_path):
    npz = config.load(run / "config.yaml").data.name  # x_test, y_test: a split of its own
    rep = evaluation.evaluate(run, data=npz, output=tmp_path / "e", all_images=True)
    assert rep.result.count == 60
    assert "toy has a test split of its own: its 60 test images are evaluated " \
           "(--all-images is for a folder or CSV without one)" in rep.notes


def test_the_all_images_option_reaches_evaluate(run, tmp_path):
    cf.image_folder(tmp_path / "new", {"0": 2, "1": 2, "2": 2})
    result = cnncli("evaluate", str(run), "--data", str(tmp_path / "new"), "--all-images",
                    "--output", str(tmp_path / "e"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 6


def test_a_folder_of_some_of_the_models_classes_says_so_not_another_order(run, tmp_path):
    cf.image_folder(tmp_path / "ac", {"0": 2, "2": 2})
    rep = evaluation.evaluate(run, data=str(tmp_path / "ac"), output=tmp_path / "e",
                              all_images=True)
    assert rep.notes == ["the data has 2 of the model's 3 classes: matched by name"]


def test_notes_go_to_stderr_with_json_too_and_into_the_json(run, tmp_path):
    """With --json they went only into the JSON: a script's log lost them."""
    cf.image_folder(tmp_path / "ac", {"0": 2, "2": 2})
    result = cnncli("evaluate", str(run), "--data", str(tmp_path / "ac"), "--all-images",
                    "--output", str(tmp_path / "e"), "--json")
    said = "the data has 2 of the model's 3 classes: matched by name"
    assert said in json.loads(result.stdout)["notes"] and said in result.stderr


def test_some_of_the_models_classes_in_another_order_says_both():
    from types import SimpleNamespace as NS

    data = NS(class_names=["7", "3"], num_classes=2, test=NS(labels=np.array([0, 1]),
                                                               kind="arrays"))
    labels, notes = evaluation.labels_by_name(data, NS(class_names=[str(i) for i in range(10)]),
                                              "sub.npz")
    assert labels.tolist() == [7, 3]
    assert notes == ["the data's classes (2 of the model's 10 classes) are in another order "
                     "than the model's: matched by name"]


def test_data_named_by_a_relative_path_is_named_once(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cf.image_folder(tmp_path / "f75", {"0": 2, "1": 2, "2": 2})
    rep = evaluation.evaluate(run, data="f75", all_images=True, output=tmp_path / "e")
    assert rep.dataset == "f75 (class folders, streamed)"  # not f75 (f75 (...))


def test_the_current_folder_as_data_is_named_by_its_folder_name(run, tmp_path, monkeypatch):
    monkeypatch.chdir(cf.image_folder(tmp_path / "new", {"0": 2, "1": 2, "2": 2}))
    rep = evaluation.evaluate(run, data=".", all_images=True)
    assert rep.dataset.startswith("new (")
    assert (run / "eval-new" / "evaluation.json").is_file()


@pytest.mark.parametrize("option", ["data", "output"])
def test_an_empty_data_or_output_is_a_usage_error(run, option):
    with pytest.raises(ConfigError, match=f"--{option} is empty"):
        evaluation.evaluate(run, **{option: ""})


def test_no_readable_image_leaves_no_empty_eval_folder(run, tmp_path):
    for k in range(3):
        path = cf.save_image(cf.band_image(0, seed=k), tmp_path / "cut" / "0" / f"{k}.png")
        path.write_bytes(path.read_bytes()[:40])  # a PNG cut short: undecodable
    with pytest.raises(DataError):
        evaluation.evaluate(run, data=str(tmp_path / "cut"), all_images=True)
    assert not (run / "eval-cut").exists()


@pytest.mark.parametrize("inside", [".", "eval", "eval/deeper"])
def test_an_output_folder_in_the_data_folder_is_refused_before_any_work(run, tmp_path,
                                                                         inside):
    photos = cf.image_folder(tmp_path / "photos", {"0": 2, "1": 2, "2": 2})
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    with pytest.raises(ConfigError, match="inside the data folder") as err:
        evaluation.evaluate(run, data=str(photos), output=photos / inside, all_images=True)
    assert err.value.hint.startswith("give --output a folder outside the data")
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before  # untouched


def test_skipped_files_are_in_the_notes_json_too(run, tmp_path):
    photos = cf.image_folder(tmp_path / "photos", {"0": 2, "1": 2, "2": 2})
    (photos / "1" / "broken.png").write_bytes(b"not a png")
    result = cnncli("evaluate", str(run), "--data", str(photos), "--all-images",
                    "--output", str(tmp_path / "e"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 6
    assert any("broken.png" in note for note in report["notes"]), report["notes"]


def test_an_image_that_fails_to_decode_while_evaluating_is_named(run, tmp_path):
    from PIL import Image

    photos = cf.image_folder(tmp_path / "photos", {"0": 2, "1": 2, "2": 2})
    cut = photos / "2" / "cut.jpg"
    Image.new("L", (64, 64), 200).save(cut)
    cut.write_bytes(cut.read_bytes()[:300])  # its header whole, its pixels cut short
    rep = evaluation.evaluate(run, data=str(photos), output=tmp_path / "e", all_images=True)
    assert rep.result.count == 6
    assert f"1 test image could not be read and is left out: {cut}" in rep.notes


def test_each_mistake_after_an_unreadable_image_is_the_image_it_names(run, tmp_path):
    """Its place in the test split counts the unreadable image too: misclassified.png
    showed the photo before each mistake under its title."""
    from PIL import Image

    photos = cf.image_folder(tmp_path / "photos", {"0": 3, "1": 2, "2": 2})
    cut = photos / "0" / "0.jpg"  # first of the split; its header whole, its pixels not
    (photos / "0" / "0.png").unlink()
    Image.new("L", (64, 64), 200).save(cut)
    cut.write_bytes(cut.read_bytes()[:300])
    for k in (1, 2):  # class 1's pictures filed as class 0: mistakes after it
        cf.save_image(cf.band_image(1, seed=k), photos / "0" / f"{k}.png")
    rep = evaluation.evaluate(run, data=str(photos), output=tmp_path / "e", all_images=True)
    ds = datasets.load(photos, test_fraction=1.0)
    assert len(rep.result.misclassified) >= 2
    for mistake in rep.result.misclassified:
        assert ds.test.images[mistake.index] == mistake.id


def test_an_evaluation_that_cannot_finish_writing_leaves_the_one_before_whole(
        run, tmp_path, monkeypatch):
    """evaluation.json is written through a temporary file and a rename: a full disk or a
    kill mid-write leaves the earlier one, not a file cut short."""
    from cnncli import files

    evaluation.evaluate(run, output=tmp_path / "e")
    before = (tmp_path / "e" / "evaluation.json").read_text()
    real = files.os.replace

    def full_at_the_record(src, dst):
        if str(dst).endswith("evaluation.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", full_at_the_record)
    with pytest.raises(OSError) as e:
        evaluation.evaluate(run, output=tmp_path / "e", all_images=True, data=str(
            cf.image_folder(tmp_path / "photos", {"0": 2, "1": 2, "2": 2})))
    assert (tmp_path / "e" / "evaluation.json").read_text() == before
    assert e.value.errno == 28  # (the command line says a full disk, exit 3)


def test_an_output_folder_beside_the_data_or_in_a_csv_s_folder_is_fine(run, tmp_path):
    photos = cf.image_folder(tmp_path / "photos", {"0": 2, "1": 2, "2": 2})
    rep = evaluation.evaluate(run, data=str(photos), output=tmp_path / "photos-eval",
                              all_images=True)
    assert rep.result.count == 6
    rows = [f"{c}/{k}.png,{c}" for c in range(3) for k in range(2)]
    (photos / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    rep = evaluation.evaluate(run, data=str(photos / "labels.csv"), output=photos / "eval",
                              all_images=True)  # a CSV names its images: eval/ is not read
    assert rep.result.count == 6


def test_a_known_name_is_not_the_folder_of_that_name(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cf.image_folder(tmp_path / "mnist", {"0": 2, "1": 2, "2": 2})
    with pytest.raises(DataError, match="10 classes but the model predicts 3") as err:
        evaluation.evaluate(run, data="mnist", output=tmp_path / "mnist" / "eval",
                            offline=True)  # read from elsewhere: not refused as inside
    assert err.value.hint.endswith("; evaluate on the data the model was trained for (--data)")


def test_the_data_s_warnings_are_shown_when_loading_then_fails(run, tmp_path):
    (tmp_path / "bad" / "0").mkdir(parents=True)
    (tmp_path / "bad" / "0" / "x.png").write_bytes(b"not a png")
    with pytest.warns(DataWarning, match="x.png"), pytest.raises(DataError,
                                                                  match="no readable"):
        evaluation.evaluate(run, data=str(tmp_path / "bad"), output=tmp_path / "e",
                            all_images=True)


def test_an_npz_naming_a_class_twice_is_refused(run, tmp_path):
    import numpy as np

    path = tmp_path / "twice.npz"
    x, y = np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 2, 1])
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=["0", "1", "1"])
    with pytest.raises(DataError, match="names class '1' more than once"):
        evaluation.evaluate(run, data=str(path), output=tmp_path / "e")


def test_a_tilde_in_the_output_folder_is_the_home_folder(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    rep = evaluation.evaluate(run, output="~/evals")
    assert rep.files["evaluation"] == str(tmp_path / "home" / "evals" / "evaluation.json")
    assert not (tmp_path / "~").exists()


def test_data_of_a_name_as_long_as_a_file_name_gets_an_eval_folder_of_its_start(run, tmp_path):
    """A folder name of 252 characters made eval-<name> longer than a file name may be:
    "unexpected OSError ... File name too long ... a bug in cnncli"."""
    long = cf.image_folder(tmp_path / ("d" * 252), {"0": 2, "1": 2, "2": 2})
    rep = evaluation.evaluate(run, data=str(long), all_images=True)
    folder = Path(rep.files["evaluation"]).parent
    assert folder.parent == run and folder.name == "eval-" + "d" * evaluation.MAX_SLUG


def test_data_named_in_another_script_keeps_its_name_in_its_eval_folder(run, tmp_path):
    photos = cf.image_folder(tmp_path / ("写真" * 40), {"0": 2, "1": 2, "2": 2})  # 240 bytes
    rep = evaluation.evaluate(run, data=str(photos), all_images=True)
    folder = Path(rep.files["evaluation"]).parent.name
    assert folder.startswith("eval-写真写真") and len(folder.encode()) <= 255


def test_evaluating_a_run_that_has_not_finished_says_so(run, tmp_path):
    """As export says it: the figures are of the model it had then (it said nothing)."""
    import shutil

    from cnncli import files

    stopped = shutil.copytree(run, tmp_path / "runs" / "toy" / "1", symlinks=True)
    files.write_json(stopped / "state.json", {"status": "interrupted"})
    notes = evaluation.evaluate(stopped).notes
    assert any(n.startswith("the run has not finished (it is interrupted after ") and
               "this evaluates the model it had then" in n and
               n.endswith("evaluate again once it has finished") for n in notes), notes
    assert not any("not finished" in n for n in evaluation.evaluate(run).notes)


def test_predicting_with_a_run_that_has_not_finished_says_so_as_evaluate_does(run, tmp_path):
    import shutil

    from PIL import Image

    from cnncli import files
    from cnncli.infer import predict

    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 90).save(image)
    stopped = shutil.copytree(run, tmp_path / "runs" / "toy" / "1", symlinks=True)
    files.write_json(stopped / "state.json", {"status": "interrupted"})
    [said] = predict.predict([str(image)], model=str(stopped)).warnings
    assert said.startswith("the run has not finished (it is interrupted after 3 epochs): "
                           "this predicts with the model it had then, ")
    assert said.endswith("; predict again once it has finished")
    assert predict.predict([str(image)], model=str(run)).warnings == []


def test_a_model_giving_nan_is_refused_not_scored(run, monkeypatch):
    """Its figures were of nothing (NaN's class is the first): "loss": NaN, exit 0."""
    from cnncli.infer import classifier

    real = classifier.KerasClassifier.probabilities

    def some_nan(self, images):
        p = real(self, images)
        p[::2] = np.nan
        return p

    monkeypatch.setattr(classifier.KerasClassifier, "probabilities", some_nan)
    with pytest.raises(ModelError, match=r"gives NaN or infinite outputs for 3\d of "
                                         "the images") as err:
        evaluation.evaluate(run)
    assert "not finite" in err.value.hint


def test_two_evaluations_at_once_of_data_of_one_name_get_a_folder_each(run, tmp_path,
                                                                       monkeypatch):
    """Both chose eval-site (neither had written its evaluation.json yet), and one's
    files replaced the other's: a folder is claimed when it is chosen."""
    a = cf.image_folder(tmp_path / "a" / "site", {"0": 2, "1": 2, "2": 2})
    b = cf.image_folder(tmp_path / "b" / "site", {"0": 3, "1": 3, "2": 3})
    real, meanwhile = evaluation._measure, []

    def b_while_a_measures(*args, **kwargs):
        if not meanwhile:
            meanwhile.append(None)
            meanwhile.append(evaluation.evaluate(run, data=str(b), all_images=True))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "_measure", b_while_a_measures)
    first = evaluation.evaluate(run, data=str(a), all_images=True)
    assert Path(first.files["evaluation"]).parent == run / "eval-site"
    assert Path(meanwhile[1].files["evaluation"]).parent == run / "eval-site-2"
    for folder, data in (("eval-site", a), ("eval-site-2", b)):
        assert json.loads((run / folder / "evaluation.json").read_text())["data"] == str(data)
        assert not (run / folder / evaluation.CLAIM).exists()


def test_data_whose_path_is_not_utf8_is_evaluated_into_one_folder_each_time(run, tmp_path):
    data = cf.image_folder(Path(os.fsdecode(bytes(tmp_path / "lat") + b"\xe9")),
                           {"0": 2, "1": 2, "2": 2})
    for _ in range(2):
        report = evaluation.evaluate(run, data=str(data), all_images=True)
        assert Path(report.files["evaluation"]).parent == run / "eval-lat"


def test_a_claim_on_data_whose_path_is_not_utf8_is_known_as_that_datas(tmp_path):
    """Two evaluations at once of the same Latin-1 folder went to two folders (the
    claim's bytes read back with replacement characters)."""
    data = os.fsdecode(b"/photos/lat\xe9")
    folder = tmp_path / "eval-lat"
    try:
        assert evaluation._claimed(folder, data)
        assert evaluation._claimed(folder, data)  # (another open file: its own lock)
        assert not evaluation._claimed(folder, "/photos/other")
    finally:
        evaluation._unclaim(folder, failed=False)


def test_an_evaluation_from_before_the_data_was_recorded_is_not_replaced(run, tmp_path):
    data = cf.image_folder(tmp_path / "new" / "old", {"0": 2, "1": 2, "2": 2})
    (run / "eval-old").mkdir()
    (run / "eval-old" / "evaluation.json").write_text('{"accuracy": 0.5}')  # no "data"
    report = evaluation.evaluate(run, data=str(data), all_images=True)
    assert Path(report.files["evaluation"]).parent == run / "eval-old-2"


def test_a_claim_left_by_a_killed_evaluation_is_taken_over(run, tmp_path):
    """An evaluation killed (SIGKILL, the OOM killer) left its claim, of other data: each
    later evaluation went to the next folder, for good. A claim is live while locked."""
    data = cf.image_folder(tmp_path / "y" / "left", {"0": 2, "1": 2, "2": 2})
    (run / "eval-left").mkdir()
    (run / "eval-left" / evaluation.CLAIM).write_text("/somewhere/else/left")
    report = evaluation.evaluate(run, data=str(data), all_images=True)
    assert Path(report.files["evaluation"]).parent == run / "eval-left"
    assert not (run / "eval-left" / evaluation.CLAIM).exists()


def test_an_evaluation_on_a_file_system_without_locks_keeps_its_folder(run, tmp_path,
                                                                       monkeypatch):
    """Without locks (ENOLCK) every claim was taken for another evaluation's: each
    evaluation went to the next folder, the same data's too."""
    import errno

    data = cf.image_folder(tmp_path / "z" / "nolock", {"0": 2, "1": 2, "2": 2})

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(evaluation.fcntl, "flock", no_locks)
    for _ in range(2):
        report = evaluation.evaluate(run, data=str(data), all_images=True)
        assert Path(report.files["evaluation"]).parent == run / "eval-nolock"
    assert not (run / "eval-nolock-2").exists()  # (it made a folder for each of 999 tries)


def test_a_failed_evaluation_leaves_no_claimed_folder(run, tmp_path, monkeypatch):
    data = cf.image_folder(tmp_path / "x" / "gone", {"0": 2, "1": 2, "2": 2})
    monkeypatch.setattr(evaluation, "_measure", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        evaluation.evaluate(run, data=str(data), all_images=True)
    assert not (run / "eval-gone").exists()


def test_two_data_folders_of_one_name_get_a_folder_each(run, tmp_path):
    first = cf.image_folder(tmp_path / "old" / "photos", {"0": 2, "1": 2, "2": 2})
    second = cf.image_folder(tmp_path / "new" / "photos", {"0": 3, "1": 3, "2": 3})
    folders = [Path(evaluation.evaluate(run, data=str(d), all_images=True)
                    .files["evaluation"]).parent.name for d in (first, second, first)]
    assert folders == ["eval-photos", "eval-photos-2", "eval-photos"]  # the first kept
    saved = json.loads((run / "eval-photos" / "evaluation.json").read_text())
    assert saved["data"] == str(first) and saved["count"] == 6


def test_class_names_in_another_unicode_form_are_the_same_class():
    """macOS names a folder 'é' with 'e' and a combining accent: it prints the same."""
    from types import SimpleNamespace as NS

    data = NS(class_names=["cat", "re\u0301d fox"], num_classes=2,
              test=NS(labels=np.array([1, 0]), kind="files"))
    labels, notes = evaluation.labels_by_name(data, NS(class_names=["cat", "r\u00e9d fox"]),
                                              "photos")
    assert (labels.tolist(), notes) == ([1, 0], [])


def matched_to_imagenet(names):
    """`labels_by_name` of a folder of class folders `names` (an image each) for a model of
    the 1000 ImageNet classes."""
    from types import SimpleNamespace as NS

    from cnncli.model import imagenet

    data = NS(class_names=names, num_classes=len(names),
              test=NS(labels=np.arange(len(names)), kind="files"))
    return evaluation.labels_by_name(data, NS(class_names=imagenet.class_names()), "val")


def test_imagenet_class_folders_named_by_wordnet_id_are_matched_to_the_classes():
    labels, notes = matched_to_imagenet(["n01443537", "n01440764", "n04285008"])  # goldfish,
    assert labels.tolist() == [1, 0, 817]  # tench, sports car
    assert notes == ["the data's classes (3 of the model's 1000 classes) are in another "
                     "order than the model's: matched by name"]


def test_a_name_two_imagenet_classes_share_is_read_as_the_first_and_said():
    labels, notes = matched_to_imagenet(["tench", "crane"])
    assert labels.tolist() == [0, 134]
    assert notes[1] == ("'crane' names 2 of the model's classes (134, 517): read as class "
                        "134; name its folder by WordNet ID (n02012849, n03126707) to choose")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run trained on a folder of class folders (a fifth of each class held out)."""
    folder = tmp_path_factory.mktemp("held")
    photos = cf.image_folder(folder / "photos", {"0": 10, "1": 10, "2": 10})
    path = write_config(folder, epochs=1)
    cfg = config.load(path)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={
        "name": str(photos), "validation_split": 0.0})})
    return training.train(cfg, config_file=str(path)).run, photos


def test_the_run_s_own_folder_unchanged_is_its_held_out_fifth_without_a_warning(
        folder_run, tmp_path):
    run, _ = folder_run
    rep = evaluation.evaluate(run, output=tmp_path / "e")
    assert rep.result.count == 6 and not any("changed since" in n for n in rep.notes)


def evaluated_with_an_image_added(photos, model, output):
    """`model` evaluated on its training folder `photos` with one image more (its seeded
    fifth then takes other images), the folder as it was again after."""
    cf.save_image(cf.band_image(0, seed=99), photos / "0" / "new.png")
    try:
        return evaluation.evaluate(model, output=output)
    finally:
        (photos / "0" / "new.png").unlink()


CHANGED = ("photos changed since the model trained (images added, removed or renamed, or a "
           "CSV's rows put in another order)")


def test_a_folder_changed_since_training_warns_that_its_fifth_moved_onto_trained_images(
        folder_run, tmp_path):
    run, photos = folder_run
    rep = evaluated_with_an_image_added(photos, run, tmp_path / "e")
    assert any(n.startswith(CHANGED) for n in rep.notes), rep.notes


@pytest.fixture(scope="module")
def exported_folder_model(folder_run, tmp_path_factory):
    """The folder run's model as ONNX, and its .keras file copied out of the run."""
    import shutil

    from cnncli.export import exporter

    run, _ = folder_run
    folder = tmp_path_factory.mktemp("apart")
    exporter.export(run, formats=["onnx"], output=folder / "export")
    shutil.copy(run / "best.keras", folder / "model.keras")
    return {"onnx": folder / "export" / "model.onnx", "keras": folder / "model.keras"}


@pytest.mark.parametrize("kind", ["onnx", "keras"])
def test_a_model_apart_from_its_run_warns_when_its_folder_changed_since_training(
        folder_run, exported_folder_model, kind, tmp_path):
    _, photos = folder_run
    model = exported_folder_model[kind]
    before = evaluation.evaluate(model, output=tmp_path / "before")
    assert not any("changed since" in n for n in before.notes)
    assert "photos has no test split of its own: its test images are the seeded fifth its " \
        "training held out (6 of 30)" in before.notes
    rep = evaluated_with_an_image_added(photos, model, tmp_path / "after")
    assert any(n.startswith(CHANGED) for n in rep.notes), rep.notes


def test_an_exported_model_and_the_files_written_are_named_by_absolute_paths_as_a_runs(
        exported_folder_model, tmp_path, monkeypatch):
    folder = exported_folder_model["onnx"].parent
    monkeypatch.chdir(folder)
    rep = evaluation.evaluate("model.onnx", output="eval")
    assert rep.model == str(folder / "model.onnx")
    assert rep.files and all(f.startswith(f"{folder / 'eval'}/") for f in rep.files.values())


def older_copy(run: Path, copy: Path) -> Path:
    """A copy of `run` whose best.keras does not record its held-out images, as a cnncli
    before it did left it."""
    import dataclasses
    import shutil

    from cnncli.model import modelfile, saved_meta

    shutil.copytree(run, copy)
    model_file = copy / "best.keras"
    meta = dataclasses.replace(saved_meta.read(model_file), held_out=None)
    modelfile.save_model_atomic(modelfile.load_model(model_file), model_file, meta)
    return copy


def test_a_model_file_from_before_it_recorded_its_held_out_images_uses_its_runs_record(
        folder_run, tmp_path):
    """A best.keras saved without `held_out` (an older cnncli): evaluate warns from the
    run's metrics.json, and an export of it carries the run's digest."""
    from cnncli.export import exporter

    run, photos = folder_run
    old = older_copy(run, tmp_path / "old")
    recorded = json.loads((old / "metrics.json").read_text())["dataset"]["held_out"]
    exporter.export(old, formats=["onnx"], output=tmp_path / "export")
    sidecar = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert sidecar["held_out"] == recorded and recorded
    rep = evaluated_with_an_image_added(photos, old, tmp_path / "e")
    assert any(n.startswith(CHANGED) for n in rep.notes), rep.notes


def test_a_run_from_before_it_recorded_its_held_out_images_warns_by_their_number(
        folder_run, tmp_path):
    """A run of an older cnncli records how many images it held out, not which: a folder
    that has more images now (files of a kind cnncli reads since) takes another fifth."""
    run, photos = folder_run
    old = older_copy(run, tmp_path / "old")
    record = json.loads((old / "metrics.json").read_text())
    del record["dataset"]["held_out"]
    (old / "metrics.json").write_text(json.dumps(record))
    assert not any("changed since" in n for n in evaluation.evaluate(
        old, output=tmp_path / "same").notes)
    added = [photos / "0" / f"new{k}.png" for k in range(5)]
    for k, path in enumerate(added):
        cf.save_image(cf.band_image(0, seed=90 + k), path)
    try:
        rep = evaluation.evaluate(old, output=tmp_path / "e")
    finally:
        for path in added:
            path.unlink()
    assert any(n.startswith(CHANGED) for n in rep.notes), rep.notes


def test_all_images_of_the_data_an_exported_model_trained_on_says_so(exported_folder_model,
                                                                     tmp_path):
    rep = evaluation.evaluate(exported_folder_model["onnx"], output=tmp_path / "e",
                              all_images=True)
    assert rep.result.count == 30
    assert any(n.startswith("--all-images on the data the model trained on (") and
               "most of these images are ones the model learned from" in n
               for n in rep.notes), rep.notes


def test_an_exports_record_of_data_whose_path_is_not_utf8_names_that_data(tmp_path):
    """The export's JSON holds the path as text (``ph\\xe9``): evaluating the file
    without --data looked for a folder of that name."""
    from cnncli import text
    from cnncli.infer import artefact
    from cnncli.model.meta import ModelMeta

    latin = Path(os.fsdecode(bytes(tmp_path / "ph") + b"\xe9"))
    latin.mkdir()
    meta = ModelMeta(dataset=text.as_text(str(latin)))
    assert artefact.training_data(None, meta).name == str(latin)


def test_the_data_read_for_a_model_is_data_else_its_runs_else_what_its_file_says(tmp_path):
    """Evaluate and export read the same data for a model: ``--data``, else its run's
    (with the run's data_dir and offline unless given), else its file's record."""
    from cnncli.infer import artefact
    from cnncli.model.meta import ModelMeta

    meta = ModelMeta(dataset="mnist")
    run = artefact.Artefact(tmp_path / "best.keras", tmp_path, meta, config.DataSection(
        name="fashion_mnist", data_dir="/data", offline=True))
    assert artefact.training_data(run, meta) == artefact.DataSource("fashion_mnist", "/data",
                                                                   True)
    assert artefact.training_data(run, meta, "photos", "/other") == artefact.DataSource(
        "photos", "/other", True)
    assert artefact.training_data(None, meta) == artefact.DataSource("mnist")
    assert artefact.training_data(None, ModelMeta()).name is None


def test_an_evaluation_without_mistakes_removes_an_earlier_misclassified_picture(tmp_path):
    """The same folder evaluated again (`--data d` after d was mended): a picture of the
    earlier evaluation's mistakes beside a 100% confusion matrix would tell of mistakes
    there are not."""
    from types import SimpleNamespace

    from cnncli.infer import metrics

    (tmp_path / "misclassified.png").write_bytes(b"an earlier evaluation's")
    result = metrics.compute([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    clf = SimpleNamespace(class_names=["a", "b"], name="m.keras")
    written = evaluation._write_files(tmp_path, result, None, clf, "d", [])
    assert "misclassified" not in written and not (tmp_path / "misclassified.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "evaluation.json"]
