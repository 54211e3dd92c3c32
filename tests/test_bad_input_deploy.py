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


@pytest.mark.parametrize("probe", ["{periodSeconds: 10, failureThreshold: .inf}", "{periodSeconds: 10, failureThreshold: 1e999}"])
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
