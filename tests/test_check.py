"""tpfit check: real-world deployment files (tests/data/deployments, each says where it comes from), every file
`tpfit deploy` writes (round trip: no error finding), the fixes, the JSON/SARIF outputs and hostile input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tpfit.check.findings import Kind, Severity
from tpfit.check.fix import fix_text
from tpfit.check.run import check_deployment
from tpfit.deployment.read import read_deployment
from tpfit.errors import SourceError, UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.model.load import load_model

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "deployments"
CONFIGS = ROOT.parent / "shared" / "model-configs"


def load_real(name: str):
    """Models by Hugging Face id from the real configs in ../shared/model-configs (no network in tests)."""
    path = CONFIGS / (name.replace("/", "--") + ".json")
    if path.exists():
        return load_model(str(path))
    raise SourceError(f"model {name!r} is not among the test configs", source=name)


def check_file(path: Path, gpus: str | None):
    dep = read_deployment(path.read_bytes(), path.name)
    return dep, check_deployment(dep, gpus=Cluster.parse(gpus) if gpus else None, load=load_real)


def kinds(report, severity: Severity) -> set[Kind]:
    return {f.kind for f in report.findings if f.severity is severity}


# file, --gpus, errors expected, warnings expected (each bad example tested for its finding)
CORPUS_CASES = [
    ("docs-docker-run.sh", "1xH100", set(), {Kind.IMAGE}),
    ("docs-quickstart.sh", "1xL4", set(), set()),
    ("docs-api-server.sh", "1xH100", {Kind.UNKNOWN_FLAG}, set()),  # --disable-log-requests: gone after 0.16
    ("docs-distributed.sh", "2x8xH100", set(), set()),
    ("docs-k8s-deployment.yaml", "1xH100", {Kind.STARTUP_PROBE}, {Kind.TRUST_REMOTE_CODE, Kind.IMAGE}),
    ("docs-lws.yaml", "2x8xH100", {Kind.SECRET}, {Kind.HF_CACHE, Kind.IMAGE}),
    ("kserve-inferenceservice.yaml", "1xH100", set(), {Kind.HF_CACHE}),
    ("kserve-servingruntime.yaml", "1xH100", set(), set()),
    ("production-stack-deployment.yaml", "1xH100", set(), set()),
    ("aibrix-deployment.yaml", None, {Kind.STARTUP_PROBE}, set()),  # GPU from the node selector
    ("llm-d-decode.yaml", "2xH100", set(), set()),
    ("podman-compose.yaml", "2xH100", set(), {Kind.PODMAN_IPC}),
    ("bad-tp-heads.sh", "4xH100", {Kind.LAYOUT}, set()),
    ("bad-max-model-len.sh", "1xL4", {Kind.MEMORY}, set()),
    # the misspelled --max-model-length is read as meant (8192), so no memory error follows from it
    ("bad-docker-tp2.sh", "2xH100", {Kind.SHARED_MEMORY, Kind.SECRET, Kind.UNKNOWN_FLAG}, {Kind.HF_CACHE}),
    ("bad-old-image.sh", "1xH100", {Kind.UNKNOWN_FLAG}, set()),
    ("bad-compose.yaml", "4xH100", {Kind.GPU_COUNT, Kind.SHARED_MEMORY, Kind.SECRET}, set()),
    ("bad-shared-gpu.yaml", "1xH100", {Kind.GPU_UTILIZATION}, set()),
    ("bad-eager-overflow.sh", "1xH100", {Kind.MEMORY}, {Kind.ENFORCE_EAGER}),
    ("bad-flag-value.sh", "1xH100", {Kind.FLAG_VALUE, Kind.SECRET}, set()),
    ("example-disaggregated-prefill.sh", "4xH100", set(), {Kind.TRUST_REMOTE_CODE}),
]


def test_corpus_is_complete_and_sourced():
    files = sorted(p.name for p in CORPUS.iterdir())
    assert files == sorted(c[0] for c in CORPUS_CASES)
    for name in files:
        head = "\n".join((CORPUS / name).read_text().splitlines()[:3])
        assert "Source:" in head or "Bad" in head, f"{name} says nowhere where it comes from"


@pytest.mark.parametrize("name,gpus,errors,warnings", CORPUS_CASES, ids=[c[0] for c in CORPUS_CASES])
def test_corpus_findings(name, gpus, errors, warnings):
    _, report = check_file(CORPUS / name, gpus)
    assert kinds(report, Severity.ERROR) == errors
    assert warnings <= kinds(report, Severity.WARNING)
    assert report.exit_code == (1 if errors else 0)


def test_findings_carry_vllm_messages_and_places():
    _, report = check_file(CORPUS / "bad-tp-heads.sh", "4xH100")
    heads = next(f for f in report.findings if "heads_divisible_by_tp" in f.message)
    assert heads.vllm == "Total number of attention heads (28) must be divisible by tensor parallel size (3)."
    assert heads.where.line == 2
    # the concrete fix is the layout tpfit plans on the same 4 GPUs
    assert any(e.flag == "--tensor-parallel-size" and e.value in ("1", "2", "4") for e in heads.edits)
    _, report = check_file(CORPUS / "bad-max-model-len.sh", "1xL4")
    mem = next(f for f in report.findings if f.kind is Kind.MEMORY)
    assert "estimated maximum model length" in mem.vllm
    assert mem.edits[0].flag == "--max-model-len" and 0 < int(mem.edits[0].value) < 131072
    _, report = check_file(CORPUS / "bad-docker-tp2.sh", "2xH100")
    secret = next(f for f in report.findings if f.kind is Kind.SECRET)
    assert "abcdefghij" not in secret.message  # never repeats the token
    typo = next(f for f in report.findings if f.kind is Kind.UNKNOWN_FLAG)
    assert typo.fix == "use --max-model-len" and typo.vllm.endswith("--max-model-length")


def test_shell_script_with_functions_and_background_servers():
    """Two `vllm serve ... &` after functions and an if-block; the model from `${HF_MODEL_NAME:-...}`, each server
    on the one GPU CUDA_VISIBLE_DEVICES gives it."""
    dep, report = check_file(CORPUS / "example-disaggregated-prefill.sh", "4xH100")
    assert [u.command.model for u in dep.units] == ["meta-llama/Llama-3.1-8B-Instruct"] * 2
    assert [u.gpu_ids for u in dep.units] == [("2",), ("3",)]
    assert [u.command.get("--port").value for u in dep.units] == ["8100", "8200"]
    assert dep.units[0].command.get("--kv-transfer-config").value.startswith('{"kv_connector"')
    capacity = [f for f in report.findings if f.kind is Kind.CAPACITY]
    assert len(capacity) == 2 and all("requests of 100 tokens" in f.message for f in capacity)


COMPOUND = """#!/usr/bin/env bash
MODEL=Qwen/Qwen2.5-7B-Instruct
if [ -n "${PORT:-}" ]; then vllm serve "$MODEL" --tensor-parallel-size 3 --port "$PORT"; fi
while true; do CUDA_VISIBLE_DEVICES=1 vllm serve "$MODEL" --max-model-len 4096; sleep 5; done
{ vllm serve "$MODEL" --max-model-len 8192; } > serve.log 2>&1
"""


def test_servers_inside_compound_commands_are_found():
    """A server after `then`, `do` or `{` on the same line is a server (it was 'no vLLM server found', exit 2)."""
    dep = read_deployment(COMPOUND.encode(), "compound.sh")
    assert [(u.where.line, u.command.model) for u in dep.units] == [(3, "Qwen/Qwen2.5-7B-Instruct"),
                                                                    (4, "Qwen/Qwen2.5-7B-Instruct"),
                                                                    (5, "Qwen/Qwen2.5-7B-Instruct")]
    assert dep.units[1].gpu_ids == ("1",)
    report = check_deployment(dep, gpus=Cluster.parse("4xH100"), load=load_real)
    assert {f.where.line for f in report.findings if f.kind is Kind.LAYOUT} == {3}  # 28 heads over TP=3


BRANCHES = """#!/usr/bin/env bash
CUDA_VISIBLE_DEVICES=0 vllm serve meta-llama/Llama-3.1-8B-Instruct --gpu-memory-utilization 0.45 --port 8001 &
if [ "$RUNTIME" = docker ]; then
  exec docker run --gpus '"device=0"' --ipc=host -v ~/.cache/huggingface:/root/.cache/huggingface \\
    vllm/vllm-openai:v0.33.0 --model meta-llama/Llama-3.1-8B-Instruct --gpu-memory-utilization 0.45
