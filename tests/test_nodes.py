"""tpfit doctor --nodes: real TCP connects on loopback, and the findings they give."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tpfit.errors import UsageError
from tpfit.kinds import FindingStatus
from tpfit.live.launch import free_port
from tpfit.live.nodes import Reach, check_nodes, local_addresses, parse_nodes, probe


@pytest.fixture
def listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_probe_tells_listening_from_refused(listener):
    assert probe("127.0.0.1", listener, "head").reach is Reach.OPEN
    closed = probe("127.0.0.1", free_port(), "head")
    assert closed.reach is Reach.REFUSED and closed.detail == "connection refused"


def test_a_port_that_never_answers_is_a_failure_with_the_fix():
    def silent(address, timeout):  # what a firewall that drops packets gives create_connection
        raise socket.timeout("timed out")

    p = probe("10.0.0.1", 6379, "Ray head (GCS)", timeout_s=3, connect=silent)
    assert p.reach is Reach.TIMEOUT and p.detail == "no answer in 3 s"
    [_, port, _] = check_nodes(("10.0.0.1", "10.0.0.2"), [p], frozenset({"10.0.0.2"}), local_vllm="0.33.0",
                               expected_vllm="0.33.0")
    assert port.status is FindingStatus.FAIL and "open TCP port 6379 on 10.0.0.1" in port.fix


def test_which_node_this_is_and_the_vllm_version():
    nodes = ("10.0.0.1", "10.0.0.2")
    worker = check_nodes(nodes, [], frozenset({"127.0.0.1", "10.0.0.2"}), local_vllm="0.26.0", expected_vllm="0.33.0")
    assert worker[0].title == "this host is worker 1 (10.0.0.2)" and worker[0].status is FindingStatus.OK
    assert worker[1].status is FindingStatus.FAIL and "install vLLM 0.33.0 on every node" in worker[1].fix
    stranger = check_nodes(nodes, [], frozenset({"127.0.0.1"}), local_vllm="0.33.0+cpu", expected_vllm="0.33.0")
    assert stranger[0].status is FindingStatus.FAIL and "VLLM_HOST_IP" in stranger[0].fix
    assert stranger[1].status is FindingStatus.OK  # a +cpu build of the same release is the same release


def test_this_hosts_addresses_include_loopback():
    assert "127.0.0.1" in local_addresses()


@pytest.mark.parametrize("text", ["", "10.0.0.1", "10.0.0.1,,10.0.0.3", "10.0.0.1,10.0.0.1"])
def test_bad_node_lists_are_usage_errors(text):
    with pytest.raises(UsageError) as err:
        parse_nodes(text)
    assert err.value.flag == "--nodes"


def test_doctor_nodes_on_the_head(listener):
    master = free_port()
    r = subprocess.run([sys.executable, "-m", "tpfit", "doctor", "--json", "--nodes", "127.0.0.1,127.0.0.2",
                        "--ray-port", str(listener), "--master-port", str(master)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    found = {f["check"]: f for f in json.loads(r.stdout)["findings"] if f["check"].startswith("nodes.")}
    assert found["nodes.self"]["title"] == "this host is the head (127.0.0.1)"
    assert found[f"nodes.port{listener}"]["status"] == "ok"
    refused = found[f"nodes.port{master}"]
    assert refused["status"] == "warn" and "expected before the head starts" in refused["fix"]
    bad = subprocess.run([sys.executable, "-m", "tpfit", "doctor", "--nodes", "127.0.0.1"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--nodes 127.0.0.1: give the head" in bad.stderr
