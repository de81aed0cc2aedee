"""Fuzzing (GitHub issue 8): random specs, run configs and YAML text never crash cnncli.

The properties: `spec.parse` + `builder.build_checked` either build a model or raise a
`CnnError`; `config.parse` (and `spec.from_run_config` on what it accepts) either returns
or raises a `CnnError`; `yamlio.loads` either returns a value or raises a `ConfigError`.
Any other exception is a bug: a user would see "unexpected ...: this is a bug".

The strategies mix valid and invalid parts: Keras layer names and made-up ones,
plausible and wrong argument values, `repeat`, blocks (also using themselves),
branches nested in branches, and odd top-level keys. Inputs are tiny (8x8x1), and
integers small, so a build costs milliseconds and memory stays low.

Each property runs 50 derandomized examples in the normal suite, and 3,000 in its
``slow`` variant (1,000 valid-looking specs, which build whole models; ``pytest -m
fuzz tests/test_fuzz.py``, about 3 minutes, 2 with ``-n 2``).
Both are deterministic; ``CNNCLI_FUZZ_RANDOM=1`` draws new examples on every run, to
look further.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cnncli import config, yamlio
from cnncli.errors import CnnError, ConfigError
from cnncli.model import builder, keras_layers, spec
from cnncli.runtime import import_keras

keras = import_keras()

FAST = settings(max_examples=50, deadline=None, database=None,
                derandomize=not os.environ.get("CNNCLI_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=3000)
#: Valid-looking specs mostly build a whole model (0.1 s each, 10 times the others):
#: 1,000 of them take as long as the 3,000 of each other property.
SLOW_BUILDS = settings(SLOW, max_examples=1000)

# ----------------------------------------------------------------------------- values

KERAS_LAYERS = sorted(keras_layers.keras_layer_names())
COMMON_LAYERS = ["Conv2D", "MaxPooling2D", "AveragePooling2D", "Flatten", "Dense", "Dropout",
                 "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
                 "ZeroPadding2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
                 "Reshape", "Cropping2D", "UpSampling2D", "Softmax", "Add", "Concatenate",
                 "LSTM", "GRU", "SimpleRNN", "MultiHeadAttention", "Embedding"]
MADE_UP_LAYERS = ["Conv2d", "conv2d", "Linear", "MaxPool2d", "Lambda", "TFSMLayer", "Layer",
                  "InputLayer", "Input", "Sequential", "", " ", "Dense ", "$classes",
                  "branches", "repeat", "merge", "name"]
BLOCK_NAMES = ["stage", "res", "inception", "Conv2D"]  # the last collides with a layer
PARAMS = ["filters", "convs", "units", "rate"]

small_ints = st.integers(-2, 9)
huge_ints = st.sampled_from([10**9, -(10**9), 2**63])  # fail at once, never allocate
plausible_values = st.one_of(
    small_ints,
    st.sampled_from(["same", "valid", "relu", "softmax", "tanh", "channels_last",
                     "channels_first", "glorot_uniform", "$classes", "$filters", "$convs",
                     "$nope", "$", "1e-3", "no"]),
    st.floats(-1.5, 2.5),
    st.booleans(),
    st.none(),
    st.lists(small_ints, max_size=3),
)
wrong_values = st.one_of(
    st.text(max_size=6),
    huge_ints,
    st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.dictionaries(st.text(max_size=3), small_ints, max_size=2),
    st.lists(st.text(max_size=2), max_size=2),
    st.sampled_from([{"class_name": "Lambda", "config": {}},
                     {"module": "os", "class_name": "system", "config": {"command": "true"}},
                     {"module": "builtins", "class_name": "function", "config": "eval"}]),
)
values = st.one_of(plausible_values, plausible_values, wrong_values)
keys = st.one_of(st.text(max_size=6), small_ints, st.none(), st.booleans())


@st.composite
def layer_args(draw, name):
    """An argument mapping for layer `name`: its real argument names and made-up ones."""
    cls = keras_layers.layer_class(name) if isinstance(name, str) else None
    real = list(keras_layers.valid_arguments(cls)) if cls is not None else []
    names = st.one_of(st.sampled_from(real), keys) if real else keys
    if real:
        names = st.one_of(st.sampled_from(real), st.sampled_from(real), keys,
                          st.sampled_from(["input_shape", "filter", "unit"]))
    return draw(st.dictionaries(names, values, max_size=4))


@st.composite
def layer_entry(draw, blocks=()):
    """One entry of a `layers:` list: a bare name, a name with arguments, a block use..."""
    name = draw(st.one_of(st.sampled_from(COMMON_LAYERS), st.sampled_from(KERAS_LAYERS),
                          st.sampled_from(MADE_UP_LAYERS), keys))
    if blocks and draw(st.booleans()):  # use the blocks often: their checks run on use
        name = draw(st.sampled_from(list(blocks)))
    form = draw(st.sampled_from(["bare", "args", "args", "scalar", "null", "odd"]))
    if form == "bare" and isinstance(name, str):
        return name
    if form == "odd":
        return draw(st.one_of(values, st.just({}), st.just([]),
                              st.dictionaries(keys, values, min_size=2, max_size=3)))
    value = {"args": layer_args(name), "scalar": values, "null": st.none()}.get(form, st.none())
    if name in blocks:
        value = st.one_of(st.dictionaries(st.sampled_from(PARAMS + ["x"]), values, max_size=3),
                          values)
    entry = {name: draw(value)}
    if draw(st.integers(0, 4)) == 0:
        entry["repeat"] = draw(st.one_of(st.integers(-1, 4), st.just(10**6), values))
    if draw(st.integers(0, 5)) == 0:
        entry["name"] = draw(st.one_of(st.sampled_from(["conv", "a b", "x/y", "fc1", "input"]),
                                       values))
    return entry


def entries(blocks=()):
    """Layer entries, with branches (holding entries, maybe branches again) mixed in."""
    leaf = layer_entry(blocks)

    def branches(children):
        return st.fixed_dictionaries(
            {"branches": st.one_of(st.lists(st.lists(children, max_size=3), max_size=4),
                                   values)},
            optional={"merge": st.one_of(st.sampled_from(
                ["concatenate", "add", "multiply", "average", "subtract", "Add", "mean"]),
                values), "repeat": st.integers(0, 2), "name": st.text(max_size=4),
                "Flatten": st.none()})

    return st.recursive(leaf, branches, max_leaves=8)


@st.composite
def spec_docs(draw):
    """A spec as YAML would give it: mostly spec-like, sometimes anything at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(values, st.lists(values, max_size=3)))
    block_names = draw(st.lists(st.sampled_from(BLOCK_NAMES), max_size=2, unique=True))
    doc = {}
    if draw(st.integers(0, 9)):
        doc["input"] = draw(st.one_of(
            st.sampled_from([[8, 8, 1], [8, 8, 3], [4, 4, 1], [1, 1, 1], [8, 8], [8],
                             [2, 8, 8, 1], [8, 8, 1, 1, 1], [0, 8, 1], []]),
            st.lists(st.integers(-1, 9), max_size=4), values))
    if draw(st.booleans()):
        doc["classes"] = draw(st.one_of(st.integers(-1, 5), values))
    if block_names:
        doc["blocks"] = {
            name: draw(st.one_of(
                st.fixed_dictionaries(
                    {"layers": st.lists(entries(block_names), max_size=3)},
                    optional={"params": st.one_of(
                        st.lists(st.sampled_from(PARAMS), max_size=2),
                        st.dictionaries(st.sampled_from(PARAMS), values, max_size=2),
                        values)}),
                values))
            for name in block_names}
    if draw(st.integers(0, 9)):
        doc["layers"] = draw(st.one_of(st.lists(entries(block_names), max_size=6), values))
    for key in draw(st.lists(st.sampled_from(["name", "description", "preprocessing",
                                              "layer", "Input", "model"]), max_size=2)):
        doc[key] = draw(values)
    return doc


