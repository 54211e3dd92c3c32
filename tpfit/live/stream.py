"""Streamed completions for the load, at a small fraction of a general HTTP client's CPU per token.

A load of N concurrent streams sees one HTTP chunk per token per stream. Through httpx (h11, httpcore,
anyio, an async generator per request) each chunk costs tens of microseconds of Python, so the client,
not the server, becomes what the benchmark measures (bench/client_cpu.py). Here each connection is an
`asyncio.BufferedProtocol` that reads into one reused buffer, stamps the time, de-chunks the body and
counts SSE events with bytes methods (a read holding exactly one token chunk takes a shorter path); the
request's coroutine wakes once, at the end. Only the final events (the last token, usage, errors) are
parsed as JSON.

Scope: HTTP/1.1 keep-alive to one vLLM server (http or https), `Transfer-Encoding: chunked` or
`Content-Length` bodies. Everything else tpfit sends goes through httpx (client.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tpfit.errors import ServerError

_TOKEN_EVENT = b'"finish_reason":null'


@dataclass(slots=True)
class StreamTimes:
    """What one streamed completion gave: when each token-carrying event arrived, and the server's count."""

    token_times: list[float] = field(default_factory=list)
    completion_tokens: int | None = None
    finish_reason: str | None = None


class _Exchange(asyncio.BufferedProtocol):
    """One keep-alive connection; one request at a time. Reads into one reused buffer (no 256 KiB
    allocation per read, as asyncio's plain Protocol path makes)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._done: asyncio.Future | None = None
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)

    # ---- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(f"the server closed the connection mid-response ({exc or 'EOF'})"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes) -> None:
        t = self.now()
        if self._done is None or self._done.done():
            return  # nothing asked: a server's stray bytes are not a response
        try:
            self._feed(data, t)
        except _StreamError as err:  # vLLM's error event inside a 200 stream
            self._finish(exc=err)
            self.transport.close()
        except ValueError as err:  # a response this parser does not understand: fail the request, drop the connection
            self._finish(exc=ConnectionError(f"unreadable HTTP response: {err}"))
            self.transport.close()

    # ---- one request --------------------------------------------------------------------------
    def start(self, request: bytes) -> asyncio.Future:
        self._done = asyncio.get_running_loop().create_future()
        self._head = b""
        self._status = 0
        self._chunked = False
        self._remaining = -1  # bytes left in the current chunk (chunked) or the body (Content-Length)
        self._raw = b""       # undecoded chunked framing carried to the next data_received
        self._events = b""    # decoded SSE text not yet split into events
        self._body = bytearray()  # the whole body, kept only for non-200 answers
        self._keep_alive = True
        self.result = StreamTimes()
        self.transport.write(request)
        return self._done

    @property
    def answered_nothing(self) -> bool:
        return self._status == 0 and not self._head

    def _finish(self, exc: BaseException | None = None) -> None:
        if self._done is None or self._done.done():
            return
        if exc is not None:
            self._done.set_exception(exc)
        elif self._status != 200:
            self._done.set_exception(_HttpStatus(self._status, bytes(self._body[:300])))
        else:
            self._done.set_result(self.result)
        if not self._keep_alive:
            self.transport.close()

    def _feed(self, data: bytes, t: float) -> None:
        if self._status == 200 and self._chunked and self._remaining == -1 and not self._raw and not self._events:
            # the usual read: one whole chunk holding one whole token event
            eol = data.find(b"\r\n", 0, 10)
            if eol > 0:
                end = eol + 2 + int(data[:eol], 16)
                if (len(data) == end + 2 and data.endswith(b"\n\n\r\n") and data.count(b"\n\n") == 1
                        and _TOKEN_EVENT in data and b'"error"' not in data):
                    self.result.token_times.append(t)
                    return
        if not self._status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > 65536:
                    raise ValueError("headers larger than 64 KiB")
                return
            self._read_head(self._head[:end])
            data, self._head = self._head[end + 4:], b""
        if self._chunked:
            self._dechunk(data, t)
        else:
            self._body_part(data[:self._remaining], t)
            self._remaining -= len(data)
            if self._remaining <= 0:
                self._finish()

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"status line {lines[0][:80]!r}")
        self._status = int(parts[1])
        self._keep_alive = parts[0] != b"HTTP/1.0"
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"content-length":
                length = int(value)
            elif name == b"connection":
                self._keep_alive = value != b"close"
        if not self._chunked:
            if length is None:
                raise ValueError("neither chunked nor Content-Length")
            self._remaining = length

    def _dechunk(self, data: bytes, t: float) -> None:
        buf = self._raw + data if self._raw else data
        pos, n = 0, len(buf)
        while pos < n:
            if self._remaining > 0:  # inside a chunk's payload
                take = min(self._remaining, n - pos)
                self._body_part(buf[pos:pos + take], t)
                self._remaining -= take
                pos += take
                if self._remaining:
                    break
                self._remaining = -2  # the CRLF after the payload
            if self._remaining == -2:
                if n - pos < 2:
                    break
                pos += 2
                self._remaining = -1
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:  # last chunk (no trailers from vLLM's server)
                self._raw = b""
                self._finish()
                return
            self._remaining = size
        self._raw = buf[pos:]

    def _body_part(self, part: bytes, t: float) -> None:
        if self._status != 200:
            self._body += part
            return
        events = self._events + part if self._events else part
        if b"\n\n" not in events:
            self._events = events
            return
        *complete, self._events = events.split(b"\n\n")
        for ev in complete:
            if _TOKEN_EVENT in ev and b'"error"' not in ev:
                self.result.token_times.append(t)  # one engine step, one token, even with empty text
            elif ev.startswith(b"data: {"):
                self._final_event(json.loads(ev[6:]), t)

    def _final_event(self, chunk: dict, t: float) -> None:
        if "error" in chunk or chunk.get("object") == "error":
            err = chunk.get("error", chunk)
            raise _StreamError(err.get("message", str(err)) if isinstance(err, dict) else str(err))
        if chunk.get("usage") and not chunk.get("choices"):
            self.result.completion_tokens = chunk["usage"].get("completion_tokens")
            return
        for choice in chunk.get("choices", []):
            ids = choice.get("token_ids")
            self.result.token_times.extend([t] * (len(ids) if ids else 1))
            self.result.finish_reason = choice.get("finish_reason") or self.result.finish_reason


class _HttpStatus(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body.decode('utf-8', 'replace')}".replace("\n", " "))


class _StreamError(ValueError):
    """An error event inside a 200 stream."""


class _Stale(Exception):
    """A reused connection closed before any byte of the answer: the request never reached the server."""


class CompletionStreams:
    """A pool of keep-alive connections that stream /v1/completions (`base_url` like http://127.0.0.1:8000)."""

    def __init__(self, base_url: str, *, now: Callable[[], float] = time.perf_counter):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"{base_url}: expected http://HOST:PORT or https://HOST:PORT", url=base_url)
        self.base_url = base_url.rstrip("/")
        self._host, self._ssl = parts.hostname, parts.scheme == "https"
        self._port = parts.port or (443 if self._ssl else 80)
        self._path = (parts.path.rstrip("/") + "/v1/completions").encode()
        self._hostport = parts.netloc.encode()
        self.now = now
        self._idle: list[_Exchange] = []
        self._all: set[_Exchange] = set()

    def encode(self, body: dict) -> bytes:
        """The whole request, built once per load (every request of a load is the same)."""
        payload = json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}},
                             separators=(",", ":")).encode()
        return (b"POST " + self._path + b" HTTP/1.1\r\nHost: " + self._hostport +
                b"\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: " +
                str(len(payload)).encode() + b"\r\n\r\n" + payload)

    async def _connection(self, timeout_s: float) -> _Exchange:
        """An idle kept-alive connection, or a new one within `timeout_s` (the request's own bound: a busy server
        on a loaded machine can take seconds to complete a handshake while the load's other requests stream)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._all.discard(conn)
        loop = asyncio.get_running_loop()
        ctx = ssl.create_default_context() if self._ssl else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Exchange(self.now), self._host, self._port, ssl=ctx), timeout_s)
        except asyncio.TimeoutError as err:
            raise ServerError(f"{self.base_url} did not accept a connection within {timeout_s:.0f} s",
                              url=self.base_url) from err
        except OSError as err:
            raise ServerError(f"cannot connect to {self.base_url}: is the vLLM server running there? ({err})",
                              url=self.base_url) from err
        self._all.add(conn)
        return conn

    async def complete(self, request: bytes, *, timeout_s: float) -> StreamTimes:
        """Send one encoded request, wait for its whole stream; ServerError on any failure."""
        reused = bool(self._idle)
        try:
            return await self._exchange(await self._connection(timeout_s), request, timeout_s, reused=reused)
        except _Stale:
            # a kept-alive connection the server closed as we sent (its idle timeout): once more, on a new one
            return await self._exchange(await self._connection(timeout_s), request, timeout_s, reused=False)

    async def _exchange(self, conn: _Exchange, request: bytes, timeout_s: float, *, reused: bool) -> StreamTimes:
        url = self.base_url + "/v1/completions"
        try:
            result = await asyncio.wait_for(conn.start(request), timeout_s)
        except asyncio.TimeoutError as err:
            conn.transport.close()
            raise ServerError(f"{url} did not finish a streamed completion in {timeout_s:.0f} s", url=url) from err
        except _HttpStatus as err:  # the body was read to its end: the connection stays usable
            if not conn.closed:
                self._idle.append(conn)
            raise ServerError(f"{url} answered {err}", url=url) from err
        except (ConnectionError, _StreamError, ValueError) as err:
            conn.transport.close()
            if reused and isinstance(err, ConnectionError) and conn.answered_nothing:
                raise _Stale from err
            raise ServerError(f"{url}: {err}", url=url) from err
        except asyncio.CancelledError:
            conn.transport.close()
            raise
        if not conn.closed:
            self._idle.append(conn)
        return result

    async def aclose(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
