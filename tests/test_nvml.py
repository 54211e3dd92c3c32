"""hardware/nvml.py, tpfit's one NVML reader, used by `tpfit plan` without --gpus and by `tpfit doctor`.

On a host with an NVIDIA driver its readings are compared with nvidia-smi's own (`nvidia-smi -q -x`, the parser
the captured hosts under tests/data/gpu-hosts replay through); without one, both callers say why in one line.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tpfit.errors import NvmlError
from tpfit.hardware.detect import detect_cluster
from tpfit.hardware.nvml import read_nvml
from tpfit.live.host import parse_smi_xml, parse_topo
from tpfit.live.read_host import read_host
from tpfit.units import MIB


def _nvml_or_none():
    try:
        return read_nvml()
    except NvmlError:
        return None


HOST = _nvml_or_none()


@pytest.mark.skipif(HOST is None or shutil.which("nvidia-smi") is None, reason="no NVIDIA driver on this host")
def test_nvml_reads_what_nvidia_smi_reports():
    xml = subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True, timeout=60, check=True).stdout
    driver, cuda, smi_gpus = parse_smi_xml(xml)
    assert (HOST.driver_version, HOST.cuda_driver_version) == (driver, cuda)
    assert len(HOST.gpus) == len(smi_gpus) > 0
    for ours, smi in zip(HOST.gpus, smi_gpus):
        assert (ours.name, ours.bus_id.lower(), ours.mig_mode, ours.ecc_mode) == \
               (smi.name, smi.bus_id.lower(), smi.mig_mode, smi.ecc_mode)
        assert ours.total_bytes // MIB == smi.total_bytes // MIB  # nvidia-smi prints MiB
        assert (ours.pcie_gen_max, ours.pcie_width_max) == (smi.pcie_gen_max, smi.pcie_width_max)
    topo = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=60, check=True).stdout
    links, _ = parse_topo(topo)
    assert HOST.nvlink_pairs == {tuple(map(int, pair.split("-"))) for pair, level in links.items()
                                 if level.startswith("NV")}, (links, HOST.nvlink_pairs)
    cluster = detect_cluster()
    assert cluster.gpus_per_node == len(HOST.gpus) and cluster.source == "nvml"
    assert cluster.free_bytes == tuple(g.free_bytes for g in HOST.gpus)
    doctor = read_host()  # doctor's snapshot: the same reader, the same GPUs
    assert doctor.source == "nvml" and [(g.name, g.bus_id) for g in doctor.gpus] == \
           [(g.name, g.bus_id) for g in HOST.gpus]


@pytest.mark.skipif(HOST is not None, reason="this host has an NVIDIA driver")
def test_without_a_driver_both_callers_say_why():
    with pytest.raises(NvmlError) as err:
        detect_cluster()
    line = str(err.value)
    assert "\n" not in line and "--gpus 2x3090" in line and ("nvidia-ml-py" in line or "NVIDIA driver" in line)
    snapshot = read_host()
    assert snapshot.gpus == () or snapshot.source == "nvidia-smi"
    assert any(u.startswith("NVML: ") and "--gpus" not in u for u in snapshot.unseen), snapshot.unseen


def test_every_nvml_call_exists_in_nvidia_ml_py():
    """The reader only runs where a driver is: a function nvidia-ml-py does not have (it once called
    `nvmlDeviceGetNvLinkRemotePciInfo_v2`, which no release defines) would first fail on a user's GPU host.
    Every `pynvml.X` that hardware/nvml.py names must be in the installed nvidia-ml-py (CI installs the gpu extra)."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("pynvml")
    import pynvml

    source = Path(__file__).resolve().parents[1] / "tpfit" / "hardware" / "nvml.py"
    used = {node.attr for node in ast.walk(ast.parse(source.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pynvml"}
    assert len(used) > 10  # the walk found the reader's calls
    assert sorted(name for name in used if not hasattr(pynvml, name)) == []
