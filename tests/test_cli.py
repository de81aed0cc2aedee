"""The command line: fast help, exit codes, JSON, one-paragraph errors without tracebacks."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli import __version__
from cnncli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def cnncli(*args, **kw):
    """Run the real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                          text=True, **kw)


def test_help_does_not_import_tensorflow_or_keras():
    code = ("import sys; sys.argv = ['cnncli', '--help']\n"
            "from cnncli.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    commands = ["summary", "check", "schema", "models", "train", "evaluate", "predict",
                "runs", "datasets", "doctor"]
    for args in ([], *[[c] for c in commands]):
        text = code.replace("'--help'", ", ".join(repr(a) for a in [*args, "--help"]))
        result = subprocess.run([sys.executable, "-c", text], capture_output=True, text=True)
        assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_on_windows_itself_cnncli_says_to_run_it_in_wsl2_and_exits_3():
    """Windows has no fcntl: every command but --help ended in two tracebacks."""
    code = ("import sys; sys.platform = 'win32'; sys.argv = ['cnncli', 'summary', 'mnist_net']\n"
            "from cnncli.cli.app import main\nmain()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == ("error: cnncli runs on Linux and macOS, not on Windows itself: "
                             "it locks, writes and replaces its files the POSIX way (fcntl, "
                             "O_NOFOLLOW, pread, symbolic links). Hint: run it in WSL2, "
                             "Windows' Linux (wsl --install), where TensorFlow also reaches "
                             "NVIDIA GPUs\n")
    library = ("import sys; sys.platform = 'win32'\ntry:\n    import cnncli\n"
               "except ImportError as exc:\n    print('ImportError:', exc)")
    result = subprocess.run([sys.executable, "-c", library], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(
        "ImportError: cnncli runs on Linux and macOS, not on Windows itself"), result.stderr


def test_every_argument_is_named_in_capitals_in_usage_lines():
    """`Usage: cnncli check [OPTIONS] {SPEC}`, as the README writes it: not the Python
    parameter's name (`{path}`), nor `{IMAGES...}...` (Typer adds the dots)."""
    import typer

    def arguments(command, path):
        for name, sub in getattr(command, "commands", {}).items():  # a group
            yield from arguments(sub, [*path, name])
        for param in command.params:
            if param.param_type_name == "argument":
                yield " ".join(path), param.metavar

    named = list(arguments(typer.main.get_command(app), []))
    assert len(named) > 10
    assert [(c, m) for c, m in named if m is None or m != m.upper() or "." in m] == []


def test_python_dash_m_runs_the_cli():
    result = cnncli("--version")
    assert result.returncode == 0 and result.stdout.startswith("cnncli ")


def test_summary_prints_the_lecture_table():
    result = run("summary", "mnist_net")
    assert result.exit_code == 0
    assert "CONV5-32 + ReLU" in result.output and "3,274,634" in result.output


def test_summary_explain_shows_the_formula():
    result = run("summary", "mnist_net", "--explain")
    assert "(28 - 5 + 4)/1 + 1 = 28" in result.output


def test_summary_explain_of_a_network_without_windows_says_there_is_nothing_to_work_out():
    result = run("summary", "linear", "--explain")
    assert "Output sizes: no convolution or pooling layer here" in result.output
    assert "for each convolution and pooling layer:" not in result.output


def test_summary_json():
    result = run("summary", "lenet5", "--json")
    data = json.loads(result.stdout)
    assert data["name"] == "lenet5" and data["params"] == 61_706


def test_check_accepts_a_valid_spec(write):
    path = write("ok.yaml", "input: [2, 2, 1]\nlayers: [Flatten, {Dense: 2}]\n")
    result = run("check", str(path))
    assert result.exit_code == 0 and "OK:" in result.output


def test_check_reports_all_errors_with_exit_2_and_no_traceback(write):
    path = write("bad.yaml", """
        input: [8, 8, 1]
        layers:
          - Conv2d: {filters: 2}
          - Dense: {unit: 3}
    """)
    result = cnncli("check", str(path))
    assert result.returncode == 2
    assert f"{path}:3: layer 1: unknown layer 'Conv2d'" in result.stderr
    assert f"{path}:4: layer 2: unknown argument 'unit' for Dense" in result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads(cnncli("check", str(path), "--json").stdout)
    assert (data["error"], data["message"], data["exit_code"]) == (
        "ManyErrors", "2 problems found", 2)  # what every error's JSON has, for scripts
    assert [e["line"] for e in data["errors"]] == [3, 4]
    assert [e["where"] for e in data["errors"]] == ["layer 1", "layer 2"]


def test_check_names_the_network_as_its_spec_does(write):
    """Not as Keras' model name, which keeps ASCII letters only (`summary` and a dry run
    said the spec's name)."""
    path = write("net.yaml", "name: '[v2] 猫'\ninput: [4, 4, 1]\nlayers:\n  - Flatten\n"
                             "  - Dense: {units: 2, activation: softmax}\n")
    assert "is valid ([v2] 猫: 2 layers" in run("check", str(path)).stdout
    assert json.loads(run("check", str(path), "--json").stdout)["model"] == "[v2] 猫"


def test_check_reports_a_shape_problem_before_the_first_layer_it_cannot_build(write):
    path = write("net.yaml", README_SPEC)  # the README's example, its output below
    result = cnncli("check", str(path))
    assert result.returncode == 2
    assert [line.split(". Hint")[0] for line in result.stderr.splitlines()] == [
        f"error: {path}:3: layer 1 'conv1_1' (Conv2D): the 3x3 input is smaller than the 5x5 "
        "filter: (W - F + 2P)/S + 1 = (3 - 5 + 0)/1 + 1 = -1",
        f"error: {path}:4: layer 2: unknown layer 'Conv2d'",
        f"error: {path}:5: layer 3: unknown argument 'filter' for Conv2D"]


README_SPEC = """\
input: [3, 3, 1]
layers:
  - Conv2D: {filters: 8, kernel_size: 5}
  - Conv2d: {filters: 8, kernel_size: 3}
  - Conv2D: {filter: 8, kernel_size: 3}
  - Flatten
  - Dense: {units: 10, activation: softmax}
"""


def test_check_reads_the_model_of_a_run_config(write):
    path = write("run.yaml", "model: {from: mnist_net, classes: 3}\ntrain: {epochs: 1}\n")
    result = run("check", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True


def test_trains_options_are_their_text_not_yaml(write, tmp_path, monkeypatch):
    """`--data 'a: b'` names a folder called `a: b` (as YAML it would be a mapping)."""
    monkeypatch.chdir(tmp_path)
    path = write("run.yaml", "model: {from: mnist_net}\ntrain: {epochs: 1}\n")
    dry = run("train", str(path), "--dry-run", "--json", "--data", "a: b", "--epochs", "2")
    assert dry.exit_code == 0, dry.output
    cfg = json.loads(dry.stdout)["config"]
    assert cfg["data"]["name"] == "a: b" and cfg["train"]["epochs"] == 2


def test_a_path_in_a_config_written_from_the_configs_folder_is_said_so(write, tmp_path,
                                                                       monkeypatch):
    """Paths in a config are read from the current folder, as on the command line: one
    that names a file only from the config's own folder gets the path to write."""
    monkeypatch.chdir(tmp_path)
    write("nets/net.yaml", "input: [8, 8, 1]\nlayers: [Flatten, Dense]\n")
    (tmp_path / "configs" / "photos").mkdir(parents=True)
    from cnncli.errors import ConfigError
    from cnncli.run import checking

    for model in ("../nets/net.yaml", "{from: ../nets/net.yaml}"):
        write("configs/run.yaml", f"model: {model}\ntrain: {{epochs: 1}}\n")
        with pytest.raises(ConfigError) as err:
            checking.check("configs/run.yaml")
        assert err.value.hint == (
            "'../nets/net.yaml' is there from the config's folder (configs/../nets/net.yaml);"
            " paths in a config are read from the folder cnncli runs in: write "
            "'nets/net.yaml', or run cnncli from configs")
    write("configs/run.yaml", "model: nets/nope.yaml\n")
    with pytest.raises(ConfigError, match="there is no file or folder 'nets/nope.yaml' \\(a path "
                                          "is read from the current folder, /"):
        checking.check("configs/run.yaml")
    write("configs/run.yaml", "model: mnist_net\ndata: {name: photos}\n")
    assert "'photos' is there from the config's folder (configs/photos)" in \
        checking.check("configs/run.yaml").warnings[0]
    from cnncli import config
    from cnncli.errors import CnnError
    from cnncli.run import plan

    with pytest.raises(CnnError) as err:  # training: the same hint
        plan.plan(config.load("configs/run.yaml"), config_file="configs/run.yaml")
    assert err.value.hint.startswith("'photos' is there from the config's folder")


def test_check_and_summary_say_when_the_data_names_nothing_here(write, tmp_path,
                                                                monkeypatch):
    """`check` reads no data, but a `data.name` that is no dataset and no path is cheap
    to see (training would stop there), and the classes then shown are a guess."""
    monkeypatch.chdir(tmp_path)
    path = write("run.yaml", "model: {from: mnist_net}\ndata: {name: photos}\n")
    checked = run("check", str(path))
    assert checked.exit_code == 0, checked.output
    assert f"{path}:2: `data.name` 'photos' is neither a dataset cnncli knows nor a file " \
        f"or folder under {tmp_path}" in checked.stderr
    dry = run("train", str(path), "--dry-run", "--data", "fashion_mnst")
    assert "--data fashion_mnst: `data.name` 'fashion_mnst' is neither" in dry.stderr
    assert "did you mean 'fashion_mnist'?" in dry.stderr
    summary = json.loads(run("summary", str(path), "--json").stdout)
    assert summary["rows"][-1]["volume"] == "10"
    assert "the output layer has 10 classes here: how many 'photos' has is known only " \
        "when training reads it" in summary["warnings"][1]
    for name in ("cat", "dog"):  # made: its classes are known and nothing is guessed
        (tmp_path / "photos" / name).mkdir(parents=True)
        (tmp_path / "photos" / name / "1.png").write_bytes(b"")
    summary = json.loads(run("summary", str(path), "--json").stdout)
    assert summary["rows"][-1]["volume"] == "2" and summary["warnings"] == []
    assert run("check", str(path)).stderr == ""


@pytest.mark.parametrize("command", [["check"], ["summary"], ["train", "--dry-run"]])
def test_warnings_go_to_stderr_with_json_too_and_into_the_json(write, tmp_path, monkeypatch,
                                                               command):
    """A script's log shows what a person would have read (with --json they went only
    into the JSON; a dry run's top-level `warnings` left out the model's)."""
    monkeypatch.chdir(tmp_path)
    path = write("run.yaml", "model: {from: mnist_net}\ndata: {name: photos}\n")
    result = run(command[0], str(path), *command[1:], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    said = "`data.name` 'photos' is neither a dataset cnncli knows nor a file or folder"
    assert any(said in w for w in doc["warnings"]) and said in result.stderr


def test_summary_and_check_of_a_model_file_point_to_its_run_folder(write, tmp_path):
    write("runs/toy/1/config.yaml", "model: mnist_net\n")
    (tmp_path / "runs/toy/1/best.keras").write_bytes(b"PK\x03\x04 a zip")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    for command in ("summary", "check"):
        result = cnncli(command, str(tmp_path / "runs/toy/1/best.keras"))
        assert result.returncode == 2
        assert "this is a model file, not a spec or a run config. Hint: give its run folder " \
            f"({tmp_path / 'runs/toy/1'})" in result.stderr  # it said "not UTF-8 text"
    lone = cnncli("summary", str(tmp_path / "model.onnx"))
    assert "`cnncli predict` and `cnncli evaluate` run the model file itself" in lone.stderr
    config = write("run.yaml", "train: {epochs: 1}\nmodel: runs/toy/1/best.keras\n")
    named = cnncli("check", str(config))
    assert named.returncode == 2
    assert f"{config}:2: `model`: a model file is not a network (to start from a trained " \
        "model, write `model: {from: ...}` with its path)" in named.stderr


def test_check_reports_config_errors_with_their_lines(write):
    path = write("run.yaml", "model: mnist_net\ntrain:\n  epochs: ten\n  batchsize: 3\n")
    result = cnncli("check", str(path))
    assert result.returncode == 2
    assert f"{path}:3: `train.epochs`" in result.stderr
    assert "unknown key 'train.batchsize'" in result.stderr
    assert "did you mean 'batch_size'" in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])  # cnncli check x.yaml --debug too
def test_debug_shows_the_traceback_and_keeps_the_message_and_exit_code(write, where):
    path = write("bad.yaml", "input: [2, 2, 1]\nlayers: [Nope]\n")
    args = ["--debug", "check", str(path)] if where == "before" else \
        ["check", str(path), "--debug"]
    result = cnncli(*args)
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert "unknown layer 'Nope'" in result.stderr.split("Traceback")[1].splitlines()[-1]


def test_unknown_builtin_lists_the_builtins():
    result = cnncli("summary", "vgg61")
    assert result.returncode == 2
    assert "built-in:" in result.stderr and "vgg16" in result.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_schema_is_a_json_schema_of_run_configs(json_flag):
    result = run("schema", *json_flag)  # --json accepted, as by every command printing JSON
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["title"] == "RunConfig"
    assert {"model", "data", "train", "output"} <= set(data["properties"])


def test_models_lists_the_builtins():
    result = run("models", "--json")
    names = {m["name"] for m in json.loads(result.stdout)}
    assert {"linear", "lenet5", "mnist_net", "alexnet", "zfnet", "vgg16", "vgg19",
            "googlenet"} <= names


def test_models_download_with_json_says_where_the_weights_are_as_json(monkeypatch, tmp_path):
    from cnncli.model import pretrained

    files = [tmp_path / "vgg16.h5", tmp_path / "vgg16_notop.h5"]
    monkeypatch.setattr(pretrained, "download", lambda name, size: files)  # (offline)
    result = run("models", "--download", "vgg16", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"model": "vgg16", "weights": [str(f) for f in files]}


def test_datasets_caches_refuses_the_options_it_would_ignore(tmp_path):
    result = run("datasets", "--data-dir", str(tmp_path), "caches")
    assert result.exit_code == 2 and "is for finding datasets" in result.output


def test_models_input_size_without_download_is_a_usage_error_not_ignored():
    result = run("models", "--input-size", "160")
    assert result.exit_code == 2 and "goes with --download NAME" in result.output


def test_an_unexpected_error_is_one_paragraph_with_exit_3(monkeypatch, capsys):
    import pytest

    from cnncli.cli import app as cli
    from cnncli.model import summary as summaries

    def boom(*args, **kwargs):
        raise RuntimeError("boom\n\nin Conv2D.call()")  # a library's message: its lines

    monkeypatch.setattr(summaries, "summarize", boom)
    monkeypatch.setattr(sys, "argv", ["cnncli", "summary", "linear"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 3
    assert err.startswith("error: unexpected RuntimeError: boom\n") and "--debug" in err
    assert "error: in Conv2D.call()" in err and "\\n" not in err
    assert "Traceback" not in err


def test_a_bug_that_is_a_failed_import_is_said_in_one_paragraph_not_a_traceback(
        monkeypatch, capsys):
    """The handler of unexpected errors looks into the devices (importing them) only for
    TensorFlow's: the bug may be a package that cannot be imported (pydantic's parts out
    of step), which importing again inside the handler would raise as a traceback."""
    import pytest

    from cnncli import devices
    from cnncli.cli import app as cli
    from cnncli.model import summary as summaries

    def broken(*args, **kwargs):
        raise SystemError("pydantic_core is not the version pydantic needs")

    def fails_to_import(exc):
        raise SystemError("pydantic_core is not the version pydantic needs")

    monkeypatch.setattr(summaries, "summarize", broken)
    monkeypatch.setattr(devices, "failed_on_a_gpu", fails_to_import)
    monkeypatch.setattr(sys, "argv", ["cnncli", "summary", "linear"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 3 and err.startswith("error: unexpected SystemError: pydantic_core")
    assert "Traceback" not in err


def test_a_tensorflow_error_on_a_gpu_names_its_libraries_not_a_bug(monkeypatch, capsys):
    # cuDNN or XLA failing on a GPU machine (TensorFlow's own explanation is in its log,
    # hidden without --debug); on the CPU the same error stays "a bug ... report it"
    import pytest

    from cnncli.cli import app as cli
    from cnncli.devices import tf_layer
    from cnncli.model import summary as summaries
    from cnncli.runtime import import_tf

    tf = import_tf()

    def boom(*args, **kwargs):
        raise tf.errors.UnknownError(None, None, "Failed to get convolution algorithm.")

    monkeypatch.setattr(summaries, "summarize", boom)
    monkeypatch.setattr(tf_layer, "build_info",
                        lambda: {"cuda_version": "12.5.1", "cudnn_version": "9"})
    monkeypatch.setattr(sys, "argv", ["cnncli", "summary", "linear"])
    said = {}
    for gpu in (True, False):
        monkeypatch.setattr(tf_layer, "gpus_in_use", lambda gpu=gpu: gpu)
        with pytest.raises(SystemExit) as e:
            cli.main()
        said[gpu] = (e.value.code, capsys.readouterr().err)
    code, err = said[True]
    assert code == 3
    assert err.startswith("error: TensorFlow failed on the GPU: UnknownError: Failed to get "
                          "convolution algorithm.")
    assert "built with CUDA 12.5.1 and cuDNN 9" in err and "jit_compile=false" in err
    assert "a bug" not in err and "report it" not in err
    code, err = said[False]
    assert code == 3 and "this is a bug in cnncli" in err


def test_a_tensorflow_error_unrelated_to_gpu_libraries_is_not_blamed_on_them(monkeypatch,
                                                                             capsys):
    import pytest

    from cnncli.cli import app as cli
    from cnncli.devices import tf_layer
    from cnncli.model import summary as summaries
    from cnncli.runtime import import_tf

    tf = import_tf()

    def boom(*args, **kwargs):
        raise tf.errors.InvalidArgumentError(None, None, "Cannot batch tensors with "
                                             "different shapes")

    monkeypatch.setattr(summaries, "summarize", boom)
    monkeypatch.setattr(tf_layer, "gpus_in_use", lambda: True)
    monkeypatch.setattr(sys, "argv", ["cnncli", "summary", "linear"])
    with pytest.raises(SystemExit):
        cli.main()
    err = capsys.readouterr().err
    assert "GPU" not in err and "this is a bug in cnncli" in err


@pytest.mark.parametrize("raised, said", [
    (FileNotFoundError(2, "No usable temporary directory found in ['/nonexistent', '/tmp']"),
     "error: no folder for temporary files can be written to (TMPDIR, /tmp, /var/tmp, the "
     "working folder): TensorFlow needs one. Hint: set TMPDIR to a folder that can be "
     "written to\n"),
    (OSError("Matplotlib requires access to a writable cache directory, but there was an "
             "issue with the default path (/.config/matplotlib)"),
     "error: matplotlib finds no folder it can write its cache to. Hint: set MPLCONFIGDIR "
     "(or TMPDIR) to a folder that can be written to\n")])
def test_no_folder_for_temporary_files_is_said_as_such_not_as_a_bug(raised, said,
                                                                    monkeypatch, capsys):
    """A container's read-only root: TensorFlow's start, then matplotlib's, failed "as a
    bug in cnncli"."""
    from cnncli.cli import app as cli
    from cnncli.model import summary as summaries

    def unwritable(*args, **kwargs):
        raise raised

    monkeypatch.setattr(summaries, "summarize", unwritable)
    monkeypatch.setattr(sys, "argv", ["cnncli", "summary", "linear"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert (e.value.code, capsys.readouterr().err) == (3, said)


def test_an_unexpected_error_is_json_too_when_json_is_asked_for(monkeypatch, capsys):
    import json

    import pytest

    from cnncli.cli import app as cli
    from cnncli.model import summary as summaries

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(summaries, "summarize", boom)
    monkeypatch.setattr(sys, "argv", ["cnncli", "summary", "linear", "--json"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = json.loads(capsys.readouterr().out)
    assert e.value.code == 3 == out["exit_code"]
    assert (out["error"], out["message"]) == ("InternalError", "unexpected RuntimeError: boom")


def test_doctor_says_what_auto_picks_and_whether_the_cpu_has_bf16_units(monkeypatch):
    from cnncli.devices import tf_layer

    for units, words in ((True, "bfloat16 units (AMX or AVX512-BF16)"),
                         (False, "no bfloat16 units")):
        monkeypatch.setattr(tf_layer, "cpu_bf16_units", lambda units=units: units)
        result = run("doctor")
        assert result.exit_code == 0, result.output
        assert words in result.output
        assert ("mixed_bfloat16" in result.output) is units
    assert "CPU memory: TensorFlow's BFC allocator (reuses freed memory)" in result.output


def test_doctor_lists_each_gpu_with_its_memory_and_compute_capability(monkeypatch):
    from cnncli.devices import GpuInfo, tf_layer

    monkeypatch.setattr(tf_layer, "visible_gpus", lambda: [GpuInfo("A100", 80 * 2**30, (8, 0))])
    result = run("doctor")
    assert result.exit_code == 0, result.output
    assert "GPU 0: A100, 80.0 GiB, compute capability 8.0\n" in result.output


@pytest.mark.parametrize("command", [
    "predict x.png --model mnist_net", "evaluate mnist_net", "export mnist_net --format onnx",
    "visualize filters mnist_net", "explain mnist_net x.png"])
def test_commands_that_run_on_one_device_set_up_one_device(command, monkeypatch, tmp_path):
    from PIL import Image

    from cnncli import devices
    from cnncli.errors import DeviceError

    monkeypatch.chdir(tmp_path)
    Image.new("L", (28, 28)).save("x.png")
    asked = []

    def setup(*args, **kw):
        asked.append(kw)
        raise DeviceError("stopped here")

    monkeypatch.setattr(devices, "setup", setup)
    run(*command.split())
    assert asked == [{"one_device": True}]


def test_doctor_says_a_tf_config_cluster_is_what_train_would_join(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                                "task": {"type": "worker", "index": 1}}))
    result = run("doctor")
    assert result.exit_code == 0, result.output
    assert "auto picks: multiworker over 2 replicas on 2 machines (TF_CONFIG; this is " \
           "worker 1), precision" in result.output


def test_doctor_with_a_bad_tf_config_says_so_and_reports_the_machine(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{oops")
    result = run("doctor")
    assert result.exit_code == 0, result.output
    assert "TF_CONFIG is not valid JSON" in result.output
    assert "auto picks: cpu" in result.output


def test_doctor_json_reports_bf16_units_from_the_cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    units = "amx_bf16" in flags or "avx512_bf16" in flags
    data = json.loads(run("doctor", "--json").stdout)
    assert data["cnncli"] == __version__  # what a bug report needs first
    assert data["cpu"]["bf16_units"] is units
    assert data["auto"]["precision"] == ("mixed_bfloat16" if units else "float32")


def test_summary_and_check_take_a_run_folder_and_its_saved_config(tmp_path):
    """A run, the folder of its name (its latest run, as `evaluate` takes it) or its
    config. The run's config.yaml carries a `digest` key; it is not an unknown key. A network
    without `classes` of its own is shown with the classes the run's model has (its npz
    data is not read to count them: it was shown with 10, and called a guess)."""
    from exportkit import QUANTIZABLE, train_run

    spec = QUANTIZABLE.replace("  classes: 3\n", "")
    assert spec != QUANTIZABLE
    trained = train_run(tmp_path / "data", spec, epochs=1)
    assert (trained.parent / "latest").resolve() == trained.resolve()
    for target in (trained, trained.parent, trained / "config.yaml"):  # parent: runs/NAME
        summary = run("summary", str(target), "--json")
        assert summary.exit_code == 0, summary.output
        table = json.loads(summary.stdout)  # the classes the run's model has, not a guess
        assert table["rows"][-1]["volume"] == "3" and table["warnings"] == []
        checked = run("check", str(target))
        assert checked.exit_code == 0 and "is valid" in checked.output, checked.output


def test_a_case_code_tells_apart_is_reported_in_json_as_the_error_it_is_a_case_of():
    from cnncli.errors import ConfigChanged, InputTooSmall, NoSuchDevice

    changed = ConfigChanged("the config differs from the run's", ways=["resume"]).to_dict()
    missing = NoSuchDevice("--device gpu:1", "TensorFlow sees no GPU").to_dict()
    assert (changed["error"], changed["exit_code"]) == ("ConfigError", 2)
    assert InputTooSmall("the 2x2 input is smaller than the 5x5 filter").to_dict()[
        "error"] == "ConfigError"
    assert (missing["error"], missing["exit_code"]) == ("DeviceError", 3)
    assert missing["message"] == "--device gpu:1 was asked for, but TensorFlow sees no GPU"


def test_an_error_without_a_hint_has_null_as_its_hint_in_json_however_it_was_made():
    from cnncli.errors import ConfigError, ManyErrors, suggest

    nothing_close = ConfigError("no layer is named 'zzz'", hint=suggest("zzz", ["conv1"]))
    set_later = ConfigError("bad")
    set_later.hint = ""
    many = ManyErrors([nothing_close, set_later]).to_dict()
    assert [e["hint"] for e in many["errors"]] == [None, None]
    assert str(nothing_close) == "no layer is named 'zzz'"


def test_a_command_line_typer_refuses_is_a_json_error_when_json_was_asked_for():
    result = cnncli("runs", "--json", "--bogus")
    assert result.returncode == 2
    error = json.loads(result.stdout)
    assert error["error"] == "UsageError" and error["exit_code"] == 2
    assert error["message"] == "No such option: --bogus"
    assert "No such option: --bogus" in result.stderr  # people still read it there
    assert cnncli("runs", "--bogus").stdout == ""
    assert cnncli("export", "run", "--format", "json", "--bogus").stdout == ""  # a format


@pytest.mark.parametrize("stdout", ["closed pipe", "/dev/full"])
def test_a_refused_command_line_with_json_into_a_closed_output_exits_2_without_traceback(
        stdout):
    """Its JSON cannot be written: the refusal is on stderr, and the exit code says it."""
    if stdout == "/dev/full":
        with open("/dev/full", "w") as full:
            result = subprocess.run([sys.executable, "-m", "cnncli", "check", "--bogus",
                                     "--json"], stdout=full, stderr=subprocess.PIPE, text=True)
        code, stderr = result.returncode, result.stderr
    else:
        child = subprocess.Popen([sys.executable, "-m", "cnncli", "check", "--bogus", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        child.stdout.close()
        code, stderr = child.wait(timeout=60), child.stderr.read()
    assert code == 2 and "No such option: --bogus" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("signal_raised,code,error", [
    ("KeyboardInterrupt", 130, "Interrupted"), ("errors.Terminated", 143, "Terminated")])
def test_a_command_stopped_before_its_own_handling_still_gives_json(signal_raised, code,
                                                                   error):
    """Ctrl-C before a command could say what it had done (e.g. while TensorFlow loads):
    with --json, stdout is still one JSON document."""
    script = ("import sys\nfrom cnncli import errors\nfrom cnncli.cli import app\n"
              f"def stopped():\n    raise {signal_raised}()\n"
              "app.app = stopped\nsys.argv = ['cnncli', 'runs', '--json']\napp.main()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == code
    stopped = json.loads(result.stdout)
    assert stopped["error"] == error and stopped["exit_code"] == code
    assert "the command stopped before it finished" in stopped["message"]


def test_ctrl_c_with_json_into_a_reader_gone_too_exits_130_without_traceback():
    """Ctrl-C in `cnncli ... --json | jq` stops jq too: the JSON cannot be written."""
    script = ("import sys\nfrom cnncli.cli import app\n"
              "def stopped():\n    raise KeyboardInterrupt()\n"
              "app.app = stopped\nsys.argv = ['cnncli', 'runs', '--json']\napp.main()\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=60) == 130 and "Traceback" not in stderr
    assert "stopped: Ctrl-C" in stderr


def test_predict_format_json_gives_its_errors_as_json(tmp_path):
    result = cnncli("predict", str(tmp_path / "nope.png"), "--model",
                    str(tmp_path / "nope.keras"), "--format", "json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["message"] == "the model file does not exist"


def test_predict_format_jsonl_gives_its_errors_as_one_json_line(tmp_path):
    result = cnncli("predict", str(tmp_path / "nope.png"), "--model",
                    str(tmp_path / "nope.keras"), "--format=jsonl")
    [line] = result.stdout.splitlines()
    assert (result.returncode, json.loads(line)["exit_code"]) == (3, 3)


def test_sigterm_ends_a_command_that_does_not_stop_by_itself_with_143(tmp_path):
    # A command stuck where Python's handler cannot stop it (here: one that swallows
    # the interrupt; in life, blocked inside TensorFlow) still ends, after the grace.
    import signal
    import time

    started = tmp_path / "started"
    script = textwrap.dedent(f"""
        import sys, time, pathlib
        from cnncli import devices
        from cnncli.cli import app
        app.SIGTERM_GRACE = 1.0
        def stuck():
            pathlib.Path({str(started)!r}).touch()
            while True:
                try:
                    time.sleep(0.1)
                except BaseException:
                    pass
        devices.doctor_info = stuck
        sys.argv = ["cnncli", "doctor"]
        app.main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # when it did not end (the test fails)
    assert proc.returncode == 143, err
    assert "did not stop by itself" in err and time.monotonic() - sent < 30


def test_main_puts_back_the_sigterm_handler_it_found(monkeypatch, capsys):
    import signal

    import pytest

    from cnncli.cli import app as cli

    def mine(signum, frame):
        pass

    monkeypatch.setattr(sys, "argv", ["cnncli", "models", "--json"])
    before = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert e.value.code == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_command_done_after_tensorflow_loaded_exits_at_once_deaf_to_sigterm(
        monkeypatch, capsys):
    """TensorFlow's shutdown took 0.6 s after a finished training, in which a SIGTERM made
    it exit 143 with nothing said: a command that is done exits at once, SIGTERM ignored."""
    import signal

    import pytest

    from cnncli.cli import app as cli

    class Exited(Exception):
        pass

    seen = {}

    def exit_now(code):
        seen.update(code=code, sigterm=signal.getsignal(signal.SIGTERM))
        raise Exited

    from cnncli.runtime import import_tf

    import_tf()  # (loaded by any command that builds a model)
    monkeypatch.setattr(cli, "EXIT_AT_ONCE", True)
    monkeypatch.setattr(cli.os, "_exit", exit_now)
    monkeypatch.setattr(sys, "argv", ["cnncli", "models", "--json"])
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(Exited):
            cli.main()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert seen == {"code": 0, "sigterm": signal.SIG_IGN}
    assert json.loads(capsys.readouterr().out)  # what it printed came out first


def test_sigterm_grace_spares_a_command_that_handles_sigterm_itself(tmp_path):
    # as training and export do: they stop at their own pace (a backup first), so the
    # watch thread must not end the process after SIGTERM_GRACE
    finished = tmp_path / "finished"
    script = textwrap.dedent(f"""
        import os, pathlib, signal, sys, time, types
        from cnncli import devices
        from cnncli.cli import app
        app.SIGTERM_GRACE = 0.2
        def own_handler():
            told = []
            signal.signal(signal.SIGTERM, lambda signum, frame: told.append(signum))
            os.kill(os.getpid(), signal.SIGTERM)
            while not told:
                time.sleep(0.01)
            time.sleep(1.0)  # five graces: stopping at its own pace
            pathlib.Path({str(finished)!r}).touch()
            return types.SimpleNamespace(to_dict=lambda: {{"stopped": "by itself"}},
                                         warning=None)
        devices.doctor_info = own_handler
        sys.argv = ["cnncli", "doctor", "--json"]
        app.main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stopped"] == "by itself" and finished.exists()
    assert "did not stop by itself" not in result.stderr


def test_sigterm_exits_143_without_python_s_shutdown(tmp_path):
    # a TensorFlow pipeline stopped mid-batch can hang a shutting-down Python (`_leave`)
    ran = tmp_path / "atexit-ran"
    script = textwrap.dedent(f"""
        import atexit, os, pathlib, signal, sys, time
        from cnncli import devices
        from cnncli.cli import app
        def terminated():
            atexit.register(pathlib.Path({str(ran)!r}).touch)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        devices.doctor_info = terminated
        sys.argv = ["cnncli", "doctor"]
        app.main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().endswith("stopped: SIGTERM: the command stopped before it "
                                          "finished. Hint: run it again")
    assert not ran.exists()


def test_an_error_mid_epoch_on_a_photo_folder_exits_with_its_code(tmp_path):
    # a backup the full disk refuses while the pipeline decodes the next photos: the
    # error was said, then Python's shutdown freed the stopped pipeline and hung (`_leave`)
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(200):  # enough decoding left when the error comes
        path = tmp_path / "photos" / "ab"[k % 2] / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), np.uint8)).save(path)
    (tmp_path / "c.yaml").write_text(textwrap.dedent(f"""
        model: {{input: [224, 224, 3], layers: [
            {{Conv2D: {{filters: 16, kernel_size: 8, strides: 8, activation: relu}}}},
            GlobalAveragePooling2D, {{Dense: {{units: $classes, activation: softmax}}}}]}}
        data: {{name: {tmp_path / "photos"}, validation_split: 0}}
        train: {{epochs: 1, batch_size: 16, backup_every: 1}}
        output: {{dir: {tmp_path / "runs"}}}
    """))
    script = textwrap.dedent(f"""
        import errno, sys
        from cnncli.run import checkpoint
        def full(path, data):
            raise OSError(errno.ENOSPC, "No space left on device")
        checkpoint.write_atomic = full
        from cnncli.cli import app
        sys.argv = ["cnncli", "train", {str(tmp_path / "c.yaml")!r}]
        app.main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=90)  # hung: TimeoutExpired
    assert result.returncode == 3, result.stderr
    assert "cannot write the backup: No space left on device" in result.stderr


def test_a_closed_stderr_or_stdout_is_the_null_device_not_a_failure(tmp_path):
    """``2>&-`` or ``>&-`` drops what would be written there; the command does its work
    and exits as it would otherwise (its JSON on the stream left open)."""
    import os

    def closed(fd, *args):
        return subprocess.run([sys.executable, "-m", "cnncli", *args], capture_output=True,
                              text=True, pass_fds=(), preexec_fn=lambda: os.close(fd))

    no_stderr = closed(2, "check", "lenet5")
    assert no_stderr.returncode == 0 and no_stderr.stdout.startswith("OK")
    no_stdout = closed(1, "summary", "lenet5", "--json")
    assert no_stdout.returncode == 0 and no_stdout.stderr == ""


def test_output_closed_by_its_reader_exits_141_silently():
    """``cnncli models | head -1``: as a program killed by SIGPIPE, not exit 1 (which
    means a result below a threshold)."""
    child = subprocess.Popen([sys.executable, "-m", "cnncli", "models"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before anything is written
    stderr = child.stderr.read()
    assert (child.wait(timeout=60), stderr) == (141, b"")


def _schema_into_a_small_pipe(*, nonblocking: bool = False, read=None):
    """`cnncli schema` (17 kB of JSON) into a pipe of 4 kB, unbuffered as CI images set
    Python (PYTHONUNBUFFERED): what its reader got (`read(fd)`), its exit code, stderr."""
    import fcntl
    import os

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(w, not nonblocking)
    child = subprocess.Popen([sys.executable, "-m", "cnncli", "schema"], stdout=w,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(w)
    got = read(r)
    os.close(r)
    return got, child.wait(timeout=60), child.stderr.read().decode()


def test_unbuffered_output_cut_short_by_its_reader_exits_141_not_0():
    """A reader that stops (``| head -c 10``) while a document is being written: the
    command knows (141), as when it is buffered; unbuffered, Python dropped the rest of a
    write the pipe took part of, and the command said it had succeeded."""
    import os

    got, code, stderr = _schema_into_a_small_pipe(read=lambda fd: os.read(fd, 10))
    assert (len(got), code, stderr) == (10, 141, "")


def test_output_into_a_pipe_left_non_blocking_is_written_whole():
    """A parent that made the pipe non-blocking (Node's child_process does) reads the
    whole JSON document, slowly: not the part the pipe could take at once."""
    import os
    import time

    def slowly(fd):
        time.sleep(2)  # the command has written what the pipe takes and wants to go on
        chunks = []
        while chunk := os.read(fd, 1024):
            chunks.append(chunk)
        return b"".join(chunks)

    got, code, stderr = _schema_into_a_small_pipe(nonblocking=True, read=slowly)
    assert (code, stderr) == (0, "")
    assert json.loads(got)["title"]


def test_output_to_a_full_device_is_an_error_exit_3_not_a_bug():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "cnncli", "models"], stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert done.returncode == 3
    assert done.stderr.startswith("error: cannot write the output: No space left on device")


@pytest.mark.parametrize("index", [0, 1])
def test_only_the_chief_names_the_run_when_done_and_says_what_next(monkeypatch, index):
    """A worker's own folder was a copy, removed when the run finished: its Done line
    names its part of the run, and the chief's says how to evaluate the run."""
    from cnncli.run import record
    from cnncli.run import train as training

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                                "task": {"type": "worker", "index": index}}))
    done = training.Result(Path("runs/mnist/1"), record.RunMetrics(), []) if index == 0 else \
        training.Result(None, record.RunMetrics(), [], task="worker 1")  # as train gives it
    monkeypatch.setattr(training, "train", lambda *a, **kw: done)
    config = Path(__file__).resolve().parents[1] / "configs" / "mnist.yaml"
    result = run("train", str(config), "--epochs", "1")
    assert result.exit_code == 0, result.output
    if index == 0:
        assert "Done: runs/mnist/1" in result.output
        assert "Next: cnncli evaluate runs/mnist/1" in result.output
    else:
        assert "Done: worker 1's part (the chief wrote the run)" in result.output
        assert "Next:" not in result.output


def test_datasets_json_before_caches_means_caches_json_as_it_does_for_pack(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("CNNCLI_CACHE_DIR", str(tmp_path))
    result = run("datasets", "--json", "caches")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"folder": str(tmp_path), "caches": [],
                                         "removed": False}


def test_json_holds_a_file_names_bytes_that_are_not_utf8_as_text_strict_parsers_read(
        tmp_path):
    """A Latin-1 file name (or binary piped to `predict -`): the JSON named the file with
    lone surrogates ("\\udce9"), which strict parsers (serde, Go) refuse."""
    import os

    from PIL import Image

    from cnncli.runtime import import_keras

    keras = import_keras()
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(2, activation="softmax")]).save(tmp_path / "m.keras")
    Image.new("L", (8, 8), 9).save(tmp_path / os.fsdecode(b"caf\xe9.png"), format="PNG")
    result = subprocess.run([sys.executable, "-m", "cnncli", "predict", ".", "--model",
                             "m.keras", "--json"], capture_output=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    raw = result.stdout.decode("utf-8")
    said = json.loads(raw)
    assert said[0]["file"] == "./caf\\xe9.png", said  # the byte, said as Python says it
    said[0]["file"].encode("utf-8")  # (a lone surrogate cannot be encoded)


@pytest.mark.parametrize("form", ["text", "csv"])
def test_a_file_names_byte_that_is_not_utf8_is_shown_escaped_as_a_terminal_control(
        tmp_path, form):
    """0x9B is CSI (ESC [) on an 8-bit terminal: a photo named with it, written out as
    its byte, could recolour or clear the screen. Shown as \\x9b, as the JSON says it."""
    import os

    from PIL import Image

    from cnncli.runtime import import_keras

    keras = import_keras()
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(2, activation="softmax")]).save(tmp_path / "m.keras")
    Image.new("L", (8, 8), 9).save(tmp_path / os.fsdecode(b"\x9b2J.png"), format="PNG")
    Image.new("L", (8, 8), 9).save(tmp_path / "b.png")  # two: each result names its file
    result = subprocess.run([sys.executable, "-m", "cnncli", "predict", ".", "--model",
                             "m.keras", "--format", form], capture_output=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"\x9b" not in result.stdout and b"./\\x9b2J.png" in result.stdout, result.stdout


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_name_the_outputs_encoding_lacks_is_written_escaped_not_a_crash(tmp_path, encoding):
    """A latin-1 console or PYTHONIOENCODING=ascii: results name the file as error
    messages do (caf\\xe9), where Python would stop with UnicodeEncodeError (exit 3)."""
    import os

    config = tmp_path / "café_数.yaml"
    config.write_text("model: linear\ndata:\n  name: mnist\n")
    result = subprocess.run([sys.executable, "-m", "cnncli", "check", str(config)],
                            capture_output=True, env={**os.environ,
                                                      "PYTHONIOENCODING": encoding})
    assert result.returncode == 0, result.stderr
    assert "_\\u6570.yaml is valid" in result.stdout.decode(encoding)


def test_check_lists_a_configs_problems_in_the_files_order(tmp_path):
    """Found by different checks (unknown keys, values, the optimizer's name), they
    came as lines 4, 7, 11, 9."""
    import re

    config = tmp_path / "typo.yaml"
    config.write_text("model: mnist_net\ndata:\n  name: mnist\n  validaton_split: 0.1\n"
                      "train:\n  epochs: 2\n  batch_size: -3\n  optimizer:\n    name: adamm\n"
                      "output:\n  nme: x\n")
    result = cnncli("check", str(config))
    assert result.returncode == 2
    lines = [int(n) for n in re.findall(r"typo\.yaml:(\d+):", result.stderr)]
    assert lines == [4, 7, 9, 11]


def test_stderr_on_a_terminal_takes_its_width_when_stdout_goes_to_a_file(tmp_path):
    """``cnncli train cfg.yaml > log``: the progress on the terminal's stderr was drawn
    200 columns wide (stdout's width for files), each redraw wrapping in 80 columns."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [sys.executable, "-c", "from cnncli.cli import render; "
         "print(render.err.width, render.out.width)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, env=env,
        text=True, timeout=60)
    os.close(follower)
    os.close(leader)
    assert done.stdout.split() == ["80", "200"]