fi
CUDA_VISIBLE_DEVICES=0 exec vllm serve meta-llama/Llama-3.1-8B-Instruct --gpu-memory-utilization 0.45
"""


def test_servers_in_other_branches_of_an_exec_are_one_start(tmp_path):
    """A server `exec` starts ends the script: one below it runs only instead of it (ray-cluster.sh's container and
    host branches were counted as two servers, and three servers of 0.45 on one GPU as 1.35 of it)."""
    from tpfit.report.check import render_text, report_dict

    dep = read_deployment(BRANCHES.encode(), "branches.sh")
    assert [u.alternative_of for u in dep.units] == [None, None, 1]
    report = check_deployment(dep, gpus=Cluster.parse("1xH100"), load=load_real)
    assert not [f for f in report.findings if f.kind is Kind.GPU_UTILIZATION]  # 0.45 + max(0.45, 0.45)
    assert "branches.sh: 2 vLLM server(s)" in render_text(report)
    worse = BRANCHES.replace("0.45 --port", "0.6 --port")
    report = check_deployment(read_deployment(worse.encode(), "b.sh"), gpus=Cluster.parse("1xH100"), load=load_real)
    shared = next(f for f in report.findings if f.kind is Kind.GPU_UTILIZATION)
    assert "add up to 1.05" in shared.message and "each of the 2 servers" in shared.fix
    # a redirection is no background job: `2>&1` and `&>log` end the exec'd server's line as any word would
    logged = BRANCHES.replace("--gpu-memory-utilization 0.45\nfi", "--gpu-memory-utilization 0.45 >serve.log 2>&1\nfi")
    logged = logged.rstrip("\n") + " &>serve.log\n"
    assert [u.alternative_of for u in read_deployment(logged.encode(), "b.sh").units] == [None, None, 1]
    # `NAME=value exec ...` is an exec too
    env_first = "if [ -n \"$A\" ]; then\n  CUDA_VISIBLE_DEVICES=0 exec vllm serve Qwen/Qwen3-8B\nfi\nvllm serve Qwen/Qwen3-8B\n"
    assert [u.alternative_of for u in read_deployment(env_first.encode(), "b.sh").units] == [None, 0]
    # in the background or a subshell, exec ends nothing
    both = "(exec vllm serve Qwen/Qwen3-8B) &\nexec vllm serve Qwen/Qwen3-8B &\nvllm serve Qwen/Qwen3-8B\n"
    assert [u.alternative_of for u in read_deployment(both.encode(), "b.sh").units] == [None, None, None]

    from typer.testing import CliRunner

    from tpfit.cli.app import app

    result = CliRunner().invoke(app, ["deploy", "llama-3.1-8b", "--gpus", "1xH100", "--context", "8192",
                                      "--format", "ray", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    dep = read_deployment((tmp_path / "ray-cluster.sh").read_bytes(), "ray-cluster.sh")
    assert [u.alternative_of for u in dep.units] == [None, 0]
    report = check_deployment(dep, gpus=Cluster.parse("1xH100"))
    assert report_dict(report)["servers"][1]["alternative_of"] == 0
    assert "ray-cluster.sh: 1 vLLM server(s)" in render_text(report)


@pytest.mark.parametrize("fmt", ["docker", "compose", "k8s"])
def test_a_model_folder_must_be_mounted_in_its_container(fmt, tmp_path):
    """deploy's own files for a local model folder (a comma and a quote in its name) come back clean; the same file
    without the mount is an error: vLLM in the container finds no such folder. check read docker's --mount as
    plain comma-separated fields, so deploy's CSV-quoted one lost its target."""
    import shutil

    from typer.testing import CliRunner

    from tpfit.cli.app import app

    folder = tmp_path / "my tiny,model's"
    folder.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "tiny-llama-config" / "config.json", folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deploy", str(folder), "--gpus", "2xL4", "--tp", "2", "--format", fmt,
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    path = next(out.iterdir())
    text = path.read_text()
    dep = read_deployment(text.encode(), path.name)
    report = check_deployment(dep, gpus=Cluster.parse("2xL4"))
    assert not [f for f in report.findings if f.severity is not Severity.INFO], report.findings
    if fmt == "docker":
        bare = "".join(line for line in text.splitlines(keepends=True) if "--mount" not in line)
    elif fmt == "compose":
        bare = text.replace("      read_only: true\n", "").replace("    - type: bind\n", "    - type: volume\n")
        bare = bare.replace(f"      target: {folder}\n", "      target: /elsewhere\n")
    else:
        bare = text.replace(f"mountPath: {folder}", "mountPath: /elsewhere")
    report = check_deployment(read_deployment(bare.encode(), path.name), gpus=Cluster.parse("2xL4"))
    mount = [f for f in report.findings if f.kind is Kind.MODEL_MOUNT]
    assert [f.severity for f in mount] == [Severity.ERROR] and str(folder) in mount[0].vllm, report.findings
    assert report.exit_code == 1


