"""Calibration files: the values `tpfit calibrate` writes, read back, checked and found for a cluster's GPU."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpfit.errors import SourceError, UsageError
from tpfit.hardware.calibration import (
    GEMM_KEYS, AllReduceFit, GpuCalibration, calibration_dir, find_calibration, read_calibrations,
)

_positive = st.floats(min_value=1e-6, max_value=1e16, allow_nan=False, allow_infinity=False)


@st.composite
def calibrations(draw) -> GpuCalibration:
    sizes = sorted(draw(st.sets(st.integers(2, 16), max_size=4)))
    return GpuCalibration(
        gpu_name=draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        gpu_id=draw(st.one_of(st.none(), st.sampled_from(["h200", "h100-sxm", "rtx-4090"]))),
        source=draw(st.text(min_size=1, max_size=40).filter(str.strip)),
        num_gpus=draw(st.integers(1, 16)),
        mem_bw_bytes_per_s=draw(_positive),
        gemm_flops_per_s=draw(st.dictionaries(st.sampled_from(GEMM_KEYS), _positive)),
        allreduce=tuple(AllReduceFit(world_size=n, latency_s=draw(st.floats(0, 1)), bus_bytes_per_s=draw(_positive),
                                     backend=draw(st.sampled_from(["nccl", "gloo", "custom"]))) for n in sizes),
        p2p_bytes_per_s=draw(st.one_of(st.none(), _positive)),
        step_overhead_s=draw(st.one_of(st.none(), _positive)),
        vllm_version=draw(st.one_of(st.none(), st.sampled_from(["0.26.0", "0.32.0+cpu"]))),
    )


@settings(max_examples=60, deadline=None)
@given(calibrations())
def test_round_trips_through_json(cal):
    data = json.loads(json.dumps(cal.to_dict()))
    assert data["schema_version"] == 1
    assert GpuCalibration.from_dict(data) == cal


def _valid() -> dict:
    return GpuCalibration(gpu_name="NVIDIA H200", gpu_id="h200", source="test", num_gpus=2, mem_bw_bytes_per_s=4e12,
                          gemm_flops_per_s={"bf16_prefill": 7e14},
                          allreduce=(AllReduceFit(world_size=2, latency_s=2e-5, bus_bytes_per_s=3e11, backend="nccl"),),
                          p2p_bytes_per_s=3e11).to_dict()


@pytest.mark.parametrize("change,needle", [
    ({"schema_version": 2}, "schema_version is 2"),
    ({"mem_bw_bytes_per_s": -1}, "mem_bw_bytes_per_s must be a positive number"),
    ({"mem_bw_bytes_per_s": "fast"}, "mem_bw_bytes_per_s must be a positive number"),
    ({"gemm_flops_per_s": {"int4_decode": 1e12}}, "unknown key 'int4_decode'"),
    ({"allreduce": [{"world_size": 1, "latency_s": 0, "bus_bytes_per_s": 1, "backend": "nccl"}]}, "world_size must"),
    ({"allreduce": [{"world_size": 2, "latency_s": 0, "bus_bytes_per_s": 1, "backend": "mpi"}]}, "backend must be"),
    ({"allreduce": "fast"}, "allreduce must be a list"),
    ({"gpu_name": ""}, "gpu_name must be a non-empty string"),
    ({"p2p_bytes_per_s": 0}, "p2p_bytes_per_s must be a positive number"),
    ({"vllm_version": 26}, "vllm_version must be a non-empty string"),
])
def test_from_dict_names_the_field(change, needle):
    with pytest.raises(SourceError, match=needle):
        GpuCalibration.from_dict({**_valid(), **change}, where="h200.json")


def test_missing_field_is_named():
    data = _valid()
    del data["mem_bw_bytes_per_s"]
    with pytest.raises(SourceError, match="h200.json: field mem_bw_bytes_per_s is missing"):
        GpuCalibration.from_dict(data, where="h200.json")


def test_allreduce_sizes_must_ascend():
    fit = AllReduceFit(world_size=2, latency_s=1e-5, bus_bytes_per_s=1e11, backend="nccl")
    with pytest.raises(UsageError, match="one fit per world size"):
        GpuCalibration(gpu_name="x", gpu_id=None, source="s", mem_bw_bytes_per_s=1.0, allreduce=(fit, fit))


def test_gemm_figures_cannot_be_changed_through_the_callers_dict():
    figures = {"bf16_decode": 1e14}
    cal = GpuCalibration(gpu_name="x", gpu_id=None, source="s", mem_bw_bytes_per_s=1.0, gemm_flops_per_s=figures)
    figures["bf16_decode"] = 5.0
    assert cal.gemm_flops_per_s["bf16_decode"] == 1e14
    with pytest.raises(TypeError):
        cal.gemm_flops_per_s["bf16_decode"] = 5.0  # type: ignore[index]


def test_allreduce_time_is_the_fitted_line():
    fit = AllReduceFit(world_size=2, latency_s=20e-6, bus_bytes_per_s=100e9, backend="nccl")
    # 20 us + 8 MB / 100 GB/s = 20 us + 80 us
    assert fit.time_s(8_000_000) == pytest.approx(100e-6)


def test_read_calibrations_reads_each_file_and_names_a_bad_one(tmp_path):
    assert read_calibrations(tmp_path / "absent") == ()
    (tmp_path / "h200.json").write_text(json.dumps(_valid()))
    (tmp_path / "notes.txt").write_text("not a calibration")
    (cal,) = read_calibrations(tmp_path)
    assert cal.gpu_id == "h200" and cal.allreduce_fit(2).backend == "nccl" and cal.allreduce_fit(4) is None
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SourceError, match="broken.json: not JSON"):
        read_calibrations(tmp_path)


def test_calibration_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("TPFIT_CALIBRATION_DIR", str(tmp_path))
    assert calibration_dir() == tmp_path
    monkeypatch.delenv("TPFIT_CALIBRATION_DIR")
    assert calibration_dir().name == "calibration" and "tpfit" in str(calibration_dir()).lower()


def test_find_calibration_prefers_the_users_widest_host(tmp_path):
    one = {**_valid(), "num_gpus": 1, "allreduce": [], "source": "one"}
    two = {**_valid(), "source": "two"}
    (tmp_path / "a.json").write_text(json.dumps(one))
    (tmp_path / "b.json").write_text(json.dumps(two))
    (tmp_path / "c.json").write_text(json.dumps({**_valid(), "gpu_id": "rtx-4090", "num_gpus": 8, "source": "other"}))
    assert find_calibration("h200", tmp_path).source == "two"
    assert find_calibration("a100-40gb", tmp_path) is None
