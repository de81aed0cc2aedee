"""The benchmark scripts in bench/ still run (tiny sizes; the numbers mean nothing here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")]


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_quick_benchmark_reports_cnncli_in_both_precisions(tmp_path):
    done = _run("bench/run.py", "--quick", "--only", "throughput,matmul",
                "--only", "cnncli,cnncli-fp32,tutorial", "--batch-sizes", "64",
                "--epochs", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = (tmp_path / "RESULTS.md").read_text()
    assert "| 64 | cnncli-fp32 |" in results
    assert "(float32 only) training images/s at batch 64: cnncli-fp32 / tutorial" in results
    assert "TensorFlow bfloat16 matmul 1024x1024" in results


def test_levers_script_measures_each_lever(tmp_path):
    done = _run("bench/levers.py", "--only", "base,fused_adam", "--rounds", "1",
                "--batch-sizes", "32", "--warmup", "2", "--measure", "3",
                "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "LEVERS.md").read_text()
    assert "| fused_adam |" in table and "failed" not in table
    assert "| base |" in table and "1.00x" in table


def test_levers_count_the_steps_keras_runs_in_executions_of_several(tmp_path):
    """3 steps at 4 a call: Keras runs one call of 4; 4 are timed and counted."""
    done = _run("bench/levers.py", "--only", "spe4", "--rounds", "1", "--batch-sizes", "32",
                "--warmup", "2", "--measure", "3", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "levers.json").read_text())["results"]
    assert [r["steps"] for r in results["32/spe4"]] == [4]


def test_levers_without_base_are_compared_with_the_first_named(tmp_path):
    done = _run("bench/levers.py", "--only", "bf16_fused,bf16_fused_pool_first",
                "--rounds", "1", "--batch-sizes", "32", "--warmup", "2", "--measure", "3",
                "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "LEVERS.md").read_text()
    assert "/ bf16_fused (median of rounds)" in table
    assert "| bf16_fused | mixed_bfloat16 + fused Adam | " in table
    assert "| bf16_fused_pool_first | mixed_bfloat16 + fused Adam + each ReLU" in table
    assert "1.00x |" in table and "failed" not in table


def test_export_benchmark_measures_every_format(tmp_path):
    done = _run("bench/export_bench.py", "--quick", "--out", str(tmp_path), timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = (tmp_path / "EXPORT_RESULTS.md").read_text()
    for variant in ("| Keras model.predict |", "| saved_model |", "| onnx |", "| onnx int8 |",
                    "| litert |", "| litert dynamic |", "| openvino float16 |"):
        assert variant in table
    assert "Not kept" not in table
    rows = json.loads((tmp_path / "export_results.json").read_text())["rows"]
    assert not any(r["tensorflow_imported"] for r in rows
                   if r["format"] in ("onnx", "litert", "openvino"))
    assert all(r["startup_s"] > 0 for r in rows if r["format"] != "keras")


def test_precision_benchmark_compares_float32_and_bfloat16_on_the_same_images(tmp_path):
    done = _run("bench/precision.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads((tmp_path / "precision.json").read_text())["rows"]
    trained, vgg = rows
    assert trained["images"] == 500 and vgg["images"] == 16
    assert 0.5 < trained["agreement"] <= 1 and 0.5 < trained["accuracy_float32"] < 1
    # different arithmetic really ran: the probabilities are not bit-identical
    assert 0 < trained["max_probability_difference"] < 0.5
    assert "| mnist_net (trained, Fashion-MNIST test set) | 500 |" in \
        (tmp_path / "PRECISION_RESULTS.md").read_text()


def test_stream_benchmark_compares_folders_with_keras(tmp_path):
    done = _run("bench/stream_bench.py", "--quick", "--out", str(tmp_path), "--work",
                str(tmp_path / "work"), timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "stream_results.json").read_text())
    for name, [result] in results.items():
        rows = result["passes"]["cached"] + result["passes"]["arrays"] \
            if "passes" in result else result["epochs"]
        assert rows and all(e["images"] > 0 and e["seconds"] > 0 for e in rows), name
        assert result["peak_rss_mb"] > 50, name
    assert [len(p) for p in results["cached vs arrays, one process"][0]["passes"].values()] \
        == [2, 2]
    assert results["jpeg cnncli"][0]["first_step_seconds"] > 0
    from cnncli.devices import hardware  # the peer trains in what cnncli's `auto` takes

    same = "mixed_bfloat16" if hardware.cpu_bf16_units() else "float32"
    assert results["png keras"][0]["precision"] == results["jpeg keras"][0]["precision"] == same
    table = (tmp_path / "STREAM_RESULTS.md").read_text()
    assert f"- the Keras script trains in {same}, cnncli in its `--precision auto`" in table
    for row in ("| JPEG folder 224x224, 1st epoch |", "| JPEG pipeline alone, later passes |",
                "400 against 100 files, cache disk:", "The same in one process"):
        assert row in table
    assert "n/a" not in table


def test_profile_script_sums_a_training_steps_operations(tmp_path):
    done = _run("bench/profile_step.py", "--steps", "3", "--warmup", "2", "--out",
                str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "profile.json").read_text())
    ops = result["ops_ms_per_step"]
    assert "IDLE" not in ops and any("Conv2D" in op for op in ops)
    assert all(ms >= 0 for ms in ops.values()) and sum(ops.values()) > 0
    assert "| matrix (convolution) |" in (tmp_path / "PROFILE.md").read_text()


def test_networks_benchmark_trains_the_cifar_vgg_in_each_contender(tmp_path):
    done = _run("bench/networks.py", "--quick", "--peers", "tuned", "--resnet-images", "0",
                "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "networks.json").read_text())
    runs = {r["name"]: r["result"] for r in result["runs"]}
    assert set(runs) == {"cnncli", "tuned"}
    assert all(r["network"] == "cifar_vgg" and r["steady_images_per_s"] > 0
               for r in runs.values())
    [case] = result["summary"]["cases"]
    assert case["rows"]["tuned"]["ratio"]["value"] > 0
    assert "| cifar_vgg | 32 | 128 | tuned |" in (tmp_path / "NETWORKS_RESULTS.md").read_text()


def test_predict_benchmark_times_resnet50_against_both_plain_scripts(tmp_path):
    done = _run("bench/run.py", "--quick", "--only", "predict", "--predict-networks",
                "resnet50", "--images", "4", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    summary = results["summary"]
    scripts = [r["result"] for r in results["runs"] if r["name"].startswith("raw")]
    assert [r["network"] for r in scripts] == ["resnet50"] * 3
    assert [r["by_batch"] for r in scripts] == [False, False, True]
    pred = summary["predict"]["resnet50"]
    assert pred["network"] == "ResNet50" and pred["images"] == 4
    for script in ("raw", "raw-bf16", "raw-batches"):  # each ran ResNet50, was compared
        assert pred["scripts"][script]["speedup"]["value"] > 0
        assert pred["scripts"][script]["top1_agreement"]["n"] == 1  # both listed 4 images
    assert "## (e) Prediction: ResNet50" in (tmp_path / "RESULTS.md").read_text()
    assert summary["targets"] == []  # the issue's targets are VGG16's


def test_recipes_script_trains_each_recipe_with_its_own_settings(tmp_path):
    done = _run("bench/recipes.py", "--only", "batch50,float32", "--quick",
                "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "recipes.json").read_text())["results"]
    [batch50], [float32] = results["batch50"], results["float32"]
    assert (batch50["batch_size"], float32["batch_size"]) == (50, 128)
    assert float32["precision"] == "float32" and batch50["epochs"] == 1
    assert 0 < batch50["test_accuracy"] <= 1 and batch50["images_per_s"] > 0
    table = (tmp_path / "RECIPES.md").read_text()
    assert "| batch50 | batch 50, Adam 1e-3" in table and "failed" not in table


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bfloat16"])
def test_pytorch_contender_trains_the_lecture_network(tmp_path, bf16):
    pytest.importorskip("torch", reason="PyTorch is installed for the benchmark only")
    out = tmp_path / "torch.json"
    done = _run("bench/contenders/pytorch_cpu.py", "--limit", "512", "--epochs", "2",
                *(["--bf16"] if bf16 else []), "--json-out", str(out), timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert len(result["epochs"]) == 2 and result["steady_images_per_s"] > 0
    assert all(e["images"] == 512 for e in result["epochs"])
    assert result["epochs"][1]["loss"] < 0.8 * result["epochs"][0]["loss"]  # it learns (2.1, 1.2)
    assert result["precision"] == ("autocast bfloat16, channels_last" if bf16 else "float32")
    if bf16:  # whether torch.compile worked offline, said either way
        assert result["torch_compile"] == "used" or result["torch_compile"].startswith("failed")


def test_pipeline_throughput_script_times_the_training_pipeline():
    done = _run("bench/pipeline_throughput.py", "--batches", "5", "--warmup", "1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "timed:   5 batches, 640 images in" in done.stdout
    rate = done.stdout.split("throughput: ")[1].split(" images/s")[0]
    assert float(rate.replace(",", "")) > 0


def test_relu_after_pooling_gives_the_lecture_networks_values_and_gradients():
    sys.path.insert(0, str(ROOT / "bench" / "contenders"))
    import _common
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    written, reordered = (_common.lecture_keras_model(keras, pool_first=p) for p in (False, True))
    assert len(reordered.layers) == len(written.layers) + 2  # two ReLU layers
    reordered.set_weights(written.get_weights())
    x = tf.constant(np.random.default_rng(0).random((4, 28, 28, 1)), tf.float32)
    results = []
    for model in (written, reordered):
        with tf.GradientTape() as tape:
            y = model(x)
            loss = tf.reduce_sum(y * tf.range(10, dtype=tf.float32))
        results.append((y, tape.gradient(loss, model.trainable_variables)))
    (y1, g1), (y2, g2) = results
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def _report():
    sys.path.insert(0, str(ROOT / "bench"))
    import report

    return report


def test_a_results_file_written_again_keeps_its_hand_written_sections(tmp_path):
    report = _report()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Bench\n\n| old | 1 |\n\n## Notes (written by hand, 2026-12-06)\n\n"
                    "Round 2 was slow.\n\n## The run of 2026-12-05\n\nOlder.\n")
    report.write(path, "# Bench\n\n| new | 2 |\n")
    report.write(path, "# Bench\n\n| newer | 3 |\n")  # again: nothing doubled
    assert path.read_text() == (
        "# Bench\n\n| newer | 3 |\n\n" + report.KEPT + "\n## Notes (written by hand, "
        "2026-12-06)\n\nRound 2 was slow.\n\n## The run of 2026-12-05\n\nOlder.\n")


def test_a_results_file_without_hand_written_sections_is_the_scripts_alone(tmp_path):
    report = _report()
    path = tmp_path / "LEVERS.md"
    path.write_text("# Levers\n\n| old |\n\n## Batch 50\n\n| x |\n")
    report.write(path, "# Levers\n\n| new |\n")
    assert path.read_text() == "# Levers\n\n| new |\n"