@st.composite
def valid_looking_specs(draw):
    """Specs from a vocabulary that usually builds: so builds are fuzzed too, not only
    the early refusals."""
    layers = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["conv", "pool", "bn", "drop", "dense", "branch"]))
        if kind == "conv":
            layers.append({"Conv2D": {"filters": draw(st.integers(1, 4)),
                                      "kernel_size": draw(st.integers(1, 5)),
                                      "padding": draw(st.sampled_from(["same", "valid"])),
                                      "strides": draw(st.integers(1, 3))}})
        elif kind == "pool":
            layers.append({draw(st.sampled_from(["MaxPooling2D", "AveragePooling2D"])):
                           {"pool_size": draw(st.integers(1, 3))}})
        elif kind == "bn":
            layers.append("BatchNormalization")
        elif kind == "drop":
            layers.append({"Dropout": draw(st.floats(-0.5, 1.5))})
        elif kind == "dense":
            layers.append({"Dense": draw(st.integers(0, 6))})
        else:
            layers.append({"branches": [[{"Conv2D": {"filters": draw(st.integers(1, 3)),
                                                     "kernel_size": 3, "padding": "same"}}],
                                        []],
                           "merge": draw(st.sampled_from(["concatenate", "add"]))})
    layers += [draw(st.sampled_from(["Flatten", "GlobalAveragePooling2D", "ReLU"])),
               {"Dense": {"units": "$classes", "activation": "softmax"}}]
    return {"input": draw(st.sampled_from([[8, 8, 1], [8, 8, 3], [5, 7, 3]])),
            "classes": draw(st.integers(0, 4)), "layers": layers}


