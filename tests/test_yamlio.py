"""YAML is read safely, with line numbers, and without PyYAML's surprises."""

import os
import re

import pytest

from cnncli import yamlio
from cnncli.errors import ConfigError, ManyErrors


def test_values_remember_their_lines():
    doc = yamlio.loads("a: 1\nlayers:\n  - Flatten\n  - Dense: {units: 3}\n", "x.yaml")
    assert doc.key_line("layers") == 2
    assert doc["layers"].item_line(1) == 4
    assert doc["layers"][1].line == 4


def test_exponent_without_dot_is_a_float():
    assert yamlio.loads("lr: 1e-3")["lr"] == pytest.approx(0.001)


def test_integers_stay_integers():
    doc = yamlio.loads("a: 10\nb: -3\nc: 1_000")
    assert (doc["a"], doc["b"], doc["c"]) == (10, -3, 1000)
    assert all(type(v) is int for v in doc.values())


def test_yes_no_on_off_are_strings_not_booleans():
    doc = yamlio.loads("a: no\nb: yes\nc: off\nd: true\ne: False")
    assert doc == {"a": "no", "b": "yes", "c": "off", "d": True, "e": False}


def test_duplicate_key_is_an_error_naming_both_lines():
    with pytest.raises(ConfigError, match=r"'lr' appears twice \(first on line 1\)") as e:
        yamlio.loads("lr: 1\nepochs: 2\nlr: 3\n", "c.yaml")
    assert e.value.line == 3 and e.value.file == "c.yaml"


def test_every_duplicate_key_is_said_at_once():
    with pytest.raises(ManyErrors) as e:
        yamlio.loads("lr: 1\nlr: 2\nlayer: {units: 1, units: 2}\n", "c.yaml")
    assert [(err.line, err.message) for err in e.value.errors] == [
        (2, "the key 'lr' appears twice (first on line 1)"),
        (3, "the key 'units' appears twice (first on line 3)")]
    with pytest.raises(ManyErrors) as e:  # inside the value of a key given twice too
        yamlio.loads("k: {a: 1}\nk: {b: 1, b: 2}\n")
    assert [err.line for err in e.value.errors] == [2, 2]


def test_a_merge_key_may_be_overridden_as_yaml_allows_but_not_an_own_key_twice():
    doc = yamlio.loads("base: &c {filters: 4, kernel_size: 3}\n"
                       "layer: {<<: *c, filters: 8}\n"
                       "two: {<<: [{filters: 1}, {filters: 2, units: 2}]}\n")
    assert doc["layer"] == {"filters": 8, "kernel_size": 3}
    assert doc["two"] == {"filters": 1, "units": 2}  # the first listed wins, as YAML says
    assert doc["base"] == {"filters": 4, "kernel_size": 3}  # the anchor itself unchanged
    with pytest.raises(ConfigError, match=r"'filters' appears twice \(first on line 2\)"):
        yamlio.loads("base: &c {filters: 4}\nlayer: {<<: *c, filters: 8,\n  filters: 9}\n")


def test_merges_nest_and_a_merged_anchor_used_again_is_not_a_duplicate():
    doc = yamlio.loads("a: &a {kernel: 1}\nb: &b {<<: *a, kernel: 2}\nc: {<<: *b}\n"
                       "l1: {<<: &mid {<<: *b, filters: 8}}\nl2: *mid\n")
    assert doc["c"] == {"kernel": 2}
    assert doc["l1"] == doc["l2"] == {"kernel": 2, "filters": 8}
    assert doc["c"].key_line("kernel") == 2  # where the merged value was written
    with pytest.raises(ConfigError, match="a merge key"):
        yamlio.loads("a: {<<: 3}\n")


def test_an_own_key_before_a_merge_key_still_wins():
    doc = yamlio.loads("b: &c {filters: 4, units: 2}\nl: {filters: 8, <<: *c}\n")
    assert doc["l"] == {"filters": 8, "units": 2}
    assert doc["l"].key_line("filters") == 2


def test_a_merge_key_with_an_empty_list_is_refused():
    with pytest.raises(ConfigError, match=r"a merge key \(<<\) takes a mapping") as e:
        yamlio.loads("a: 1\nl: {<<: []}\n", "m.yaml")
    assert e.value.line == 2 and "<<: *name" in e.value.hint


def test_a_merged_key_has_the_line_it_was_written_on_in_a_block_anchor():
    doc = yamlio.loads("b: &c\n  kernel: 1\n  filters: 4\nl: {<<: *c}\n")
    assert doc["l"].key_line("kernel") == 2
    assert doc["l"].key_line("filters") == 3


def test_the_line_of_an_item_past_the_end_is_the_lists_own_line():
    doc = yamlio.loads("a: 1\nlayers:\n  - Flatten\n  - Dense\n")
    assert doc["layers"].item_line(2) == 3  # no IndexError; the list starts on line 3
    assert doc["layers"].item_line(-1) == 3


