"""Specs: Keras names and arguments, repeat, blocks, branches, readable names, clear errors."""

import re

import pytest

from cnncli.errors import ConfigError, ManyErrors
from cnncli.model import spec
from cnncli.model.expand import INPUT, expand


def load(write, text):
    return spec.load(write("net.yaml", text))


def names(s):
    return [n.name for n in expand(s).nodes]


def test_layers_are_keras_classes_with_keras_arguments(write):
    s = load(write, """
        input: [28, 28, 1]
        layers:
          - Conv2D: {filters: 32, kernel_size: 5, padding: same, activation: relu}
          - Flatten
    """)
    first = expand(s).nodes[0]
    assert (first.layer, first.args) == ("Conv2D", {"filters": 32, "kernel_size": 5,
                                                    "padding": "same", "activation": "relu"})


def test_a_scalar_is_the_first_argument(write):
    s = load(write, "input: [2, 2, 1]\nlayers: [{Dropout: 0.5}, {Dense: 3}]\n")
    assert [n.args for n in expand(s).nodes] == [{"rate": 0.5}, {"units": 3}]


def test_names_follow_the_lecture_conv_pool_fc(write):
    s = load(write, """
        input: [8, 8, 1]
        layers:
          - Conv2D: {filters: 2, kernel_size: 3, padding: same}
            repeat: 2
          - MaxPooling2D
          - Conv2D: {filters: 2, kernel_size: 3, padding: same}
          - MaxPooling2D
          - Flatten
          - Dense: 4
          - Dense: 2
    """)
    assert names(s) == ["conv1_1", "conv1_2", "pool1", "conv2_1", "pool2", "flatten1",
                        "fc1", "fc2"]


def test_explicit_names_win(write):
    s = load(write, "input: [2, 2, 1]\nlayers:\n  - Dense: 3\n    name: hidden\n")
    assert names(s) == ["hidden"]


def test_a_name_among_a_layers_arguments_is_answered_with_yaml_that_reads_back(write):
    import yaml

    with pytest.raises((ConfigError, ManyErrors)) as e:
        names(load(write, "input: [2, 2, 1]\nlayers:\n  - Dense: {units: 3, name: '[v2] fc'}\n"))
    problem = getattr(e.value, "errors", [e.value])[0]
    written = problem.hint.split("on the next line `")[1].rstrip("`").strip()
    assert yaml.safe_load(written) == {"name": "[v2] fc"}


def test_two_layers_given_the_same_name_are_refused_at_the_second(write):
    with pytest.raises(ConfigError, match="two layers are named 'out'") as e:
        names(load(write, "input: [2, 2, 1]\nlayers:\n  - Flatten: {}\n    name: out\n"
                          "  - Dense: 3\n    name: out\n"))
    assert e.value.line == 5 and e.value.where == "layer 2 'out' (Dense)"


def test_blocks_take_parameters_and_expand_in_place(write):
    s = load(write, """
        input: [8, 8, 1]
        blocks:
          vgg_block:
            params: [filters, convs]
            layers:
              - Conv2D: {filters: $filters, kernel_size: 3, padding: same}
                repeat: $convs
              - MaxPooling2D
        layers:
          - vgg_block: {filters: 4, convs: 2}
          - vgg_block: {filters: 8, convs: 1}
    """)
    nodes = expand(s).nodes
    assert [n.name for n in nodes] == ["conv1_1", "conv1_2", "pool1", "conv2_1", "pool2"]
    assert [n.args.get("filters") for n in nodes] == [4, 4, None, 8, None]


def test_block_parameters_can_have_defaults(write):
    s = load(write, """
        input: [2, 2, 1]
        blocks:
          fc: {params: {units: 7}, layers: [{Dense: $units}]}
        layers: [fc, {fc: {units: 3}}]
    """)
    assert [n.args["units"] for n in expand(s).nodes] == [7, 3]


def test_branches_merge_and_an_empty_branch_is_the_identity(write):
    s = load(write, """
        input: [8, 8, 3]
        layers:
          - branches:
              - [{Conv2D: {filters: 4, kernel_size: 3, padding: same}}]
              - []
            merge: add
    """)
    nodes = expand(s).nodes
    merge = nodes[-1]
    assert merge.layer == "Add"
    assert merge.inputs == [nodes[0].name, INPUT]


