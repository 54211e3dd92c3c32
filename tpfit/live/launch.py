"""Start a local vLLM server, wait until it really answers, stop it by its process group.

The server runs in its own session (setsid), its log goes to a file the caller can read back
(start-up figures), and `stop()` always leaves no process behind: SIGTERM to the group, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tpfit.errors import ServerError

DEFAULT_START_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 30.0
"""The bound on each `docker inspect`, `docker logs`, `docker rm` and `ps` call: a docker daemon that stops answering
must not hold `tpfit verify --launch --docker` past its --timeout (each call had none)."""
STOP_GRACE_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IPC_PATH_MAX = 107
"""A Unix socket path's limit (sizeof(sockaddr_un.sun_path) - 1): vLLM binds ZMQ sockets at TMPDIR/<uuid4>."""


def short_temp_dir() -> str:
    """The temp folder for a launched server's TMPDIR, short enough for vLLM's IPC sockets under a run folder."""
    base = tempfile.gettempdir()
    # base + "/tpfit-verify-XXXXXXXX" (22) + "/" + a uuid4 (36)
    return base if len(base) + 22 + 1 + 36 <= IPC_PATH_MAX else "/tmp"


def server_argv(python: str, model: str, flags: list[str], *, port: int, served_name: str | None) -> list[str]:
    """vLLM's OpenAI server as a module (the `vllm` console script is broken in the CPU wheel)."""
    argv = [python, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", model, "--host", "127.0.0.1",
            "--port", str(port)]
    if served_name:
        argv += ["--served-model-name", served_name]
    return argv + flags


@dataclass
class VllmProcess:
    """A vLLM server this process started."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        port = self.argv[self.argv.index("--port") + 1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> VllmProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **self.env}, start_new_session=True)
        except OSError as err:
            raise ServerError(f"cannot start vLLM with {self.argv[0]}: {err.strerror or err}") from err
        finally:
            log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, *, timeout_s: float = DEFAULT_START_TIMEOUT_S, model: str | None = None,
                   on_progress: Callable[[str], None] | None = None) -> None:
        """Until /health answers 200 and a real completion returns; raises ServerError if the process dies."""
        from tpfit.live.client import VllmClient

        async def probe() -> bool:
            async with VllmClient(self.url) as client:
                if not await client.healthy():
                    return False
                try:
                    models = await client.get_json("/v1/models")
                    name = model or models["data"][0]["id"]
                    await client.post_json("/v1/completions", {"model": name, "prompt": "the model", "max_tokens": 2})
                    return True
                except ServerError:
                    return False

        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            if not self.alive:
                tail = "\n".join(self.log_text().splitlines()[-15:])
                raise ServerError(f"vLLM exited during start-up (code {self.proc.returncode}; log: {self.log_path}); "
                                  f"last log lines:\n{tail}")
            if on_progress:
                lines = self.log_text().splitlines()
                for line in lines[seen:]:
                    on_progress(line)
                seen = len(lines)
            if asyncio.run(probe()):
                return
            time.sleep(1.0)
        raise ServerError(f"vLLM did not become ready in {timeout_s:.0f} s (log: {self.log_path})")

    def stop(self) -> None:
        """SIGTERM every process of the server's session, wait, then SIGKILL whatever is left.

        The session (setsid at start) holds the API server, the engine core and every worker, even those
        that moved to a process group of their own."""
        if self.proc is None:
            return
        sid = self.proc.pid
        for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            pids = session_pids(sid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait_s
            while time.monotonic() < end and session_pids(sid):
                time.sleep(0.2)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> VllmProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session; the session's leader alone when ps does not answer in time."""
    out = _output(["ps", "-e", "-o", "pid=,sid=,stat="])
    if out is None:
        return [sid]
    pids = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == str(sid) and not parts[2].startswith("Z"):
            pids.append(int(parts[0]))
    return pids


def _output(argv: list[str]) -> str | None:
    """A quick command's stdout; None when it does not end in COMMAND_TIMEOUT_S or cannot start."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def default_python() -> str:
    """The Python that has vLLM: TPFIT_VLLM_PYTHON, else this interpreter."""
    return os.environ.get("TPFIT_VLLM_PYTHON", sys.executable)


@dataclass
class DockerVllm:
    """vLLM in the official image (`docker run -d`, the same argv `tpfit deploy --format docker` writes)."""

    argv: list[str]
    """A full `docker run ...` argv; `-d --name NAME` are added here."""
    name: str
    port: int
    container: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DockerVllm:
        argv = self.argv[:2] + ["-d", "--name", self.name] + self.argv[2:]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ServerError(f"docker run failed: {err}; `tpfit doctor` checks docker and the NVIDIA runtime") from err
        if result.returncode != 0:
            msg = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
            raise ServerError(f"docker run failed: {msg[0] if msg else 'no output'}; `tpfit doctor` checks docker and "
                              "the NVIDIA runtime")
        self.container = result.stdout.strip()
        return self

    @property
    def alive(self) -> bool:
        """Running, or docker did not say in time (wait_ready's deadline still ends the wait)."""
        out = _output(["docker", "inspect", "-f", "{{.State.Running}}", self.name])
        return out is None or out.strip() == "true"

    def log_text(self) -> str:
        out = _output(["docker", "logs", self.name])
        return f"(docker logs {self.name} gave no answer in {COMMAND_TIMEOUT_S:g} s)" if out is None else out

    def wait_ready(self, *, timeout_s: float = DEFAULT_START_TIMEOUT_S, model: str | None = None,
                   on_progress: Callable[[str], None] | None = None) -> None:
        from tpfit.live.client import VllmClient

        async def probe() -> bool:
            async with VllmClient(self.url) as client:
                return await client.healthy()

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                tail = "\n".join(self.log_text().splitlines()[-15:])
                raise ServerError(f"the vLLM container stopped during start-up; last log lines:\n{tail}")
            if asyncio.run(probe()):
                return
            time.sleep(2.0)
        raise ServerError(f"vLLM in docker did not become ready in {timeout_s:.0f} s (docker logs {self.name})")

    def stop(self) -> None:
        if self.container and _output(["docker", "rm", "-f", self.name]) is None:
            raise ServerError(f"docker rm -f {self.name} gave no answer in {COMMAND_TIMEOUT_S:g} s: the container may "
                              f"still run; remove it by hand (docker rm -f {self.name})")
