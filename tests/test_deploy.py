"""Deployment files, validated by the ecosystem's own tools: bash/shlex, the compose-spec JSON schema
(check-jsonschema's vendored copy), the Kubernetes OpenAPI schemas (kubernetes-validate)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tpfit.core.engine import EngineArgs
from tpfit import Workload, make_plan
from tpfit.deploy.common import Deployment, deployment_from_plan, k8s_name
from tpfit.deploy.render import FORMATS, render
from tpfit.hardware.cluster import Cluster
from tpfit.live.launch import free_port
from tpfit.model.catalog import find_in_catalog
from tpfit.report.json import plan_to_dict
from tpfit.vllm_facts import cuda_for_driver, image_for

K8S_VERSION = "1.30.0"


def made_plan(model="llama-3.1-70b", gpus="2xh100", context=8192, concurrency=3):
    return make_plan(find_in_catalog(model), Cluster.parse(gpus), Workload(context=context, concurrency=concurrency),
                     EngineArgs())


def as_doc(plan) -> dict:
    """`tpfit plan --json`'s object for PLAN, through JSON text as a reader gets it."""
    return json.loads(json.dumps(plan_to_dict(plan)))


def plan_doc(model="llama-3.1-70b", gpus="2xh100", context=8192, concurrency=3) -> dict:
    return as_doc(made_plan(model, gpus, context, concurrency))


def planned_flags(doc: dict) -> list[str]:
    best = doc["candidates"][doc["recommended"]]
    out = []
    for f in best["flags"]:
        if not f["optional"]:
            out += [f["flag"]] + ([f["value"]] if f["value"] is not None else [])
    return out


