"""The builder: Keras models from specs, with shape errors explained by the lecture's formula."""

import re

import numpy as np
import pytest

from cnncli.errors import ConfigError, ManyErrors
from cnncli.model import builder, spec


def build_text(write, text, **kw):
    return builder.build_checked(spec.load(write("net.yaml", text)), **kw)


def test_builds_a_functional_model_with_the_spec_names(write):
    built = build_text(write, """
        input: [8, 8, 1]
        classes: 3
        layers:
          - Conv2D: {filters: 2, kernel_size: 3}
          - Flatten
          - Dense: {units: $classes, activation: softmax}
    """)
    assert [layer.name for layer in built.model.layers] == ["input", "conv1_1", "flatten1", "fc1"]
    assert built.model.output.shape == (None, 3)


def test_window_larger_than_input_shows_the_formula(write):
    with pytest.raises(ConfigError) as e:
        build_text(write, """
            input: [3, 3, 1]
            layers:
              - Conv2D: {filters: 4, kernel_size: 5}
              - Flatten
        """)
    text = str(e.value)
    assert "the 3x3 input is smaller than the 5x5 filter" in text
    assert "(W - F + 2P)/S + 1 = (3 - 5 + 0)/1 + 1 = -1" in text
    assert e.value.where == "layer 1 'conv1_1' (Conv2D)" and e.value.line == 3


def test_shapes_that_shrink_below_one_pixel_name_the_pooling_layer(write):
    with pytest.raises(ConfigError, match=r"layer 2 'pool2' \(MaxPooling2D\)") as e:
        build_text(write, """
            input: [2, 2, 1]
            layers:
              - MaxPooling2D
              - MaxPooling2D
              - MaxPooling2D
              - Flatten
        """)
    assert "1x1 input is smaller than the 2x2 pooling window" in str(e.value)


def test_three_equal_branches_subtracted_are_told_subtract_takes_two(write):
    """Not "their outputs are 8x8x3, 8x8x3, 8x8x3" with a hint about equal shapes."""
    with pytest.raises(ConfigError, match="the 3 branches cannot be merged with Subtract: ") \
            as e:
        build_text(write, """
            input: [8, 8, 3]
            layers:
              - branches: [[], [], []]
                merge: subtract
              - Flatten
        """)
    assert e.value.hint.startswith("subtract takes exactly two branches")


def test_branches_whose_shapes_differ_cannot_be_merged(write):
    with pytest.raises(ConfigError, match="branches cannot be merged: their outputs are "
                                          "8x8x3, 4x4x3"):
        build_text(write, """
            input: [8, 8, 3]
            layers:
              - branches:
                  - []
                  - [MaxPooling2D]
                merge: concatenate
              - Flatten
        """)


def test_wrongly_typed_argument_names_the_layer(write):
    with pytest.raises(ConfigError, match=r"layer 1 'conv1_1' \(Conv2D\): invalid arguments"):
        build_text(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: -3, kernel_size: 3}"
                          "\n  - Flatten\n")


def test_a_number_in_quotes_is_explained_as_text_not_a_number(write):
    with pytest.raises(ConfigError, match=r"`filters` is the text '8', not a number") as e:
        build_text(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: '8', kernel_size: 3}"
                          "\n  - Flatten\n")
    assert e.value.hint == "write filters: 8 without quotes" and e.value.line == 3


@pytest.mark.parametrize("layer", ["Conv2D: {filters: 8, kernel_size: '3'}",
                                   "Conv2D: {filters: 8, kernel_size: 3, strides: '2'}",
                                   "Dense: {units: '4'}"])
def test_a_quoted_size_that_keras_refuses_with_a_value_error_is_explained_too(write, layer):
    with pytest.raises(ConfigError) as e:
        build_text(write, f"input: [8, 8, 1]\nlayers:\n  - {layer}\n  - Flatten\n")
    assert re.fullmatch(r"`\w+` is the text '\d', not a number", e.value.message)  # no more
    assert e.value.hint.endswith(" without quotes")


@pytest.mark.parametrize("argument, kind, meant", [
    ("activation: sofmax", "activations", "softmax"),
    ("kernel_initializer: he_normall", "initializers", "he_normal"),
    ("kernel_regularizer: ll2", "regularizers", "l2"),
    ("kernel_constraint: maxnorm", "constraints", "max_norm")])
def test_a_misspelt_keras_name_gets_a_did_you_mean(write, argument, kind, meant):
    with pytest.raises(ConfigError, match=rf"`{argument}` is not one of Keras' {kind}") as e:
        build_text(write, f"input: [8, 8, 1]\nlayers:\n  - Flatten\n  - Dense: {{units: 2, "
                          f"{argument}}}\n")
    assert e.value.hint.startswith(f"did you mean '{meant}'?") and e.value.line == 4