def test_tab_indentation_is_explained():
    with pytest.raises(ConfigError, match="tab character") as e:
        yamlio.loads("a:\n\t- b\n", "t.yaml")
    assert "spaces" in e.value.hint


@pytest.mark.parametrize("text,opened", [
    ("model: mnist_net\ndata: {name: mnist}\ntrain: {epochs: 1\n\n", "a `{`"),
    ("model: mnist_net\ndata: [mnist\n# more\n", "a `[`"),
    ("model: mnist_net\ndata: {name: 'mnist}\n\n", "a quote")])
def test_a_bracket_or_quote_never_closed_is_said_at_the_line_it_opened(text, opened):
    """PyYAML finds it at the end of the file, a line past the last: no help."""
    with pytest.raises(ConfigError, match=re.escape(opened) + " opened on this line is not closed "
                                          "before the file ends") as e:
        yamlio.loads(text, "t.yaml")
    assert e.value.line == (3 if "train" in text else 2)


@pytest.mark.parametrize("text,opened,line", [
    ("input: [28, 28, 1]\nlayers:\n  - Conv2D: {filters: 8, kernel_size: 3\n  - Flatten\n"
     "  - Dense: 10\n", "a `{`", 3),
    ("a: [1, 2\nb: 3\n", "a `[`", 1)])
def test_a_bracket_not_closed_mid_file_is_said_at_the_line_it_opened(text, opened, line):
    """PyYAML finds it where the next key is read: line 5 and "check the indentation and
    the colons on that line", of a line that is right."""
    with pytest.raises(ConfigError, match=re.escape(opened) + " opened on this line is not "
                                          "closed on it") as e:
        yamlio.loads(text, "t.yaml")
    assert e.value.line == line and e.value.hint == "close it on the line it belongs to"


def test_a_flow_over_several_lines_missing_a_comma_is_not_said_unclosed():
    """`[` closed on line 5, a comma missing at the end of line 3: "not closed on it" was
    wrong, and its hint led nowhere."""
    text = "layers: [\n  {Conv2D: 8},\n  {Dense: 10}\n  {Dense: 3}  # ] in a comment\n]\n"
    with pytest.raises(ConfigError) as e:
        yamlio.loads(text, "t.yaml")
    assert "opened on this line" not in e.value.message


def test_python_tags_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker"
    text = f"!!python/object/apply:os.system ['touch {marker}']"
    with pytest.raises(ConfigError, match="unsupported YAML tag"):
        yamlio.loads(text)
    assert not marker.exists()


def test_billion_laughs_is_refused():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(ConfigError, match="billion laughs"):
        yamlio.loads("\n".join(lines))


def test_a_few_aliases_are_fine():
    doc = yamlio.loads("conv: &c {filters: 8}\nlayers: [{Conv2D: *c}, {Conv2D: *c}]")
    assert doc["layers"][1]["Conv2D"] == {"filters": 8}


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(100 * 1024 * 1024)  # 100 MB, sparse
    with pytest.raises(ConfigError, match=r"104.9 MB; specs and configs are limited to 1 MB"):
        yamlio.load(path)


def test_a_device_that_never_ends_is_read_no_further_than_the_limit():
    """A config's `model: /dev/zero` was read until memory ran out."""
    with pytest.raises(ConfigError, match="the file is over 1 MB; specs and configs are "
                                          "limited to 1 MB") as err:
        yamlio.load("/dev/zero")
    assert err.value.file == "/dev/zero"


def test_a_config_from_a_pipe_is_read(tmp_path):
    """`cnncli train <(envsubst < cfg.yaml)`: a pipe, of no size until read."""
    read, write = os.pipe()
    os.write(write, b"model: mnist_net\n")
    os.close(write)
    try:
        assert yamlio.load(f"/dev/fd/{read}") == {"model": "mnist_net"}
    finally:
        os.close(read)


def test_oversized_text_is_refused_counting_its_utf8_bytes():
    text = "# " + "\u00e9" * 500_000  # 500,002 characters, 1,000,002 bytes
    with pytest.raises(ConfigError, match=r"1.0 MB; specs and configs are limited to 1 MB") as e:
        yamlio.loads(text, "big.yaml")
    assert e.value.file == "big.yaml"


def test_invalid_yaml_names_the_line():
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        yamlio.loads("a: [1, 2\nb: 3\n", "bad.yaml")
    assert e.value.file == "bad.yaml" and e.value.line is not None


def test_missing_file_and_directory_have_their_own_messages(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        yamlio.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="directory"):
        yamlio.load(tmp_path)


def test_binary_file_is_not_utf8(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\x00\xffgarbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        yamlio.load(path)


def test_a_latin1_byte_is_said_at_its_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"model: mnist_net\ndata:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text \\(byte 0xe9\\)") as e:
        yamlio.load(path)
    assert e.value.line == 3


def test_a_utf16_file_is_named_so(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes("\ufeffmodel: mnist_net\n".encode("utf-16"))  # PowerShell's `>`
    with pytest.raises(ConfigError, match="the file is UTF-16 text"):
        yamlio.load(path)