@st.composite
def one_random_layer_specs(draw):
    """A spec that is sound but for one or two Keras layers with random arguments (real
    argument names), so the arguments reach Keras itself."""
    def random_layer():
        name = draw(st.one_of(st.sampled_from(KERAS_LAYERS), st.sampled_from(COMMON_LAYERS)))
        real = list(keras_layers.valid_arguments(keras_layers.layer_class(name)))
        args = draw(st.dictionaries(st.sampled_from(real), values, max_size=3))
        return {name: args}

    layers = [random_layer() for _ in range(draw(st.integers(1, 2)))]
    tail = draw(st.sampled_from([["Flatten"], ["GlobalAveragePooling2D"], []]))
    return {"input": draw(st.sampled_from([[8, 8, 1], [8, 8, 3], [6, 6, 3], [3, 9, 1]])),
            "classes": 3,
            "layers": layers + tail + [{"Dense": {"units": "$classes"}}]}


# ----------------------------------------------------------------------------- run configs

SECTION_FIELDS = {
    "data": list(config.DataSection.model_fields),
    "train": list(config.TrainSection.model_fields),
    "output": list(config.OutputSection.model_fields),
}


@st.composite
def section(draw, name):
    fields = SECTION_FIELDS[name]
    field_names = st.one_of(st.sampled_from(fields), st.sampled_from(fields), keys,
                            st.sampled_from(["epoch", "batchsize", "lr", "optimiser"]))
    nested = {"optimizer": st.dictionaries(
        st.sampled_from(["name", "learning_rate", "momentum", "nesterov", "lr"]), values,
        max_size=3),
        "schedule": st.dictionaries(st.sampled_from(
            ["name", "warmup_epochs", "step_epochs", "factor", "patience", "min_lr", "x"]),
            values, max_size=3),
        "early_stopping": st.dictionaries(st.sampled_from(
            ["patience", "monitor", "min_delta", "mode"]), values, max_size=3)}
    result = {}
    for key in draw(st.lists(field_names, max_size=5)):
        strategy = nested.get(key, values) if isinstance(key, str) else values
        result[key] = draw(st.one_of(strategy, values))
    return result


@st.composite
def run_configs(draw):
    if draw(st.integers(0, 19)) == 0:
        return draw(st.one_of(values, st.lists(values, max_size=2)))
    doc = {}
    if draw(st.integers(0, 9)):
        doc["model"] = draw(st.one_of(
            st.sampled_from(["linear", "lenet5", "mnist_net", "vgg61", "", "no", "."]),
            st.fixed_dictionaries({}, optional={
                "from": st.one_of(st.sampled_from(["linear", "lenet5", "vgg61"]), values),
                "classes": st.one_of(st.integers(-1, 12), values),
                "input": st.one_of(st.lists(st.integers(-1, 40), max_size=4), values),
                "clases": values}),
            spec_docs(), values))
    for name in ("data", "train", "output"):
        if draw(st.booleans()):
            doc[name] = draw(st.one_of(section(name), values))
    for key in draw(st.lists(st.sampled_from(["trian", "dtaa", "digest", "Model"]),
                             max_size=1)):
        doc[key] = draw(values)
    return doc


# ----------------------------------------------------------------------------- YAML text

YAML_TOKENS = ["a", "b", "layers", ":", ": ", " ", "\n", "  ", "- ", "[", "]", "{", "}", ", ",
               "&x ", "*x", "&y ", "*y", "!!python/object/apply:os.system ", "!!str ",
               "!!binary ", "!!int ", "!!set ", "!foo ", "<<: ", "? ", "---\n", "...\n",
               "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "'", '"', "# c", "\t", "1e-3", "no",
               "0x1F", "0o17", ".inf", ".nan", "~", "|\n", ">-\n", "\\", "\\0", "\x00",
               "\x07", "\udc80", "\ufeff", "1" * 5000, "[" * 200, "10", "-3.5"]
yaml_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join),
)


# ----------------------------------------------------------------------------- properties


def check_spec(doc) -> None:
    try:
        built = builder.build_checked(spec.parse(doc, file="fuzz.yaml"))
    except CnnError as exc:
        event(f"refused: {type(exc).__name__}")
        assert str(exc)
        return
    event("built")
    assert isinstance(built.model, keras.Model)
    del built
    keras.backend.clear_session()  # thousands of models must not pile up in memory


