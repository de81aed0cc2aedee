"""The catalogue of bad inputs (GitHub issue 8): what cnncli answers to each, as a table.

Every row of `CATALOGUE` is one input (built by tests/catalogue_files.py) given to one
command, the exit code expected and a fragment of the error paragraph (or of the
output). For every row the test also checks that stderr holds no Python traceback,
that no marker file appeared (nothing in the input was executed), that Keras' unsafe
deserialization is still off, and that nothing was written: no new file or folder
(no ``runs/<name>/<n>``, no model file, no temporary file) unless the row says so.

Rows marked ``CLI`` run ``python -m cnncli`` in a subprocess; the others call
`cnncli.cli.main` in this process with the same arguments: the same code, messages and
exit codes, without paying TensorFlow's import for every row.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import catalogue_files as cf
import numpy as np
import pytest

from cnncli import config, yamlio
from cnncli.cli import app as cli
from cnncli.errors import ConfigError
from cnncli.model import modelfile
from cnncli.run import rundir

CLI = "cli"  # run this row in a subprocess


@dataclass(frozen=True)
class Row:
    """`args` (with {placeholders}) -> exit `code` and `fragment` in stderr."""

    args: str
    code: int
    fragment: str  # searched in stderr (exit 0: in stdout + stderr); {placeholders}
    regex: bool = False  # `fragment` is a regular expression (without placeholders)
    make: cf.Builder | None = None
    subprocess: bool = False
    writes: bool = False  # the command may create files (a run that trains)
    stdout: str | None = None  # regex searched in stdout
    patch: object = None  # in-process only: patch(monkeypatch, tmp) before running
    check: object = None  # check(tmp, stdout, stderr) after running


def row(id: str, args: str, code: int, fragment: str, make=None, *flags, regex=False,
        marks=(), **kw):
    """One catalogue row; `fragment` is literal text unless `regex`."""
    return pytest.param(Row(args, code, fragment, regex, make, subprocess=CLI in flags, **kw),
                        id=id, marks=marks)




# ----------------------------------------------------------------------------- YAML

NOT_YAML = "model: linear\ntrain: {epochs: 1\n"
LIST_AT_TOP = "- model: linear\n- train: {epochs: 1}\n"
TABS = "model: linear\ntrain:\n\tepochs: 1\n"
DUPLICATE = "model: linear\ntrain:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n"
TYPO = "model: linear\ntrian: {epochs: 1}\n"
EPOCHS_TEN = "model: linear\ntrain: {epochs: ten}\n"
BATCH_ZERO = "model: linear\ntrain: {epochs: 1, batch_size: 0}\n"
EPOCHS_NEGATIVE = "model: linear\ntrain: {epochs: -1}\n"
PYTHON_TAG = "model: !!python/object/apply:os.system ['touch {marker}']\n"
PYTHON_TAG_DOCUMENT = "!!python/object/apply:os.system ['touch {marker}']\n"
CONTROL_CHARACTER = "model: linear\ntrain: {epochs: 1}\x07\n"
DEEP_NESTING = "model: linear\ntrain: " + "[" * 5000 + "]" * 5000 + "\n"
RECURSIVE_ALIAS = "model: linear\ntrain: &t {epochs: *t}\n"

YAML_CASES = [
    # id, builder, fragment for `check`, fragment for `train` (None: the same)
    ("not_yaml", cf.yaml_file(NOT_YAML), "{file}:2: this is not valid YAML: a `{{` opened on "
     "this line is not closed", None),
    ("empty_file", cf.yaml_file(""), "{file}: the spec is empty", "{file}: the config is empty"),
    ("list_at_top", cf.yaml_file(LIST_AT_TOP), "a spec must be a mapping",
     "a run config must be a mapping"),
    ("tabs", cf.yaml_file(TABS), "{file}:3: this is not valid YAML: a tab character", None),
    ("duplicate_key", cf.yaml_file(DUPLICATE),
     "{file}:5: the key 'epochs' appears twice (first on line 3)", None),
    ("unknown_key", cf.yaml_file(TYPO), "unknown key 'trian'. Hint: did you mean 'train'?",
     None),
    ("epochs_ten", cf.yaml_file(EPOCHS_TEN),
     "{file}:2: `train.epochs`: input should be a valid integer, got 'ten'", None),
    ("batch_size_zero", cf.yaml_file(BATCH_ZERO),
     "`train.batch_size`: input should be greater than or equal to 1, got 0", None),
    ("epochs_negative", cf.yaml_file(EPOCHS_NEGATIVE),
     "`train.epochs`: input should be greater than or equal to 1, got -1", None),
    ("python_tag", cf.yaml_file(PYTHON_TAG), "{file}:1: unsupported YAML tag", None),
    ("python_tag_document", cf.yaml_file(PYTHON_TAG_DOCUMENT), "unsupported YAML tag", None),
    ("alias_bomb", cf.alias_bomb, "refused as a possible 'billion laughs' attack", None),
    ("recursive_alias", cf.yaml_file(RECURSIVE_ALIAS),
     "{file}:2: an alias (*name) is used inside its own anchor (&name)", None),
    ("deep_nesting", cf.yaml_file(DEEP_NESTING), "the YAML is nested too deeply", None),
    ("control_character", cf.yaml_file(CONTROL_CHARACTER),
     "{file}:2: the text holds a character YAML does not allow", None),
    ("100_mb_file", cf.huge_yaml, "the file is 100.0 MB; specs and configs are limited to 1 MB",
     None),
]
_YAML_IN_SUBPROCESS = {("check", "python_tag"), ("train", "alias_bomb")}

YAML_ROWS = [
    row(f"yaml-{command}-{name}", f"{command} {{file}}", 2,
        (train_fragment if command == "train" and train_fragment else fragment), make,
        *([CLI] if (command, name) in _YAML_IN_SUBPROCESS else []))
    for name, make, fragment, train_fragment in YAML_CASES
    for command in ("check", "train")
]

# ----------------------------------------------------------------------------- specs


def spec(text: str):
    return cf.yaml_file(text, "net.yaml")


def no_spec_problems(tmp, out: str, err: str) -> None:
    assert "in the spec" not in err, err


def nothing_before_the_error(tmp, out: str, err: str) -> None:
    """A mistake on the command line is said before any work (the Device line)."""
    assert err.startswith("error: "), err


SPEC_ROWS = [
    row("spec-unknown_layer", "check {file}", 2,
        "{file}:3: layer 1: unknown layer 'Conv2d'. Hint: did you mean 'Conv2D'?",
        spec("input: [8, 8, 1]\nlayers:\n  - Conv2d: {filters: 2}\n  - Flatten\n")),
    row("spec-unknown_argument", "check {file}", 2,
        "{file}:3: layer 1: unknown argument 'filter' for Conv2D. Hint: did you mean "
        "'filters'?", spec("input: [8, 8, 1]\nlayers:\n"
                           "  - Conv2D: {filter: 2, kernel_size: 3}\n  - Flatten\n")),
    row("spec-argument_the_layer_gives_its_base_itself", "check {file}", 2,
        "{file}:3: layer 1: unknown argument 'rank' for Conv2D",
        spec("input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3, rank: 2}\n"
             "  - Flatten\n")),
    row("spec-a_blocks_parameter_is_said_with_the_line_it_was_given_on", "check {file}", 2,
        "{file}:6: layer 1, in block 'convs' used on line 9: `repeat` must be a whole number "
        "of at least 1, not 0",
        spec("input: [8, 8, 1]\nblocks:\n  convs:\n    params: [n]\n    layers:\n"
             "      - Conv2D: {filters: 2, kernel_size: 3}\n        repeat: $n\nlayers:\n"
             "  - convs: {n: 0}\n  - Flatten\n")),
    row("spec-dropout_of_everything", "check {file}", 2,
        "{file}:4: layer 2 'dropout1' (Dropout): a rate of 1 drops every value",
        spec("input: [8, 8, 1]\nlayers:\n  - Flatten\n  - Dropout: 1.0\n  - Dense\n")),
    row("spec-layer_boolean_written_no", "check {file}", 2,
        "{file}:3: layer 1: `use_bias` of Conv2D is true or false, not 'no'. Hint: write "
        "true or false", spec("input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, "
                              "kernel_size: 3, use_bias: no}\n  - Flatten\n")),
    row("spec-unknown_top_level_key", "check {file}", 2,
        "{file}:2: unknown key 'layer' in the spec. Hint: did you mean 'layers'?",
        spec("input: [8, 8, 1]\nlayer: [Flatten, {Dense: 2}]\n")),
    row("spec-missing_input", "check {file}", 2, "the spec has no input shape",
        spec("layers: [Flatten, {Dense: 2}]\n")),
    row("spec-conv_shrinks_below_1x1", "check {file}", 2,
        "layer 4 'conv1_4' (Conv2D): the 2x2 input is smaller than the 5x5 filter: "
        "(W - F + 2P)/S + 1 = (2 - 5 + 0)/1 + 1 = -2",
        spec("input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3}\n"
             "    repeat: 3\n  - Conv2D: {filters: 2, kernel_size: 5}\n  - Flatten\n")),
    row("spec-pool_shrinks_below_1x1", "check {file}", 2,
        "{file}:3: layer 4 'pool4' (MaxPooling2D): the 1x1 input is smaller than the 2x2 "
        "pooling window: (W - F + 2P)/S + 1 = (1 - 2 + 0)/2 + 1 = 0.5",
        spec("input: [8, 8, 1]\nlayers:\n  - MaxPooling2D: {pool_size: 2}\n    repeat: 4\n"
             "  - Flatten\n")),
    row("spec-block_missing_parameter", "check {file}", 2,
        "block 'stage' needs the parameter 'convs'",
        spec("input: [8, 8, 1]\nblocks:\n  stage:\n    params: [filters, convs]\n"
             "    layers:\n      - Conv2D: {filters: $filters, kernel_size: 3, padding: same}\n"
             "        repeat: $convs\nlayers:\n  - stage: {filters: 4}\n  - Flatten\n")),
    row("spec-block_uses_itself", "check {file}", 2, "block 'loop' uses itself (loop -> loop)",
        spec("input: [8, 8, 1]\nblocks:\n  loop:\n    layers: [Flatten, loop]\n"
             "layers: [loop]\n")),
    row("spec-branches_cannot_merge", "check {file}", 2,
        "the branches cannot be merged: their outputs are 6x6x4, 8x8x1",
        spec("input: [8, 8, 1]\nlayers:\n  - branches:\n"
             "      - [Conv2D: {filters: 4, kernel_size: 3}]\n      - []\n  - Flatten\n")),
    row("spec-dense_on_a_volume_warns", "check {file}", 0,
        "warning: layer 2 'fc1' (Dense): Dense on a 8x8x4 volume acts on the last axis only",
        spec("input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 4, kernel_size: 3, padding: "
             "same}\n  - Dense: 6\n  - Flatten\n  - Dense: 2\n"), CLI),
    row("spec-ends_in_a_volume", "check {file}", 2,
        "the network ends with a 8x8x6 volume, not a vector of class scores",
        spec("input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 4, kernel_size: 3, padding: "
             "same}\n  - Dense: 6\n")),
    row("spec-unknown_preprocessing", "check {file}", 2,
        "{file}:2: unknown preprocessing 'cafe'. Hint: did you mean 'caffe'?",
        spec("input: [8, 8, 3]\npreprocessing: cafe\nlayers: [Flatten, {Dense: 2}]\n")),
    row("spec-lambda_refused", "check {file}", 2,
        "unknown layer 'Lambda'. Hint: Lambda layers run arbitrary code: not allowed",
        spec("input: [2, 2, 1]\nlayers:\n  - Lambda: {function: print}\n")),
    row("spec-tfsmlayer_refused", "check {file}", 2,
        "unknown layer 'TFSMLayer'. Hint: TFSMLayer loads and runs a TensorFlow SavedModel",
        spec("input: [2, 2, 1]\nlayers:\n  - TFSMLayer: {filepath: /tmp}\n")),
    row("spec-layer_with_several_outputs", "check {file}", 2,
        "{file}:4: layer 2 'lstm1' (LSTM): the layer gives 3 outputs; a spec's layers each "
        "give one", spec("input: [8, 8, 1]\nlayers:\n  - Reshape: [8, 8]\n"
                         "  - LSTM: {units: 2, return_state: true}\n  - Dense: 2\n")),
    row("spec-pool_strides_zero", "check {file}", 2,
        "layer 1 'pool1' (MaxPooling2D): `strides` must be at least 1, not [0, 0]",
        spec("input: [8, 8, 1]\nlayers:\n  - MaxPooling2D: {pool_size: 2, strides: 0}\n"
             "  - Flatten\n")),
    row("spec-block_params_not_names", "check {file}", 2,
        "`params:` of block 'stage' must be a list of names or a mapping of names to defaults",
        spec("input: [2, 4, 1]\nblocks:\n  stage:\n    params: 5\n    layers: [Dense: 2]\n"
             "layers: [stage]\n")),
    row("spec-layer_too_big_for_memory", "check {file}", 2,
        "layer 2 'fc1' (Dense): its weights would be 6,400,000,000,000 numbers (25,600 GB)",
        spec("input: [8, 8, 1]\nlayers:\n  - Flatten\n  - Dense: 100000000000\n")),
    row("spec-zero_classes", "check {file}", 2,
        "{file}:2: `classes` must be a whole number of at least 1, not 0",
        spec("input: [8, 8, 1]\nclasses: 0\nlayers: [Flatten, {Dense: $classes}]\n")),
    row("spec-zero_classes_in_run_config", "check {file}", 2,
        "`model.classes`: input should be greater than or equal to 1, got 0",
        cf.yaml_file("model: {from: linear, classes: 0}\n")),
    row("spec-bad_inline_spec_through_train", "train {file}", 2,
        "unknown layer 'Flaten'", cf.run_config(model="{input: [8, 8, 1], layers: [Flaten]}")),
    row("spec-misspelt_activation", "check {file}", 2,
        "{file}:4: layer 2 'fc1' (Dense): `activation: sofmax` is not one of Keras' "
        "activations. Hint: did you mean 'softmax'?",
        spec("input: [8, 8, 1]\nlayers:\n  - Flatten\n  - Dense: {units: 2, activation: "
             "sofmax}\n")),
]

# ----------------------------------------------------------------------------- run configs
# Valid YAML, valid data: the mistake is in a setting, and must stop `train` before it
# creates the run folder.

CONFIG_ROWS = [
    row("config-unknown_preprocessing", "train {file}", 2,
        "{file}:2: `data.preprocessing`: input should be 'scale', 'none', 'tf', 'caffe' or "
        "'torch', got 'bogus'", cf.run_config(data_extra=", preprocessing: bogus")),
    row("config-augment_typo", "train {file}", 2,
        "{file}:2: unknown key 'data.augment.flp'. Hint: did you mean 'flip'?",
        cf.run_config(data_extra=", augment: {flp: horizontal}")),
    row("config-key_of_a_sub_section", "train {file}", 2,
        "{file}:3: unknown key 'train.learning_rate'. Hint: did you mean "
        "'train.optimizer.learning_rate'?",
        cf.run_config(train="{epochs: 1, learning_rate: 0.1}")),
    row("config-empty_section", "train {file}", 2,
        "{file}:3: `train` is empty. Hint: write its settings under it, or leave `train:` "
        "out for the defaults", cf.run_config(train="")),
    row("config-empty_section_set_on_the_command_line", "train {file} --set train=", 2,
        "--set train=: `train` is empty. Hint: set one of its keys: --set train.KEY=VALUE",
        cf.run_config()),
    row("config-empty_model", "train {file}", 2,
        "{file}:1: `model` is empty. Hint: give a built-in name (mnist_net), a spec file, or "
        "an inline spec", cf.run_config(model="")),
    row("config-empty_model_among_other_problems", "check {file}", 2,
        "`model` is empty. Hint: give a built-in name (mnist_net), a spec file, or an inline "
        "spec\nerror: {file}:3: `train.epochs`: input should be greater than or equal to 1",
        cf.run_config(model="", train="{epochs: 0}")),
    row("config-empty_text_model", "train {file}", 2, "{file}:1: `model` is empty. Hint: give a "
        "built-in name", cf.run_config(model="''")),
    row("config-empty_mapping_model", "train {file}", 2, "{file}:1: `model` is empty. Hint: give "
        "a built-in name", cf.run_config(model="{}")),
    row("config-null_key", "train {file}", 2,
        "{file}:3: a key in `train` is empty. Hint: write the key's name before the colon",
        cf.run_config(train="{epochs: 1, ~: 2}")),
    row("config-number_as_a_key", "train {file}", 2,
        "{file}:3: the key 1 in `train` is a number, not a name",
        cf.run_config(train="{epochs: 1, 1: 2}")),
    row("config-device_option_is_text_not_yaml", "train {file} --device [red]x[/red]", 2,
        "--device [red]x[/red]: `train.device`: '[red]x[/red]' is not one of auto, cpu, gpu "
        "or gpu:N", cf.run_config()),
    row("config-model_names_nothing_at_its_line", "check {file}", 2,
        "{file}:1: 'nosuch' is neither a spec file nor a built-in architecture",
        cf.run_config(model="nosuch")),
    row("config-model_is_a_folder", "check {file}", 2,
        "{file}:1: '{tmp}' is a folder, not a spec file, a run folder or a built-in network",
        lambda folder, shared: cf.run_config(model=str(folder))(folder, shared)),
    row("data-missing_named_at_its_line", "train {file}", 3,
        "{file}:2: '{tmp}/nowhere' is neither a dataset name cnncli knows nor an existing "
        "file or folder", lambda folder, shared: cf.run_config(data=str(folder / "nowhere"))(
            folder, shared)),
    row("data-missing_named_by_its_option", "train {file} --data {tmp}/nowhere", 3,
        "--data {tmp}/nowhere: '{tmp}/nowhere' is neither a dataset name cnncli knows",
        cf.run_config()),
    row("config-epochs_set_over_steps", "train {file} --set train.epochs=2", 2,
        "--set train.epochs=2: `train`: give `epochs` or `steps`, not both. Hint: --epochs N "
        "on the command line replaces `steps`; or remove one of them (--set train.steps=null)",
        cf.run_config(train="{steps: 5}")),
    row("config-device_quoted_as_written", "train {file}", 2,
        "{file}:3: `train.device`: 'GPU0' is not one of auto, cpu, gpu or gpu:N (N = 0, 1, ... "
        "as TensorFlow numbers them). Hint: did you mean 'gpu:0'?",
        cf.run_config(train="{epochs: 1, device: GPU0}")),
    row("config-number_as_a_key_of_an_inline_spec", "check {file}", 2,
        "{file}:1: the key 1 in `model` is a number, not a name",
        cf.run_config(model="{input: [8, 8, 1], 1: 2, layers: [Flatten]}")),
    row("spec-number_as_a_key", "check {file}", 2,
        "{file}:2: the key 1 in the spec is a number, not a name. Hint: put the key in quotes",
        cf.yaml_file("input: [8, 8, 1]\n1: 2\nlayers: [Flatten]\n")),
    row("config-from_nothing", "check {file}", 2,
        "{file}:1: `model.from` is empty. Hint: name a pretrained network",
        cf.run_config(model="{from: }")),
    row("config-set_of_no_key", "train {file} --set .x=1", 2,
        "--set .x=1: `.x` is not a key (a name between each dot)", cf.run_config()),
    row("config-augment_out_of_range", "train {file}", 2,
        "`data.augment.zoom`: input should be less than or equal to 1, got 5",
        cf.run_config(data_extra=", augment: {zoom: 5}")),
    row("config-early_stopping_monitor_typo", "train {file}", 2,
        "{file}:3: `train.early_stopping.monitor`: 'val_accuracyy' is not a figure this run "
        "records. Hint: did you mean 'val_accuracy'?",
        cf.run_config(train="{epochs: 1, early_stopping: {monitor: val_accuracyy}}")),
    row("config-optimizer_typo", "train {file}", 2,
        "`train.optimizer.name`: unknown optimizer 'adamm'. Hint: did you mean 'adam'?",
        cf.run_config(train="{epochs: 1, optimizer: {name: adamm}}")),
    row("config-optimizer_name_alone_typo", "train {file}", 2,
        "`train.optimizer.name`: unknown optimizer 'adamm'. Hint: did you mean 'adam'?",
        cf.run_config(train="{epochs: 1, optimizer: adamm}")),
    row("config-optimizer_name_alone_typo_beside_a_wrong_type_in_check", "check {file}", 2,
        "`train.optimizer.name`: unknown optimizer 'adamm'. Hint: did you mean 'adam'?",
        cf.run_config(train="{epochs: 1, optimizer: adamm, loss: 3}")),
    row("config-loss_typo_beside_a_wrong_value_in_check", "check {file}", 2,
        "`train.loss`: unknown loss 'crossentropyy'",
        cf.run_config(train="{epochs: 0, loss: crossentropyy}")),
    row("config-optimizer_and_schedule_by_name_alone", "check {file}", 0, "is valid",
        cf.run_config(train="{epochs: 1, optimizer: sgd, schedule: cosine}")),
    row("config-optimizer_typo_beside_a_network_problem_both_reported_by_train",
        "train {file}", 2, "{file}:3: `train.optimizer.name`: unknown optimizer 'adamm'",
        cf.run_config(model="{input: [8, 8, 1], layers: [{Conv2D: {filters: 2, kernel_size: "
                            "40}}, Flatten]}", train="{epochs: 1, optimizer: adamm}")),
    row("config-set_optimizer_argument_names_the_set",
        "train {file} --set train.optimizer.momentum=0.9", 2,
        "--set train.optimizer.momentum=0.9: `train.optimizer`: Argument(s) not recognized",
        cf.run_config()),
    row("config-optimizer_argument_typo", "train {file}", 2,
        "`train.optimizer`: Argument(s) not recognized: {{'momentun': 0.9}}",
        cf.run_config(train="{epochs: 1, optimizer: {name: sgd, momentun: 0.9}}")),
    row("config-optimizer_boolean_given_as_yaml_no", "train {file}", 2,
        "{file}:3: `train.optimizer.nesterov` is true or false, not 'no'. Hint: write true "
        "or false", cf.run_config(train="{epochs: 1, optimizer: {name: sgd, nesterov: no}}")),
    row("config-optimizer_number_in_quotes_in_check", "check {file}", 2,
        "{file}:3: `train.optimizer.epsilon` is the text '1e-7', not a number. Hint: write "
        "the number without quotes",
        cf.run_config(train="{epochs: 1, optimizer: {name: adam, epsilon: '1e-7'}}")),
    row("config-optimizer_clipping_given_a_word", "train {file}", 2,
        "`train.optimizer.clipnorm` is 'high', not a number",
        cf.run_config(train="{epochs: 1, optimizer: {name: sgd, clipnorm: high}}")),
    row("config-without_model_in_check_is_a_run_config_not_a_spec", "check {file}", 2,
        "{file}:1: `model` is missing: the network to train. Hint: add `model:`",
        cf.yaml_file("data: {name: mnist}\ntrain: {epochs: 1}\n")),
    row("config-input_too_small_for_a_built_in_blames_the_config_not_cnncli_s_file",
        "train {file}", 2, "{file}:1: `model.input` [4, 4, 1] is too small for lenet5: at "
        "layer 4 'conv2_1' (Conv2D), the 2x2 input is smaller than the 5x5 filter: (W - F + "
        "2P)/S + 1 = (2 - 5 + 0)/1 + 1 = -2. Hint: lenet5 fits 28x28 or larger (e.g. `input: "
        "[28, 28, 1]`)",
        cf.run_config(model="{from: lenet5, input: [4, 4, 1]}")),
    row("config-input_too_small_for_an_inline_spec_is_said_at_its_layer", "check {file}", 2,
        "{file}:1: layer 1 'conv1_1' (Conv2D): the 4x4 input is smaller than the 5x5 filter",
        cf.run_config(model="{input: [4, 4, 1], layers: [{Conv2D: {filters: 2, kernel_size: "
                            "5}}, Flatten, Dense]}")),
    row("config-input_too_small_for_a_built_in_in_check", "check {file}", 2,
        "{file}:1: `model.input` [4, 4, 1] is too small for lenet5",
        cf.run_config(model="{from: lenet5, input: [4, 4, 1]}")),
    row("config-image_size_too_small_for_a_built_in_blames_image_size_not_cnncli_s_file",
        "check {file}", 2, "{file}:2: `data.image_size` [2, 2] is too small for mnist_net: at "
        "layer 4 'pool2' (MaxPooling2D), the 1x1 input is smaller than the 2x2 pooling "
        "window: (W - F + 2P)/S + 1 = (1 - 2 + 0)/2 + 1 = 0.5. Hint: mnist_net fits 4x4 or "
        "larger (e.g. `image_size: [4, 4]`)",
        cf.run_config(model="mnist_net", data_extra=", image_size: [2, 2]")),
    row("config-image_size_set_too_small_for_an_inline_spec_blames_the_set",
        "train {file} --set data.image_size=[2,2] --dry-run", 2,
        "--set data.image_size=[2,2]: `data.image_size` [2, 2] is too small for the network: "
        "at layer 1 'conv1_1' (Conv2D), the 2x2 input is smaller than the 5x5 filter",
        cf.run_config(model="{input: [8, 8, 1], layers: [{Conv2D: {filters: 2, kernel_size: "
                            "5}}, Flatten, {Dense: {units: 2}}]}")),
    row("config-a_network_spec_given_to_train_is_said_to_be_one", "train {file}", 2,
        "{file}:2: this is a network spec (`layers:` at its top), not a run config: training "
        "needs the data and settings too. Hint: write a run config naming it, `model: "
        "spec.yaml` with `data:` and `train:`",
        cf.yaml_file("input: [8, 8, 1]\nlayers: [Flatten, {Dense: {units: 2}}]\n",
                     name="spec.yaml")),
    row("config-image_size_of_three_numbers_says_how_to_write_it", "check {file}", 2,
        "{file}:2: `data.image_size`: list should have at most 2 items after validation, not "
        "3, got [64, 64, 3]. Hint: write [height, width], e.g. [224, 224]",
        cf.run_config(model="mnist_net", data_extra=", image_size: [64, 64, 3]")),
    row("config-input_of_a_built_in_without_channels_is_the_configs_not_cnncli_s_file",
        "check {file}", 2, "{file}:1: `model.input`: list should have at least 3 items after "
        "validation, not 2, got [32, 32]. Hint: write [height, width, channels]",
        cf.run_config(model="{from: lenet5, input: [32, 32]}")),
    row("config-input_of_a_built_in_with_four_channels_is_the_configs", "check {file}", 2,
        "{file}:1: `model.input`: has 4 channels, and cnncli feeds images with 1 (grey) or 3 "
        "(colour), got [32, 32, 4]. Hint: use [32, 32, 1] or [32, 32, 3]",
        cf.run_config(model="{from: lenet5, input: [32, 32, 4]}")),
    row("config-from_with_layers_beside_it_is_no_inline_spec", "check {file}", 2,
        "{file}:1: unknown key 'model.layers'. Hint: valid keys here: from, classes, input",
        cf.run_config(model="{from: lenet5, layers: [Flatten]}"),
        check=no_spec_problems),
    row("config-metric_typo", "train {file}", 2, "`train.metrics`",
        cf.run_config(train="{epochs: 1, metrics: [accurasy]}")),
    row("config-batch_larger_than_the_data", "train {file}", 2,
        "the 288 training images are fewer than one batch of 5000",
        cf.run_config(train="{epochs: 1, batch_size: 5000}")),
    row("config-set_without_value", "train {file} --set train.epochs", 2,
        "--set 'train.epochs' is not of the form key=value", cf.run_config()),
    row("config-set_wrong_type", "train {file} --set train.epochs=ten", 2,
        "`train.epochs`: input should be a valid integer, got 'ten'", cf.run_config()),
]

# ----------------------------------------------------------------------------- data

DATA_ROWS = [
    row("data-empty_folder", "train {file}", 3, "photos has no class sub-folders",
        cf.data_builder(cf.empty_folder)),
    row("data-one_class", "train {file}", 3, "photos has only one class folder (cat)",
        cf.data_builder(cf.one_class_folder)),
    row("data-one_class_npz", "train {file}", 3, "data.npz has only one class (0). Hint: a "
        "classifier needs at least two classes to learn", cf.data_builder(cf.npz_with(
            y_train=np.zeros(320, "int64"), y_test=np.zeros(60, "int64")))),
    row("data-npz_counts_differ", "train {file}", 3, "data.npz has 320 training images but "
        "100 labels", cf.data_builder(cf.npz_with(y_train=np.zeros(100, "int64")))),
    row("data-label_out_of_range", "train {file}", 3,
        "data.npz has label 7, out of range for 3 classes",
        cf.data_builder(cf.npz_with(y_train=np.array([7] + [0, 1, 2] * 106 + [0]),
                                    class_names=np.array(["a", "b", "c"])))),
    row("data-negative_label", "train {file}", 3,
        "y_train in data.npz has a negative label (-1)",
        cf.data_builder(cf.npz_with(y_train=np.array([-1] + [0, 1, 2] * 106 + [0])))),
    row("data-mixed_image_sizes_train", "train {file}", 0, "Data: photos from",
        cf.data_builder(cf.mixed_sizes_folder), writes=True),
    row("data-non_image_files_skipped", "train {file}", 0,
        "warning: skipped 1 unreadable file in {tmp}/photos, e.g. {tmp}/photos/a/notes.png: "
        "the file is text", cf.data_builder(cf.folder_with_non_images), CLI, writes=True),
    row("data-undecodable_files_skipped_in_the_epoch", "train {file}", 0,
        r"epoch 1/1 .* [1-6] unreadable images? skipped\nwarning: skipped [1-6] images? "
        r"that could not be decoded: \S+/photos/./[01]\.png: the image is truncated or "
        r"corrupt", cf.data_builder(
            cf.folder_with_undecodable_pngs), CLI, regex=True, writes=True),
    row("data-most_images_undecodable", "train {file}", 3,
        r"photos: 1\d of the 1\d images read so far could not be decoded, e\.g\. \S+/photos/"
        r"./\d\.png: the image is truncated or corrupt \(Truncated File Read\); \S+\.png: "
        r"the image is truncated or corrupt \(Truncated File Read\); training stopped at "
        r"epoch 1, step \d, and no backup was written yet \(it happened before the first "
        r"one\)\. Hint: check the data \(a copy cut short\? the right folder\?\), fix or "
        r"remove the files that fail; then start the run again", cf.data_builder(
            cf.folder_mostly_undecodable), CLI, regex=True, writes=True),
    row("data-undecodable_file_strict", "train {file}", 3,
        r"photos/./[01]\.png: the image is truncated or corrupt .* training stopped at epoch 1, "
        r"step \d, .* Hint: fix or replace that file, or skip such files with data.strict: "
        r"false; then start the run again",
        cf.data_builder(cf.folder_with_undecodable_pngs, strict=True), CLI, regex=True,
        writes=True),
    row("data-non_image_files_strict", "train {file}", 3,
        "the file is text, not an image (it reads JPEG, PNG, BMP, GIF, WebP and TIFF). Hint: "
        "remove it (1 such file in {tmp}/photos), or turn strict mode off (data.strict: "
        "false)", cf.data_builder(cf.folder_with_non_images, strict=True)),
    row("data-truncated_npz", "train {file}", 3, "cut.npz is not a readable .npz file",
        cf.data_builder(cf.truncated_npz)),
    row("data-truncated_idx", "train {file}", 3,
        "train-images-idx3-ubyte is truncated: its header promises 320x8x8 = 20,480 bytes "
        "of data but it holds 20,380", cf.data_builder(cf.truncated_idx_folder)),
    row("data-more_classes_than_the_model", "train {file}", 3,
        "the data has 3 classes but the model outputs 2: '2' would have no output. Hint: set "
        "`model.classes: 3`", cf.data_builder(lambda folder, shared: shared.npz, classes=2)),
]

# ----------------------------------------------------------------------------- models

_MODEL_IN_SUBPROCESS = {("predict", "lambda_top_level"), ("evaluate", "zip_bomb_member")}


def _model_rows():
    from hostile import CASES

    rows = []
    for name, case in CASES.items():
        for command, args in (("evaluate", "evaluate {file} --data {npz}"),
                              ("predict", "predict {image} --model {file}")):
            rows.append(row(f"model-{command}-{name}", args, 3, case.message,
                            cf.hostile_model(name),
                            *([CLI] if (command, name) in _MODEL_IN_SUBPROCESS else []),
                            regex=True))
    return rows


MODEL_ROWS = [
    *_model_rows(),
    row("model-evaluate-input_does_not_fit_the_data", "evaluate {small} --data {npz}", 3,
        "{small}: "),
    row("model-predict-input_does_not_fit_the_image", "predict {image} --model {small}", 3,
        "{small}: "),
]

# ----------------------------------------------------------------------------- images

IMAGE_ROWS = [
    row("image-zero_bytes", "predict {file} --model {run}", 3,
        "{file}: the image is empty (0 bytes)", cf.image_file(cf.zero_byte_image)),
    row("image-truncated_jpeg", "predict {file} --model {run}", 3,
        "the image is truncated or corrupt", cf.image_file(cf.truncated_jpeg)),
    row("image-text_named_jpg", "predict {file} --model {run}", 3,
        "the file is text, not an image (it reads JPEG, PNG, BMP, GIF, WebP and TIFF). Hint: "
        "give image files (JPEG, PNG, BMP, GIF, WebP or TIFF)", cf.image_file(cf.text_named_jpeg)),
    row("image-decompression_bomb", "predict {file} --model {run}", 3,
        "bomb.png: the image has more than 89,478,485 pixels; refusing a possible "
        "decompression bomb",
        cf.image_file(cf.decompression_bomb), CLI),
    row("image-one_bad_among_good", "predict {image} {file} --model {run}", 1,
        "the image is empty (0 bytes)", cf.image_file(cf.zero_byte_image),
        stdout=r"good\.png\n  1\. 0: "),
    row("image-1x1_works", "predict {file} --model {run}", 0, "", cf.image_file(cf.one_pixel),
        stdout=r"^1\. \d: "),
    row("image-animated_gif_first_frame", "predict {file} --model {run}", 0, "",
        cf.image_file(cf.animated_gif), stdout=r"^1\. 0: "),
    row("image-cmyk_jpeg", "predict {file} --model {run}", 0, "",
        cf.image_file(cf.cmyk_jpeg), stdout=r"^1\. 1: "),
    row("image-16_bit_png_scaled", "predict {file} --model {run}", 0, "",
        cf.image_file(cf.png_16bit), stdout=r"^1\. 1: "),
    row("image-exif_rotated_jpeg", "predict {file} --model {run}", 0, "",
        cf.image_file(cf.exif_rotated_jpeg), stdout=r"^1\. 0: "),
]

# ----------------------------------------------------------------------------- command line


def full_disk_after_first_epoch(monkeypatch, tmp: Path) -> None:
    """Once the first epoch's last file (curves.png) is written, every fsync of a file in
    the run folder fails as on a full disk (ENOSPC); writes elsewhere still work."""
    real_fsync = os.fsync
    run = tmp / "runs" / "run" / "1"

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(run)) and (run / "curves.png").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def full_disk_at_the_curves(monkeypatch, tmp: Path) -> None:
    """Writing the run's curves.png fails as on a full disk (ENOSPC)."""
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".curves.png."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def first_epoch_files_remain(tmp: Path, stdout: str, stderr: str) -> None:
    run = tmp / "runs" / "run" / "1"
    assert (run / "history.csv").read_text().count("\n") == 2  # header + epoch 1
    best = modelfile.load_model(run / "best.keras")  # the epoch-1 model, whole and usable
    probs = best.predict(np.zeros((2, *best.input_shape[1:]), np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert rundir.has_backup(run)  # the epoch-1 backup, for --resume
    assert config.load(run / "config.yaml").train.epochs == 3
    assert not cf.temp_leftovers(run)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert not any(re.search(r"epoch [2-9]", line) for line in errors), \
        "the message must name the backup that is kept: epoch 1's"


def full_disk_config(folder: Path, shared: cf.Shared) -> dict:
    path = cf.data_config(folder, shared.npz)
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 3"))
    return {"file": str(path)}


COMMAND_LINE_ROWS = [
    row("cli-check_missing_file", "check {tmp}/nope.yaml", 2,
        "there is no file or folder '{tmp}/nope.yaml'"),
    row("cli-check_a_built_in_named_as_a_file", "check mnist_net.yaml", 2,
        "there is no file or folder 'mnist_net.yaml' (a path is read from the current folder, "
        "{tmp}). Hint: did you mean 'mnist_net'? (a built-in is named without .yaml)"),
    row("cli-train_missing_config", "train {tmp}/nope.yaml", 2,
        "{tmp}/nope.yaml: the file does not exist"),
    row("cli-evaluate_missing_run", "evaluate {tmp}/runs/nope/1", 3, "no such run"),
    row("cli-predict_missing_image", "predict {tmp}/nope.png --model {run}", 3,
        "{tmp}/nope.png: no such file or folder. Hint: check the spelling"),
    row("cli-predict_missing_model", "predict {image} --model {tmp}/nope.keras", 3,
        "the model file does not exist"),
    row("cli-check_a_directory", "check {tmp}", 2,
        "'{tmp}' is a folder, not a spec file, a run folder or a built-in network"),
    row("cli-train_a_directory", "train {tmp}", 2, "this is a directory, not a YAML file"),
    row("cli-evaluate_a_plain_folder", "evaluate {tmp}", 3,
        "this is not a cnncli run folder (it has no config.yaml)"),
    row("cli-predict_model_is_a_plain_folder", "predict {image} --model {tmp}", 3,
        "this is not a cnncli run folder"),
    row("cli-predict_a_folder_without_images", "predict {tmp} --model {run}", 3,
        "holds no images"),
    row("cli-predict_model_is_a_yaml_file", "predict {image} --model {file}", 3,
        "this is not a .keras model file", cf.yaml_file("model: linear\n", "run.yaml")),
    row("cli-train_output_under_a_file", "train {file}", 2,
        "cannot create the run folder: Not a directory",
        cf.config_with_output("{plain}/runs")),
    row("cli-train_output_in_proc", "train {file}", 2, "cannot create the run folder",
        cf.config_with_output("/proc/cnncli-runs")),
    row("cli-evaluate_output_under_a_file", "evaluate {run} --output {file}/eval", 2,
        "{file}/eval", cf.regular_file),
    row("cli-train_full_disk_after_epoch_1", "train {file}", 3, "No space left on device",
        full_disk_config, writes=True, patch=full_disk_after_first_epoch,
        check=first_epoch_files_remain),
    row("cli-train_full_disk_at_the_curves", "train {file}", 3,
        "cannot write the plot: No space left on device ({tmp}/runs/run/1/curves.png). "
        "Hint: free some disk space (or make the run folder writable), then: cnncli train "
        "--resume {tmp}/runs/run/1",
        full_disk_config, writes=True, patch=full_disk_at_the_curves),
    row("cli-predict_weights_with_a_run", "predict {image} --model {run} --weights w.h5", 2,
        "--weights goes with a pretrained model name"),
    row("cli-train_without_config_or_resume", "train", 2,
        "give a CONFIG file, or --resume RUN", None, CLI),
    row("cli-train_resume_a_plain_folder", "train --resume {tmp}", 3,
        "this is not a cnncli run folder"),
    row("cli-predict_bad_resize", "predict {image} --model {run} --resize crop", 2,
        "--resize crop: unknown resize mode 'crop'. Hint: did you mean 'center_crop'?"),
    row("cli-predict_bad_format", "predict {image} --model {run} --format xml", 2,
        "use text, json, jsonl or csv"),
    row("cli-evaluate_bad_threshold", "evaluate {run} --fail-under accurcy=0.9", 2,
        "accurcy", check=nothing_before_the_error),
]

CATALOGUE = (YAML_ROWS + SPEC_ROWS + CONFIG_ROWS + DATA_ROWS + MODEL_ROWS + IMAGE_ROWS
             + COMMAND_LINE_ROWS)


# ----------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return cf.Shared(tmp_path_factory.mktemp("shared"))


def placeholders(args: str, tmp: Path, shared: cf.Shared, made: dict) -> dict:
    """The values of the {names} `args` uses; shared artefacts are built only if used."""
    lazy = {"tmp": lambda: tmp, "npz": lambda: shared.npz, "run": lambda: shared.run,
            "image": lambda: shared.image, "small": lambda: shared.small_model}
    values = {k: str(v()) for k, v in lazy.items() if "{" + k + "}" in args}
    values.update(made)
    values.setdefault("tmp", str(tmp))
    return values


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CNNCLI_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "cnncli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def run_in_process(argv: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["cnncli", *argv])
    monkeypatch.delenv("CNNCLI_DEBUG", raising=False)
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CATALOGUE)
def test_catalogue(case: Row, tmp_path, shared, monkeypatch, capsys):
    made = case.make(tmp_path, shared) if case.make else {}
    values = placeholders(case.args + case.fragment, tmp_path, shared, made)
    argv = [part.format(**values) for part in case.args.split()]
    fragment = case.fragment if case.regex else re.escape(case.fragment.format(**values))
    before = cf.files_under(tmp_path)
    watched = Path(values["run"]) if "run" in values else None
    watched_before = cf.files_under(watched) if watched else None

    if case.subprocess:
        code, out, err = run_subprocess(argv, tmp_path)
    else:
        if case.patch:
            case.patch(monkeypatch, tmp_path)
        code, out, err = run_in_process(argv, tmp_path, monkeypatch, capsys)

    shown = f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert code == case.code, shown
    assert re.search(fragment, err if code else out + err), shown
    if case.stdout:
        assert re.search(case.stdout, out, re.MULTILINE), shown
    assert "Traceback" not in err, shown
    assert "this is a bug in cnncli" not in err, shown  # an exception that was not ours
    if "marker" in values:
        assert not Path(values["marker"]).exists(), "the input ran code"
    assert not modelfile.unsafe_deserialization_enabled()
    if not case.writes:
        assert cf.files_under(tmp_path) - before == set(), "files were written"
        if watched:
            assert cf.files_under(watched) == watched_before, "the run folder changed"
    if case.check:
        case.check(tmp_path, out, err)


# ----------------------------------------------------------------------------- YAML traps
# PyYAML reads `1e-3` as a string, `no` as False, and keeps the last of two equal keys.


def parse_config(text: str):
    return config.parse(yamlio.loads(text, "run.yaml"), file="run.yaml")


def test_trap_1e_3_is_a_number():
    cfg = parse_config("model: linear\ntrain:\n  optimizer: {learning_rate: 1e-3}\n")
    assert cfg.train.optimizer.learning_rate == 0.001


def test_trap_no_is_not_false_but_a_clear_error():
    with pytest.raises(ConfigError) as err:
        parse_config("model: linear\ndata:\n  offline: no\n")
    assert str(err.value).startswith("run.yaml:3: `data.offline`: input should be a valid "
                                     "boolean, got 'no'")
    assert "write true or false" in str(err.value)


def test_trap_no_for_auto_or_a_boolean_is_one_error_not_one_per_kind():
    with pytest.raises(ConfigError) as err:
        parse_config("model: linear\ntrain:\n  jit_compile: no\n")
    assert str(err.value) == ("run.yaml:3: `train.jit_compile`: should be auto, true or "
                              "false, got 'no'. Hint: write true or false (YAML's "
                              "yes/no/on/off are not booleans here)")
    assert parse_config("model: linear\ntrain:\n  jit_compile: false\n").train.jit_compile \
        is False


def test_trap_duplicate_keys_are_an_error_naming_both_lines():
    with pytest.raises(ConfigError) as err:
        parse_config("model: linear\ntrain:\n  epochs: 3\n  seed: 1\n  epochs: 30\n")
    assert str(err.value).startswith("run.yaml:5: the key 'epochs' appears twice (first on "
                                     "line 3)")


def test_trap_a_key_that_looks_like_pydantics_union_tags_is_still_named():
    """pydantic puts 'dict[str,any]' into its error locations; a user's key '[' is not one
    of those (found by the fuzz test: it was an IndexError, exit 3)."""
    with pytest.raises(ConfigError) as err:
        parse_config('model: linear\n"[": 0\n')
    assert "run.yaml:2: unknown key '['" in str(err.value)
    assert "valid keys here: model, data, train, output" in str(err.value)


def test_trap_a_typo_gets_did_you_mean():
    with pytest.raises(ConfigError) as err:
        parse_config("model: linear\ntrain:\n  batchsize: 8\n")
    assert "run.yaml:3: unknown key 'train.batchsize'" in str(err.value)
    assert "did you mean 'batch_size'?" in str(err.value)
