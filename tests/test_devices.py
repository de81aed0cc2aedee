"""Tests for cnncli.devices: decisions on made-up GPU lists, TensorFlow on this CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from trainkit import TWO_LOGICAL_CPUS

from cnncli import devices
from cnncli.devices import (
    GpuInfo,
    check_fits,
    decide,
    estimate_batch_memory,
    gpu_warning,
    next_batch_size,
    nvidia_driver_present,
    out_of_memory_message,
    scale_learning_rate,
    tf_layer,
)
from cnncli.errors import ConfigError, DeviceError
from cnncli.runtime import import_keras, import_tf

keras = import_keras()

CUDA_BUILD = {"is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"}


def gpus(count: int, cc: tuple[int, int] | None = (8, 0), name: str = "NVIDIA A100-SXM4-80GB"):
    return [GpuInfo(name, 80 * 2**30, cc, i) for i in range(count)]


# --------------------------------------------------------------------------- #
# decide(): device
# --------------------------------------------------------------------------- #

# (GPUs visible, --device) -> (kind, devices) or the error raised.
DEVICE_GRID = [
    (0, "auto", ("cpu", ["/cpu:0"])),
    (0, "cpu", ("cpu", ["/cpu:0"])),
    (0, "gpu", DeviceError),
    (0, "gpu:1", DeviceError),
    (1, "auto", ("gpu", ["/gpu:0"])),
    (1, "cpu", ("cpu", ["/cpu:0"])),
    (1, "gpu", ("gpu", ["/gpu:0"])),
    (1, "gpu:1", DeviceError),
    (2, "auto", ("mirrored", ["/gpu:0", "/gpu:1"])),
    (2, "cpu", ("cpu", ["/cpu:0"])),
    (2, "gpu", ("mirrored", ["/gpu:0", "/gpu:1"])),
    (2, "gpu:1", ("gpu", ["/gpu:1"])),
]


@pytest.mark.parametrize("count, requested, expected", DEVICE_GRID)
def test_decide_picks_devices_for_each_request(count, requested, expected):
    if expected is DeviceError:
        with pytest.raises(DeviceError):
            decide(requested, "auto", gpus(count), cpu_threads=2)
        return
    placement = decide(requested, "auto", gpus(count), cpu_threads=2)
    assert (placement.kind, placement.devices) == expected
    assert placement.replicas == (2 if expected[0] == "mirrored" else 1)
    assert placement.visible == count
    assert len(placement.gpus) == (0 if expected[0] == "cpu" else len(expected[1]))


def test_decide_gpu_index_uses_that_gpu():
    pair = [GpuInfo("NVIDIA T4", None, (7, 5), 0), GpuInfo("NVIDIA A100", None, (8, 0), 1)]
    placement = decide("gpu:1", "auto", pair, cpu_threads=2)
    assert [g.name for g in placement.gpus] == ["NVIDIA A100"]
    assert placement.precision == "mixed_bfloat16"


# --------------------------------------------------------------------------- #
# decide(): precision
# --------------------------------------------------------------------------- #

CC_GRID = [
    ((6, 1), "float32"),
    ((7, 0), "mixed_float16"),
    ((7, 5), "mixed_float16"),
    ((8, 0), "mixed_bfloat16"),
    ((9, 0), "mixed_bfloat16"),
    (None, "float32"),
]


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("requested", ["auto", "gpu", "gpu:0"])
@pytest.mark.parametrize("cc, expected", CC_GRID)
def test_auto_precision_follows_compute_capability(count, requested, cc, expected):
    placement = decide(requested, "auto", gpus(count, cc), cpu_threads=2)
    assert placement.precision == expected
    assert placement.warnings == []


@pytest.mark.parametrize("count", [0, 1, 2])
def test_auto_precision_on_cpu_is_float32(count):
    assert decide("cpu", "auto", gpus(count), cpu_threads=2).precision == "float32"


@pytest.mark.parametrize("count", [0, 1])
def test_auto_precision_on_cpu_with_bf16_units_is_mixed_bfloat16(count):
    placement = decide("cpu", "auto", gpus(count), cpu_threads=2, cpu_bf16=True)
    assert placement.precision == "mixed_bfloat16"
    assert placement.warnings == []


def test_auto_precision_on_gpus_ignores_cpu_bf16_units():
    assert decide("auto", "auto", gpus(1, (7, 5)), 2, cpu_bf16=True).precision == \
        "mixed_float16"


def test_auto_precision_mirrored_follows_weakest_gpu():
    mixed = [GpuInfo("A100", None, (8, 0), 0), GpuInfo("V100", None, (7, 0), 1)]
    assert decide("auto", "auto", mixed, 2).precision == "mixed_float16"


@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_precision_is_kept(precision):
    assert decide("auto", precision, gpus(1, (8, 0)), 2).precision == precision


def test_mixed_bfloat16_on_cpu_is_allowed_with_a_warning():
    placement = decide("cpu", "mixed_bfloat16", [], cpu_threads=2)
    assert placement.precision == "mixed_bfloat16"
    assert len(placement.warnings) == 1
    assert "slower" in placement.warnings[0]


@pytest.mark.parametrize("kind,expected", [("gpu", True), ("cpu", False),
                                           ("mirrored", False), ("multiworker", False)])
def test_auto_jit_compile_is_xla_on_one_gpu_only(kind, expected):
    assert devices.auto_jit_compile(devices.Placement(kind, ["/gpu:0"])) is expected


def test_auto_mirroring_gpus_of_different_kinds_warns_and_names_the_way_out():
    pair = [GpuInfo("NVIDIA GTX 1080", None, (6, 1), 0), GpuInfo("NVIDIA RTX 3090", None,
                                                                  (8, 6), 1)]
    [said] = decide("auto", "auto", pair, 2).warnings
    assert said.startswith("mirrored over GPUs of different kinds (NVIDIA GTX 1080, "
                           "NVIDIA RTX 3090): every step waits for the slowest")
    assert decide("auto", "auto", gpus(2), 2).warnings == []  # two of a kind


def test_mixed_bfloat16_on_cpu_with_bf16_units_has_no_warning():
    assert decide("cpu", "mixed_bfloat16", [], 2, cpu_bf16=True).warnings == []


def test_mixed_float16_on_cpu_warns_even_with_bf16_units_and_names_mixed_bfloat16():
    [said] = decide("cpu", "mixed_float16", [], 2, cpu_bf16=True).warnings
    assert "slower" in said and said.endswith("use --precision mixed_bfloat16 (or auto)")
    assert "no bfloat16 units" not in said


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert devices.cpu_flags(str(info)) == {"fpu", "avx512f", "amx_bf16", "amx_tile"}
    assert devices.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_cpu_name_is_the_model_linux_names_with_its_bfloat16_units(tmp_path):
    from cnncli.devices import hardware

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n"
                    "flags\t\t: fpu avx512f avx512_bf16\n")
    assert hardware.cpu_name(str(info)) == "AMD EPYC 9R14 (avx512_bf16)"
    info.write_text("processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu\n")
    assert hardware.cpu_name(str(info)) == "Intel Xeon"


@pytest.mark.parametrize("flags,env,expected", [
    ({"avx512f", "avx512_bf16"}, {}, True),          # measured 2x faster (Zen 4 EPYC)
    ({"avx512f", "avx2"}, {}, False),
    ({"amx_bf16", "amx_tile"}, {}, True),
    ({"amx_bf16"}, {"TF_ENABLE_ONEDNN_OPTS": "0"}, False),  # oneDNN drives AMX
])
def test_cpu_bf16_units_needs_bf16_units_and_onednn(flags, env, expected):
    assert devices.cpu_bf16_units(frozenset(flags), env) is expected


def test_mixed_bfloat16_on_turing_warns_to_use_float16():
    placement = decide("gpu", "mixed_bfloat16", gpus(1, (7, 5)), 2)
    assert "use mixed_float16" in placement.warnings[0]


def test_mixed_bfloat16_on_pascal_warns_to_use_float32_not_float16():
    # below 7.0 float16 is slow too (the warning for mixed_float16 there says so)
    [said] = decide("gpu", "mixed_bfloat16", gpus(1, (6, 1)), 2).warnings
    assert "use float32 there" in said and "mixed_float16" not in said


def test_bad_precision_is_config_error_listing_choices():
    with pytest.raises(ConfigError) as info:
        decide("auto", "fp16", [], 2)
    assert "mixed_float16" in str(info.value)
    assert "mixed_bfloat16" in str(info.value)


# --------------------------------------------------------------------------- #
# decide(): errors
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("bad", ["", "tpu", "gpu:", "gpu:-1", "gpu:x", "cuda:0", "cpu:0", "gpu 0"])
def test_bad_device_string_is_config_error_listing_forms(bad):
    with pytest.raises(ConfigError) as info:
        decide(bad, "auto", gpus(2), 2)
    assert info.value.exit_code == 2
    assert info.value.message.endswith(" is not one of auto, cpu, gpu or gpu:N (N = 0, 1, ... "
                                       "as TensorFlow numbers them)")


@pytest.mark.parametrize("spelling", ["GPU:1", " gpu:1 ", "/gpu:1"])
def test_device_string_tolerates_case_space_and_slash(spelling):
    assert decide(spelling, "auto", gpus(2), 2).devices == ["/gpu:1"]


@pytest.mark.parametrize("spelling", ["GPU:1", " gpu:1 ", "/gpu:1"])
def test_a_run_config_takes_a_device_spelt_as_the_device_option_takes_it(spelling):
    from cnncli import config

    cfg = config.parse({"model": "mnist_net", "train": {"device": spelling}})
    assert decide(cfg.train.device, "auto", gpus(2), 2).devices == ["/gpu:1"]


@pytest.mark.parametrize("bad, hint", [("gpu0", "did you mean 'gpu:0'?"), ("cpus", "did you "
                                       "mean 'cpu'?"), ("tpu", "cnncli runs on GPUs and CPUs, "
                                                               "not TPUs"),
                                       ("cpu:0", "did you mean 'cpu'?"),
                                       ("/cpu:0", "did you mean 'cpu'?")])
def test_a_device_of_a_run_config_or_the_option_that_is_none_gets_the_same_hint(bad, hint):
    from cnncli import config

    with pytest.raises(ConfigError) as in_config:
        config.parse({"model": "mnist_net", "train": {"device": bad}})
    with pytest.raises(ConfigError) as as_option:
        decide(bad, "auto", gpus(2), 2)
    assert in_config.value.hint == as_option.value.hint == hint
    assert in_config.value.message == f"`train.device`: '{bad}' is not one of " \
                                      f"{config.DEVICE_FORMS}"


def test_gpu_with_none_visible_is_device_error_with_fix():
    with pytest.raises(DeviceError) as info:
        decide("gpu", "auto", [], 2)
    err = info.value
    assert err.exit_code == 3
    assert "sees no GPU" in err.message
    assert "CUDA_VISIBLE_DEVICES" in err.hint
    assert "pip install 'cnncli[gpu]'" in err.hint


def test_gpu_index_out_of_range_names_the_visible_gpus():
    with pytest.raises(DeviceError) as info:
        decide("gpu:3", "auto", gpus(2), 2)
    assert "gpu:3" in info.value.message
    assert "only 2 GPUs (gpu:0, gpu:1)" in info.value.message
    assert "CUDA_VISIBLE_DEVICES" in info.value.hint


# --------------------------------------------------------------------------- #
# describe()
# --------------------------------------------------------------------------- #


def test_describe_mirrored_says_batch_is_per_replica():
    text = decide("auto", "auto", gpus(2, (8, 0)), 8).describe()
    assert text == (
        "Device: 2x NVIDIA A100-SXM4-80GB (mirrored, mixed_bfloat16); batch size is per replica"
    )


def test_describe_one_gpu():
    placement = decide("auto", "auto", gpus(1, (7, 5), name="NVIDIA T4"), 2)
    assert placement.describe() == "Device: NVIDIA T4 (gpu:0, mixed_float16)"


def test_describe_cpu_without_gpu():
    assert decide("auto", "auto", [], 2).describe() == (
        "Device: CPU (2 threads): TensorFlow sees no GPU"
    )


def test_describe_cpu_requested():
    assert decide("cpu", "auto", gpus(1), 2).describe() == "Device: CPU (2 threads): --device cpu"


def test_describe_cpu_shows_non_default_precision_and_no_gpu_as_the_reason():
    text = decide("cpu", "mixed_bfloat16", [], 1).describe()  # e.g. a resumed run's cpu
    assert text == "Device: CPU (1 thread, mixed_bfloat16): TensorFlow sees no GPU"


def test_describe_mirrored_over_different_gpus_lists_them():
    pair = [GpuInfo("NVIDIA T4", None, (7, 5), 0), GpuInfo("NVIDIA A10", None, (8, 6), 1)]
    text = decide("auto", "auto", pair, 2).describe()
    assert text.startswith("Device: 2 devices: NVIDIA T4, NVIDIA A10 (mirrored, mixed_float16)")


def test_placement_to_dict_is_json():
    data = decide("auto", "auto", gpus(2, (9, 0)), 2).to_dict()
    assert json.loads(json.dumps(data))["gpus"][1]["compute_capability"] == "9.0"
    assert data["strategy"] == "MirroredStrategy"


# --------------------------------------------------------------------------- #
# NVIDIA driver without a GPU
# --------------------------------------------------------------------------- #


def test_driver_found_by_nvidia_smi_on_path(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    assert nvidia_driver_present(paths=[], search_path=str(tmp_path))


def test_driver_found_by_proc_folder(tmp_path):
    (tmp_path / "nvidia").mkdir()
    assert nvidia_driver_present(paths=[str(tmp_path / "nvidia")], search_path=str(tmp_path))


def test_no_driver_found(tmp_path):
    assert not nvidia_driver_present(paths=[str(tmp_path / "nvidia")], search_path=str(tmp_path))


def test_driver_without_visible_gpu_warns_with_cuda_versions():
    text = gpu_warning(True, decide("auto", "auto", [], 2), CUDA_BUILD)
    assert "TensorFlow sees no GPU" in text
    assert "pip install 'cnncli[gpu]'" in text
    assert "CUDA 12.5.1" in text
    assert "cuDNN 9" in text


def test_driver_with_cpu_only_tensorflow_names_the_gpu_extra():
    text = gpu_warning(True, decide("auto", "auto", [], 2), {"is_cuda_build": False})
    assert "without CUDA" in text
    assert "pip install 'cnncli[gpu]'" in text


def test_no_warning_without_driver():
    assert gpu_warning(False, decide("auto", "auto", [], 2), CUDA_BUILD) is None


@pytest.mark.parametrize("hiding", ["", "-1", " -1,0", "NoDevFiles", "nodevfiles"])
def test_no_warning_when_cuda_visible_devices_hides_the_gpus_on_purpose(hiding):
    assert gpu_warning(True, decide("auto", "auto", [], 2), CUDA_BUILD, hiding) is None
    assert "TensorFlow sees no GPU" in gpu_warning(True, decide("auto", "auto", [], 2),
                                                   CUDA_BUILD, "0")  # a GPU it cannot see
    assert "TensorFlow sees no GPU" in gpu_warning(True, decide("auto", "auto", [], 2),
                                                   CUDA_BUILD, "all")  # by mistake


OLD_GPU_BUILD = {**CUDA_BUILD, "cuda_compute_capabilities": ["sm_60", "sm_70", "compute_90"]}
K80 = GpuInfo("Tesla K80", None, (3, 7), 0)


def test_gpus_too_old_for_tensorflow_are_named_not_told_to_reinstall():
    # TensorFlow ignores GPUs older than its build's oldest compute capability: nvidia-smi
    # lists them, TensorFlow sees none, and reinstalling would not help
    text = gpu_warning(True, decide("auto", "auto", [], 2), OLD_GPU_BUILD,
                       installed=[K80, GpuInfo("Tesla K80", None, (3, 7), 1)])
    assert text == ("The GPUs here are older than this TensorFlow supports (compute "
                    "capability 6.0 and newer): Tesla K80 (compute capability 3.7); cnncli "
                    "runs on the CPU. A newer GPU, or a TensorFlow built for them, would "
                    "use them")


def test_a_gpu_too_old_beside_one_in_use_is_said_unused():
    v100 = GpuInfo("Tesla V100", None, (7, 0), 1)
    text = gpu_warning(True, decide("auto", "auto", gpus(1, (7, 0), "Tesla V100"), 2),
                       OLD_GPU_BUILD, installed=[K80, v100])
    assert text == ("Tesla K80 (compute capability 3.7) is older than this TensorFlow "
                    "supports (compute capability 6.0 and newer): not used")
    assert gpu_warning(True, decide("auto", "auto", gpus(1, (7, 0)), 2), OLD_GPU_BUILD,
                       installed=[v100]) is None


def test_no_warning_when_gpu_visible_but_cpu_requested():
    assert gpu_warning(True, decide("cpu", "auto", gpus(1), 2), CUDA_BUILD) is None


# --------------------------------------------------------------------------- #
# memory, out of memory, auto-batch, learning rate
# --------------------------------------------------------------------------- #


def test_memory_estimate_counts_weights_slots_and_activations():
    # 1M params x (weights + grads + 2 Adam slots) x 4 B + 10k values x 32 images x 2 x 4 B
    assert estimate_batch_memory(1_000_000, 10_000, 32) == 16_000_000 + 2_560_000


def test_memory_estimate_halves_activations_at_two_bytes():
    full = estimate_batch_memory(0, 10_000, 32)
    assert estimate_batch_memory(0, 10_000, 32, bytes_per_value=2) == full // 2


def test_check_fits_is_quiet_when_it_fits():
    assert check_fits(4 * 2**30, 16 * 2**30) is None


def test_check_fits_is_quiet_when_memory_unknown():
    assert check_fits(400 * 2**30, None) is None


def test_check_fits_warns_and_says_what_to_try():
    text = check_fits(15.5 * 2**30, 16 * 2**30)
    assert "15.5 GiB" in text
    assert "--batch-size" in text and "--auto-batch" in text


def test_out_of_memory_error_names_batch_and_remedies():
    err = out_of_memory_message(256)
    assert isinstance(err, DeviceError)
    assert "batch size 256" in err.message
    for remedy in ("--batch-size 128", "--precision mixed_float16", "--auto-batch"):
        assert remedy in err.hint


def test_out_of_memory_on_several_gpus_says_the_batch_size_is_per_replica():
    assert out_of_memory_message(64, "gpu").message == (
        "Ran out of device memory on the GPUs at batch size 64 per replica (each GPU "
        "trains that many images a step)")
    assert out_of_memory_message(64, "gpu:1").message == (
        "Ran out of device memory on gpu:1 at batch size 64")
    assert out_of_memory_message(64, "cpu", several_machines=True).message == (
        "Ran out of memory at batch size 64 per replica (each machine trains that many "
        "images a step)")


def test_memory_tips_leave_out_what_would_change_nothing_or_is_refused():
    assert "mixed_float16" not in out_of_memory_message(256, precision="mixed_float16").hint
    assert "mixed_float16" not in check_fits(31 * 2**30, 16 * 2**30,
                                             precision="mixed_bfloat16")
    assert "--auto-batch" not in out_of_memory_message(256, several_machines=True).hint
    assert "--auto-batch" not in check_fits(31 * 2**30, 16 * 2**30, several_machines=True)
    assert out_of_memory_message(256, resumed=True).hint == (
        "try --force --precision mixed_float16 (halves activation memory on a GPU), or start "
        "a new run with --batch-size 128")  # a resumed run's batch size is its own


def test_a_failed_attempt_is_freed_before_auto_batch_starts_again(monkeypatch, tmp_path):
    import weakref

    from trainkit import write_config

    from cnncli import config
    from cnncli.run import train as training
    from cnncli.runtime import import_tf

    failed = []

    def attempt(cfg, **kw):
        if not failed:  # the first: a model in a reference cycle, as Keras' are
            model = type("Model", (), {})()
            model.me = model
            failed.append(weakref.ref(model))
            raise import_tf().errors.ResourceExhaustedError(None, None, "OOM")
        return failed[0]() is None

    monkeypatch.setattr(training, "_train", attempt)
    assert training.train(config.load(write_config(tmp_path)), auto_batch=True) is True


def test_auto_batch_leaves_no_failed_run_folder_beside_the_run_that_trains(monkeypatch,
                                                                           tmp_path):
    from trainkit import write_config

    from cnncli import config
    from cnncli.run import loop
    from cnncli.run import train as training
    from cnncli.runtime import import_tf

    real, calls = loop.fit, []

    def fit(p, *args, **kwargs):
        calls.append(p.cfg.train.batch_size)
        if len(calls) == 1:
            raise import_tf().errors.ResourceExhaustedError(None, None, "OOM")
        return real(p, *args, **kwargs)

    monkeypatch.setattr(loop, "fit", fit)
    cfg = config.load(write_config(tmp_path, epochs=1, batch_size=32),
                      [f"output.dir={tmp_path / 'runs'}"])
    result = training.train(cfg, auto_batch=True)
    runs = tmp_path / "runs" / "toy"
    assert calls == [32, 16] and result.run == runs / "1"
    assert sorted(p.name for p in runs.iterdir()) == ["1", "latest"]
    assert (runs / "latest").resolve() == result.run.resolve()


def test_auto_batch_halves_three_times_then_stops():
    sizes, batch, attempt = [], 256, 0
    while (batch := next_batch_size(batch, attempt)) is not None:
        sizes.append(batch)
        attempt += 1
    assert sizes == [128, 64, 32]


def test_auto_batch_stops_at_one():
    assert next_batch_size(1, 0) is None


@pytest.mark.parametrize("rule, expected", [("linear", 0.4), ("sqrt", 0.2), ("none", 0.1)])
def test_scale_learning_rate(rule, expected):
    assert scale_learning_rate(0.1, 4, rule) == pytest.approx(expected)


def test_scale_learning_rate_bad_rule_is_config_error():
    with pytest.raises(ConfigError):
        scale_learning_rate(0.1, 2, "cubic")


# --------------------------------------------------------------------------- #
# TensorFlow on this machine (no GPU)
# --------------------------------------------------------------------------- #


def test_visible_gpus_is_empty_here():
    assert devices.visible_gpus() == []


def test_doctor_info_reports_cpu_and_sane_fields():
    info = json.loads(json.dumps(devices.doctor_info().to_dict()))
    assert info["tensorflow"].startswith("2.")
    assert info["keras"].startswith("3.")
    assert info["gpus"] == []
    assert info["auto"]["kind"] == "cpu"
    assert info["auto"]["strategy"] == "default"
    assert info["auto"]["precision"] == ("mixed_bfloat16" if devices.cpu_bf16_units()
                                         else "float32")
    assert info["cpu"]["bf16_units"] is devices.cpu_bf16_units()
    assert info["auto"]["describe"].startswith("Device: CPU (")
    assert info["cpu"]["available"] >= 1
    assert info["cpu"]["intra_op_threads"] >= 0
    assert isinstance(info["cuda_build"], bool)
    assert isinstance(info["nvidia_driver"], bool)


def test_setup_auto_runs_on_cpu_in_float32(monkeypatch):
    monkeypatch.setattr(tf_layer, "cpu_bf16_units", lambda: False)
    placement = devices.setup()
    assert placement.kind == "cpu"
    assert keras.config.dtype_policy().name == "float32"
    assert devices.strategy(placement).num_replicas_in_sync == 1


def test_setup_auto_uses_mixed_bfloat16_on_cpu_bf16_units(monkeypatch):
    monkeypatch.setattr(tf_layer, "cpu_bf16_units", lambda: True)
    try:
        placement = devices.setup()
        assert placement.precision == "mixed_bfloat16"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_setup_sets_mixed_policy_and_warns(monkeypatch):
    monkeypatch.setattr(tf_layer, "cpu_bf16_units", lambda: False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            placement = devices.setup("cpu", "mixed_bfloat16")
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert any("slower" in str(w.message) for w in caught)
        assert placement.precision == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_setup_gpu_without_gpu_raises_device_error():
    with pytest.raises(DeviceError):
        devices.setup("gpu")


def test_tensorflow_threads_are_limited_to_a_lower_cpu_quota(monkeypatch):
    from cnncli.runtime import import_tf

    threading, limited = import_tf().config.threading, []
    monkeypatch.setattr(tf_layer, "cpu_quota", lambda: 1.0)  # a quota of one CPU
    monkeypatch.setattr(tf_layer, "available_cpus", lambda: 1)
    monkeypatch.setattr(threading, "get_intra_op_parallelism_threads", lambda: 0)
    monkeypatch.setattr(threading, "set_intra_op_parallelism_threads", limited.append)
    monkeypatch.setattr(threading, "set_inter_op_parallelism_threads", limited.append)
    devices.setup("cpu", "float32")
    assert limited == [1, 2]  # inter-op: 2 at least, tf.data can hang with one


def fake_nvidia_smi(folder, monkeypatch, *lines: str) -> None:
    """An ``nvidia-smi`` on the PATH printing `lines`, whatever it is asked."""
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '" + "".join(f"{line}\\n" for line in lines) + "'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))


def test_two_gpus_of_one_name_are_taken_to_have_the_smaller_memory(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA GeForce RTX 3060, 8192",
                    "NVIDIA GeForce RTX 3060, 12288", "NVIDIA A100, 81920")
    assert tf_layer._smi_memory() == {"NVIDIA GeForce RTX 3060": 8192 * 2**20,
                                      "NVIDIA A100": 81920 * 2**20}


def test_a_mig_slice_has_its_own_memory_not_the_whole_gpus(tmp_path, monkeypatch):
    # nvidia-smi names the whole A100 (40 GB); TensorFlow names the 5 GB slice it runs on
    fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA A100-SXM4-40GB, 40960")
    monkeypatch.setattr(tf_layer, "_physical_gpus", lambda: ["slice"])
    details = {"device_name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "compute_capability": (8, 0)}
    monkeypatch.setattr(import_tf().config.experimental, "get_device_details",
                        lambda device: details)
    [gpu] = tf_layer.visible_gpus()
    assert gpu.memory_bytes == 5 * 2**30 and gpu.compute_capability == (8, 0)


def test_nvidia_smi_gives_each_gpus_compute_capability(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, "Tesla K80, 3.7", "Tesla V100-SXM2-16GB, 7.0",
                    "GRID K520, [N/A]")
    assert [(g.name, g.compute_capability) for g in tf_layer._smi_gpus()] == [
        ("Tesla K80", (3, 7)), ("Tesla V100-SXM2-16GB", (7, 0)), ("GRID K520", None)]


def test_gpus_of_unknown_capability_beside_old_ones_are_not_called_old():
    unknown = GpuInfo("GRID K520", None, None, -1)
    text = gpu_warning(True, decide("auto", "auto", [], 2), OLD_GPU_BUILD,
                       installed=[K80, unknown])
    assert text.startswith("An NVIDIA driver is installed but TensorFlow sees no GPU")
    one = gpu_warning(True, decide("auto", "auto", [], 2), OLD_GPU_BUILD, installed=[K80])
    assert one.startswith("The GPU here is older") and one.endswith("built for it, would use it")


def test_machines_whose_auto_precisions_agree_keep_it_without_a_word():
    """The collective on one replica: every replica chose the same (the two-worker tests
    run machines that disagree)."""
    from cnncli.runtime import import_tf

    placement = devices.Placement("cpu", ["/cpu:0"], precision="mixed_bfloat16")
    tf_layer._agree_on_precision(import_tf().distribute.get_strategy(), placement)
    assert placement.precision == "mixed_bfloat16" and placement.warnings == []


class FakeGpus:
    """Two GPUs TensorFlow would see, and which of them it is left to use."""

    def __init__(self, monkeypatch, infos):
        from cnncli.runtime import import_tf

        tf = import_tf()
        self.physical = [tf.config.PhysicalDevice(f"/physical_device:GPU:{g.index}", "GPU")
                         for g in infos]
        self.visible = list(self.physical)
        self.calls = []
        monkeypatch.setattr(tf_layer, "visible_gpus", lambda: infos)
        monkeypatch.setattr(tf_layer, "_physical_gpus", lambda: self.physical)
        monkeypatch.setattr(tf_layer, "_enable_memory_growth", lambda: None)
        monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind: list(self.visible))
        monkeypatch.setattr(tf.config, "set_visible_devices", self._set)

    def _set(self, wanted, kind):
        self.calls.append(([d.name[-5:] for d in wanted], kind))
        self.visible = list(wanted)


TWO_GPUS = [GpuInfo("A100", None, (8, 0), 0), GpuInfo("V100", None, (7, 0), 1)]


def test_the_cpu_chosen_beside_gpus_hides_them_from_tensorflow(monkeypatch):
    fake = FakeGpus(monkeypatch, TWO_GPUS)
    placement = devices.setup("cpu", "float32")
    assert placement.kind == "cpu" and fake.calls == [([], "GPU")]


def test_one_gpu_chosen_is_the_only_one_tensorflow_sees_and_is_renumbered(monkeypatch):
    fake = FakeGpus(monkeypatch, TWO_GPUS)
    placement = devices.setup("gpu:1", "float32")
    assert placement.devices == ["/gpu:1"] and fake.calls == [(["GPU:1"], "GPU")]
    assert tf_layer._logical_name("/gpu:1") == "/gpu:0"  # TensorFlow's name for it now


@pytest.mark.filterwarnings("ignore:mirrored over GPUs of different kinds")
def test_mirrored_over_every_visible_gpu_hides_none(monkeypatch):
    fake = FakeGpus(monkeypatch, TWO_GPUS)
    assert devices.setup("auto", "float32").kind == "mirrored" and fake.calls == []


def test_a_one_device_command_on_two_gpus_runs_on_the_first_in_its_precision(monkeypatch):
    fake = FakeGpus(monkeypatch, TWO_GPUS)
    placement = devices.setup("auto", "auto", one_device=True)
    try:
        assert (placement.kind, placement.devices, placement.replicas) == ("gpu", ["/gpu:0"], 1)
        assert placement.precision == "mixed_bfloat16"  # the A100's: the V100 is not used
        assert placement.describe() == "Device: A100 (gpu:0, mixed_bfloat16)"
        assert fake.calls == [(["GPU:0"], "GPU")]
    finally:
        keras.config.set_dtype_policy("float32")


def test_gpus_that_can_no_longer_be_hidden_are_a_device_error(monkeypatch):
    from cnncli.runtime import import_tf

    FakeGpus(monkeypatch, TWO_GPUS)

    def started(wanted, kind):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(import_tf().config, "set_visible_devices", started)
    with pytest.raises(DeviceError, match="TensorFlow already runs on other devices in this "
                                          "process: it cannot move to /gpu:1"):
        devices.setup("gpu:1", "float32")


MIRRORED_SCRIPT = TWO_LOGICAL_CPUS + textwrap.dedent(
    """
    import json
    tf.config.experimental.enable_op_determinism()
    import numpy as np
    from cnncli.devices import Placement, strategy

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) > 0).astype("float32")

    def train(strat, batch):
        keras.utils.set_random_seed(1)
        with strat.scope():
            model = keras.Sequential([
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ])
            model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
        model.fit(x, y, batch_size=batch, epochs=3, shuffle=False, verbose=0)
        return [w.tolist() for w in model.get_weights()], strat.num_replicas_in_sync

    mirrored = Placement("mirrored", ["/cpu:0", "/cpu:1"], replicas=2)
    one = Placement("cpu", ["/cpu:0"])
    w_m, n_m = train(strategy(mirrored), 16)
    w_d, n_d = train(strategy(one), 16)
    print(json.dumps({"mirrored": w_m, "default": w_d, "replicas": [n_m, n_d]}))
    """
)


def test_mirrored_on_two_logical_cpus_matches_default_strategy():
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [2, 1]
    import numpy as np

    for mirrored, default in zip(result["mirrored"], result["default"], strict=True):
        np.testing.assert_allclose(mirrored, default, atol=1e-4)


# --------------------------------------------------------------------------- #
# Several machines: TF_CONFIG
# --------------------------------------------------------------------------- #


def tf_config(task_type="worker", index=0, workers=2, chief=False, **extra) -> str:
    cluster = {"worker": [f"w{i}:2222" for i in range(workers)], **extra}
    if chief:
        cluster["chief"] = ["c:2222"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize("text", [None, "", "  ", "{}", '{"cluster": {}}'])
def test_no_tf_config_means_no_cluster(text):
    assert devices.parse_tf_config(text) is None


def test_one_task_cluster_trains_alone():
    # Vertex AI sets TF_CONFIG for a one-machine job too.
    assert devices.parse_tf_config(tf_config("chief", 0, workers=0, chief=True)) is None
    assert devices.parse_tf_config(tf_config("worker", 0, workers=1)) is None


@pytest.mark.parametrize("task_type, index, chief, expected", [
    ("worker", 0, False, True),   # no chief task: worker 0 is the chief
    ("worker", 1, False, False),
    ("chief", 0, True, True),
    ("worker", 0, True, False),   # a chief task exists: worker 0 is not it
])
def test_tf_config_task_and_chief(task_type, index, chief, expected):
    cluster = devices.parse_tf_config(tf_config(task_type, index, workers=2, chief=chief))
    assert cluster.workers == (3 if chief else 2)
    assert (cluster.task_type, cluster.task_index) == (task_type, index)
    assert cluster.is_chief is expected


def test_tf_config_says_where_this_task_listens():
    assert devices.parse_tf_config(tf_config("worker", 1)).address == "w1:2222"


def test_tf_config_evaluator_in_cluster_is_not_a_worker():
    cluster = devices.parse_tf_config(tf_config("worker", 1, evaluator=["e:2222"]))
    assert cluster.workers == 2


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ("[" * 100_000, "cannot be read: it is nested too deeply to be read"),
    ('{"task": {"index": ' + "9" * 5001 + "}}", "cannot be read: Exceeds the limit"),
    ("[1, 2]", "not a JSON object"),
    (tf_config(ps=["p:2222"]), "'ps' tasks"),
    (tf_config("evaluator", 0, evaluator=["e:2222"]), "does not train"),
    (tf_config("worker", 2), "worker 2 is not in its cluster"),
    (tf_config("worker", 3, workers=1), "worker 3 is not in its cluster, which has 1"),
    (tf_config("worker", "0"), "task index '0' is not a whole number"),
    (json.dumps({"cluster": {"worker": ["localhost:notaport", "b:1"]},
                 "task": {"type": "worker", "index": 0}}),
     "worker address 'localhost:notaport' is not host:port, e.g. \"host0:2222\""),
    (json.dumps({"cluster": {"worker": [1, 2]}, "task": {"type": "worker", "index": 0}}),
     "worker address 1 is not a string"),
    (json.dumps({"cluster": {"worker": ["a:70000", "b:1"]},
                 "task": {"type": "worker", "index": 0}}), "has port 70000, not one from 1"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:1"]}}), "TF_CONFIG has no task type: which "
                                                          "of its cluster's 2 tasks"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker"}}),
     "task has no index: which of the 2 worker tasks is this machine?"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:1"], "chief": ["c:1", "d:1"]},
                 "task": {"type": "chief", "index": 0}}), "more than one chief"),
])
def test_bad_tf_config_is_config_error_with_an_example(text, words):
    with pytest.raises(ConfigError) as info:
        devices.parse_tf_config(text)
    assert "TF_CONFIG" in info.value.message and words in info.value.message
    assert '"cluster"' in info.value.hint


def test_decide_multiworker_on_cpu():
    cluster = devices.parse_tf_config(tf_config("worker", 1))
    placement = decide("auto", "auto", [], cpu_threads=2, cluster=cluster)
    assert (placement.kind, placement.devices, placement.replicas) == (
        "multiworker", ["/cpu:0"], 2)
    assert (placement.workers, placement.task, placement.is_chief) == (2, "worker 1", False)
    assert placement.describe() == ("Device: 2 workers x CPU (multi-worker mirrored, float32); "
                                    "this is worker 1; batch size is per replica")


def test_decide_multiworker_uses_each_machines_gpus():
    cluster = devices.parse_tf_config(tf_config("chief", 0, workers=2, chief=True))
    placement = decide("auto", "auto", gpus(2), cpu_threads=8, cluster=cluster)
    assert placement.replicas == 6  # 3 machines x 2 GPUs
    assert placement.devices == ["/gpu:0", "/gpu:1"]
    assert placement.precision == "mixed_bfloat16"
    assert placement.describe() == (
        "Device: 3 workers x 2x NVIDIA A100-SXM4-80GB (multi-worker mirrored, "
        "mixed_bfloat16); this is the chief; batch size is per replica")


@pytest.mark.parametrize("requested, expected", [("cpu", ["/cpu:0"]), ("gpu:1", ["/gpu:1"])])
def test_decide_multiworker_honours_device(requested, expected):
    cluster = devices.parse_tf_config(tf_config())
    placement = decide(requested, "auto", gpus(2), cpu_threads=2, cluster=cluster)
    assert placement.devices == expected
    assert placement.replicas == 2


def test_decide_multiworker_gpu_without_gpu_is_device_error():
    with pytest.raises(DeviceError):
        decide("gpu", "auto", [], cpu_threads=2, cluster=devices.parse_tf_config(tf_config()))


def test_multiworker_to_dict_names_the_strategy_and_task():
    cluster = devices.parse_tf_config(tf_config("worker", 0))
    data = json.loads(json.dumps(decide("cpu", "auto", [], 2, cluster=cluster).to_dict()))
    assert data["strategy"] == "MultiWorkerMirroredStrategy"
    assert (data["workers"], data["task"], data["is_chief"]) == (2, "worker 0", True)


def test_setup_ignores_tf_config_unless_asked(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config("worker", 1))
    placement = devices.setup("cpu")
    assert placement.kind == "cpu" and placement.is_chief


def test_setup_multiworker_with_one_task_trains_alone(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config("worker", 0, workers=1))
    assert devices.setup("cpu", multiworker=True).kind == "cpu"


def test_setup_multiworker_with_bad_tf_config_is_config_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{oops")
    with pytest.raises(ConfigError):
        devices.setup("cpu", multiworker=True)


ALLOCATOR = textwrap.dedent("""
    import os, cnncli, tensorflow as tf
    from cnncli.devices import tf_layer
    tf.ones((1024, 1024)) * 2.0
    try:
        stats = tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0
    except ValueError:  # TensorFlow's plain allocator keeps no statistics
        stats = False
    print(os.environ["TF_CPU_ALLOCATOR_USE_BFC"], tf_layer.cpu_allocator(), stats)
""")


@pytest.mark.parametrize(("setting", "expected"),
                         [(None, "true bfc True"), ("false", "false default")])
def test_importing_cnncli_gives_tensorflow_the_cpu_allocator_that_reuses_memory(setting,
                                                                                 expected):
    # TensorFlow's BFC allocator keeps freed blocks for the next batch (bench/LEVERS.md);
    # a user's TF_CPU_ALLOCATOR_USE_BFC wins over cnncli's choice. TensorFlow's BFC
    # allocator keeps statistics; its plain one does not, but on some CPUs (a Zen 4 EPYC)
    # oneDNN's allocator stands in for it and does: statistics prove the BFC allocator
    # only when cnncli chose it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPU_")}
    if setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = setting
    done = subprocess.run([sys.executable, "-c", ALLOCATOR], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.stdout.strip().startswith(expected), done.stderr[-2000:]


def test_the_allocators_limit_is_at_least_the_machines_memory():
    done = subprocess.run([sys.executable, "-c", "import cnncli, os; "
                           "print(os.environ['TF_CPU_BFC_MEM_LIMIT_IN_MB'])"],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("TF_CPU_")})
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    assert int(done.stdout) == max(physical, 2**16)  # TensorFlow's own: 64 GB