def test_classes_fill_in_dollar_classes_and_can_be_overridden(write):
    s = load(write, "input: [2, 2, 1]\nclasses: 10\nlayers: [{Dense: $classes}]\n")
    assert expand(s).nodes[0].args == {"units": 10}
    assert expand(s.with_overrides(classes=3)).nodes[0].args == {"units": 3}


def test_unknown_layer_suggests_the_keras_name(write):
    with pytest.raises(ConfigError, match="unknown layer 'Conv2d'") as e:
        expand(load(write, "input: [8, 8, 1]\nlayers:\n  - Conv2d: {filters: 2}\n"))
    assert e.value.line == 3 and e.value.file.endswith("net.yaml")
    assert "did you mean 'Conv2D'" in e.value.hint


def test_pytorch_names_are_translated_in_the_hint(write):
    with pytest.raises(ConfigError) as e:
        expand(load(write, "input: [2, 2, 1]\nlayers: [{Linear: 3}]\n"))
    assert "did you mean 'Dense'" in e.value.hint


@pytest.mark.parametrize("torch,keras", [
    ("ConvTranspose2d", "Conv2DTranspose"), ("ConvTranspose1d", "Conv1DTranspose"),
    ("ZeroPad2d", "ZeroPadding2D"), ("Upsample", "UpSampling2D"), ("GELU", "Activation: gelu")])
def test_pytorch_names_whose_closest_keras_names_are_other_layers_get_theirs(torch, keras):
    """By spelling alone ConvTranspose2d was "did you mean 'Conv3DTranspose'" (which then
    failed: "expected min_ndim=5"), GELU "ELU"."""
    from cnncli.model import keras_layers

    assert keras_layers.unknown_layer_hint(torch).startswith(f"did you mean '{keras}'?")


def test_each_pytorch_name_translates_to_a_keras_layer():
    from cnncli.model import keras_layers

    names = set(keras_layers.keras_layer_names())
    for keras in keras_layers._TORCH_NAMES.values():
        assert keras.split(":")[0] in names or keras.startswith("a block"), keras