def check_config(doc) -> None:
    try:
        cfg = config.parse(doc, file="fuzz.yaml")
    except CnnError as exc:
        assert str(exc)
        return
    assert isinstance(cfg, config.RunConfig)
    try:
        spec.from_run_config(cfg, file="fuzz.yaml", classes=3)
    except CnnError:
        pass


def check_yaml(text: str) -> None:
    try:
        yamlio.loads(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc)


@FAST
@given(spec_docs())
def test_random_specs_build_or_raise_cnn_errors(doc):
    check_spec(doc)


@FAST
@given(valid_looking_specs())
def test_valid_looking_specs_build_or_raise_cnn_errors(doc):
    check_spec(doc)


@FAST
@given(one_random_layer_specs())
def test_specs_with_random_keras_arguments_build_or_raise_cnn_errors(doc):
    check_spec(doc)


@FAST
@given(run_configs())
def test_random_run_configs_parse_or_raise_cnn_errors(doc):
    check_config(doc)


@FAST
@given(yaml_texts)
def test_random_yaml_text_loads_or_raises_config_errors(text):
    check_yaml(text)


@pytest.mark.slow
@pytest.mark.fuzz
@SLOW
@given(spec_docs())
def test_many_random_specs_build_or_raise_cnn_errors(doc):
    check_spec(doc)


@pytest.mark.slow
@pytest.mark.fuzz
@SLOW_BUILDS
@given(valid_looking_specs())
def test_many_valid_looking_specs_build_or_raise_cnn_errors(doc):
    check_spec(doc)


@pytest.mark.slow
@pytest.mark.fuzz
@SLOW
@given(one_random_layer_specs())
def test_many_specs_with_random_keras_arguments_build_or_raise_cnn_errors(doc):
    check_spec(doc)


@pytest.mark.slow
@pytest.mark.fuzz
@SLOW
@given(run_configs())
def test_many_random_run_configs_parse_or_raise_cnn_errors(doc):
    check_config(doc)


@pytest.mark.slow
@pytest.mark.fuzz
@SLOW
@given(yaml_texts)
def test_many_random_yaml_texts_load_or_raise_config_errors(text):
    check_yaml(text)


# ----------------------------------------------------------------------------- found by fuzzing


@pytest.mark.parametrize("text", [
    "[" * 5000,                       # RecursionError in PyYAML's composer
    "a: 1" + "0" * 5000,              # ValueError: int() of more than 4,300 digits
    "a: \udc80\n",                    # ReaderError raised before parsing started
    "model: linear\x07\n",            # a control character in a file
    "a: &a [*a]\n",                   # a recursive alias (was called an 'unsupported tag')
])
def test_found_yaml_texts_are_config_errors(text):
    with pytest.raises(ConfigError):
        yamlio.loads(text, "fuzz.yaml")


@pytest.mark.parametrize("doc", [
    {"input": [2, 2, 1], "layers": [{1: 2}]},        # AttributeError: int has no .lower()
    {"input": [2, 2, 1], "layers": [{None: 2}]},
    {"input": [2, 2, 1], "layers": [{"TFSMLayer": {"filepath": "/tmp"}}]},  # loads a SavedModel
    {"input": [8, 8, 1],
     "layers": [{"Reshape": [8, 8]}, {"LSTM": {"units": 2, "return_state": True}}, "Flatten"]},
    {"input": [8, 8, 1], "layers": [{"MaxPooling2D": {"strides": 0}}]},  # ZeroDivisionError
    {"input": [2, 4, 1], "blocks": {"b": {"params": 5, "layers": ["Flatten"]}}, "layers": ["b"]},
    {"input": [2, 4, 1], "blocks": {"b": {"params": [[1]], "layers": ["Flatten"]}},
     "layers": ["b"]},
    {"input": [2, 4, 1], "layers": [{"Dense": 10**11}]},  # TensorFlow waited 10 s, then OOM
])
def test_found_specs_are_config_errors(doc):
    with pytest.raises(ConfigError):
        builder.build_checked(spec.parse(doc, file="fuzz.yaml"))


@pytest.mark.parametrize("text, message", [
    ("model: {from: linear, classes: 0}\n", "`model.classes`"),  # was a ValidationError
    ("model: linear\ndata: {augment: {flp: horizontal}}\n", "'data.augment.flp'"),
    ("model: linear\ntrain: {early_stopping: {monitor: val_accuracyy}}\n", "'val_accuracyy'"),
])
def test_found_run_config_errors_are_config_errors(text, message):
    """These passed `config.parse` (or raised pydantic's own error) and failed later."""
    with pytest.raises(ConfigError, match=message):
        config.parse(yamlio.loads(text, "run.yaml"), file="run.yaml")
