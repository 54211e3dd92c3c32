"""Reading a vLLM log the user names (`explain LOGFILE`, `verify --log`, `check --log`): its last MAX_LOG_BYTES
as text, or one UsageError naming the flag."""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path
from typing import BinaryIO

from tpfit.errors import UsageError
from tpfit.limits import MAX_LOG_BYTES


def read_log_tail(stream: BinaryIO, limit: int = MAX_LOG_BYTES) -> str:
    """A log's last `limit` bytes as text (the end holds vLLM's refusal): a file is read from there; a pipe is read
    to its end, keeping only the last chunks, so a log of any length takes at most `limit` bytes of memory."""
    if stream.seekable():
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - limit))
    chunks: deque[bytes] = deque()
    held = 0
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
        held += len(chunk)
        while held - len(chunks[0]) >= limit:
            held -= len(chunks.popleft())
    return b"".join(chunks)[-limit:].decode(errors="replace")


def read_log_file(path: str | Path, *, flag: str, hint: str = "") -> str:
    """The log at `path` (read_log_tail), or UsageError naming `flag`: a folder, a device (`/dev/zero` never ends),
    a missing or unreadable file. `hint`: how else to give the log, added to the device's line."""
    try:
        with open(path, "rb") as log:
            if not stat.S_ISREG(mode := os.fstat(log.fileno()).st_mode) and not stat.S_ISFIFO(mode):
                raise UsageError(f"not a log file (a device or other special file); give a vLLM log file{hint}",
                                 flag=flag, value=str(path))
            return read_log_tail(log)
    except IsADirectoryError:
        raise UsageError("is a folder; give a vLLM log file", flag=flag, value=str(path)) from None
    except OSError as err:
        raise UsageError(f"cannot read it ({err.strerror or err})", flag=flag, value=str(path)) from None
