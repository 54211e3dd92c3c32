"""The web planner without a browser: its JSON is `tpfit plan --json`'s, its errors the CLI's, its limits hold.

The app runs in-process (Starlette's TestClient); the CLI runs as a real subprocess beside it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import CONFIGS, ROOT
from tests.inprocess import tpfit


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the web tests: {module} is missing (.ci/run installs '.[ui]')")
        pytest.skip(f"{module} is not installed (pip install 'tpfit[ui]')")


@pytest.fixture(scope="module")
def client():
    _need("starlette")
    _need("uvicorn")
    from starlette.testclient import TestClient

    from tpfit.cli.plan_form import plan_view_from_query
    from tpfit.cli.ui import _page_data
    from tpfit.ui.server import LOOPBACK_HOSTS, make_app

    app = make_app(plan_view=lambda q, u: plan_view_from_query(q, uploads=u), page_data=_page_data(),
                   allowed_hosts=(*LOOPBACK_HOSTS, "testserver"))
    with TestClient(app) as c:
        yield c


JSON = {"Content-Type": "application/json"}
PLAN_CASES = [
    pytest.param({"model": "llama-3.1-70b", "gpus": "2xH100", "context": "8192", "concurrency": "3"},
                 ["llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--concurrency", "3"], id="70b-2xh100"),
    pytest.param({"model": "qwen3-30b-a3b", "gpus": "2x4xL40S", "context": "32768", "kv_cache_dtype": "fp8",
                  "enforce_eager": "true"},
                 ["qwen3-30b-a3b", "--gpus", "2x4xL40S", "--context", "32768", "--kv-cache-dtype", "fp8",
                  "--enforce-eager"], id="moe-2-nodes-fp8-eager"),
    pytest.param({"model": "llama-3.1-70b", "gpus": "2x3090", "context": "4096", "concurrency": "2"},
                 ["llama-3.1-70b", "--gpus", "2x3090", "--context", "4096", "--concurrency", "2"], id="nothing-fits"),
    pytest.param({"model": "llama-3.1-8b", "gpus": "1xH100", "vllm_version": "v0.8.5.post1"},
                 ["llama-3.1-8b", "--gpus", "1xH100", "--vllm-version", "v0.8.5.post1"], id="post-release"),
]


@pytest.mark.parametrize(("query", "args"), PLAN_CASES)
def test_plan_endpoint_is_the_cli_json(client, query, args):
    page = client.get("/api/plan", params=query)
    cli = tpfit("plan", *args, "--json")
    assert page.status_code == 200
    assert cli.returncode in (0, 1), cli.stderr
    assert page.json() == json.loads(cli.stdout)


def test_nothing_to_deploy_is_said_not_drawn(client):
    view = client.get("/api/view", params=PLAN_CASES[2].values[0]).json()
    cli = tpfit("deploy", *PLAN_CASES[2].values[1], "--format", "serve")
    assert cli.returncode == 2  # 70B in bf16 does not fit two 24 GB cards: the page says so, with deploy's words
    assert view["deploy"]["formats"] == {}
    assert view["deploy"]["error"] and view["deploy"]["error"] in cli.stderr


def test_view_carries_the_plan_its_arguments_and_deploy_files(client):
    query, args = PLAN_CASES[0].values
    view = client.get("/api/view", params=query).json()
    assert view["plan"] == client.get("/api/plan", params=query).json()
    assert view["plan_args"] == args
    serve = tpfit("deploy", *args, "--format", "serve")
    assert serve.returncode == 0, serve.stderr
    assert view["deploy"]["formats"]["serve"] == {"serve.sh": serve.stdout}


@pytest.mark.parametrize(("query", "field", "flag"), [
    ({"model": "llama-3.1-8b", "gpus": "2xfoo"}, "gpus", "--gpus"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "context": "0"}, "context", "--context"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "gpu_memory_utilization": "1.5"}, "gpu_memory_utilization",
     "--gpu-memory-utilization"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "kv_cache_dtype": "fp4"}, "kv_cache_dtype", "--kv-cache-dtype"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "tp": "two"}, "tp", "--tp"),
    ({"model": "no-such-model", "gpus": "1xH100"}, "model", "MODEL"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "vllm_version": "0.26.0.1"}, "vllm_version", "--vllm-version"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "max_num_seqs": "70000", "max_num_batched_tokens": "70000"},
     "max_num_seqs", "--max-num-seqs"),
    ({"model": "llama-3.1-8b", "gpus": "1xH100", "max_num_batched_tokens": str(10 ** 20)}, "max_num_batched_tokens",
     "--max-num-batched-tokens"),
])
def test_bad_input_is_the_cli_error_on_its_field(client, query, field, flag):
    args = [query["model"]]
    for key, value in query.items():
        if key != "model":
            args += ["--" + key.replace("_", "-"), value]
    cli = tpfit("plan", *args)
    answer = client.get("/api/view", params=query)
    assert cli.returncode == 2
    assert answer.status_code == 400
    body = answer.json()
    assert (body["field"], body["flag"]) == (field, flag)
    assert body["error"] == cli.stderr.strip().removeprefix("error: ")


@pytest.mark.parametrize("model", ["/etc/passwd", "../shared/model-configs", "tests", "~/.cache/x", "config.json"])
def test_no_file_of_the_server_is_read(client, model):
    body = client.get("/api/plan", params={"model": model, "gpus": "1xH100"}).json()
    assert body["field"] == "model"
    assert "reads no files on this machine" in body["error"]


@pytest.mark.parametrize("model", ["a" * 280, "a" * 5000, "--help", "--json", "-h"])
def test_odd_model_names_are_field_errors_not_server_errors(client, model):
    """A name too long for a path crashed the file check (OSError ENAMETOOLONG: HTTP 500), and one starting with '-'
    was read by `plan`'s parser as an option: --help printed the help on the server and answered 500."""
    answer = client.get("/api/view", params={"model": model, "gpus": "1xH100"})
    assert answer.status_code == 400
    assert answer.json()["field"] == "model"