GPUS_KEY = """services:
  vllm:
    image: vllm/vllm-openai:v0.33.0
    command: ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size", "4", "--max-model-len", "8192"]
    ipc: host
    volumes: ["~/.cache/huggingface:/root/.cache/huggingface"]
    gpus:
      - driver: nvidia
        count: COUNT
"""


@pytest.mark.parametrize("count", ["2", '"2"'])
def test_compose_gpus_key_gives_the_container_its_gpus(count, tmp_path):
    """The compose spec's `gpus:` (Compose 2.30 on; in the schema test_deploy validates with) was not read: TP=4 in
    a container of 2 GPUs was '0 error(s)'. A count written as a string ("2") is a count too."""
    text = GPUS_KEY.replace("COUNT", count)
    dep = read_deployment(text.encode(), "compose.yaml")
    assert dep.units[0].gpus == 2
    report = check_deployment(dep, gpus=Cluster.parse("4xH100"), load=load_real)
    found = [f for f in report.findings if f.kind is Kind.GPU_COUNT]
    assert found and found[0].where.path == "services.vllm.gpus[0]" and found[0].where.line == 8
    fixed, applied, _ = fix_text(dep, report.findings)
    assert "count: 4" in fixed and applied
    again = check_deployment(read_deployment(fixed.encode(), "compose.yaml"), gpus=Cluster.parse("4xH100"),
                             load=load_real)
    assert again.exit_code == 0


def test_a_config_file_of_flags_is_not_checked_as_if_empty():
    """`vllm serve MODEL --config cfg.yaml` reads its flags (TP, --max-model-len, ...) from that file
    (argparse_utils.py); check planned the command line alone and reported its capacity as the server's."""
    dep = read_deployment(b"vllm serve meta-llama/Llama-3.1-8B-Instruct --config /etc/vllm/config.yaml\n", "run.sh")
    report = check_deployment(dep, gpus=Cluster.parse("1xH100"), load=load_real)
    assert [f.kind for f in report.findings] == [Kind.NOT_CHECKED]
    assert report.findings[0].message.startswith("--config /etc/vllm/config.yaml: vLLM reads more flags")


@pytest.mark.parametrize("value", ["auto", "-1"])
def test_max_model_len_auto_is_fitted_to_memory_as_vllm_does(value):
    """vLLM 0.12 on takes --max-model-len auto (or -1): the model's maximum, shortened to what the KV cache holds
    (kv_cache_planning._auto_fit_max_model_len). check called it 'not an int' (an error, exit 1); before 0.12 it is."""
    line = f"vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len {value}\n"
    report = check_deployment(read_deployment(line.encode(), "run.sh"), gpus=Cluster.parse("1xL4"), load=load_real)
    assert report.exit_code == 0, report.findings
    fitted = next(f for f in report.findings if f.message.startswith("--max-model-len auto"))
    longest = int(fitted.message.rsplit(", ", 1)[1].split()[0])
    assert 0 < longest < 131072  # 8B in bf16 on 24 GB holds far less than the model's 131,072 tokens
    explicit = check_deployment(read_deployment(f"vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len "
                                                f"{longest}\n".encode(), "run.sh"), gpus=Cluster.parse("1xL4"),
                                load=load_real)
    assert [f.message for f in explicit.findings] == [f.message for f in report.findings if f is not fitted]
    old = _docker("vllm/vllm-openai:v0.8.5").replace(b"--max-model-len 4096", b"--max-model-len auto")
    refused = check_deployment(read_deployment(old, "run.sh"), gpus=Cluster.parse("1xL4"), load=load_real)
    flag = next(f for f in refused.findings if f.kind is Kind.FLAG_VALUE)
    assert flag.vllm == "vllm serve: error: argument --max-model-len: invalid int value: 'auto'"  # argparse's int


def test_a_flag_without_its_value_is_an_error():
    """argparse refuses `--tensor-parallel-size --max-model-len 4096` ('expected one argument'); check read the flag
    as absent and found nothing (exit 0)."""
    for line, flag in ((b"vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size --max-model-len 4096\n",
                        "--tensor-parallel-size"),
                       (b"vllm serve meta-llama/Llama-3.1-8B-Instruct --enforce-eager --max-model-len\n",
                        "--max-model-len")):
        report = check_deployment(read_deployment(line, "run.sh"), gpus=Cluster.parse("2xH100"), load=load_real)
        found = [f for f in report.findings if f.kind is Kind.FLAG_VALUE]
        assert [f.vllm for f in found] == [f"vllm serve: error: argument {flag}: expected one argument"]
        assert report.exit_code == 1


PROBED_ELSEWHERE = """apiVersion: apps/v1
kind: Deployment
metadata: {name: v}
spec:
  selector: {matchLabels: {app: v}}
  template:
    metadata: {labels: {app: v}}
    spec:
      containers:
      - name: vllm
        image: vllm/vllm-openai:v0.33.0
        args: ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192", "--port", "9000"]
        ports: [{containerPort: 9000, name: api}, {containerPort: 8000, name: http}]
        resources: {limits: {nvidia.com/gpu: 1}}
        volumeMounts: [{name: c, mountPath: /root/.cache/huggingface}]
        startupProbe: {httpGet: {path: /health, port: http}, periodSeconds: 10, failureThreshold: 200}
        readinessProbe: {httpGet: {path: /health, port: api}}
        livenessProbe: {tcpSocket: {port: 8000}, periodSeconds: 10}
      volumes: [{name: c, emptyDir: {}}]
"""
COMPOSE_HEALTH = """services:
  vllm:
    image: vllm/vllm-openai:v0.33.0
    command: ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192"]
    volumes: ["~/.cache/huggingface:/root/.cache/huggingface"]
    healthcheck: {test: ["CMD", "curl", "-fsS", "http://localhost:PORT/health"], start_period: 1200s}
    deploy: {resources: {reservations: {devices: [{driver: nvidia, count: 1, capabilities: [gpu]}]}}}
"""


