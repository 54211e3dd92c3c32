"""tpfit check --url against a real vLLM (CPU build) on loopback: the server read back as a deployment."""

from __future__ import annotations

import json

from tests.realserver.test_verify_real import tpfit


def test_check_url_reads_the_running_server(server):
    # the session server runs --dtype float32, which a server does not report: given like verify's --dtype
    r = tpfit("check", "--url", server.url, "--dtype", "float32", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "server" and doc["servers"][0]["runtime"] == "server"
    # the server's own KV figure (cache_config_info: 64 MiB of KV = 65,536 tokens of the tiny model), and tpfit's
    # prediction for the same flags beside it
    capacity = [f for f in doc["findings"] if f["kind"] == "capacity" and "the server holds" in f["message"]]
    assert capacity and "65,536 KV tokens" in capacity[0]["message"]
    assert "tpfit predicts 65,536 for these flags" in capacity[0]["message"]


def test_check_url_unreachable_is_one_line(tmp_path):
    r = tpfit("check", "--url", "http://127.0.0.1:9", timeout=60)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
