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