def test_every_misspelt_keras_name_of_a_layer_and_of_the_layers_after_it_is_said(write):
    with pytest.raises(ManyErrors) as e:
        build_text(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: "
                          "3, activation: relux, kernel_initializer: foo}\n  - Flatten\n"
                          "  - Dense: {units: 3, activation: sofmax}\n")
    assert [(err.line, err.message.split(" is not")[0]) for err in e.value.errors] == [
        (3, "`activation: relux`"), (3, "`kernel_initializer: foo`"),
        (5, "`activation: sofmax`")]


def test_a_keras_name_refused_for_another_reason_gets_keras_reason_not_a_did_you_mean(write):
    with pytest.raises(ConfigError, match="invalid arguments") as e:  # Constant needs a value
        build_text(write, "input: [8, 8, 1]\nlayers:\n  - Flatten\n  - Dense: {units: 2, "
                          "kernel_initializer: constant}\n")
    assert "not one of Keras'" not in str(e.value)


def test_a_name_far_from_any_is_answered_with_the_list_of_them(write):
    with pytest.raises(ConfigError, match="`activation: zzz`") as e:
        build_text(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3,"
                          " activation: zzz}\n  - Flatten\n")
    assert e.value.hint.startswith("activations: ") and "relu, " in e.value.hint


def test_two_numbers_in_quotes_are_both_named_in_the_plural(write):
    with pytest.raises(ConfigError, match=r"`filters`, `groups` are the text '8', '1', not "
                                          r"numbers\. Hint") as e:
        build_text(write, "input: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: '8', kernel_size: 3,"
                          " groups: '1'}\n  - Flatten\n")
    assert e.value.hint == "write filters: 8, groups: 1 without quotes"


def test_channels_first_is_explained_as_reading_the_image_sideways(write):
    with pytest.raises(ConfigError, match="cannot take its 8x8x3 input") as e:
        build_text(write, "input: [8, 8, 3]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 5,"
                          " data_format: channels_first}\n  - Flatten\n")
    assert e.value.hint == (
        "`data_format: channels_first` reads the 8x8x3 input as 8 channels of 8x3; cnncli "
        "feeds images as height x width x channels: remove `data_format` (channels_last is "
        "the default)")


def test_a_layer_that_does_not_fit_inside_a_block_names_the_use_of_the_block(write):
    """The third use of a block shrinks the maps too far: its line, not only the
    block's, which all three uses share."""
    with pytest.raises(ConfigError) as e:
        build_text(write, """
            input: [16, 16, 1]
            blocks:
              big:
                layers:
                  - Conv2D: {filters: 4, kernel_size: 7}
            layers:
              - big
              - big
              - big
              - Flatten
              - Dense: 2
        """)
    assert (e.value.line, e.value.where) == (5, "layer 3 'conv1_3' (Conv2D), in block 'big' "
                                                "used on line 9")


def test_a_convolution_after_flatten_is_explained_not_in_kerass_words(write):
    with pytest.raises(ConfigError) as e:
        build_text(write, "input: [8, 8, 1]\nlayers: [Flatten, {Dense: 16}, "
                          "{Conv2D: {filters: 4, kernel_size: 3}}, {Dense: 2}]\n")
    assert e.value.message == ("needs a volume (height x width x depth) and gets a vector "
                               "of 16 values: a Flatten or Dense layer before it made the "
                               "volume a vector")
    assert e.value.hint.startswith("put it before the Flatten")


def test_dense_on_a_volume_is_explained(write):
    with pytest.raises(ConfigError, match="ends with a 7x7x10 volume") as e:
        build_text(write, "input: [7, 7, 3]\nclasses: 10\nlayers: [{Dense: $classes}]\n")
    assert "Flatten" in e.value.hint


def test_dense_before_flatten_warns_what_happens(write):
    built = build_text(write, """
        input: [7, 7, 3]
        layers: [{Dense: 1024}, Flatten, {Dense: 10}]
    """)
    assert any("acts on the last axis only" in w for w in built.warnings)


