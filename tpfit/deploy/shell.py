"""`vllm serve` and `docker run` command lines, quoted for a POSIX shell (shlex)."""

from __future__ import annotations

import shlex

from tpfit.deploy.common import HF_CACHE_CONTAINER, HF_CACHE_HOST_SHELL, Deployment


CACHE_VOLUME_SHELL = f'"{HF_CACHE_HOST_SHELL}":{shlex.quote(HF_CACHE_CONTAINER)}'
"""docker's `-v` value for the Hugging Face cache, as shell text: the host side double-quoted, so that
`${HF_HOME:-$HOME/...}` still expands (docker-run.sh, ray-cluster.sh and `tpfit check --fix` write it)."""


def comment(header: tuple[str, ...]) -> str:
    """Header lines as `#` comments, each character that is not printable written as its escape (`\\r`,
    `\\x85`, `\\u2028`): YAML ends a comment at any of its line breaks (CR, NEL, LS, PS as well as LF), so a raw
    one in a model id or served name would turn the rest of the line into keys, and YAML readers refuse the
    other control characters anywhere in the file."""
    return "".join(f"# {_printable(line)}\n" for line in header)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def join_lines(parts: list[list[str]]) -> str:
    """One shell command over several lines: each inner list is quoted and continued with a backslash."""
    return " \\\n    ".join(shlex.join(p) for p in parts if p) + "\n"


def serve_command(d: Deployment) -> str:
    """The `vllm serve` command, on the `--gpu-ids` GPUs when given (the token, if needed, comes from the caller's
    HF_TOKEN environment)."""
    argv = d.vllm_argv()
    pin = [f"CUDA_VISIBLE_DEVICES={','.join(map(str, d.gpu_ids))}"] if d.gpu_ids else []
    parts = [[*pin, "vllm", "serve", argv[0]]]
    parts += _flag_lines(argv[1:])
    return comment(d.header) + join_lines(parts)


def _flag_lines(argv: list[str]) -> list[list[str]]:
    lines: list[list[str]] = []
    for arg in argv:
        if arg.startswith("--") or not lines:
            lines.append([arg])
        else:
            lines[-1].append(arg)
    return lines


def gpus_flag(d: Deployment) -> str:
    """`--gpus all`, or the device list in the quoting the NVIDIA Container Toolkit documents: '"device=0,1"'."""
    if not d.gpu_ids:
        return "all"
    return '"device=' + ",".join(map(str, d.gpu_ids)) + '"'


def bind_mount(path: str) -> str:
    """docker's `--mount` value binding a host folder read-only at the same path. Its fields are CSV, so a path
    with a comma or a quote is quoted as CSV quotes it (`-v` cannot hold a path with `:` at all)."""
    import csv
    import io

    row = io.StringIO()
    csv.writer(row, lineterminator="").writerow(["type=bind", f"source={path}", f"target={path}", "readonly"])
    return row.getvalue()


def docker_argv(d: Deployment, *, cache_host: str = HF_CACHE_HOST_SHELL) -> list[list[str]]:
    """`docker run`'s words, one list per line; `cache_host`: the host's Hugging Face cache (the shell's
    expansion by default; a path for a command run without a shell)."""
    shm = ["--shm-size", d.shm_size] if d.shm_size else ["--ipc=host"]
    return [
        ["docker", "run", "--runtime", "nvidia", "--gpus", gpus_flag(d)],
        shm,
        ["-v", f"{cache_host}:{HF_CACHE_CONTAINER}"],
        ["--mount", bind_mount(d.model)] if d.local_model else [],
        ["--env", "HF_TOKEN"],  # passed through from the caller's environment, never written here
        ["-p", f"{d.port}:{d.port}"],
        [d.image],
        *_flag_lines(d.server_argv()),
    ]


def docker_command(d: Deployment) -> str:
    parts = docker_argv(d)
    # the cache's ${HF_HOME:-$HOME/...} must stay expandable: quote every part except the volume path's variables
    lines = []
    for p in filter(None, parts):
        if p[0] == "-v":
            lines.append(f"-v {CACHE_VOLUME_SHELL}")
        else:
            lines.append(shlex.join(p))
    return comment(d.header) + " \\\n    ".join(lines) + "\n"