@pytest.mark.parametrize(("query", "field", "needle"), [
    ({"enforce_eager": "maybe"}, "enforce_eager", "--enforce-eager maybe: use true or false"),
    ({"enable_expert_parallel": "2"}, "enable_expert_parallel", "--enable-expert-parallel 2: use true or false"),
    ({"concurency": "64"}, None, "concurency: not a field of tpfit plan"),
])
def test_a_query_the_plan_cannot_take_is_refused_not_left_out(client, query, field, needle):
    """An on/off value read as neither, and a misspelt key, were dropped: planned without them, answered 200."""
    answer = client.get("/api/plan", params={"model": "llama-3.1-8b", "gpus": "1xH100", **query})
    assert answer.status_code == 400
    assert answer.json()["field"] == field and answer.json()["error"].startswith(needle)
    for value, flag in (("true", "--enforce-eager"), ("off", None)):  # what the page sends still plans
        view = client.get("/api/view", params={"model": "llama-3.1-8b", "gpus": "1xH100", "enforce_eager": value})
        assert view.status_code == 200 and (flag in view.json()["plan_args"] if flag else
                                            "--enforce-eager" not in view.json()["plan_args"])


def test_number_fields_carry_the_bounds_of_the_plan_options(client):
    """The fields' min and max are the options' own (they were always empty: read from the option, not its type)."""
    from tpfit.cli.plan_form import _command

    page = client.get("/").text
    fields = {f["name"]: f for f in json.loads(
        re.search(r'<script type="application/json" id="tpfit-data">(.*?)</script>', page, re.S)[1])["fields"]}
    bounded = [p for p in _command("plan").params if getattr(p.type, "min", None) is not None and p.name in fields]
    assert {"tp", "context", "gpu_memory_utilization"} <= {p.name for p in bounded}
    for p in bounded:
        assert (fields[p.name]["min"], fields[p.name]["max"]) == (p.type.min, p.type.max), p.name


