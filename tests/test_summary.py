"""`summary` reproduces the lecture's tables and counts parameters, memory and multiply-adds."""

import pytest

from cnncli.model import builder, spec, summary

# The lecture's VGGNet table, row for row (Layer, Volume size, Description); the lecture
# writes the FC rows as "FC + ReLU" and "FC Softmax", cnncli adds the unit count.
LECTURE_VGG16 = """
INPUT | 224x224x3 | 224x224 pixels and 3 color channels
CONV3-64 + ReLU | 224x224x64 | Conv layer with 64 3x3x3 filters
CONV3-64 + ReLU | 224x224x64 | Conv layer with 64 3x3x64 filters
POOL2 | 112x112x64 | Standard 2x2 pooling layer with stride 2
CONV3-128 + ReLU | 112x112x128 | Conv layer with 128 3x3x64 filters
CONV3-128 + ReLU | 112x112x128 | Conv layer with 128 3x3x128 filters
POOL2 | 56x56x128 | Standard 2x2 pooling layer with stride 2
CONV3-256 + ReLU | 56x56x256 | Conv layer with 256 3x3x128 filters
CONV3-256 + ReLU | 56x56x256 | Conv layer with 256 3x3x256 filters
CONV3-256 + ReLU | 56x56x256 | Conv layer with 256 3x3x256 filters
POOL2 | 28x28x256 | Standard 2x2 pooling layer with stride 2
CONV3-512 + ReLU | 28x28x512 | Conv layer with 512 3x3x256 filters
CONV3-512 + ReLU | 28x28x512 | Conv layer with 512 3x3x512 filters
CONV3-512 + ReLU | 28x28x512 | Conv layer with 512 3x3x512 filters
POOL2 | 14x14x512 | Standard 2x2 pooling layer with stride 2
CONV3-512 + ReLU | 14x14x512 | Conv layer with 512 3x3x512 filters
CONV3-512 + ReLU | 14x14x512 | Conv layer with 512 3x3x512 filters
CONV3-512 + ReLU | 14x14x512 | Conv layer with 512 3x3x512 filters
POOL2 | 7x7x512 | Standard 2x2 pooling layer with stride 2
FC-4096 + ReLU | 4096 | Fully-connected layer with 4096 units
FC-4096 + ReLU | 4096 | Fully-connected layer with 4096 units
FC-1000 Softmax | 1000 | Output layer with 1000 possible categories
"""

LECTURE_MNIST = """
INPUT | 28x28x1 | 28x28 pixels and 1 color channel
CONV5-32 + ReLU | 28x28x32 | Conv layer with 32 5x5x1 filters
POOL2 | 14x14x32 | Standard 2x2 pooling layer with stride 2
CONV5-64 + ReLU | 14x14x64 | Conv layer with 64 5x5x32 filters
POOL2 | 7x7x64 | Standard 2x2 pooling layer with stride 2
FC-1024 + ReLU | 1024 | Fully-connected layer with 1024 units
FC-10 Softmax | 10 | Output layer with 10 possible categories
"""


def table(text):
    return [tuple(cell.strip() for cell in line.split("|")) for line in text.strip().splitlines()]