def bash_argv(script: str, program: str) -> list[str]:
    """Let bash itself parse the generated command: replace the program with a printer of its argv."""
    shim = f'{program}() {{ printf "%s\\0" "$@"; }}\n'
    result = subprocess.run(["bash", "-c", shim + script], capture_output=True, env={"HOME": "/home/u", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().split("\0")[:-1]


def extract_vllm_flags(argv: list[str]) -> list[str]:
    """The engine flags of a vLLM argv: everything after the model (and --served-model-name)."""
    if argv[:2] == ["--model", argv[1]]:
        argv = argv[2:]
    elif argv and not argv[0].startswith("--"):
        argv = argv[1:]
    if argv[:1] == ["--served-model-name"]:
        argv = argv[2:]
    return argv


def validate_compose(text: str, tmp_path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def validate_k8s(text: str) -> list[dict]:
    objs = [o for o in yaml.safe_load_all(text) if o]
    for obj in objs:
        if obj["kind"] == "LeaderWorkerSet":
            # no bundled CRD schema: validate its pod templates as Kubernetes PodTemplates
            tmpl = obj["spec"]["leaderWorkerTemplate"]
            for key in ("leaderTemplate", "workerTemplate"):
                kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                              "template": tmpl[key]}, K8S_VERSION, strict=True)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return objs


def test_every_format_carries_the_plans_flags(tmp_path):
    plan = made_plan()
    flags = planned_flags(as_doc(plan))
    d = deployment_from_plan(plan, command="tpfit deploy test")
    serve = render(d, "serve")["serve.sh"]
    assert extract_vllm_flags(bash_argv(serve, "vllm")[1:]) == flags  # after "serve"
    docker = bash_argv(render(d, "docker")["docker-run.sh"], "docker")
    assert "--ipc=host" in docker and docker[docker.index("--gpus") + 1] == "all"
    image_at = docker.index(d.image)
    assert extract_vllm_flags(docker[image_at + 1:]) == flags
    assert docker[docker.index("-v") + 1] == "/home/u/.cache/huggingface:/root/.cache/huggingface"
    compose = render(d, "compose")["compose.yaml"]
    validate_compose(compose, tmp_path)
    service = next(iter(yaml.safe_load(compose)["services"].values()))
    assert extract_vllm_flags(service["command"]) == flags
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2 and service["ipc"] == "host"
    objs = validate_k8s(render(d, "k8s")["k8s.yaml"])
    dep = next(o for o in objs if o["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert extract_vllm_flags(container["args"]) == flags
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    shm = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    for text in (serve, compose):
        header = [line for line in text.splitlines() if line.startswith("# ")]
        assert any("KV tokens, max concurrency" in line for line in header)
        assert any(line.startswith("# Generated by tpfit") for line in header)


def test_multi_node_ray_lws_and_nnodes(tmp_path):
    plan = made_plan("llama-3.1-405b", "2x8xh100")
    doc = as_doc(plan)
    d = deployment_from_plan(plan, command="tpfit deploy")
    assert (d.tensor_parallel_size, d.pipeline_parallel_size) == (8, 2)
    flags = planned_flags(doc) + ["--distributed-executor-backend", "ray"]
    files = render(d, "ray")
    script = files["ray-cluster.sh"]
    assert subprocess.run(["bash", "-n"], input=script.encode()).returncode == 0
    argv = shlex.split(next(line for line in script.splitlines() if line.startswith("exec vllm serve")))
    assert argv[:3] == ["exec", "vllm", "serve"] and argv[-1] == "$@" and extract_vllm_flags(argv[3:-1]) == flags
    in_container = shlex.split(next(line for line in script.splitlines() if "exec docker exec" in line))
    assert in_container[:5] == ["exec", "docker", "exec", "-i", "$CONTAINER"] and in_container[5:] == argv[1:]
    for name in ("VLLM_HOST_IP", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NODES=2"):
        assert name in script
    native = files["nnodes.sh"]
    assert subprocess.run(["bash", "-n"], input=native.encode()).returncode == 0
    argv = shlex.split(next(line for line in native.splitlines() if line.startswith("exec vllm serve")))
    assert argv[-4:] == ["--nnodes", "2", "${ROLE_ARGS[@]}", "$@"] and extract_vllm_flags(argv[3:-4]) == flags[:-2]
    assert "ROLE_ARGS+=(--headless)" in native
    objs = validate_k8s(render(d, "lws")["lws.yaml"])
    lws = objs[0]["spec"]["leaderWorkerTemplate"]
    assert lws["size"] == 2
    leader = lws["leaderTemplate"]["spec"]["containers"][0]
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == 8
    serve = leader["command"][2].split("; ", 1)[1]
    assert extract_vllm_flags(shlex.split(serve)[2:]) == flags


def _deploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpfit", "deploy", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _lws(*args: str) -> tuple[int, int, list[str]]:
    """(LWS size, GPUs per pod, the leader's vllm serve argv) of `tpfit deploy ARGS --format lws`."""
    result = _deploy(*args, "--format", "lws")
    assert result.returncode == 0, result.stderr
    tmpl = validate_k8s(result.stdout)[0]["spec"]["leaderWorkerTemplate"]
    pods = [tmpl[k]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            for k in ("leaderTemplate", "workerTemplate")]
    assert pods[0] == pods[1]
    serve = tmpl["leaderTemplate"]["spec"]["containers"][0]["command"][2].split("; ", 1)[1]
    return tmpl["size"], pods[0], shlex.split(serve)


def _ray_serve(*args: str) -> tuple[str, list[str], list[str]]:
    """(ray-cluster.sh's NODES=, its vllm serve argv, nnodes.sh's vllm serve argv)."""
    result = _deploy(*args, "--format", "ray")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    serves = [shlex.split(line)[1:] for line in lines if line.startswith("exec vllm serve")]
    nodes = next(line for line in lines if line.startswith("NODES=")).split()[0]
    return nodes, serves[0], serves[1]


def test_data_parallel_across_nodes_places_every_engine():
    """Llama-3.1-8B on 2x8 H100 for 512 requests: TP1 DP16. The LWS had one pod of 1 GPU (TP) per PP stage
    (size 1) for 16 engines, and the Ray head ran all 16 DP ranks on its own 8 GPUs: vLLM could start neither.
    Now two pods of 8 GPUs, and Ray places the engines (8 on each node, vLLM's strict packing)."""
    args = ["llama-3.1-8b", "--gpus", "2x8xH100", "--context", "4096", "--concurrency", "512"]
    size, gpus, serve = _lws(*args)
    assert (size, gpus) == (2, 8) and serve[serve.index("--data-parallel-size") + 1] == "16"
    assert serve[-4:] == ["--data-parallel-backend", "ray", "--data-parallel-size-local", "8"]
    nodes, ray_serve, nnodes_serve = _ray_serve(*args)
    assert nodes == "NODES=2" and ray_serve[:-1] == serve
    assert "--data-parallel-backend" not in nnodes_serve and nnodes_serve[-4:-2] == ["--nnodes", "2"]


def test_a_layout_that_fits_one_node_of_a_cluster_gets_all_its_gpus():
    """TP4 PP2 on 2x8 H100 fits one node: compose and k8s gave the container 4 GPUs (TP) for a world of 8, and
    the LWS two pods of 4 without the Ray executor; vLLM refuses both ("World size (8) is larger than ...")."""
    args = ["llama-3.1-70b", "--gpus", "2x8xH100", "--tp", "4", "--pp", "2", "--context", "8192"]
    compose = _deploy(*args, "--format", "compose")
    assert compose.returncode == 0, compose.stderr
    service = next(iter(yaml.safe_load(compose.stdout)["services"].values()))
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 8
    size, gpus, serve = _lws(*args)
    assert (size, gpus) == (1, 8) and "--distributed-executor-backend" not in serve
    assert _ray_serve(*args)[0] == "NODES=1"


def test_replicas_of_an_engine_that_spans_nodes_are_refused_for_lws_and_ray():
    for fmt in ("lws", "ray"):
        result = _deploy("llama-3.1-405b", "--gpus", "4x8xH100", "--tp", "8", "--pp", "2", "--dp", "2", "--context",
                         "8192", "--format", fmt)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: --format {fmt}: the layout TP8 PP2 DP2") and not result.stdout
        assert "each of its 2 engines spans nodes" in result.stderr


def test_image_tag_follows_version_and_driver():
    assert image_for("0.26.0") == "vllm/vllm-openai:v0.26.0"
    assert image_for("0.33.0", "13.0") == "vllm/vllm-openai:v0.33.0-cu130"
    # the fixture host's driver (shared/fixtures/gpu-hosts/h100x2-nvlink: 580.159.04) runs CUDA 13.0 images
    assert cuda_for_driver("580.159.04") == "13.0" and cuda_for_driver("575.57.08") == "12.9"


def test_gpu_selection_and_shm_size(tmp_path):
    d = deployment_from_plan(made_plan(), command="x", gpu_ids=(2, 3), shm_size="16g")
    docker = bash_argv(render(d, "docker")["docker-run.sh"], "docker")
    assert docker[docker.index("--gpus") + 1] == '"device=2,3"' and "--shm-size" in docker and "--ipc=host" not in docker
    compose = render(d, "compose")["compose.yaml"]
    validate_compose(compose, tmp_path)
    dev = next(iter(yaml.safe_load(compose)["services"].values()))["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["device_ids"] == ["2", "3"] and "count" not in dev


def test_gpu_ids_pin_the_serve_command_and_are_refused_where_nothing_can_pin_them():
    """--gpu-ids was silently dropped by serve (no CUDA_VISIBLE_DEVICES: vLLM took GPUs 0 and 1), k8s, lws and ray."""
    d = deployment_from_plan(made_plan(), command="x", gpu_ids=(2, 3))
    shim = 'vllm() { printf "%s\\0" "$CUDA_VISIBLE_DEVICES" "$@"; }\n'
    run = subprocess.run(["bash", "-c", shim + render(d, "serve")["serve.sh"]], capture_output=True)
    assert run.returncode == 0 and run.stdout.decode().split("\0")[:2] == ["2,3", "serve"]
    for fmt in ("k8s", "lws", "ray"):
        result = _deploy("llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--gpu-ids", "2,3", "--format", fmt)
        assert result.returncode == 2 and not result.stdout, result.stderr
        assert result.stderr.startswith(f"error: --gpu-ids 2,3: --format {fmt} cannot pin host GPUs"), result.stderr


@pytest.mark.parametrize("hf_home", [None, "/data/hf cache"])
def test_docker_and_compose_mount_the_same_hugging_face_cache(hf_home):
    """docker-run.sh mounts HF_HOME where the caller sets it, as compose.yaml and ray-cluster.sh do (it mounted
    ~/.cache/huggingface whatever HF_HOME said: a second download into the home folder); verify --launch --docker
    passes the same folder without a shell."""
    from tpfit.deploy.shell import docker_argv

    d = deployment_from_plan(made_plan(), command="tpfit deploy test")
    script = render(d, "docker")["docker-run.sh"]
    env = {"HOME": "/home/u", "PATH": "/usr/bin:/bin", **({"HF_HOME": hf_home} if hf_home else {})}
    shim = 'docker() { printf "%s\\0" "$@"; }\n'
    argv = subprocess.run(["bash", "-c", shim + script], capture_output=True, env=env, check=True,
                          timeout=30).stdout.decode().split("\0")
    cache = hf_home or "/home/u/.cache/huggingface"
    assert argv[argv.index("-v") + 1] == f"{cache}:/root/.cache/huggingface"
    compose = yaml.safe_load(render(d, "compose")["compose.yaml"])
    volume = next(iter(compose["services"].values()))["volumes"][0]
    assert volume.startswith("${HF_HOME:-") and volume.endswith(":/root/.cache/huggingface")
    assert '-v "${HF_HOME:-$HOME/.cache/huggingface}":' in render(d, "ray")["ray-cluster.sh"]
    assert ["-v", f"{cache}:/root/.cache/huggingface"] in docker_argv(d, cache_host=cache)


def test_the_first_download_is_the_whole_checkpoint_whatever_the_replicas():
    """An MoE model's replicas split its experts (TP x DP): DeepSeek-V3 at TP=4 DP=2 holds half its weights per
    replica, and the download the startup probe waits for was that half (302 steps of 10 s for 627 GiB at 200 MB/s,
    which take 56 minutes alone)."""
    import yaml as _yaml

    from tpfit.core.layout import Layout
    from tpfit.deploy.startup import DOWNLOAD_BYTES_PER_S, download_bytes

    plan = made_plan("deepseek-v3", "8xh200", 8192, 1)
    assert (plan.best.layout.tp, plan.best.layout.dp) == (4, 2)
    whole = download_bytes(plan)
    one_engine = make_plan(find_in_catalog("deepseek-v3"), Cluster.parse("8xh200"), Workload(context=8192),
                           EngineArgs(), layouts=(Layout(tp=8),)).best
    # TP=8 holds the whole model once (its replicated norms, gates and embeddings 8 times: 1.2 % more)
    assert 0 <= sum(one_engine.weight_bytes_per_gpu) - whole < 0.02 * whole
    assert sum(plan.best.weight_bytes_per_gpu) // plan.best.layout.dp < 0.6 * whole
    pod = _yaml.safe_load_all(render(deployment_from_plan(plan, command="t"), "k8s")["k8s.yaml"])
    probe = next(o for o in pod if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] > whole / DOWNLOAD_BYTES_PER_S


@pytest.mark.parametrize("model", ["deepseek-v3", "llama-3.1-405b", "llama-3.1-8b"])
def test_the_cache_volume_holds_the_first_download(model, tmp_path):
    """The Hugging Face cache PersistentVolumeClaim was 200Gi for every model: DeepSeek-V3 (627 GiB) and Llama-405B
    (756 GiB) stopped downloading with 'No space left on device'. A local model folder downloads nothing."""
    from tpfit.deploy.startup import download_bytes
    from tpfit.units import parse_size

    plan = made_plan(model, "8xh200", 8192, 1)
    objs = list(yaml.safe_load_all(render(deployment_from_plan(plan, command="t"), "k8s")["k8s.yaml"]))
    validate_k8s(yaml.safe_dump_all(objs))
    claim = next(o for o in objs if o["kind"] == "PersistentVolumeClaim")
    size = parse_size(claim["spec"]["resources"]["requests"]["storage"].replace("Gi", "G"))  # Gi: GiB
    assert size >= max(200 << 30, download_bytes(plan)) and size < 1.5 * max(200 << 30, download_bytes(plan))
    local = deployment_from_plan(plan, command="t", model_path=str(tmp_path))
    claim = next(o for o in yaml.safe_load_all(render(local, "k8s")["k8s.yaml"]) if o["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"


def test_the_header_of_replicas_says_its_figures_are_each_replicas():
    """plan says '111.37 sequences of 4096 tokens per replica (456,176 KV tokens each)'; deploy's header gave the same
    figures as the server's, half of what two replicas hold."""
    plan = made_plan("llama-3.1-8b", "2xh100", 4096, 64)
    assert plan.best.layout.dp == 2
    header = deployment_from_plan(plan, command="t").header[2]
    assert header.endswith("at 4096 tokens per replica, 2 replicas (starts)"), header
    assert "replica" not in deployment_from_plan(made_plan(), command="t").header[2]


def test_shm_size_reaches_kubernetes_and_ray():
    """--shm-size went to docker and compose only: Kubernetes kept 16Gi and the Ray script 10.24g."""
    d = deployment_from_plan(made_plan(), command="x", shm_size="32g")
    for fmt in ("k8s", "lws"):
        objs = validate_k8s(next(iter(render(d, fmt).values())))
        pods = [o["spec"]["template"] if o["kind"] == "Deployment" else
                o["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
                for o in objs if o["kind"] in ("Deployment", "LeaderWorkerSet")]
        dshm = next(v for v in pods[0]["spec"]["volumes"] if v["name"] == "dshm")
        assert dshm["emptyDir"]["sizeLimit"] == str(32 * 2**30), fmt
    assert " --shm-size 32g --gpus all " in render(d, "ray")["ray-cluster.sh"]


hostile = st.text(alphabet=st.sampled_from(list("ab /$()`'\"\n\\;&|*?~#{}-_.:\r\x85\u2028")), min_size=1, max_size=24)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=hostile, served=hostile)
@example(model=":", served="._")  # found by this test: a YAML 1.1 reader (ruamel) took a plain ._ for a float
@example(model="a\x85b", served="a\u2028b")  # PyYAML wrote these raw in single quotes: read back as spaces
def test_hostile_names_are_quoted_everywhere(model, served, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("c")
    d = deployment_from_plan(made_plan(), command=f"tpfit deploy {model}", model_path=model, served_model_name=served)
    want = [model, "--served-model-name", served]
    assert bash_argv(render(d, "serve")["serve.sh"], "vllm")[1:4] == want
    docker = bash_argv(render(d, "docker")["docker-run.sh"], "docker")
    assert docker[docker.index(d.image) + 1: docker.index(d.image) + 5] == ["--model", *want]
    compose = render(d, "compose")["compose.yaml"]
    validate_compose(compose, tmp)
    cmd = next(iter(yaml.safe_load(compose)["services"].values()))["command"]
    # compose turns $$ back into $ when it interpolates
    assert [a.replace("$$", "$") for a in cmd[:4]] == ["--model", *want]
    objs = validate_k8s(render(d, "k8s")["k8s.yaml"])
    args = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a.replace("$$(", "$(") for a in args[:4]] == ["--model", *want]


@pytest.mark.parametrize("char", ["\r", "\x85", "\u2028", "\u2029", "\x0b", "\x1b"])
def test_header_comment_holds_any_character_of_the_command(char):
    """The header quotes the command line; a YAML line break other than LF (CR, NEL, LS, PS) in a served name
    ended the comment and turned the rest into keys (`services` gained a key `b`), and other control characters
    made YAML readers refuse the whole file."""
    name = f"a{char}b: c"
    d = deployment_from_plan(made_plan(), command=shlex.join(["tpfit", "deploy", "--served-model-name", name]),
                             served_model_name=name)
    for fmt, keys in (("compose", ["services", "volumes"]), ("k8s", ["apiVersion", "kind", "metadata", "spec"])):
        text = next(iter(render(d, fmt).values()))
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        assert list(docs[0]) == keys, fmt
        assert name in docs[0]["services"][k8s_name(d.model)]["command"] if fmt == "compose" else True
    assert bash_argv(render(d, "serve")["serve.sh"], "vllm")[2:4] == ["--served-model-name", name]


@pytest.mark.parametrize("path", ["/srv/models/llama 70b", "/srv/m,odel's $HOME"])
def test_a_local_model_folder_is_mounted_in_every_container(path, tmp_path):
    """The container formats passed a host folder as --model without mounting it: vLLM in the container found no
    such folder. docker and the Ray script bind it read-only at the same path (--mount, whose CSV takes commas),
    compose binds it, Kubernetes mounts the node's folder at that path."""
    import csv

    d = deployment_from_plan(made_plan(), command="tpfit deploy", model_path=path)
    docker = bash_argv(render(d, "docker")["docker-run.sh"], "docker")
    fields = next(csv.reader([docker[docker.index("--mount") + 1]]))
    assert fields == ["type=bind", f"source={path}", f"target={path}", "readonly"]
    assert docker[docker.index("--model") + 1] == path
    compose = render(d, "compose")["compose.yaml"]
    validate_compose(compose, tmp_path)
    service = next(iter(yaml.safe_load(compose)["services"].values()))
    bind = next(v for v in service["volumes"] if isinstance(v, dict))
    assert (bind["source"].replace("$$", "$"), bind["target"], bind["read_only"]) == (path, path, True)
    pod = next(o for o in validate_k8s(render(d, "k8s")["k8s.yaml"]) if o["kind"] == "Deployment")["spec"]["template"]
    assert {"name": "model", "hostPath": {"path": path, "type": "Directory"}} in pod["spec"]["volumes"]
    assert {"name": "model", "mountPath": path, "readOnly": True} in pod["spec"]["containers"][0]["volumeMounts"]
    ray = render(d, "ray")["ray-cluster.sh"]
    assert subprocess.run(["bash", "-n"], input=ray.encode()).returncode == 0
    mount = next(shlex.split(line.rstrip(" \\"))[1] for line in ray.splitlines() if line.strip().startswith("--mount "))
    assert next(csv.reader([mount]))[1] == f"source={path}"


def test_a_relative_model_folder_is_deployed_by_its_absolute_path():
    """A container's --mount needs an absolute source, and vLLM in the container has another working folder."""
    result = _deploy("tests/data/tiny-llama-config", "--gpus", "1xH100", "--format", "docker")
    assert result.returncode == 0, result.stderr
    argv = bash_argv(result.stdout, "docker")
    assert argv[argv.index("--model") + 1] == str(ROOT / "tests" / "data" / "tiny-llama-config")


def test_no_token_value_in_any_file(monkeypatch, tmp_path):
    secret = "hf_SECRETvalue1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    out = tmp_path / "out"
    for fmt in FORMATS:
        model, gpus = ("llama-3.1-405b", "2x8xh100") if fmt in ("lws", "ray") else ("llama-3.1-70b", "2xh100")
        result = subprocess.run([sys.executable, "-m", "tpfit", "deploy", model, "--gpus", gpus,
                                 "--context", "8192", "--format", fmt, "--out", str(out)],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
    texts = [p.read_text() for p in out.iterdir()]
    assert len(texts) >= len(FORMATS) and not any(secret in t for t in texts)
    assert any("HF_TOKEN" in t for t in texts)


def test_deploy_from_plan_json_equals_in_process(tmp_path):
    doc = plan_doc()
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    a = subprocess.run([sys.executable, "-m", "tpfit", "deploy", "--plan", str(tmp_path / "plan.json"), "--format",
                        "compose"], capture_output=True, text=True, cwd=ROOT)
    b = subprocess.run([sys.executable, "-m", "tpfit", "deploy", "llama-3.1-70b", "--gpus", "2xh100", "--context",
                        "8192", "--concurrency", "3", "--format", "compose"], capture_output=True, text=True, cwd=ROOT)
    assert a.returncode == b.returncode == 0
    body = lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("#"))  # noqa: E731
    assert body(a.stdout) == body(b.stdout)


def test_deploy_takes_plans_workload_and_objective_options():
    """2 x H100, Llama-3.1-8B, 128 requests of 4096 tokens: two replicas by throughput (within 5 % of TP=2,
    simpler); with a TPOT target only TP=2 meets, TP=2. deploy, given the same options, deploys the same layout."""
    base = ["llama-3.1-8b", "--gpus", "2xH100", "--context", "4096", "--concurrency", "128", "--input-tokens", "3840",
            "--output-tokens", "256"]

    def run(*args):
        result = subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def layout(doc):
        best = doc["candidates"][doc["recommended"]]["layout"]
        return best["tp"], best["pp"], best["dp"]

    default = json.loads(run("plan", *base, "--json"))
    speeds = {(c["layout"]["tp"], c["layout"]["dp"]): c["speed"] for c in default["candidates"] if c.get("speed")}
    assert layout(default) == (1, 1, 2)
    tp2, dp2 = speeds[(2, 1)]["tpot_s"], speeds[(1, 2)]["tpot_s"]
    assert tp2 < dp2
    target = ["--objective", "latency", "--tpot", str((tp2 + dp2) / 2)]
    targeted = json.loads(run("plan", *base, *target, "--json"))
    assert layout(targeted) == (2, 1, 1)
    for doc, extra in ((default, []), (targeted, target)):
        argv = extract_vllm_flags(bash_argv(run("deploy", *base, *extra, "--format", "serve"), "vllm")[1:])
        assert argv[:len(planned_flags(doc))] == planned_flags(doc)
        tp, _, dp = layout(doc)
        assert argv[argv.index("--tensor-parallel-size") + 1] == str(tp)
        assert ("--data-parallel-size" in argv) == (dp > 1)


@pytest.mark.parametrize("args,needle", [
    (["deploy", "llama-3.1-70b", "--gpus", "2xh100", "--format", "helm"], "--format helm"),
    (["deploy", "--format", "serve"], "MODEL"),
    (["deploy", "llama-3.1-70b", "--gpus", "2xh100", "--cuda", "11.8"], "--cuda 11.8"),
    (["deploy", "llama-3.1-70b", "--gpus", "2xh100", "--gpu-ids", "a,b"], "--gpu-ids a,b"),
])
def test_deploy_bad_input(args, needle):
    result = subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_deploy_refuses_a_plan_that_fits_nowhere():
    result = subprocess.run([sys.executable, "-m", "tpfit", "deploy", "llama-3.1-405b", "--gpus", "2x3090",
                             "--context", "4096"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "nothing to deploy: vLLM would refuse every layout" in result.stderr
    assert "does not fit" in result.stderr and not result.stdout


def test_deployment_is_a_frozen_value():
    assert Deployment.__dataclass_params__.frozen


def test_readme_examples_match_the_code():
    import re

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<summary><code>tpfit deploy (.*?)</code></summary>\n\n```\w+\n(.*?)```", text, re.S)
    assert {b[0].rsplit("--format ", 1)[1] for b in blocks} == set(FORMATS)
    for args, body in blocks:
        result = subprocess.run([sys.executable, "-m", "tpfit", "deploy", *args.split()], capture_output=True,
                                text=True, cwd=ROOT)
        strip = lambda t: [l for l in t.splitlines() if not l.startswith("# Generated by tpfit")]  # noqa: E731
        assert strip(result.stdout) == strip(body), args


def test_verify_launch_docker_uses_the_deploy_command_and_reports_docker_errors(tmp_path):
    import shutil

    from tpfit.live.verify_run import docker_process as _docker_process

    proc = _docker_process(str(tmp_path), ["--max-model-len", "512", "--tensor-parallel-size", "2"])
    argv = proc.argv
    assert argv[:2] == ["docker", "run"] and "--ipc=host" in argv
    assert argv[argv.index("--mount") + 1] == f"type=bind,source={tmp_path},target={tmp_path},readonly"
    image_at = argv.index("vllm/vllm-openai:v0.33.0")
    assert argv[image_at + 1:] == ["--model", str(tmp_path), "--max-model-len", "512", "--tensor-parallel-size", "2",
                                   "--port", str(proc.port)]
    if shutil.which("docker") is None:
        return
    # this machine has the docker CLI but no daemon: a real failure, reported in one line, exit 1
    result = subprocess.run([sys.executable, "-m", "tpfit", "verify", str(tmp_path), "--launch", "--docker",
                             "--context", "512"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    if result.returncode == 0 or "docker run failed" not in result.stderr:
        return  # a daemon with the NVIDIA runtime is here after all
    assert result.returncode == 1 and "Traceback" not in result.stderr and "tpfit doctor" in result.stderr


def test_deploy_plan_file_errors(tmp_path):
    (tmp_path / "other.json").write_text('{"services": {}}')
    (tmp_path / "broken.json").write_text('{"candidates": [')
    for name, needle in (("other.json", "not a `tpfit plan --json` file"), ("broken.json", "is not valid JSON"),
                         ("missing.json", "cannot read plan")):
        r = subprocess.run([sys.executable, "-m", "tpfit", "deploy", "--plan", str(tmp_path / name)],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)


def _multi_node_scripts(tmp_path):
    d = deployment_from_plan(made_plan("llama-3.1-405b", "2x8xh100"), command="tpfit deploy")
    files = render(d, "ray")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path / "ray-cluster.sh", tmp_path / "nnodes.sh"


def _run(script, *args, **env):
    # no vllm, ray or docker on this PATH: every case below must stop before it would start one
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", **env})


@pytest.mark.parametrize("args, env, code, message", [
    ((), {"HEAD_IP": "127.0.0.1"}, 2, "first argument: --head, --worker or --stop"),
    (("--head",), {}, 1, "set HEAD_IP to the head node address"),
    (("--head",), {"HEAD_IP": "127.0.0.1", "RUNTIME": "podman"}, 2, "RUNTIME=podman: use docker or host"),
    # the head must run where HEAD_IP lives: 192.0.2.1 (TEST-NET-1) is nobody's address
    (("--head",), {"HEAD_IP": "192.0.2.1"}, 2, "VLLM_HOST_IP=192.0.2.1 is not an address of this node"),
])
def test_ray_script_refuses_what_would_never_join(tmp_path, args, env, code, message):
    ray, _ = _multi_node_scripts(tmp_path)
    result = _run(ray, *args, **env)
    assert result.returncode == code and message in result.stderr, result.stderr


@pytest.mark.parametrize("env, code, message", [
    ({"HEAD_IP": "127.0.0.1"}, 1, "set NODE_RANK: 0 on the head, 1..1 on the workers"),
    ({"HEAD_IP": "127.0.0.1", "NODE_RANK": "2"}, 2, "NODE_RANK=2: use 0..1"),
    ({"HEAD_IP": "127.0.0.1", "NODE_RANK": "x"}, 2, "NODE_RANK=x: use 0..1"),
    ({"NODE_RANK": "0"}, 1, "set HEAD_IP to the head node address"),
    ({"HEAD_IP": "192.0.2.1", "NODE_RANK": "0"}, 2, "NODE_RANK=0 runs on the node whose address is HEAD_IP"),
])
def test_nnodes_script_refuses_what_would_never_join(tmp_path, env, code, message):
    _, nnodes = _multi_node_scripts(tmp_path)
    result = _run(nnodes, **env)
    assert result.returncode == code and message in result.stderr, result.stderr


def test_nnodes_worker_gives_up_on_an_absent_head_with_a_message(tmp_path):
    _, nnodes = _multi_node_scripts(tmp_path)
    port = free_port()  # nothing listens there
    result = _run(nnodes, HEAD_IP="127.0.0.1", NODE_RANK="1", MASTER_PORT=str(port), JOIN_TIMEOUT_S="2")
    assert result.returncode == 1
    assert f"the head (NODE_RANK=0) at 127.0.0.1:{port} did not answer in 2s" in result.stderr
    assert "interface lo" in result.stdout  # the interface NCCL/Gloo will use, found from the route to HEAD_IP
    stop = _run(nnodes, "--stop", NODE_RANK="1", TMPDIR=str(tmp_path))
    assert stop.returncode == 1 and "no running node 1" in stop.stderr


def test_docker_calls_of_verify_launch_are_bounded(tmp_path, monkeypatch):
    """`docker inspect`, `docker logs` and `docker rm -f` had no time limit: a daemon that stops answering held
    `verify --launch --docker` past its --timeout (wait_ready polls `alive` before its deadline check). Each call is
    bounded now (launch.COMMAND_TIMEOUT_S); here a `docker` that never answers stands for the stuck daemon."""
    import time

    from tpfit.errors import ServerError
    from tpfit.live import launch

    (tmp_path / "docker").write_text("#!/bin/sh\nexec sleep 30\n")
    (tmp_path / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(launch, "COMMAND_TIMEOUT_S", 0.5)
    d = launch.DockerVllm(argv=["docker", "run", "vllm/vllm-openai:v0.33.0"], name="tpfit-test-stuck", port=9,
                          container="abc")
    start = time.monotonic()
    assert d.alive  # no answer: not known dead, so wait_ready keeps to its own deadline
    assert d.log_text() == "(docker logs tpfit-test-stuck gave no answer in 0.5 s)"
    with pytest.raises(ServerError, match="docker rm -f tpfit-test-stuck gave no answer in 0.5 s"):
        d.stop()
    with pytest.raises(ServerError, match="did not become ready in 1 s"):
        d.wait_ready(timeout_s=1.0)
    assert time.monotonic() - start < 10