def test_a_request_does_not_rebuild_the_command_line(client, monkeypatch):
    """Each answer rebuilt typer's whole command tree five times (~30 ms each: 180 of a small plan's 210 ms)."""
    import typer.main

    query = PLAN_CASES[0].values[0]
    assert client.get("/api/view", params=query).status_code == 200
    built = []
    real = typer.main.get_command
    monkeypatch.setattr(typer.main, "get_command", lambda app: built.append(app) or real(app))
    assert client.get("/api/view", params=query).status_code == 200
    assert client.get("/api/view", params={**query, "gpus": "1xfoo"}).status_code == 400
    assert built == []


def test_every_deploy_format_names_its_own_command(client):
    """The page read each format's command from its file's header; grafana's JSON has none, so its tab showed
    `tpfit deploy --format grafana`, without the model or GPUs."""
    query, args = PLAN_CASES[0].values
    deploy = client.get("/api/view", params=query).json()["deploy"]
    assert set(deploy["commands"]) == set(deploy["formats"])
    for fmt, command in deploy["commands"].items():
        assert command == " ".join(["tpfit", "deploy", *args, "--format", fmt])
    grafana = tpfit(*deploy["commands"]["grafana"].split()[1:])
    assert grafana.returncode == 0 and grafana.stdout == deploy["formats"]["grafana"]["grafana.json"]


def test_upload_plans_like_the_cli_on_that_config(client):
    path = CONFIGS / "Qwen--Qwen3-32B.json"
    name = client.post("/api/upload", content=path.read_bytes(), headers=JSON).json()["model"]
    assert re.fullmatch(r"upload:[0-9a-f]{12}", name)
    page = client.get("/api/plan", params={"model": name, "gpus": "2xH100", "context": "16384"}).json()
    cli = json.loads(tpfit("plan", str(path), "--gpus", "2xH100", "--context", "16384", "--json").stdout)
    for doc in (page, cli):  # where the config came from: a temporary folder vs the shared one
        doc["model"].pop("source")
        doc["model"].pop("id")
        doc["plan"]["model"].pop("source")
        doc["plan"]["model"].pop("model_id")
    page["summary"] = page["summary"].split(" on ", 1)[1]
    cli["summary"] = cli["summary"].split(" on ", 1)[1]
    assert page == cli
    view = client.get("/api/view", params={"model": name, "gpus": "2xH100", "context": "16384"}).json()
    assert view["plan_args"][0] == "config.json"


def test_an_upload_is_named_as_the_user_named_its_file(client):
    """The summary said 'upload-6500f2063c6e on 2×H100-SXM: ...', the server's folder for it. A file of its own
    name is planned as `tpfit plan FILE` plans it, name included; a config.json (whose folder the page never learns)
    is 'config.json', as its errors and the plan command already called it."""
    path = CONFIGS / "Qwen--Qwen3-32B.json"
    query = {"gpus": "2x3090", "context": "4096"}  # does not fit: the AWQ alternative's plan is named too
    named = client.post("/api/upload", content=path.read_bytes(), headers=JSON, params={"name": path.name})
    view = client.get("/api/view", params={"model": named.json()["model"], **query}).json()
    cli = json.loads(tpfit("plan", str(path), *sum((["--" + k, v] for k, v in query.items()), []), "--json").stdout)
    assert view["plan"]["summary"] == cli["summary"] and view["plan"]["model"]["id"] == cli["model"]["id"]
    assert view["plan_command"] == "tpfit plan Qwen--Qwen3-32B.json --gpus 2x3090 --context 4096"
    for name in (None, "config.json", "../../etc/passwd.json", "notes.txt"):  # kept as config.json
        model = client.post("/api/upload", content=path.read_bytes(), headers=JSON,
                            params={} if name is None else {"name": name}).json()["model"]
        view = client.get("/api/view", params={"model": model, **query}).json()
        doc = view["plan"]
        assert doc["summary"].startswith("config.json on 2×3090: "), doc["summary"]
        assert doc["plan"]["model"]["model_id"] == doc["plan"]["fallback"]["model"]["model_id"] == "config.json"
        assert "upload-" not in json.dumps(view["deploy"]), view["deploy"]
        assert view["plan_command"].startswith("tpfit plan config.json ")


