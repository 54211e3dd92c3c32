"""HTTP to a vLLM server (the only httpx import): JSON endpoints and /metrics; the load's streamed
completions go through `streams` (stream.py), which costs far less CPU per token.

Every call raises ServerError (one line, naming the URL) for transport failures, so callers never
see an httpx exception.
"""

from __future__ import annotations

import json

import httpx

from tpfit.errors import ServerError
from tpfit.live.stream import CompletionStreams

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _error(url: str, err: Exception) -> ServerError:
    if isinstance(err, httpx.ConnectError):
        return ServerError(f"cannot connect to {url}: is the vLLM server running there?", url=url)
    if isinstance(err, httpx.TimeoutException):
        return ServerError(f"{url} did not answer in time ({type(err).__name__})", url=url)
    if isinstance(err, httpx.HTTPStatusError):
        body = err.response.text[:300].replace("\n", " ")
        return ServerError(f"{url} answered HTTP {err.response.status_code}: {body}", url=url)
    return ServerError(f"{url}: {type(err).__name__}: {err}", url=url)


class VllmClient:
    """A small async client for one server (`base_url` like http://127.0.0.1:8000)."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout,
                                       limits=httpx.Limits(max_connections=max_connections,
                                                           max_keepalive_connections=max_connections))
        self.streams = CompletionStreams(self.base_url)

    async def __aenter__(self) -> VllmClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.streams.aclose()
        await self._http.aclose()

    async def get_json(self, path: str) -> dict:
        try:
            r = await self._http.get(path)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, json.JSONDecodeError) as err:
            raise _error(self.base_url + path, err) from err

    async def post_json(self, path: str, body: dict) -> dict:
        try:
            r = await self._http.post(path, json=body)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, json.JSONDecodeError) as err:
            raise _error(self.base_url + path, err) from err

    async def metrics_text(self) -> str:
        try:
            r = await self._http.get("/metrics")
            r.raise_for_status()
            return r.text
        except httpx.HTTPError as err:
            raise _error(self.base_url + "/metrics", err) from err

    async def healthy(self) -> bool:
        try:
            return (await self._http.get("/health", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False
