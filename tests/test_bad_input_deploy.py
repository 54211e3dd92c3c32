"""Bad input to the deployment side (`deploy`, `check`, `watch`, `verify`): one clear error line, exit 2, never
a traceback or a hang (the contract of tests/test_bad_input.py, whose helpers these use)."""

from __future__ import annotations

import pytest

from tests.test_bad_input import one_line_error, tpfit

BAD_URLS = [
    ("http://127.0.0.1:99999", "Port out of range"),
    ("http://127.0.0.1:abc", "Port could not be cast"),
    ("http://256.1.1.1:80", "Invalid IPv4 address"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://:8000", "no host"),
    ("http://a b:8000", "a space or control character"),
    ("http://127.0.0.1:8000\n", "a space or control character"),
]


@pytest.mark.parametrize("command", [["watch", "--once"], ["verify", "--timeout", "5"], ["check"]])
@pytest.mark.parametrize("url, why", BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_a_malformed_server_url_is_one_line_naming_url(command, url, why):
    """These reached httpx and came back as a traceback (InvalidURL, `ValueError: Port out of range`) or, for a
    URL without a host, as exit 1 without the flag; `check --url` checked nothing."""
    one_line_error(tpfit(*command, "--url", url, timeout=30), "--url", "not a server URL", why)


# ---- tpfit check FILE --------------------------------------------------------------------------------------


def test_check_names_what_the_path_is_when_it_is_no_file(tmp_path):
    """A folder, a pipe and a loop of links were all "no such file"."""
    import os

    (tmp_path / "dir.yaml").mkdir()
    os.mkfifo(tmp_path / "pipe.sh")
    (tmp_path / "a.sh").symlink_to(tmp_path / "b.sh")
    (tmp_path / "b.sh").symlink_to(tmp_path / "a.sh")
    one_line_error(tpfit("check", str(tmp_path / "dir.yaml")), "FILE", "is a folder")
    one_line_error(tpfit("check", str(tmp_path / "pipe.sh"), timeout=30), "FILE", "is not a regular file")
    one_line_error(tpfit("check", str(tmp_path / "a.sh")), "FILE", "Too many levels of symbolic links")
    one_line_error(tpfit("check", str(tmp_path / "none.sh")), "FILE", "No such file or directory")


def test_check_does_not_misstate_the_size_of_a_large_file(tmp_path):
    """A 50 MB file was reported as "0.5 MiB is too big" (only the first 512 KiB + 1 byte are read)."""
    path = tmp_path / "big.yaml"
    path.write_bytes(b"x: " + b"a" * (50 * 2**20) + b"\n")
    line = one_line_error(tpfit("check", str(path)), "FILE", "larger than 512 KiB")
    assert "0.5 MiB" not in line


def test_check_reads_a_script_that_starts_with_a_byte_order_mark(tmp_path):
    """Editors on Windows start UTF-8 files with a BOM; the script's `vllm serve` was not found (exit 2)."""
    path = tmp_path / "serve.sh"
    path.write_bytes(b"\xef\xbb\xbfvllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 3\n")
    result = tpfit("check", str(path), "--gpus", "4xH100")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "tensor-parallel-size" in result.stdout and "1 vLLM server(s)" in result.stdout


@pytest.mark.parametrize("probe", ["{periodSeconds: 10, failureThreshold: .inf}",
                                   "{periodSeconds: 10, failureThreshold: 1e999}"])
def test_check_refuses_an_infinite_probe_threshold_in_one_line(tmp_path, probe):
    """int(.inf) raised OverflowError: a traceback."""
    path = tmp_path / "pod.yaml"
    path.write_text("kind: Pod\nspec:\n  containers:\n  - image: vllm/vllm-openai:v0.33.0\n"
                    "    args: [--model, meta-llama/Llama-3.1-8B-Instruct]\n"
                    f"    startupProbe: {probe}\n")
    one_line_error(tpfit("check", str(path), "--gpus", "1xH100"), "FILE", "startupProbe", "must be numbers")


def test_check_fix_that_cannot_write_is_one_line(tmp_path):
    """`--fix` wrote NAME.fixed.EXT without catching the OSError: a traceback when that path is a folder."""
    script = tmp_path / "run.sh"
    script.write_text("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-length 4096\n")
    (tmp_path / "run.fixed.sh").mkdir()
    result = tpfit("check", str(script), "--gpus", "1xH100", "--fix")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --fix {tmp_path / 'run.fixed.sh'}: cannot write the fixed file there (Is a directory)"]


# ---- tpfit deploy --plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", ["recommended-null", "max-concurrency-nan"])
def test_a_plan_file_whose_inner_plan_contradicts_itself_is_one_line(tmp_path, edit):
    """The `plan` value decoded field by field, then rendering its summary raised (AttributeError for a
    recommended layout of null beside layouts that serve, ValueError for a NaN concurrency): tracebacks."""
    import json

    result = tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    if edit == "recommended-null":
        doc["plan"]["recommended"] = None
    else:
        doc["plan"]["candidates"][doc["plan"]["recommended"]]["memory"]["max_concurrency"] = float("nan")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))  # Python writes NaN, which Python's reader reads back
    for command in (["deploy", "--plan", str(path)], ["watch", "--plan", str(path), "--url", "http://127.0.0.1:1"]):
        one_line_error(tpfit(*command), "--plan", "the plan it holds contradicts itself")