@pytest.mark.parametrize(("last", "said"), [
    ("{Dense: {units: 3, activation: relu}}", "has a relu activation"),
    ("{Dense: 3}", "has no activation"),
    ("{Dense: {units: 3, activation: softmax}}", None),
    ("{Dense: 3}, Softmax", None),
    ("{Dense: 3}, {Activation: softmax}", None),
    ("{Dense: {units: 3, activation: softmax}}, {Dropout: 0.1}", None),
    ("{branches: [[{Dense: {units: 3, activation: softmax}}], [{Dense: {units: 3, "
     "activation: softmax}}]], merge: average}", None),  # an ensemble
])
def test_an_output_that_is_not_a_softmax_is_a_warning(write, last, said):
    built = build_text(write, f"input: [2, 2, 1]\nlayers: [Flatten, {last}]\n")
    notes = [w for w in built.warnings if "not class probabilities" in w]
    assert notes == ([] if said is None else [
        f"layer 2 'fc1' (Dense): the network's output {said}, so its outputs are not "
        "class probabilities, as the loss and predict's percentages take them to be; end "
        "with `activation: softmax`"])


def test_one_output_is_a_warning(write):
    built = build_text(write, "input: [2, 2, 1]\nclasses: 1\n"
                              "layers: [Flatten, {Dense: {units: 1, activation: softmax}}]\n")
    assert built.warnings == ["layer 2 'fc1' (Dense): one output: a softmax over one class "
                              "is always 100%; a classifier of two classes has `classes: 2` "
                              "(two outputs, softmax)"]


def test_one_sigmoid_output_is_not_called_a_softmax(write):
    built = build_text(write, "input: [2, 2, 1]\nclasses: 1\n"
                              "layers: [Flatten, {Dense: {units: 1, activation: sigmoid}}]\n")
    assert built.warnings[-1] == (
        "layer 2 'fc1' (Dense): one output: cnncli's classifiers give one probability per "
        "class; a classifier of two classes has `classes: 2` (two outputs, softmax)")


def test_output_must_match_classes(write):
    with pytest.raises(ConfigError, match="ends with 4 outputs but `classes` is 10"):
        build_text(write, "input: [2, 2, 1]\nclasses: 10\nlayers: [Flatten, {Dense: 4}]\n")


def test_residual_block_adds_its_input(write):
    built = build_text(write, """
        input: [8, 8, 3]
        layers:
          - branches:
              - [{Conv2D: {filters: 3, kernel_size: 3, padding: same}}]
              - []
            merge: add
          - GlobalAveragePooling2D
    """)
    x = np.ones((1, 8, 8, 3), "float32")
    names = [layer.name for layer in built.model.layers]
    assert names == ["input", "m1_b1_conv1", "m1_add", "pool1"]
    assert built.model(x).shape == (1, 3)


def test_overrides_change_classes_and_input(write):
    s = spec.load("mnist_net")
    model = builder.build(s, classes=3, input=[32, 32, 3])
    assert model.input.shape == (None, 32, 32, 3)
    assert model.output.shape == (None, 3)


def test_after_a_bad_layer_the_later_layers_arguments_are_still_checked(write):
    with pytest.raises(ManyErrors) as e:
        build_text(write, """
            input: [28, 28, 1]
            layers:
              - Conv2D: {filters: 8, kernel_size: 3, strides: -1}
              - Flatten
              - Dropout: 1.5
              - Dense: {units: 3, activation: softmax}
        """)
    assert [(err.line, err.where) for err in e.value.errors] == [
        (3, "layer 1 'conv1_1' (Conv2D)"), (5, "layer 3 'dropout1' (Dropout)")]


def test_a_layer_that_gives_back_its_input_tensor_is_refused_not_a_cycle(write):
    """Keras' Equalization returns the very tensor it was given (a model of it would hold
    a cycle: "unexpected ValueError ... is part of a cycle", found by the fuzz test)."""
    with pytest.raises(ConfigError, match="layer 2 'equalization1' \\(Equalization\\): the "
                                          "layer gives back its input tensor itself"):
        build_text(write, "input: [8, 8, 1]\nclasses: 3\nlayers:\n  - ActivityRegularization"
                          "\n  - Equalization\n  - Flatten\n  - Dense: {units: $classes, "
                          "activation: softmax}\n")


def test_the_smallest_input_counts_a_pretrained_backbones_own_minimum():
    """MobileNetV2 refuses an input under 32x32 itself and divides it by 32: a 3x3
    convolution after it needs 65 (3x3 out of it), not the 2x2 a search that took the
    backbone's refusal for another problem found."""
    network = spec.parse({"input": [16, 16, 3], "classes": 3, "layers": [
        {"pretrained": {"name": "mobilenet_v2", "weights": "none"}},
        {"Conv2D": {"filters": 8, "kernel_size": 3}}, "GlobalAveragePooling2D",
        {"Dense": {"units": "$classes", "activation": "softmax"}}]})
    assert builder.smallest_input(network) == 65
