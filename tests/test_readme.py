"""Every `cnncli` command in README.md's shell blocks runs, in the README's order, in a
copy of the repository's configs and examples (nothing is written into the repository),
and says what the README says it does."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What a command's output must hold (a regular expression, searched in stdout + stderr),
#: by the start of the command. Commands not listed must succeed and print something.
EXPECTED = {
    "cnncli train configs/mnist.yaml": r"Done: .*runs/mnist/1",
    "cnncli evaluate runs/mnist/latest": r"accuracy 0\.\d+",
    "cnncli predict examples/digits/7.png --model runs/mnist/latest\b": r"^1\. \d: \d+\.\d\d%",
    "cnncli runs": r"runs/mnist/1 +finished",
    "cnncli datasets": r"fashion_mnist",
    "cnncli doctor": r"auto picks: cpu",
    "cnncli summary vgg16": r"Parameters: 138,357,544",
    "cnncli summary mnist_net --explain": r"\(28 - 5 \+ 4\)/1 \+ 1 = 28",
    "cnncli check configs/mnist.yaml": r"OK: configs/mnist.yaml is valid",
    "cnncli check configs/transfer.yaml": r"OK: configs/transfer.yaml is valid .*frozen",
    "cnncli summary configs/transfer.yaml": r"trainable 12,810, frozen 2,257,984",
    "cnncli models": r"vgg16 +spec",
    "cnncli schema": r'"\$defs"',
}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("cnncli "):
                commands.append(line)
    return commands


def test_readme_has_commands():
    assert len(readme_commands()) >= 5


def test_the_readmes_example_spec_is_the_built_in_mnist_net_with_its_dropout():
    from cnncli import yamlio
    from cnncli.model import builder, spec
    from cnncli.model import summary as summaries

    text = (ROOT / "README.md").read_text()
    [example] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
                 if b.startswith("name: my_mnist_net")]
    mine = summaries.summarize(builder.build_checked(spec.parse(yamlio.loads(example))))
    built_in = summaries.summarize(builder.build_checked(spec.load("mnist_net")))
    assert [r.layer for r in mine.rows] == [r.layer for r in built_in.rows[:-1]] + [
        "DROPOUT 0.5", built_in.rows[-1].layer]
    assert mine.params == built_in.params == 3_274_634


@pytest.mark.slow
def test_readme_commands_run_in_order_and_say_what_the_readme_says(tmp_path):
    for folder in ("configs", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for command in readme_commands():
        words = shlex.split(command.split(">")[0])
        result = subprocess.run([sys.executable, "-m", "cnncli", *words[1:]], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        output = result.stdout + result.stderr
        pattern = next((p for start, p in EXPECTED.items() if re.match(start, command)),
                       None)
        if pattern:
            assert re.search(pattern, output, re.M), f"{command}\n{output}"
        else:
            assert output.strip(), command