# ---- servers that answer without end ---------------------------------------------------------------------


class _Endless:
    """An HTTP server on loopback whose every answer is a 200 that never ends: `trickle` sends one byte each
    0.2 s (each read within any read timeout), else 64 KiB chunks as fast as it can. Stops on exit."""

    def __init__(self, *, trickle: bool):
        self.trickle = trickle

    def __enter__(self) -> str:
        import socket
        import threading

        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * (1 if self.trickle else 65536)
            while not self.stop.is_set():
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if self.trickle:
                    self.stop.wait(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.sock.close()


def test_watch_once_ends_against_a_server_that_trickles_its_answer():
    """httpx's timeouts bound each read, not the answer: `watch --once --scrape-timeout 1` never ended."""
    import time

    with _Endless(trickle=True) as url:
        start = time.monotonic()
        result = tpfit("watch", "--url", url, "--once", "--interval", "0.2", "--scrape-timeout", "1", timeout=40)
        assert time.monotonic() - start < 20
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "stalled" in result.stdout and "ALERT server_down" in result.stdout


def test_verify_timeout_bounds_an_answer_that_trickles():
    """`verify --timeout 2` waited as long as bytes kept coming (README: --timeout bounds every request)."""
    import time

    with _Endless(trickle=True) as url:
        start = time.monotonic()
        line = one_line_error(tpfit("verify", "--url", url, "--timeout", "2", timeout=40), url, code=1)
        assert time.monotonic() - start < 15, line
    assert "did not answer within 2 s" in line


def test_an_answer_without_end_is_cut_at_the_body_limit(monkeypatch):
    """An endless /metrics was read into memory until the process died; now MAX_BODY_BYTES ends it (1 MiB here)."""
    import asyncio

    from tpfit.errors import ServerError
    from tpfit.live import client as client_module

    monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 2**20)

    async def scrape(url: str) -> str:
        async with client_module.VllmClient(url) as client:
            return await client.metrics_text(timeout_s=20)

    with _Endless(trickle=False) as url:
        with pytest.raises(ServerError, match="answered more than 1 MiB"):
            asyncio.run(scrape(url))