def test_unknown_argument_lists_the_valid_ones(write):
    with pytest.raises(ConfigError, match="unknown argument 'filter' for Conv2D") as e:
        expand(load(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filter: 2}\n"))
    assert "did you mean 'filters'" in e.value.hint
    assert "kernel_size" in e.value.hint
    assert e.value.where == "layer 1"


@pytest.mark.parametrize("value", ["no", "off", "'false'", "0"])
def test_a_layer_boolean_given_anything_but_true_or_false_is_refused(write, value):
    """Keras would take the text 'no' as true and build another network."""
    with pytest.raises(ConfigError, match="`use_bias` of Conv2D is true or false, not ") as e:
        expand(load(write, "input: [8, 8, 1]\nlayers:\n"
                           f"  - Conv2D: {{filters: 2, kernel_size: 3, use_bias: {value}}}\n"))
    assert e.value.line == 3 and "yes/no/on/off are not booleans" in e.value.hint
    nodes = expand(load(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, "
                               "kernel_size: 3, use_bias: false}\n")).nodes
    assert nodes[0].args["use_bias"] is False


@pytest.mark.parametrize("layer,value,hint", [
    ("Conv2D: {filters: 2, kernel_size: 3", "2", "put `- ZeroPadding2D: P` before it"),
    ("MaxPooling2D: {pool_size: 2", "1", "`same` covers the edges"),
    ("MaxPooling2D: {pool_size: 2", "SAME", "`same` covers the edges"),  # Keras: lower case
    ("Conv1D: {filters: 2, kernel_size: 3", "full", "put `- ZeroPadding1D: P` before it"),
    ("Conv3D: {filters: 2, kernel_size: 3", "[1, 1]", "`- ZeroPadding3D: P`"),
    ("Conv2DTranspose: {filters: 2, kernel_size: 3", "1", "(the lecture's P = (F - 1)/2 "
                                                          "zeros)")])
def test_padding_given_as_the_lectures_number_p_is_told_the_words_keras_takes(write, layer,
                                                                             value, hint):
    """Keras said "'int' object has no attribute 'lower'" of `padding: 2`."""
    with pytest.raises(ConfigError, match=f"`padding` of {layer.split(':')[0]} is valid or "
                                          f"same(| or causal), not") as e:
        expand(load(write, f"input: [8, 8, 1]\nlayers:\n  - {layer}, padding: {value}}}\n"))
    assert e.value.line == 3 and hint in e.value.hint


def test_padding_words_are_taken_in_any_case_and_zero_padding_takes_sizes(write):
    nodes = expand(load(write, "input: [8, 8, 1]\nlayers:\n  - ZeroPadding2D: {padding: 2}\n"
                               "  - Conv2D: {filters: 2, kernel_size: 3, padding: SAME}\n")).nodes
    assert [n.args["padding"] for n in nodes] == [2, "SAME"]


def test_lambda_is_not_a_layer_specs_can_use(write):
    with pytest.raises(ConfigError, match="unknown layer 'Lambda'") as e:
        expand(load(write, "input: [2, 2, 1]\nlayers: [{Lambda: {function: print}}]\n"))
    assert "arbitrary code" in e.value.hint


def test_missing_block_parameter_is_named(write):
    with pytest.raises(ConfigError, match="needs the parameter 'convs'"):
        expand(load(write, """
            input: [8, 8, 1]
            blocks:
              vgg_block: {params: [filters, convs], layers: [{Conv2D: {filters: $filters,
                          kernel_size: 3}, repeat: $convs}]}
            layers: [{vgg_block: {filters: 4}}]
        """))


@pytest.mark.parametrize("layer,says", [
    ("Dropout: half", "`rate` of Dropout is a number, not 'half'"),
    ("Conv2D: {filters: 8.5, kernel_size: 3}", "`filters` of Conv2D is a whole number, "
                                               "not 8.5"),
    ("Conv2D: {filters: 8, kernel_size: [3, x]}", "`kernel_size` of Conv2D is a whole "
                                                  "number, not [3, 'x']"),
])
def test_a_size_or_rate_that_is_no_number_is_said_in_cnnclis_words(write, layer, says):
    """Not Keras' "'<=' not supported between instances of 'int' and 'str'"."""
    with pytest.raises(ConfigError, match=re.escape(says)) as e:
        expand(load(write, f"input: [8, 8, 1]\nlayers:\n  - {layer}\n  - Flatten\n"))
    assert e.value.line == 3


def test_sizes_as_tuples_are_whole_numbers_as_a_cut_model_files_layers_give_them():
    """`model.from: FILE, cut: LAYER` rebuilds the layers after the cut from Keras'
    configs: kernel_size (3, 3), pool_size (2, 2)."""
    nodes = expand(spec.parse({"input": [8, 8, 1], "layers": [
        {"Conv2D": {"filters": 2, "kernel_size": (3, 3), "strides": (1, 1)}},
        {"MaxPooling2D": {"pool_size": (2, 2)}}, "Flatten"]})).nodes
    assert nodes[0].args["kernel_size"] == (3, 3) and nodes[1].args["pool_size"] == (2, 2)


def test_an_undefined_value_for_a_boolean_argument_is_one_error(write):
    with pytest.raises(ConfigError) as e:
        expand(load(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, "
                           "kernel_size: 3, use_bias: $nope}\n"))
    assert str(e.value).count("error") <= 1 and "'$nope' is not defined here" in str(e.value)
    assert "true or false" not in str(e.value)


def test_arguments_written_in_line_with_their_layer_are_told_to_indent(write):
    with pytest.raises(ConfigError) as e:
        expand(load(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D:\n    filters: 8\n"
                           "    kernel_size: 3\n  - Flatten\n"))
    assert e.value.hint == ("indent the arguments of Conv2D under it (two more spaces than "
                            "`Conv2D:`), or write them on its line: `- Conv2D: {filters: 8, "
                            "kernel_size: 3}`")


def test_layers_written_as_a_mapping_are_told_to_start_with_dashes(write):
    with pytest.raises(ConfigError, match="must be a non-empty list of layers, not a "
                                          "mapping") as e:
        load(write, "input: [8, 8, 1]\nlayers:\n  Conv2D: {filters: 8}\n  Flatten:\n")
    assert e.value.hint.startswith("start each layer with `- ` (a list item): `- Conv2D:")


def test_a_bad_input_is_said_with_the_specs_other_problems(write):
    with pytest.raises(ManyErrors) as e:
        load(write, "input: [28.5, 28, 1]\nclasses: 0\nlayers: [Flatten]\n")
    assert [err.line for err in e.value.errors] == [1, 2]  # in the file's order
    assert e.value.errors[0].message.startswith("`input` must be [height, width, channels]")


def test_an_empty_layer_entry_is_named_as_yaml_writes_it(write):
    with pytest.raises(ConfigError, match="not null$"):
        expand(load(write, "input: [8, 8, 1]\nlayers:\n  - null\n  - Flatten\n"))


def test_an_undefined_value_given_to_a_block_is_one_error_at_the_call(write):
    """Not a second one inside the block for the parameter it did not get."""
    with pytest.raises(ConfigError) as e:
        expand(load(write, """
            input: [8, 8, 1]
            blocks:
              cb: {params: [filters], layers: [{Conv2D: {filters: $filters, kernel_size: 3}}]}
            layers: [{cb: {filters: $nope}}]
        """))
    assert (str(e.value).count("is not defined here"), e.value.line) == (1, 4)
    assert "'$nope' is not defined here" in str(e.value)


def test_a_block_that_uses_itself_is_refused(write):
    with pytest.raises(ConfigError, match=r"block 'a' uses itself \(a -> b -> a\)"):
        expand(load(write, """
            input: [2, 2, 1]
            blocks:
              a: {layers: [b]}
              b: {layers: [a]}
            layers: [a]
        """))


def test_missing_input_shape_says_how_to_add_it(write):
    with pytest.raises(ConfigError, match="no input shape") as e:
        expand(load(write, "layers: [Flatten]\n"))
    assert "input: [" in e.value.hint


def test_an_input_larger_than_any_image_cnncli_reads_is_refused(write):
    """`input: [100000000, 100000000, 3]` passed check and ended in a MemoryError."""
    with pytest.raises(ConfigError, match=r"`input` \[100000000, 100000000, 3\] is larger "
                                          r"than the 16,384 pixels a side"):
        expand(load(write, "input: [100000000, 100000000, 3]\nlayers: [Flatten]\n"))


def test_zero_classes_is_refused(write):
    with pytest.raises(ConfigError, match="at least 1"):
        load(write, "input: [2, 2, 1]\nclasses: 0\nlayers: [{Dense: $classes}]\n")


def test_all_problems_are_reported_not_only_the_first(write):
    with pytest.raises(ManyErrors) as e:
        expand(load(write, """
            input: [8, 8, 1]
            layers:
              - Conv2d: {filters: 2}
              - MaxPooling2D: {pool: 2}
              - Dense: {unit: 3}
        """))
    assert [err.line for err in e.value.errors] == [3, 4, 5]


def test_unknown_top_level_key_suggests_the_right_one(write):
    with pytest.raises(ConfigError, match="unknown key 'layer'") as e:
        load(write, "input: [2, 2, 1]\nlayer: [Flatten]\nlayers: [Flatten]\n")
    assert "did you mean 'layers'" in e.value.hint


def test_a_spec_must_be_a_mapping(write):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(write, "- Flatten\n- Dense: 3\n")


def test_empty_spec(write):
    with pytest.raises(ConfigError, match="empty"):
        load(write, "")


def test_repeat_must_be_positive(write):
    with pytest.raises(ConfigError, match="`repeat` must be a whole number"):
        expand(load(write, "input: [2, 2, 1]\nlayers:\n  - Dense: 3\n    repeat: 0\n"))


def test_a_repeat_that_is_not_a_number_is_shown_as_written(write):
    with pytest.raises(ConfigError) as info:
        expand(load(write, "input: [2, 2, 1]\nlayers:\n  - Dense: 3\n    repeat: true\n"))
    assert info.value.message.endswith("at least 1, not true")  # not Python's True
    assert "e.g. `repeat: 3`" in info.value.hint


def test_huge_repeat_is_bounded(write):
    with pytest.raises(ConfigError, match="more than 10,000 layers"):
        expand(load(write, "input: [2, 2, 1]\nlayers:\n  - Dense: 3\n    repeat: 100000000\n"))
