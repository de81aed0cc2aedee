"""A run config that `cnncli check` accepts does not fail in `cnncli train` before its
first step (GitHub issue 12, item 3): random values for every key of the `train` and
`data` sections, within and at the edges of what the schema allows, on the tiny dataset
of tests/trainkit.py. What depends on the data itself (its size against the batch) is
left out: `check` does not read the data.
"""

from __future__ import annotations

import os
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trainkit import SPEC, make_npz

from cnncli import config
from cnncli.errors import CnnError, TrainingError
from cnncli.run import checking
from cnncli.run import train as training

SETTINGS = settings(max_examples=int(os.environ.get("CNNCLI_CHECK_EXAMPLES", 40)),
                    deadline=None, database=None,
                    derandomize=not os.environ.get("CNNCLI_FUZZ_RANDOM"),
                    suppress_health_check=list(HealthCheck))

unit = st.sampled_from([0, 0.5, 1])


@st.composite
def train_sections(draw) -> dict:
    section = {
        "steps": draw(st.integers(1, 3)),
        "batch_size": draw(st.sampled_from([1, 4, 16])),
        "optimizer": {"name": draw(st.sampled_from(["adam", "sgd", "rmsprop", "adamw", "nadam",
                                                    "adagrad", "lion", "adamm"])),
                      "learning_rate": draw(st.sampled_from([1e-5, 1e-3, 0.1]))},
        # mostly values that train, some that `check` must refuse
        "loss": draw(st.sampled_from(["sparse_categorical_crossentropy"] * 6
                                     + ["categorical_crossentropy", "not_a_loss"])),
        "metrics": draw(st.lists(st.sampled_from(
            ["accuracy", "sparse_top_k_categorical_accuracy"] * 4 + ["auc", "mae", "acuracy"]),
            max_size=2, unique=True)),
        "schedule": {"name": draw(st.sampled_from(["constant", "step", "cosine", "one_cycle",
                                                   "plateau"])),
                     "warmup_epochs": draw(st.sampled_from([0, 0.5]))},
        "weight_decay": draw(st.sampled_from([0, 1e-4])),
        "label_smoothing": draw(st.sampled_from([0, 0.1])),
        "seed": draw(st.sampled_from([0, 2**32 - 1])),
        "backup_every": draw(st.sampled_from([1, 500])),
        "steps_per_execution": draw(st.sampled_from(["auto", 1])),
        "jit_compile": draw(st.sampled_from(["auto", False])),
        "precision": draw(st.sampled_from(["auto", "float32", "mixed_bfloat16"])),
        "scale_lr": draw(st.booleans()),
    }
    if draw(st.booleans()):
        section["early_stopping"] = {
            "monitor": draw(st.sampled_from(["loss", "val_loss", "val_accuracy", "accuracy",
                                             "val_auc"])),
            "mode": draw(st.sampled_from(["auto", "min", "max"])), "patience": 1}
    return section


@st.composite
def data_sections(draw) -> dict:
    section = {"validation_split": draw(st.sampled_from([0, 0.2, 0.5])),
               "preprocessing": draw(st.sampled_from([None, "scale", "none", "tf"])),
               "strict": draw(st.booleans())}
    if draw(st.booleans()):
        section["augment"] = {"flip": draw(st.sampled_from([None, "horizontal", "vertical"])),
                              "translate": draw(unit), "rotate": draw(unit),
                              "zoom": draw(unit), "contrast": draw(unit)}
    return section


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz(tmp_path_factory.mktemp("data"))


@pytest.mark.slow
@pytest.mark.fuzz
@SETTINGS
@given(train=train_sections(), data_section=data_sections())
def test_what_check_accepts_trains_its_first_steps(tmp_path_factory, data, train,
                                                    data_section):
    folder = tmp_path_factory.mktemp("run")
    doc = {"model": yaml.safe_load(textwrap.dedent(SPEC)),
           "data": {"name": str(data), **data_section}, "train": train,
           "output": {"dir": str(folder / "runs"), "name": "check"}}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        checking.check(str(path))
    except CnnError:
        return  # refused up front, before anything was written: fine
    try:
        training.train(config.load(path), config_file=str(path))
    except TrainingError as exc:  # a NaN loss happens after steps: not this property's
        assert "NaN" in str(exc), exc