class _JsonServer:
    """An HTTP server on loopback answering every GET with the JSON object `answers[path]` (or {"a": 1})."""

    def __init__(self, answers: dict[str, object]):
        self.answers = answers

    def __enter__(self) -> str:
        import http.server
        import json
        import threading

        answers = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = json.dumps(answers.get(self.path, {"a": 1})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("answers, why", [
    ({}, 'GET /version has no "version"'),
    ({"/version": {"version": "0.33.0"}, "/v1/models": {"data": []}}, "GET /v1/models lists no model"),
    ({"/version": {"version": "0.33.0"}, "/v1/models": {"data": [{"id": "m"}]}}, "gives 'm' no max_model_len"),
], ids=["no-version", "no-model", "no-max-model-len"])
def test_a_json_server_that_is_not_vllm_is_named_so(answers, why):
    """A server answering JSON without vLLM's fields was read as a model of 0 tokens: verify said
    `--output-tokens 1 leaves no room for a prompt in 0 tokens` (exit 2), check `--max-model-len 0: not an int`."""
    with _JsonServer(answers) as url:
        for command in (["verify", "--timeout", "5"], ["check"]):
            one_line_error(tpfit(*command, "--url", url, timeout=30), f"{url} is not a vLLM server", why, code=1)


# ---- tpfit deploy's own flags ------------------------------------------------------------------------------


def test_deploy_keeps_an_explicit_cuda_and_checks_it_against_the_driver():
    """--driver replaced the image's CUDA whatever --cuda said: `--driver 590.1.1 --cuda 12.9` wrote the -cu130
    image, and `--driver 575.51.03 --cuda 13.0` silently wrote the 12.9 one."""
    base = ["deploy", "llama-3.1-8b", "--gpus", "2xH100", "--format", "docker"]
    kept = tpfit(*base, "--driver", "590.1.1", "--cuda", "12.9")
    assert kept.returncode == 0 and "vllm/vllm-openai:v0.33.0 \\" in kept.stdout, kept.stderr
    picked = tpfit(*base, "--driver", "590.1.1")
    assert picked.returncode == 0 and "vllm/vllm-openai:v0.33.0-cu130" in picked.stdout, picked.stderr
    one_line_error(tpfit(*base, "--driver", "575.51.03", "--cuda", "13.0"), "--cuda 13.0", "needs driver >= 580.65.06",
                   "--cuda 12.9")


def test_check_reads_past_a_here_document_with_an_apostrophe(tmp_path):
    """A here-document's text was scanned as shell: its apostrophe opened a quote that ran to the end of the
    script, so the `vllm serve` after it was not found ("no vLLM server found", exit 2). A command fed to
    `ssh ... bash <<EOF` is still read, at its own line."""
    script = tmp_path / "run.sh"
    script.write_text("cat <<EOF\nthe model's server starts below\nEOF\n"
                      "ssh worker bash <<'END'\n  vllm serve Qwen/Qwen2.5-7B-Instruct --tensor-parallel-size 2\nEND\n"
                      "vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 3\n")
    result = tpfit("check", str(script), "--gpus", "4xH100")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "2 vLLM server(s): Qwen/Qwen2.5-7B-Instruct (host), meta-llama/Llama-3.1-8B-Instruct (host)" in result.stdout
    assert f"{script}:7: error[" in result.stdout  # TP=3 does not divide Llama-3.1-8B's 32 heads, on line 7


@pytest.mark.parametrize("value", ["$(nproc)", "`nproc`", '"$TP"', "$((2 * 2))", "{{ .Values.tp }}"])
def test_check_leaves_a_value_set_at_run_time_unchecked(tmp_path, value):
    """`--tensor-parallel-size $(nproc)` was an error ("not an int", exit 1) in a script that runs; `$((2 * 2))`
    was also cut at its first `)`. A value the shell or a template sets is now a note, not a verdict."""
    if value.startswith("{{"):  # a Helm chart's manifest
        path = tmp_path / "pod.yaml"
        path.write_text("kind: Pod\nspec:\n  containers:\n  - image: vllm/vllm-openai:v0.33.0\n    args: [--model, "
                        f"meta-llama/Llama-3.1-8B-Instruct, --tensor-parallel-size, '{value}']\n")
    else:
        path = tmp_path / "run.sh"
        path.write_text(f"vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size {value}\n")
    result = tpfit("check", str(path), "--gpus", "4xH100")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    shown = value.strip('"')
    assert f"info[not-checked] --tensor-parallel-size {shown} is set when it runs" in result.stdout
    assert "0 error(s)" in result.stdout


# ---- durations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, flag", [
    (["watch", "--once", "--interval", "1e308"], "--interval"),  # --once waited that long between its two scrapes
    (["watch", "--once", "--interval", "inf"], "--interval"),
    (["watch", "--once", "--scrape-timeout", "nan"], "--scrape-timeout"),  # ValueError: deadline must not be NaN
    (["watch", "--duration", "nan"], "--duration"),  # never compared as passed: watched for ever
    (["verify", "--timeout", "nan"], "--timeout"),  # ValueError: deadline must not be NaN
    (["verify", "--ttft-p99", "nan"], "--ttft-p99"),
])
def test_a_duration_that_never_ends_is_refused(args, flag):
    """Click's ranges let `nan` through, and `inf` where no maximum was set: these hung or raised."""
    one_line_error(tpfit(*args, "--url", "http://127.0.0.1:1", timeout=30), flag)


