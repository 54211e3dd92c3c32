"""`tpfit ARGS` inside the test process, through the console script's main(): stdout, the error line, the exit code.

A fresh interpreter per call costs about a second on the shared 2-core test machine; tests that compare many
pages with the CLI call it here instead. Tests of start-up and imports still start a real process.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys


def tpfit(*args: str) -> subprocess.CompletedProcess:
    from tpfit.cli.app import main

    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = ["tpfit", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(["tpfit", *args], code, out.getvalue(), err.getvalue())