def test_a_probe_on_another_port_than_the_server_is_an_error():
    """Probes asking 8000 of a server started with --port 9000 (or a health check asking 8080 of the default 8000)
    never get an answer: the pod restarts in a loop, the container stays unhealthy. check said nothing."""
    report = check_deployment(read_deployment(PROBED_ELSEWHERE.encode(), "k8s.yaml"), gpus=Cluster.parse("1xH100"),
                              load=load_real)
    found = [f for f in report.findings if f.kind is Kind.PROBE_PORT]
    assert [f.message for f in found] == [
        "the startup and liveness probes ask port 8000; the server listens on 9000 (--port)"]  # `api` is 9000: fine
    assert found[0].where.path.endswith("startupProbe") and report.exit_code == 1
    for port, errors in (("8080", 1), ("8000", 0)):
        text = COMPOSE_HEALTH.replace("PORT", port)
        report = check_deployment(read_deployment(text.encode(), "compose.yaml"), gpus=Cluster.parse("1xH100"),
                                  load=load_real)
        assert len([f for f in report.findings if f.kind is Kind.PROBE_PORT]) == errors, report.findings


@pytest.mark.parametrize("publish,errors", [("-p 8000:8000", 1), ("-p 127.0.0.1:9000:9000/tcp", 0),
                                            ('-p "$P:$P"', 0), ("-p 8000:8000 --network host", 0),
                                            ("-p 8000-8010:8000-8010", 1), ("", 0)])
def test_a_published_port_the_server_does_not_listen_on_is_an_error(publish, errors):
    """`docker run -p 8000:8000 ... --port 9000` maps the host's 8000 to a port nothing listens on: the server starts
    and no client outside reaches it. check said nothing."""
    line = (f"docker run --gpus all --ipc=host {publish} -v ~/.cache/huggingface:/root/.cache/huggingface "
            "vllm/vllm-openai:v0.33.0 --model meta-llama/Llama-3.1-8B-Instruct --max-model-len 4096 --port 9000\n")
    report = check_deployment(read_deployment(line.encode(), "run.sh"), gpus=Cluster.parse("1xH100"), load=load_real)
    found = [f for f in report.findings if f.kind is Kind.PROBE_PORT]
    assert len(found) == errors, report.findings
    if errors:
        assert "the server listens on 9000 (--port)" in found[0].message and "-p 9000:9000" in found[0].fix
    compose = COMPOSE_HEALTH.replace("PORT", "9000").replace('"--max-model-len", "8192"]',
                                                             '"--max-model-len", "8192", "--port", "9000"]')
    for ports, errors in (('ports: [{target: 9000, published: 80}]', 0), ('ports: ["80:8000"]', 1)):
        text = compose.replace("    volumes:", f"    {ports}\n    volumes:")
        report = check_deployment(read_deployment(text.encode(), "c.yaml"), gpus=Cluster.parse("1xH100"),
                                  load=load_real)
        assert len([f for f in report.findings if f.kind is Kind.PROBE_PORT]) == errors, (ports, report.findings)


@pytest.mark.parametrize("flags", ["-O3", "-O=3", "-Odecode", "-cc.mode=3", "-cc.cudagraph_mode FULL",
                                   "--compilation-config.mode 3 -tp 2"])
def test_vllms_own_shorthands_are_flags_it_takes(flags):
    """vLLM's parser reads -O3 as --optimization-level 3 and -cc.mode=3 as one field of --compilation-config
    (FlexibleArgumentParser, argparse_utils.py): check called them 'no vLLM release has this flag', exit 1."""
    line = f"vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 4096 {flags}\n"
    report = check_deployment(read_deployment(line.encode(), "run.sh"), gpus=Cluster.parse("2xH100"), load=load_real)
    assert report.exit_code == 0 and not [f for f in report.findings if f.severity is Severity.ERROR], report.findings
    old = _docker("vllm/vllm-openai:v0.8.5").replace(b"--max-model-len 4096", b"--max-model-len 4096 -O3")
    assert check_deployment(read_deployment(old, "run.sh"), gpus=Cluster.parse("1xH100"), load=load_real).exit_code == 0
    typo = line.replace(flags, "--compilaton-config.mode 3").encode()
    report = check_deployment(read_deployment(typo, "run.sh"), gpus=Cluster.parse("2xH100"), load=load_real)
    assert [f.kind for f in report.findings if f.severity is Severity.ERROR] == [Kind.UNKNOWN_FLAG]


def _docker(image: str) -> bytes:
    return (f"docker run --gpus all --ipc=host -v ~/.cache/huggingface:/root/.cache/huggingface {image} "
            "--model meta-llama/Llama-3.1-8B-Instruct --max-model-len 4096\n").encode()


def test_image_tags_outside_the_modelled_releases():
    """An image of a release older than tpfit models is a note, not a traceback (v0.5.4 raised StopIteration); a
    newer one is checked by the newest rules and says so; a tag naming no release (v0.26.0.1) is checked as the
    release it was meant to be and named: the official repository has no such tag."""
    def run(image):
        dep = read_deployment(_docker(image), "run.sh")
        return check_deployment(dep, gpus=Cluster.parse("1xH100"), load=load_real)

    old = run("vllm/vllm-openai:v0.5.4")
    assert [f.kind for f in old.findings] == [Kind.NOT_CHECKED] and "0.5.4" in old.findings[0].message
    new = run("vllm/vllm-openai:v0.40.0")
    assert {f.kind for f in new.findings} == {Kind.NOT_CHECKED, Kind.CAPACITY}
    typo = run("vllm/vllm-openai:v0.26.0.1-cu130")
    image = next(f for f in typo.findings if f.kind is Kind.IMAGE)
    assert image.severity is Severity.ERROR and "no release 0.26.0.1" in image.message
    assert image.fix == "pin a release: vllm/vllm-openai:v0.26.0-cu130"
    # planned as 0.26.0 (its 0.9 default utilization), not as the current release (0.92)
    assert run("vllm/vllm-openai:v0.26.0").findings[-1].message == typo.findings[-1].message
    assert typo.findings[-1].message != run("vllm/vllm-openai:v0.33.0").findings[-1].message
    own = run("myorg/vllm-custom:v0.26.0.1")
    assert [f.severity for f in own.findings if f.kind is Kind.IMAGE] == [Severity.WARNING]
    # an X.Y.Z vLLM never published (vllm_facts.unpublished, as --vllm-version refuses it): its minor's latest
    never = run("vllm/vllm-openai:v0.26.1")
    image = next(f for f in never.findings if f.kind is Kind.IMAGE)
    assert image.message.startswith("vllm/vllm-openai:v0.26.1: vLLM has no release 0.26.1 (0.26's are 0.26.0)")
    assert image.fix == "pin a release: vllm/vllm-openai:v0.26.0" and image.severity is Severity.ERROR
    assert never.findings[-1].message == run("vllm/vllm-openai:v0.26.0").findings[-1].message
    assert not [f for f in run("vllm/vllm-openai:v0.33.1").findings if f.kind is Kind.IMAGE]  # the current minor