# ---- tpfit verify's own options ------------------------------------------------------------------------------


def test_verify_log_that_cannot_be_read_is_one_line(tmp_path):
    """`--log` was read without a check: FileNotFoundError / IsADirectoryError tracebacks."""
    one_line_error(tpfit("verify", "--url", "http://127.0.0.1:1", "--log", str(tmp_path / "none.log")), "--log",
                   "cannot read it (No such file or directory)")
    one_line_error(tpfit("verify", "--url", "http://127.0.0.1:1", "--log", str(tmp_path)), "--log", "is a folder")


@pytest.mark.parametrize("command", [["verify"], ["check"]])
def test_a_device_given_as_log_is_refused_not_read_without_end(command):
    """`verify --log /dev/zero` and `check --log /dev/zero` read until memory ran out (explain already refused it:
    the three read a log through tpfit/live/log_file.py now)."""
    one_line_error(tpfit(*command, "--url", "http://127.0.0.1:1", "--log", "/dev/zero", timeout=60), "--log",
                   "not a log file")


def test_verify_vllm_args_are_checked_before_anything_starts():
    """An unbalanced quote in --vllm-args raised ValueError from shlex (a traceback); with --url the flags were
    silently ignored."""
    one_line_error(tpfit("verify", "tests/data/tiny-llama-config", "--launch", "--vllm-python", "/bin/true",
                         "--vllm-args", "--served-model-name 'x"), "--vllm-args", "No closing quotation")
    one_line_error(tpfit("verify", "--url", "http://127.0.0.1:1", "--vllm-args", "--enforce-eager"), "--vllm-args",
                   "goes with --launch")


def test_deploy_refuses_what_the_format_would_drop_or_its_check_would_call_broken(tmp_path):
    """serve dropped --cuda, --driver and --shm-size without a word; a --shm-size below what a multi-GPU server
    needs was written, and tpfit check called deploy's own file an error (shared-memory: 'Bus error')."""
    tp2 = ("deploy", "llama-3.1-8b", "--gpus", "2xH100", "--tp", "2")
    for option, value in (("--cuda", "13.0"), ("--driver", "580.65.06"), ("--shm-size", "16g")):
        one_line_error(tpfit(*tp2, "--format", "serve", option, value), f"{option} {value}",
                       "--format serve runs vLLM installed on this host", f"leave {option} out")
    for fmt in ("docker", "compose", "k8s", "lws", "ray"):
        one_line_error(tpfit(*tp2, "--format", fmt, "--shm-size", "64m"), "--shm-size 64m",
                       "TP2 PP1 DP1 runs 2 worker processes", "at least 1 GiB")
    assert tpfit(*tp2, "--format", "alerts", "--shm-size", "64m").returncode == 0  # one command line, every format
    one_gpu = tpfit("deploy", "llama-3.1-8b", "--gpus", "1xH100", "--format", "docker", "--shm-size", "64m")
    assert one_gpu.returncode == 0 and "--shm-size 64m" in one_gpu.stdout  # one process: no exchange
    enough = tpfit(*tp2, "--format", "docker", "--shm-size", "1g")
    assert enough.returncode == 0
    (tmp_path / "run.sh").write_text(enough.stdout)
    check = tpfit("check", str(tmp_path / "run.sh"), "--gpus", "2xH100")
    assert check.returncode == 0 and "shared-memory" not in check.stdout, check.stdout