def test_an_uploads_deploy_files_are_what_deploy_writes_for_its_folder(client, tmp_path):
    """They served `upload-<hash>` (no such model: vLLM would look it up on the Hub) and named `tpfit deploy --plan
    plan.json`, whose plan.json served the server's temporary copy, deleted when it stops."""
    from tpfit.cli.plan_form import UPLOADED_MODEL_FOLDER

    path = CONFIGS / "Qwen--Qwen3-32B.json"
    name = client.post("/api/upload", content=path.read_bytes(), headers=JSON).json()["model"]
    deploy = client.get("/api/view", params={"model": name, "gpus": "2xH100", "context": "16384"}).json()["deploy"]
    (tmp_path / "config.json").write_text(path.read_text())  # the folder the user holds the config in
    for fmt in ("serve", "docker"):
        command = deploy["commands"][fmt]
        assert command.startswith(f"tpfit deploy {UPLOADED_MODEL_FOLDER} --gpus 2xH100 --context 16384 ")
        cli = tpfit(*command.replace(UPLOADED_MODEL_FOLDER, str(tmp_path)).split()[1:])
        assert cli.returncode == 0, cli.stderr
        (text,) = deploy["formats"][fmt].values()
        same = [line for line in cli.stdout.replace(str(tmp_path), UPLOADED_MODEL_FOLDER).splitlines()
                if not line.startswith("# model ")]  # the header names the model by its folder's name
        assert [line for line in text.splitlines() if not line.startswith("# model ")] == same
        assert "upload-" not in "\n".join(same) and f" {UPLOADED_MODEL_FOLDER}" in text


@pytest.mark.parametrize(("config", "start"), [
    (b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": NaN}',
     "config.json: hidden_size is nan"),
    (b'{"a": 1}', "config.json: not supported yet: a config without model_type"),
])
def test_an_uploads_errors_name_the_file_not_the_servers_copy(client, config, start):
    """They named the server's temporary copy: '/tmp/tpfit-ui-0tpgpuh6/upload-97f27c37d7d7/config.json: ...',
    'upload-015abd7f5cc5: not supported yet: ...'."""
    name = client.post("/api/upload", content=config, headers=JSON).json()["model"]
    body = client.get("/api/view", params={"model": name, "gpus": "1xH100"}).json()
    assert body["field"] == "model" and body["error"].startswith(start)
    assert "tpfit-ui-" not in body["error"] and "upload-" not in body["error"]


def test_uploads_are_bounded_and_must_be_json_objects(client):
    from tpfit.ui.server import UPLOAD_LIMIT_BYTES

    big = client.post("/api/upload", content=b"{" + b" " * UPLOAD_LIMIT_BYTES + b"}", headers=JSON)
    assert big.status_code == 413 and big.json()["field"] == "model"
    for body in (b"not json", b"[1, 2]"):
        bad = client.post("/api/upload", content=body, headers=JSON)
        assert bad.status_code == 400 and bad.json()["field"] == "model"
    plain = client.post("/api/upload", content=b"{}", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415  # what a page of another site could send without a CORS preflight
    gone = client.get("/api/plan", params={"model": "upload:000000000000", "gpus": "1xH100"}).json()
    assert "upload the config.json again" in gone["error"]


def test_only_loopback_host_names_are_served(client):
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "attacker.example:8765"}).status_code == 400


def test_page_holds_the_fields_of_the_plan_command(client):
    page = client.get("/").text
    data = json.loads(re.search(r'<script type="application/json" id="tpfit-data">(.*?)</script>', page, re.S)[1])
    names = {f["name"] for f in data["fields"]}
    assert {"gpus", "context", "concurrency", "gpu_memory_utilization", "kv_cache_dtype", "enforce_eager"} <= names
    assert not names & {"model", "as_json", "show_all", "html"}
    assert not re.search(r"https?://", re.sub(r'id="tpfit-data">.*?</script>', "", page, flags=re.S))