def test_compose_paths_and_lines():
    _, report = check_file(CORPUS / "bad-compose.yaml", "4xH100")
    count = next(f for f in report.findings if f.kind is Kind.GPU_COUNT)
    assert count.where.path == "services.vllm.deploy.resources.reservations.devices[0]"
    assert count.where.line == 14


# ---- round trip: every file tpfit deploy writes comes out without an error finding ----------------

DEPLOY_CASES = [
    ("llama-3.1-70b", "2xH100", fmt) for fmt in ("serve", "docker", "compose", "k8s", "lws", "ray")
] + [("llama-3.1-405b", "2x8xH100", fmt) for fmt in ("lws", "ray")] + [("qwen3-30b-a3b", "1xH100", "k8s")] + [
    # a 1.3 TB download (FP8 DeepSeek-V3: 671 GB of weights) needs more than the 20-minute minimum probe; MXFP4
    # gpt-oss-120b downloads 65 GB, not the 234 GB its parameters would take in bf16
    ("deepseek-v3", "8xH200", "k8s"), ("gpt-oss-120b", "2xH100", "k8s")]


@pytest.mark.parametrize("model,gpus,fmt", DEPLOY_CASES, ids=[f"{m}-{g}-{f}" for m, g, f in DEPLOY_CASES])
def test_deploy_output_checks_clean(model, gpus, fmt, tmp_path):
    from typer.testing import CliRunner

    from tpfit.cli.app import app

    result = CliRunner().invoke(app, ["deploy", model, "--gpus", gpus, "--context", "8192", "--format", fmt,
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.iterdir())
    assert files
    for path in files:
        dep = read_deployment(path.read_bytes(), path.name)
        report = check_deployment(dep, gpus=Cluster.parse(gpus))
        # tpfit's own lint has nothing to say of tpfit's own files: no error and no warning (the LeaderWorkerSet
        # mounted no Hugging Face cache, and the startup probe waited 20 minutes for an 812 GB download)
        found = [f for f in report.findings if f.severity in (Severity.ERROR, Severity.WARNING)]
        assert not found, (path.name, found)
        # the plan was checked, not skipped
        assert any(f.kind is Kind.CAPACITY for f in report.findings), path.name


# ---- --fix ------------------------------------------------------------------------------------------------

FIX_CASES = [
    ("bad-tp-heads.sh", "4xH100"), ("bad-max-model-len.sh", "1xL4"), ("bad-docker-tp2.sh", "2xH100"),
    ("bad-compose.yaml", "4xH100"), ("bad-shared-gpu.yaml", "1xH100"), ("bad-eager-overflow.sh", "1xH100"),
    ("docs-k8s-deployment.yaml", "1xH100"), ("aibrix-deployment.yaml", None), ("podman-compose.yaml", "2xH100"),
    ("docs-lws.yaml", "2x8xH100"),
]


@pytest.mark.parametrize("name,gpus", FIX_CASES, ids=[c[0] for c in FIX_CASES])
def test_fix_removes_the_fixable_errors_and_keeps_comments(name, gpus):
    dep, report = check_file(CORPUS / name, gpus)
    fixed, applied, _ = fix_text(dep, report.findings)
    assert applied and fixed != dep.text
    again = check_deployment(read_deployment(fixed.encode(), name), gpus=Cluster.parse(gpus) if gpus else None,
                             load=load_real)
    fixable = {f.kind for f in report.findings if f.edits and f.severity is Severity.ERROR}
    assert not fixable & kinds(again, Severity.ERROR), [f for f in again.findings if f.severity is Severity.ERROR]
    first_comment = next(l for l in dep.text.splitlines() if l.startswith("#"))
    assert first_comment in fixed  # comments survive (ruamel round trip for YAML, in-place edits for shell)


def test_fix_edits_in_place(tmp_path):
    dep, report = check_file(CORPUS / "bad-docker-tp2.sh", "2xH100")
    fixed, _, _ = fix_text(dep, report.findings)
    assert "--ipc=host vllm/vllm-openai:v0.33.0" in fixed
    assert "-e HF_TOKEN \\" in fixed and "hf_abc" not in fixed
    assert "--max-model-len" in fixed and "--max-model-length" not in fixed
    bash = subprocess.run(["bash", "-n"], input=fixed, text=True, capture_output=True)
    assert bash.returncode == 0, bash.stderr


# ---- CLI: exit codes, JSON, SARIF, --fix file ----------------------------------------------------------------


def run_cli(*args, stdin: str | None = None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tpfit", "check", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_cli_exit_codes_json_and_sarif(tmp_path):
    bad = CORPUS / "bad-compose.yaml"
    r = run_cli(str(bad), "--gpus", "4xH100", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 1 and {f["kind"] for f in doc["findings"]} >= {"gpu-count", "shared-memory"}
    r = run_cli(str(bad), "--gpus", "4xH100", "--format", "sarif")
    sarif = json.loads(r.stdout)
    _assert_sarif(sarif)
    r = run_cli("-", "--gpus", "1xH100", stdin="vllm serve llama-3.1-8b --max-model-len 4096\n")
    assert r.returncode == 0, r.stdout + r.stderr
    copy = tmp_path / "compose.yaml"
    copy.write_text(bad.read_text())
    r = run_cli(str(copy), "--gpus", "4xH100", "--fix")
    assert r.returncode == 1 and (tmp_path / "compose.fixed.yaml").exists()
    assert copy.read_text() == bad.read_text()  # never in place without --in-place
    r = run_cli(str(tmp_path / "compose.fixed.yaml"), "--gpus", "4xH100")
    assert "shared-memory" not in r.stdout and "gpu-count" not in r.stdout


def test_cli_image_cuda_vs_host_driver(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("docker run --gpus all -v ~/.cache/huggingface:/root/.cache/huggingface "
                      "vllm/vllm-openai:v0.33.0-cu130 --model llama-3.1-8b --max-model-len 4096\n")
    r = run_cli(str(script), "--gpus", "1xH100", "--driver", "575.57.08")
    assert r.returncode == 1 and "error[image]" in r.stdout and "580.65.6" in r.stdout.replace("580.65.06", "580.65.6")
    assert run_cli(str(script), "--gpus", "1xH100", "--driver", "580.95.05").returncode == 0
    bad = run_cli(str(script), "--driver", "abc")
    assert bad.returncode == 2 and "--driver" in bad.stderr


def _assert_sarif(sarif: dict) -> None:
    """SARIF 2.1.0's required structure (sarif-schema-2.1.0.json: version, runs[].tool.driver.name, results[]
    with message.text, ruleId in the driver's rules, level in the enum, 1-based startLine)."""
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "tpfit" and driver["rules"]
    ids = [r["id"] for r in driver["rules"]]
    for res in run["results"]:
        assert res["ruleId"] in ids and ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("none", "note", "warning", "error")
        assert res["message"]["text"]
        region = res["locations"][0]["physicalLocation"].get("region")
        assert region is None or region["startLine"] >= 1


def test_pre_commit_hook_entry():
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "tpfit-check")
    assert hook["entry"].startswith("tpfit check") and hook["language"] == "python"


# ---- hostile input: one line on stderr, exit 2, fast --------------------------------------------------------

HOSTILE = {
    "binary.yaml": b"\x00\x01\x02ELF" * 100,
    "huge.sh": b"vllm serve x " + b"--a b " * 300_000,
    "deep.yaml": b"a: " + b"[" * 5000 + b"]" * 5000,
    "deep-block.yaml": "".join(f"{' ' * (2 * i)}k{i}:\n" for i in range(400)).encode(),
    "bomb.yaml": (b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                  b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                  b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                  b"i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n"),
    "bomb-in-args.yaml": (b"kind: Pod\nx: &a [x, x, x, x, x, x, x, x]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                          b"spec:\n  containers:\n  - image: vllm/vllm-openai:v0.33.0\n    args: [*b, *b, *b]\n"),
    "unknown-kind.yaml": b"apiVersion: example.com/v1\nkind: Frobnicator\nspec: {}\n",
    "not-vllm.sh": b"#!/bin/sh\necho hello\nls -la\n",
    "latin1.sh": "vllm serve caf\xe9".encode("latin-1"),
    "broken.yaml": b"services: [unclosed\n  - {a: \n",
    "duplicate.yaml": b"services:\n  a: {image: vllm/vllm-openai}\n  a: {image: vllm/vllm-openai}\n",
    # found by test_hostile_yaml_structures_in_process: a LeaderWorkerSet of 0 nodes divided by zero
    "lws-size-0.yaml": (b"apiVersion: leaderworkerset.x-k8s.io/v1\nkind: LeaderWorkerSet\nmetadata: {name: x}\nspec:\n"
                        b"  leaderWorkerTemplate:\n    size: 0\n    leaderTemplate:\n      spec:\n        containers:\n"
                        b"        - {name: v, image: 'vllm/vllm-openai:v0.33.0', args: [--model, m, -tp, '2'],\n"
                        b"           resources: {limits: {nvidia.com/gpu: 2}}}\n"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_one_line_exit_2(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(HOSTILE[name])
    r = run_cli(str(path), "--gpus", "1xH100")
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: FILE"), r.stderr[-800:]
    assert "Traceback" not in r.stderr


HELM_TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "vllm.fullname" . }}
spec:
  replicas: {{ .Values.replicaCount }}
  template:
    spec:
      containers:
        - name: vllm
          image: "vllm/vllm-openai:{{ .Values.image.tag }}"
          args: ["--model", {{ .Values.model | quote }}, "--tensor-parallel-size", "{{ .Values.tp }}"]
"""


def test_a_helm_template_is_named_with_the_command_that_renders_it():
    """A chart's template is not YAML until Helm renders it: check said only 'not valid YAML: while parsing a flow
    node'; it says what the file is and how to check it. A template that parses (its actions quoted) is read, its
    templated values not checked."""
    with pytest.raises(UsageError, match=r"a Helm \(Go\) template, not YAML until it is rendered .*helm template "
                                         r"NAME CHART \| tpfit check -"):
        read_deployment(HELM_TEMPLATE.encode(), "deployment.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        read_deployment(HOSTILE["broken.yaml"], "broken.yaml")
    quoted = HELM_TEMPLATE.replace("{{ include \"vllm.fullname\" . }}", "vllm").replace(
        "{{ .Values.replicaCount }}", "1").replace("{{ .Values.model | quote }}", '"{{ .Values.model }}"')
    dep = read_deployment(quoted.encode(), "deployment.yaml")
    report = check_deployment(dep, gpus=Cluster.parse("2xH100"), load=load_real)
    assert {f.kind for f in report.findings} >= {Kind.NOT_CHECKED} and report.exit_code == 0


def test_hostile_random_input_in_process():
    """Any bytes: a DeploymentFile or a UsageError, never another exception (hypothesis, bounded)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(["vllm serve ", "docker run ", "--gpus all ", "vllm/vllm-openai ", "--tp ", "'", '"',
                              "\\\n", "$(", "${X:-", "}", ")", "; ", "&& ", "services:\n", "  a:\n", "kind: Pod\n",
                              "spec:\n", "  containers:\n", "- ", "[", "]", "{", "}", "&a ", "*a ", "--model=x ",
                              "-e HF_TOKEN=hf_x ", "command: ", "args: ", "\n", "  ", "\t", "#", "2", "\x00"])

    @settings(max_examples=300, deadline=2000, suppress_health_check=list(HealthCheck))
    @given(st.lists(pieces, max_size=40), st.sampled_from(["f.sh", "f.yaml", "f"]))
    def run(parts, name):
        data = "".join(parts).encode()
        try:
            dep = read_deployment(data, name)
        except UsageError:
            return
        check_deployment(dep, gpus=Cluster.parse("2xH100"), load=load_real)

    run()


# ---- the README's before/after examples are what the code does ----------------------------------------------


def _readme_block(after: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(after)
    fence = text.index("```", start)
    body_start = text.index("\n", fence) + 1
    return text[body_start:text.index("```", body_start)]


README_YAML = """apiVersion: apps/v1
kind: Deployment
metadata: {name: llama-70b}
spec:
  selector: {matchLabels: {app: llama-70b}}
  template:
    metadata: {labels: {app: llama-70b}}
    spec:
      containers:
      - name: vllm
        image: vllm/vllm-openai:v0.33.0
"""


@pytest.mark.parametrize("before,after,name", [
    ("Before (`run-vllm.sh`)", "After (`run-vllm.fixed.sh`", "run-vllm.sh"),
    ("Before (`vllm.yaml`", "After (`vllm.fixed.yaml`", "vllm.yaml"),
])
def test_readme_before_after(before, after, name):
    source = _readme_block(before)
    if name.endswith(".yaml"):
        source = README_YAML + source
    dep = read_deployment(source.encode(), name)
    report = check_deployment(dep, gpus=Cluster.parse("2xH100"))
    assert report.exit_code == 1
    fixed, _, _ = fix_text(dep, report.findings)
    assert _readme_block(after) in fixed
    again = check_deployment(read_deployment(fixed.encode(), name), gpus=Cluster.parse("2xH100"))
    assert again.exit_code == 0


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _replace(node, path, value):
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


def test_hostile_yaml_structures_in_process():
    """The corpus's compose files and manifests with parts replaced by any shape of value (hypothesis, bounded):
    a report (and a fix) or a UsageError naming the file, never another exception."""
    import copy

    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    bases = [list(yaml.safe_load_all(p.read_text())) for p in sorted(CORPUS.glob("*.yaml"))]
    scalars = st.one_of(
        st.sampled_from(["vllm/vllm-openai:v0.33.0", "vllm/vllm-openai", "vllm serve llama-3.1-8b --tp 2", "vllm",
                         "serve", "llama-3.1-8b", "--tensor-parallel-size", "2", "all", "host", "16g", "Deployment",
                         "LeaderWorkerSet", "InferenceService", "Pod", "sh", "-c", "Memory", "/dev/shm", "hf://x/y",
                         "HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz", "--enforce-eager", "nvidia", "$(X)", "{{.Name}}",
                         "", "-", "--max-model-len=abc", "0", "-3", "1e99"]),
        st.integers(-5, 10**6), st.booleans(), st.none(), st.floats(allow_nan=True, allow_infinity=True))
    keys = st.sampled_from(["image", "command", "args", "env", "name", "value", "limits", "nvidia.com/gpu", "size",
                            "containers", "spec", "services", "deploy", "devices", "count", "mountPath", "emptyDir"])
    trees = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(keys, c, max_size=4)),
                         max_leaves=12)

    @settings(max_examples=400, deadline=5000, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(bases) - 1), st.lists(st.tuples(st.integers(0, 10**6), trees), min_size=1, max_size=3))
    def run(which, changes):
        docs = copy.deepcopy(bases[which])
        for pick, value in changes:
            paths = [p for p in _paths(docs) if p]
            path = paths[pick % len(paths)]
            _replace(docs, path, value)
        data = yaml.safe_dump_all(docs).encode()
        try:
            dep = read_deployment(data, "f.yaml")
        except UsageError as err:
            assert "f.yaml" in str(err)
            return
        report = check_deployment(dep, gpus=Cluster.parse("2xH100"), load=load_real)
        fix_text(dep, report.findings)

    run()


def test_yaml_warnings_stay_off_stderr(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("x: &a 1\ny: &a 2\nservices:\n  v: {image: vllm/vllm-openai:v0.33.0, command: [--model, "
                    "llama-3.1-8b, --max-model-len, '4096']}\n")
    r = run_cli(str(path), "--gpus", "1xH100")
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_cli_stdin_fix_is_a_filter_and_url_options_need_url():
    r = run_cli("-", "--gpus", "2xH100", "--fix",
                stdin="docker run --gpus all -v ~/.cache/huggingface:/root/.cache/huggingface vllm/vllm-openai:v0.33.0 "
                      "--model llama-3.1-8b --tensor-parallel-size 2 --max-model-len 4096\n")
    assert r.returncode == 1 and "error[shared-memory]" in r.stderr
    assert r.stdout.startswith("docker run --gpus all") and "--ipc=host vllm/vllm-openai:v0.33.0" in r.stdout
    bad = run_cli(str(CORPUS / "docs-quickstart.sh"), "--tp", "2")
    assert bad.returncode == 2 and "--url" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    ((), "give the deployment to check: a shell script"),  # was "give FILE ... or --url, not both"
    (("--log", "server.log"), "--log, --tp, --pp and --dtype describe a running server: they go with --url"),
    (("--dtype", "HALF"), "--log, --tp, --pp and --dtype describe a running server: they go with --url"),
    (("run.sh", "--url", "http://127.0.0.1:8000"), "give FILE or --url, not both"),
])
def test_cli_names_what_is_missing_or_too_much(args, needle):
    from tests.inprocess import tpfit

    r = tpfit("check", *args)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_probe_period_below_one_second_is_named():
    # found by the hostile-structure property test: periodSeconds 0 divided the probe budget by zero
    text = (CORPUS / "docs-k8s-deployment.yaml").read_text()
    bad = text.replace("periodSeconds: ", "periodSeconds: 0 #", 1)
    with pytest.raises(UsageError, match=r"Probe\.periodSeconds 0: must be at least 1"):
        read_deployment(bad.encode(), "d.yaml")


@pytest.mark.parametrize("image, official", [
    ("vllm/vllm-openai:v0.33.0", True),
    ("docker.io/vllm/vllm-openai:v0.33.0-cu130", True),
    ("vllm/vllm-openai@sha256:" + "a" * 64, True),  # a digest: rsplit(":") kept "...@sha256" and said unofficial
    ("vllm/vllm-openai", True),
    ("myorg/vllm-openai:v0.33.0", False),
    ("vllm/vllm-openai-rocm:v0.33.0", False),
    ("registry.local:5000/vllm/vllm-openai", False),
])
def test_official_image_is_one_test(image, official):
    """check_image and check_model_mount ask vllm_facts.is_official_image, whatever the reference's tag or digest."""
    from tpfit.vllm_facts import is_official_image

    assert is_official_image(image) is official


def test_model_mount_of_an_official_image_pinned_by_digest_is_an_error():
    """vLLM's own image holds no model, pinned by tag or by digest: a model folder nothing mounts is an error."""
    text = ("docker run --gpus all --ipc=host vllm/vllm-openai@sha256:" + "b" * 64
            + " --model /models/llama --max-model-len 4096\n")
    report = check_deployment(read_deployment(text.encode(), "run.sh"), gpus=Cluster.parse("1xH100"))
    mount = [f for f in report.findings if f.kind is Kind.MODEL_MOUNT]
    assert [f.severity for f in mount] == [Severity.ERROR], report.findings


def test_startup_probe_fix_is_the_probe_deploy_writes(tmp_path):
    """check --fix writes the startupProbe `tpfit deploy --format k8s` writes (deploy/k8s.startup_probe, one home):
    same endpoint, port, period and failure threshold. Here the probe is made too short and the port 9000."""
    import yaml
    from typer.testing import CliRunner

    from tpfit.cli.app import app

    result = CliRunner().invoke(app, ["deploy", "llama-3.1-70b", "--gpus", "2xH100", "--context", "8192",
                                      "--format", "k8s", "--port", "9000", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "k8s.yaml").read_text()
    written = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Deployment")
    probe = written["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] > 3 and probe["httpGet"] == {"path": "/health", "port": 9000}
    short = text.replace(f"failureThreshold: {probe['failureThreshold']}", "failureThreshold: 3", 1)
    dep = read_deployment(short.encode(), "k8s.yaml")
    report = check_deployment(dep, gpus=Cluster.parse("2xH100"))
    assert Kind.STARTUP_PROBE in kinds(report, Severity.ERROR), report.findings
    fixed, _, _ = fix_text(dep, report.findings)
    again = next(d for d in yaml.safe_load_all(fixed) if d and d.get("kind") == "Deployment")
    assert again["spec"]["template"]["spec"]["containers"][0]["startupProbe"] == probe


@pytest.mark.parametrize("flags, probe, said", [
    ("", 9000, "the health check asks port 9000; the server listens on 8000 (vLLM's default)"),
    (', "--port", "9000"', 8000, "the health check asks port 8000; the server listens on 9000 (--port)"),
])
def test_port_findings_say_where_the_servers_port_comes_from(flags, probe, said):
    """Both port findings (probe-port, published port) name the server's port and whether --port or vLLM's default
    (vllm_facts.DEFAULT_PORT) set it."""
    text = f"""services:
  vllm:
    image: vllm/vllm-openai:v0.33.0
    command: ["--model", "Qwen/Qwen2.5-7B-Instruct"{flags}]
    ipc: host
    volumes: ["~/.cache/huggingface:/root/.cache/huggingface"]
    deploy: {{resources: {{reservations: {{devices: [{{driver: nvidia, count: 1, capabilities: [gpu]}}]}}}}}}
    healthcheck: {{test: ["CMD", "curl", "-f", "http://localhost:{probe}/health"]}}
"""
    report = check_deployment(read_deployment(text.encode(), "compose.yaml"), gpus=Cluster.parse("1xH100"),
                              load=load_real)
    assert [f.message for f in report.findings if f.kind is Kind.PROBE_PORT] == [said], report.findings


def test_hf_cache_fix_mounts_the_folder_hf_home_names(tmp_path):
    """check --fix mounts the cache as deploy's docker-run.sh does (deploy/shell.CACHE_VOLUME_SHELL): the folder
    HF_HOME names when the caller sets it, ~/.cache/huggingface else. It wrote `-v ~/.cache/huggingface:...` whatever
    HF_HOME said, the bug deploy's own script had, so the fixed script downloaded the model into another folder."""
    text = "docker run --gpus all --ipc=host vllm/vllm-openai:v0.33.0 --model Qwen/Qwen2.5-7B-Instruct\n"
    dep = read_deployment(text.encode(), "run.sh")
    report = check_deployment(dep, gpus=Cluster.parse("1xH100"), load=load_real)
    assert Kind.HF_CACHE in kinds(report, Severity.WARNING), report.findings
    fixed, _, _ = fix_text(dep, report.findings)
    again = check_deployment(read_deployment(fixed.encode(), "run.sh"), gpus=Cluster.parse("1xH100"), load=load_real)
    assert Kind.HF_CACHE not in kinds(again, Severity.WARNING), again.findings
    words = fixed.replace("docker run", "printf '%s\\n'", 1)
    for env, mounted in (({"HF_HOME": str(tmp_path)}, str(tmp_path)),
                         ({"HOME": "/home/u"}, "/home/u/.cache/huggingface")):
        said = subprocess.run(["bash", "-c", words], env=env, capture_output=True, text=True, timeout=10)
        assert f"{mounted}:/root/.cache/huggingface" in said.stdout.splitlines(), (said.stdout, said.stderr)


def test_alert_rules_deploy_writes_are_not_called_a_helm_template(tmp_path):
    """`tpfit check alerts.yaml` (deploy --monitoring writes it beside compose.yaml) said 'a Helm (Go) template, not
    YAML until it is rendered': its annotations hold Prometheus' `{{ $labels.instance }}` inside strings. It is valid
    YAML and no deployment, as prometheus.yml is; a chart's action where a value goes is still named as one."""
    from typer.testing import CliRunner

    from tpfit.cli.app import app

    result = CliRunner().invoke(app, ["deploy", "llama-3.1-70b", "--gpus", "2xH100", "--context", "8192",
                                      "--format", "compose", "--monitoring", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rules = (tmp_path / "alerts.yaml").read_text()
    assert "{{ $labels.instance }}" in rules
    for name in ("alerts.yaml", "prometheus.yml"):
        with pytest.raises(UsageError) as err:
            read_deployment((tmp_path / name).read_bytes(), name)
        assert "neither a compose file" in str(err.value) and "Helm" not in str(err.value)
    for args in ("[--model, {{ .Values.model }}]", "\n    - --model\n    - {{ .Values.model }}"):  # parsed as mappings
        chart = f"kind: Pod\nspec:\n  containers:\n  - image: vllm/vllm-openai:v0.33.0\n    args: {args}\n"
        with pytest.raises(UsageError, match=r"a Helm \(Go\) template, .*args\[1\] is not a string"):
            read_deployment(chart.encode(), "pod.yaml")
