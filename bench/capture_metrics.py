"""Capture real /metrics bodies of vLLM (CPU build) under back-pressure, for tpfit watch's tests.

Starts the tiny test model with a 1 MiB KV cache (1,024 tokens: two 512-token requests), sends verify's load
(8 at once, 400 output tokens), scrapes /metrics every 0.25 s and keeps: the idle body, the first body with
requests running, the first with requests waiting, the first after a preemption, and the last. Writes them
with a manifest (bodies in the order they were scraped) to tests/data/vllm-metrics/.

usage: TPFIT_VLLM_PYTHON=/path/to/vllm/python python bench/capture_metrics.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.realserver.conftest import BASE_FLAGS, HERE, start_server, vllm_python  # noqa: E402
from tpfit.live.server_facts import parse_metrics  # noqa: E402

OUT = ROOT / "tests" / "data" / "vllm-metrics"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        return r.read().decode()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tpcap", dir="/tmp"))
    model = work / "tiny"
    subprocess.run([vllm_python(), str(HERE / "make_tiny_model.py"), str(model)], check=True, capture_output=True,
                   timeout=120)
    proc = start_server(model, work / "server", BASE_FLAGS + ["--kv-cache-memory-bytes", "1M"])
    kept: dict[str, str] = {}
    try:
        kept["idle"] = scrape(proc.url)
        load = subprocess.Popen([sys.executable, "-m", "tpfit", "verify", "--url", proc.url, "--concurrency", "8",
                                 "--output-tokens", "400", "--requests", "16", "--json"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        first = parse_metrics(kept["idle"])
        while load.poll() is None and time.monotonic() < deadline:
            body = scrape(proc.url)
            s = parse_metrics(body)
            if s.requests_running > 0:
                kept.setdefault("running", body)
            if s.requests_waiting > 0:
                kept.setdefault("waiting", body)
            if s.preemptions_total > first.preemptions_total:
                kept.setdefault("preempted", body)
            time.sleep(0.25)
        load.communicate(timeout=60)
        kept["after"] = scrape(proc.url)
        version = json.loads(urllib.request.urlopen(proc.url + "/version", timeout=5).read())["version"]
    finally:
        proc.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"vllm_version": version, "flags": BASE_FLAGS + ["--kv-cache-memory-bytes", "1M"],
                "load": "tpfit verify --concurrency 8 --output-tokens 400 --requests 16", "bodies": {}}
    for name, body in kept.items():
        (OUT / f"{name}.txt").write_text(body)
        s = parse_metrics(body)
        manifest["bodies"][name] = {"kv_cache_usage": s.kv_cache_usage, "running": s.requests_running,
                                    "waiting": s.requests_waiting, "preemptions_total": s.preemptions_total}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