def test_html_report_is_one_file_with_the_plan(tmp_path):
    out = tmp_path / "report.html"
    args = ["llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--concurrency", "3"]
    run = tpfit("plan", *args, "--html", str(out))
    cli = json.loads(tpfit("plan", *args, "--json").stdout)
    assert run.returncode == 0 and f"wrote {out}" in run.stderr
    text = out.read_text()
    data = json.loads(re.search(r'id="tpfit-data">(.*?)</script>', text, re.S)[1])
    assert data["mode"] == "report"
    assert data["view"]["plan"] == cli
    assert not re.search(r'(src|href)="(?!#)', text)  # no script, style or image from elsewhere


def test_html_report_of_a_config_file_serves_its_folder(tmp_path):
    """The report's deploy files serve the folder vLLM loads, as `tpfit deploy` does (they served the config.json
    file itself, which vLLM cannot load)."""
    (tmp_path / "config.json").write_text((CONFIGS / "meta-llama--Llama-3.1-8B.json").read_text())
    out = tmp_path / "report.html"
    run = tpfit("plan", str(tmp_path / "config.json"), "--gpus", "1xH100", "--context", "8192", "--html", str(out))
    assert run.returncode == 0
    text = out.read_text()
    assert f"vllm serve {tmp_path}" in text and f"vllm serve {tmp_path / 'config.json'}" not in text


def test_html_report_refuses_an_unwritable_path(tmp_path):
    run = tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--html", str(tmp_path / "no" / "such" / "r.html"))
    assert run.returncode == 2
    assert run.stderr.startswith("error: --html ") and "Traceback" not in run.stderr


def test_plan_imports_no_web_server():
    code = ("import sys; from tpfit.cli.app import main; sys.argv = ['tpfit', 'plan', 'llama-3.1-8b', '--gpus', "
            "'1xH100', '--json', '--html', sys.argv[1]]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio')))")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-c", code, f"{tmp}/r.html"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_ui_without_its_extra_names_the_install_line():
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "from tpfit.cli.app import main; sys.argv = ['tpfit', 'ui']; main()")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().endswith("pip install 'tpfit[ui]'")
    assert "Traceback" not in run.stderr


def test_ui_refuses_a_port_in_use():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        run = subprocess.run([sys.executable, "-m", "tpfit", "ui", "--port", str(taken.getsockname()[1])], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.startswith("error: --port ") and "use another --port" in run.stderr


def test_ui_names_host_for_an_address_of_another_machine():
    """192.0.2.1 (TEST-NET-1) parses but is nobody's interface: the error named `--port 8765` and said to use
    another port."""
    _need("uvicorn")
    run = subprocess.run([sys.executable, "-m", "tpfit", "ui", "--host", "192.0.2.1", "--port", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("error: --host 192.0.2.1: not an address of this machine"), run.stderr


def test_a_format_deploy_refuses_is_not_offered_as_a_file(client):
    """The page rendered every format without deploy's checks: for Llama-3.1-405B on 2x8 H100 (TP8 PP2, one engine
    over two nodes) it offered serve, docker, compose and k8s files that start one node's server of 8 GPUs for a
    world of 16, files `tpfit deploy` refuses to write. Now each format goes through deploy/files.py."""
    query = {"model": "llama-3.1-405b", "gpus": "2x8xH100", "context": "8192"}
    deploy = client.get("/api/view", params=query).json()["deploy"]
    assert set(deploy["formats"]) == set(deploy["commands"]) == {"lws", "ray", "alerts", "grafana"}
    assert set(deploy["refused"]) == {"serve", "docker", "compose", "k8s"}
    cli = tpfit("deploy", "llama-3.1-405b", "--gpus", "2x8xH100", "--context", "8192", "--format", "compose")
    assert cli.returncode == 2 and cli.stderr == f"error: {deploy['refused']['compose']}\n"
