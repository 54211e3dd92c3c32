"""HTTP to a vLLM server (the only httpx import): JSON endpoints and /metrics; the load's streamed
completions go through `streams` (stream.py), which costs far less CPU per token.

Every call raises ServerError (one line, naming the URL) for transport failures, so callers never
see an httpx exception.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from tpfit.errors import ServerError, ServerTimeout
from tpfit.units import MIB
from tpfit.vllm_facts import HEALTH_PATH
from tpfit.live.stream import CompletionStreams

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_BODY_BYTES = 64 * MIB
"""The largest answer read: a vLLM /metrics is tens of KiB per engine (its histograms), JSON answers less."""
_VLLM_PATHS = ("/version", "/v1/models", "/metrics")
"""Endpoints every vLLM OpenAI server has: a 404 there means another kind of server."""


def request_timeout(seconds: float) -> httpx.Timeout:
    """`--timeout` for every request: connect, read, write and pool (connect at most 5 s)."""
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _error(url: str, err: Exception, timeout: httpx.Timeout | None = None) -> ServerError:
    base, path = url, ""
    for p in _VLLM_PATHS:
        if url.endswith(p):
            base, path = url[: -len(p)], p
    if isinstance(err, httpx.ConnectError):
        return ServerError(f"cannot connect to {base}: is the vLLM server running there?", url=url)
    if isinstance(err, httpx.TimeoutException):
        seconds = f" within {timeout.read:g} s (--timeout)" if timeout is not None and timeout.read else " in time"
        return ServerTimeout(f"{url} did not answer{seconds}; is it a vLLM server that has finished starting?", url=url)
    if isinstance(err, (httpx.RemoteProtocolError, httpx.LocalProtocolError)):
        return ServerError(f"{base} is not an HTTP server (it answered GET {path or '/'} with something else); check "
                           "the port", url=url)
    if isinstance(err, httpx.ReadError) and not str(err):
        # the peer closed (or reset) the connection before any HTTP answer: what a non-HTTP server that greets
        # and hangs up (SSH, a database) gives when it closes before reading the request
        return ServerError(f"{base} is not an HTTP server (it closed the connection without answering GET "
                           f"{path or '/'}); check the port", url=url)
    if isinstance(err, httpx.HTTPStatusError):
        status = err.response.status_code
        if status == 404 and path:
            return ServerError(f"{base} is not a vLLM server: GET {path} answered HTTP 404 (a vLLM OpenAI server "
                               "answers it); check the URL and port", url=url)
        body = " ".join(err.response.text[:200].split())
        if "<" in body[:20]:
            body = "an HTML page"
        return ServerError(f"{url} answered HTTP {status}: {body}", url=url)
    if isinstance(err, json.JSONDecodeError):
        return ServerError(f"{base} is not a vLLM server: GET {path} did not answer JSON", url=url)
    return ServerError(f"{url}: {type(err).__name__}: {err}", url=url)


class VllmClient:
    """A small async client for one server (`base_url` like http://127.0.0.1:8000)."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout,
                                       limits=httpx.Limits(max_connections=max_connections,
                                                           max_keepalive_connections=max_connections))
        self.streams = CompletionStreams(self.base_url)

    async def __aenter__(self) -> VllmClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.streams.aclose()
        await self._http.aclose()

    async def _exchange(self, method: str, path: str, *, timeout_s: float | None = None,
                        body: dict | None = None) -> httpx.Response:
        """One request and its whole answer, within `timeout_s` (default: the client's read timeout) from start
        to end and MAX_BODY_BYTES: httpx's timeouts bound each read, so a server that trickles its answer, or
        sends one without end, would otherwise hold the caller (and its memory) for ever."""
        limit_s = timeout_s or self.timeout.read or DEFAULT_TIMEOUT.read
        url = self.base_url + path

        async def whole() -> httpx.Response:
            async with self._http.stream(method, path, json=body,
                                         **({"timeout": timeout_s} if timeout_s else {})) as r:
                chunks, size = [], 0
                async for chunk in r.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise ServerError(f"{self.base_url} is not a vLLM server: {method} {path} answered more "
                                          f"than {MAX_BODY_BYTES // MIB} MiB", url=url)
                    chunks.append(chunk)
                return httpx.Response(r.status_code, headers=r.headers, content=b"".join(chunks), request=r.request)

        try:
            return (await asyncio.wait_for(whole(), limit_s)).raise_for_status()
        except asyncio.TimeoutError:
            by = "" if timeout_s else " (--timeout)"
            raise ServerTimeout(f"{url} did not answer within {limit_s:g} s{by} (the whole answer); is it a vLLM "
                                "server that has finished starting?", url=url) from None
        except httpx.HTTPError as err:
            raise _error(url, err, None if timeout_s else self.timeout) from err

    async def _json(self, method: str, path: str, body: dict | None = None) -> object:
        response = await self._exchange(method, path, body=body)
        try:
            return json.loads(response.text)
        except json.JSONDecodeError as err:
            raise _error(self.base_url + path, err) from err

    async def get_json(self, path: str) -> dict:
        data = await self._json("GET", path)
        if not isinstance(data, dict):
            raise ServerError(f"{self.base_url} is not a vLLM server: GET {path} answered {type(data).__name__}, "
                              "not a JSON object", url=self.base_url + path)
        return data

    async def post_json(self, path: str, body: dict) -> dict:
        return await self._json("POST", path, body)

    async def metrics_text(self, *, timeout_s: float | None = None) -> str:
        """The /metrics body; `timeout_s` bounds this one request (watch's stall detection), else --timeout does."""
        return (await self._exchange("GET", "/metrics", timeout_s=timeout_s)).text

    async def healthy(self) -> bool:
        try:
            return (await self._http.get(HEALTH_PATH, timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False
