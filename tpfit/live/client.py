"""HTTP to a vLLM server (the only httpx import): JSON endpoints, /metrics, streamed completions.

Every call takes the clock as an argument where timing matters, and raises ServerError (one line,
naming the URL) for transport failures, so callers never see an httpx exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from tpfit.errors import ServerError

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


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent:
    """One streamed chunk: when it arrived and how many tokens it carried."""

    t_s: float
    tokens: int
    finish_reason: str | None = None
    completion_tokens: int | None = None
    """The server's own count, on the final usage chunk (stream_options.include_usage)."""


class VllmClient:
    """A small async client for one server (`base_url` like http://127.0.0.1:8000)."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout,
                                       limits=httpx.Limits(max_connections=max_connections,
                                                           max_keepalive_connections=max_connections))

    async def __aenter__(self) -> VllmClient:
        return self

    async def __aexit__(self, *exc) -> None:
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

    async def stream_completion(self, body: dict, *, now: Callable[[], float] = time.perf_counter
                                ) -> AsyncIterator[StreamEvent]:
        """POST /v1/completions with stream=true; yields one event per chunk that carried text."""
        payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
        try:
            async with self._http.stream("POST", "/v1/completions", json=payload) as r:
                if r.status_code != 200:
                    await r.aread()
                    r.raise_for_status()
                async for line in r.aiter_lines():  # read to the end, so the connection goes back to the pool
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    # vLLM streams one token per chunk; parse JSON only for errors and the last chunk
                    if '"finish_reason":null' in line and '"error"' not in line:
                        yield StreamEvent(t_s=now(), tokens=1)
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise ServerError(f"{self.base_url}: {chunk['error']}", url=self.base_url)
                    if chunk.get("usage") and not chunk.get("choices"):
                        yield StreamEvent(t_s=now(), tokens=0,
                                          completion_tokens=chunk["usage"].get("completion_tokens"))
                        continue
                    for choice in chunk.get("choices", []):
                        # one engine step, one token (its text may be empty: a partial UTF-8 character)
                        ids = choice.get("token_ids")
                        yield StreamEvent(t_s=now(), tokens=len(ids) if ids else 1,
                                          finish_reason=choice.get("finish_reason"))
        except (httpx.HTTPError, json.JSONDecodeError) as err:
            raise _error(self.base_url + "/v1/completions", err) from err