def summarize(name_or_spec):
    s = spec.load(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    return summary.summarize(builder.build_checked(s))


def rows(result):
    return [(r.layer, r.volume, r.description) for r in result.rows if r.shown]


@pytest.fixture(scope="module")
def vgg16():
    return summarize("vgg16")


def test_vgg16_reproduces_the_lectures_table_row_for_row(vgg16):
    assert rows(vgg16) == table(LECTURE_VGG16)


def test_vgg16_has_138m_parameters(vgg16):
    assert vgg16.params == 138_357_544


def test_vgg16_forward_memory_counts_every_activation_once(vgg16):
    # 15.24M values in all; the lecture's "around 93 MB" follows the cs231n notes, whose
    # per-layer numbers add up to 15.2M values (61 MB), not the 24M their total states.
    assert vgg16.forward_bytes == 4 * 15_237_608
    assert vgg16.backward_bytes == 2 * vgg16.forward_bytes


def test_vgg16_multiply_adds(vgg16):
    assert vgg16.macs == 15_470_264_320


def test_mnist_net_reproduces_the_lectures_table():
    assert rows(summarize("mnist_net")) == table(LECTURE_MNIST)


def test_explain_fills_in_the_formula():
    conv = summarize("mnist_net").rows[1]
    assert conv.explain == ["F=5, S=1, P=2 (same): (28 - 5 + 4)/1 + 1 = 28"]


def test_explain_says_how_keras_rounds_when_not_divisible():
    s = spec.parse({"input": [7, 7, 1], "layers": ["MaxPooling2D", "Flatten"]})
    pool = summarize(s).rows[1]
    assert pool.volume == "3x3x1"
    assert "(7 - 2 + 0) = 5 is not divisible by 2: Keras rounds down (padding valid), " \
           "giving 3" in pool.explain[0]


def test_explain_says_pooling_leaves_its_padding_out_where_a_convolution_adds_zeros():
    s = spec.parse({"input": [6, 6, 1], "layers": [
        {"Conv2D": {"filters": 1, "kernel_size": 2, "padding": "same"}},
        {"MaxPooling2D": {"pool_size": 2, "strides": 1, "padding": "same"}}, "Flatten"]})
    conv, pool = summarize(s).rows[1:3]
    assert conv.explain[0].endswith("padding same needs 1 zero in all, so Keras puts 0 before "
                                    "and 1 after")
    assert pool.explain[0].endswith("padding same needs 1 cell in all, so Keras pads 0 before "
                                    "and 1 after (pooling leaves them out of its windows: "
                                    "they are not zeros)")


def test_an_activation_layer_is_the_lectures_relu_layer_however_it_is_written():
    s = spec.parse({"input": [8, 8, 1], "layers": [
        {"Conv2D": {"filters": 1, "kernel_size": 3}}, "ReLU", {"Activation": "relu"},
        {"Activation": "tanh"}, "Flatten", {"Dense": 1}, {"Activation": "softmax"}]})
    rows_ = summarize(s).rows
    assert [(r.layer, r.description) for r in rows_[1:5]] == [
        ("CONV3-1", "Conv layer with 1 3x3x1 filter"),
        ("RELU", "ReLU, max(0, x) of each value"), ("RELU", "ReLU, max(0, x) of each value"),
        ("TANH", "tanh on each value")]
    assert (rows_[-2].description, rows_[-1].layer) == ("Fully-connected layer with 1 unit",
                                                        "SOFTMAX")


def test_explain_says_a_dilated_window_is_wider_than_its_kernel():
    s = spec.parse({"input": [9, 9, 1], "layers": [
        {"Conv2D": {"filters": 2, "kernel_size": 3, "dilation_rate": 2}}, "Flatten"]})
    assert summarize(s).rows[1].explain == [
        "F=5 (3 dilated by 2: (3 - 1) x 2 + 1), S=1, P=0 (valid): (9 - 5 + 0)/1 + 1 = 5"]


def test_same_padding_with_a_window_smaller_than_the_stride_rounds_down():
    """F < S: padding same would need negative padding; Keras gives ceil(W/S)."""
    s = spec.parse({"input": [6, 6, 3], "layers": [
        {"Conv2D": {"filters": 4, "kernel_size": 1, "strides": 2, "padding": "same"}},
        "Flatten"]})
    conv = summarize(s).rows[1]
    assert conv.volume == "3x3x4"
    assert "Keras rounds down (padding same gives ceil(W/S) = ceil(6/2)), giving 3" in \
        conv.explain[0]


def _odd_convolutions():
    return spec.parse({"input": [3, 3, 3], "layers": [
        {"Conv2DTranspose": {"filters": 4, "kernel_size": 3, "strides": 2,
                             "padding": "same"}},
        {"DepthwiseConv2D": {"kernel_size": 3, "padding": "same"}},
        {"SeparableConv2D": {"filters": 8, "kernel_size": 3, "padding": "same"}},
        {"Conv2DTranspose": {"filters": 2, "kernel_size": 5}}, "Flatten"]})


def test_transposed_convolutions_explain_how_the_output_grows():
    transposed, _, _, grown = summarize(_odd_convolutions()).rows[1:5]
    assert transposed.volume == "6x6x4" and grown.volume == "10x10x2"
    assert transposed.explain == ["F=3, S=2 (same, transposed): W x S = 3 x 2 = 6"]
    assert grown.explain == ["F=5, S=1 (valid, transposed): W x S + max(F - S, 0) = "
                             "6 x 1 + 4 = 10"]


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_a_transposed_convolution_with_output_padding_explains_the_size_keras_gives(padding):
    s = spec.parse({"input": [9, 9, 3], "layers": [
        {"Conv2DTranspose": {"filters": 4, "kernel_size": 3, "strides": 2,
                             "output_padding": 1, "padding": padding}}, "Flatten"]})
    row = summarize(s).rows[1]
    assert row.explain[0].endswith(f"= {row.volume.split('x')[0]}")  # 20, or 18 when same


def test_a_transposed_convolution_larger_than_its_input_is_not_refused():
    s = spec.parse({"input": [2, 2, 3], "layers": [
        {"Conv2DTranspose": {"filters": 4, "kernel_size": 5}}, "Flatten"]})
    assert summarize(s).rows[1].volume == "6x6x4"


def test_each_kind_of_convolution_has_its_own_label():
    labels = [r.layer for r in summarize(_odd_convolutions()).rows[1:5]]
    assert labels == ["TCONV3-4", "DWCONV3-4", "SEPCONV3-8", "TCONV5-2"]


def test_keras_aliases_of_convolution_and_pooling_are_the_lecture_s_conv_and_pool():
    s = spec.parse({"input": [8, 8, 1], "layers": [
        {"Convolution2D": {"filters": 4, "kernel_size": 3, "padding": "same"}},
        "MaxPool2D", "Flatten"]})
    conv, pool = summarize(s).rows[1:3]
    assert (conv.layer, conv.macs, pool.layer) == ("CONV3-4", 8 * 8 * 4 * 9, "POOL2")


def test_a_network_written_with_keras_aliases_has_the_table_of_its_usual_names():
    def written(separable, transposed, global_pool):
        return spec.parse({"input": [16, 16, 3], "layers": [
            {separable: {"filters": 4, "kernel_size": 3}},
            {transposed: {"filters": 4, "kernel_size": 3}}, global_pool]})

    usual = summarize(written("SeparableConv2D", "Conv2DTranspose", "GlobalAveragePooling2D"))
    aliases = summarize(written("SeparableConvolution2D", "Convolution2DTranspose",
                                "GlobalAvgPool2D"))
    assert rows(aliases) == rows(usual)
    assert [r.layer for r in aliases.rows[1:]] == ["SEPCONV3-4", "TCONV3-4", "GLOBAL AVGPOOL"]
    assert [r.macs for r in aliases.rows] == [r.macs for r in usual.rows]


def test_a_softmax_layer_says_what_it_computes():
    s = spec.parse({"input": [4, 4, 1], "layers": ["Flatten", {"Dense": 3}, "Softmax"]})
    row = summarize(s).rows[-1]
    assert (row.layer, row.description) == ("SOFTMAX", "Softmax over the values: "
                                            "probabilities that sum to 1")


def test_depthwise_separable_and_transposed_descriptions_and_multiply_adds():
    transposed, depthwise, separable, _ = summarize(_odd_convolutions()).rows[1:5]
    assert depthwise.description == "Depthwise conv layer: 4 3x3x1 filters, 1 per input " \
                                    "channel"
    assert separable.description == "Separable conv layer: 3x3x1 per input channel, then " \
                                    "8 1x1x4 filters"
    assert transposed.macs == 3 * 3 * (3 * 3) * 3 * 4  # each input value, every filter
    assert depthwise.macs == 6 * 6 * 4 * 9
    assert separable.macs == 6 * 6 * 4 * (9 + 8)


def test_named_blocks_fold_into_one_row():
    result = summarize("googlenet")
    inception = [r for r in result.rows if r.name == "inception3a"]
    assert len(inception) == 1
    assert inception[0].volume == "28x28x256"
    assert inception[0].params == 163_696  # Table 1: 159K; ours adds the biases


def test_to_dict_is_json_ready(vgg16):
    import json

    data = json.loads(json.dumps(vgg16.to_dict()))
    assert data["params"] == 138_357_544 and data["rows"][1]["layer"] == "CONV3-64 + ReLU"


# ---------------------------------------------------------------- memory

#: A network of 1.0 billion weights (4 GB in float32), nearly all in one Dense layer.
BILLION = """
name: billion
input: [100, 100, 1]
classes: 10
layers:
  - Flatten
  - Dense: {units: 100000}
  - Dense: {units: $classes, activation: softmax}
"""


def test_summary_and_check_build_the_network_without_giving_its_weights_values(tmp_path):
    from cnncli.run import checking

    path = tmp_path / "small.yaml"
    path.write_text(BILLION.replace("100000", "10"))
    for model in (checking.build(str(path)).model, checking.check(str(path)).model):
        assert model.count_params() == 10_000 * 10 + 10 + 10 * 10 + 10
        assert all(w._value is None for w in model.weights)  # shapes only


def test_a_summary_of_a_billion_weights_takes_far_less_memory_than_they_would(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "billion.yaml"
    path.write_text(BILLION)
    # A fresh process runs the command, so its peak is the only child's measured.
    measure = ("import resource, subprocess, sys; done = subprocess.run([sys.executable, "
               "'-m', 'cnncli', 'summary', sys.argv[1]], capture_output=True, text=True); "
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
               " done.stdout.count('1,001,100,010'))")
    done = subprocess.run([sys.executable, "-c", measure, str(path)], capture_output=True,
                          text=True, timeout=300)
    code, peak_kb, shown = map(int, done.stdout.split())
    assert code == 0 and shown >= 1, done.stderr
    assert peak_kb < 2 * 2**20, f"summary peaked at {peak_kb / 2**20:.1f} GB"  # weights: 4 GB


SPEC_WITHOUT_CLASSES = """\
input: [8, 8, 1]
layers:
  - Flatten
  - Dense: {units: $classes, activation: softmax}
"""


def test_a_spec_whose_classes_come_from_the_data_is_checked_with_ten_and_says_so(tmp_path):
    from cnncli.run import checking

    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_WITHOUT_CLASSES)
    for built in (checking.build(str(path)), checking.check(str(path))):
        assert built.model.output.shape[-1] == checking.DEFAULT_CLASSES
        assert "`$classes` is 10 here" in built.warnings[0]
    three = checking.build(str(path), classes=3)
    assert three.model.output.shape[-1] == 3 and three.warnings == []


def test_layers_whose_multiply_adds_are_not_counted_are_named_beside_the_total(capsys):
    """The total counts convolutions and dense layers: an LSTM's 2 million multiply-adds
    were left out of it without a word (the total read 2.7% of the network's work)."""
    from cnncli.cli import render

    s = summarize(spec.parse({"input": [28, 28, 1], "layers": [
        {"Conv2D": {"filters": 8, "kernel_size": 3, "padding": "same"}},
        {"Reshape": {"target_shape": [28, 224]}}, {"LSTM": {"units": 64}, "name": "lstm1"},
        "BatchNormalization", {"Dense": 10}]}))
    assert s.uncounted == ["lstm1"]  # (the normalisation's work is not products)
    assert s.macs == 28 * 28 * 8 * 9 + 64 * 10
    render.summary(s)
    assert "Multiply-adds per image: 57,088 (57.09k; not counting lstm1: convolution and " \
        "dense layers are counted)" in capsys.readouterr().out
    assert summarize("mnist_net").uncounted == []