def test_verify_gpus_and_log_are_checked_before_a_launch():
    """--gpus was parsed only once the launched server answered (minutes later, or after a failed start that hid
    it); --log with --launch was read by nothing, without a word."""
    launch = ("verify", "tests/data/tiny-llama-config", "--launch", "--vllm-python", "/bin/true")
    one_line_error(tpfit(*launch, "--gpus", "2xfoo"), "--gpus 2xfoo", "unknown GPU")
    one_line_error(tpfit(*launch, "--log", "server.log"), "--log server.log", "goes with --url")
    one_line_error(tpfit("verify", "--url", "http://127.0.0.1:1", "--gpus", "2xfoo"), "--gpus 2xfoo", "unknown GPU")
    # a layout larger than the GPUs is vLLM's refusal as a plan: verify compared nothing with it, without a word
    one_line_error(tpfit("verify", "--url", "http://127.0.0.1:1", "--tp", "2", "--gpus", "1xH100"), "--tp 2",
                   "TP2 x PP1 runs 2 ranks, --gpus 1xH100 has 1 GPU")


def test_check_names_windows_line_endings_in_a_script(tmp_path):
    """bash keeps each CR of a CRLF script: `\\` + CR is no continuation, so `--tensor-parallel-size 3` on the next
    line never reaches vLLM. check read it as bash does and reported a clean TP=1 server (exit 0)."""
    script = tmp_path / "run.sh"
    script.write_bytes(b"vllm serve meta-llama/Llama-3.1-8B-Instruct \\\r\n  --tensor-parallel-size 3\r\n")
    result = tpfit("check", str(script), "--gpus", "4xH100")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert f"{script}:1: error[line-endings] the script has Windows (CRLF) line endings" in result.stdout
    assert f"dos2unix {script}" in result.stdout


@pytest.mark.parametrize("args", [["--threshold", "kv_cache_usage=5"], ["--job", "vllm"], ["--alert-label", "team=ml"]])
def test_deploy_monitoring_options_without_monitoring_files_are_refused(args):
    """`--format serve --threshold kv_cache_usage=5` wrote serve.sh and exit 0: the option (valid or not) was
    dropped without a word, as were --job and --alert-label."""
    one_line_error(tpfit("deploy", "llama-3.1-8b", "--gpus", "1xH100", "--format", "serve", *args),
                   f"{args[0]} {args[1]}: goes with --format alerts or grafana, or --monitoring")


def test_plan_options_beside_a_plan_file_or_without_a_model_are_refused(tmp_path):
    """`deploy --plan plan.json --gpus 4xH100` deployed the file's 1xH100 plan, and `watch --gpus 1xH100 --url
    ...` watched with no plan at all: the plan options were dropped without a word."""
    result = tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--json")
    assert result.returncode == 0, result.stderr
    plan = tmp_path / "plan.json"
    plan.write_text(result.stdout)
    one_line_error(tpfit("deploy", "--plan", str(plan), "--gpus", "4xH100"),
                   "--gpus 4xH100: goes with MODEL (the --plan file holds its own plan)")
    one_line_error(tpfit("watch", "--plan", str(plan), "--context", "4096", "--url", "http://127.0.0.1:1", "--once"),
                   "--context 4096: goes with MODEL")
    one_line_error(tpfit("watch", "--gpus", "1xH100", "--url", "http://127.0.0.1:1", "--once"),
                   "--gpus 1xH100: goes with MODEL (it plans MODEL, which is not given)")


@pytest.mark.parametrize("args,fmt,needle", [
    (["--tp", "1", "--pp", "1", "--dp", "9"], "lws", "9 GPUs do not split into whole engines per node"),
    (["--tp", "1", "--pp", "1", "--dp", "16", "--vllm-version", "0.8.5"], "ray",
     "cannot place data-parallel engines on other nodes"),
])
def test_a_multi_node_layout_ray_or_lws_cannot_place_is_one_line(args, fmt, needle):
    """Ray and LWS give each node an equal share: 9 GPUs over two nodes of 8, or replicas across nodes on a vLLM
    without --data-parallel-backend, would be written as files that start nothing."""
    one_line_error(tpfit("deploy", "llama-3.1-8b", "--gpus", "2x8xH100", *args, "--format", fmt), "--format",
                   needle)
