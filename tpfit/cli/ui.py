"""`tpfit ui`: serve the planner page on this machine (loopback unless --host says otherwise)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tpfit.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
EXAMPLE_QUERY = {"model": "llama-3.1-70b", "gpus": "2xH100", "context": "8192", "concurrency": "3"}
"""What the page plans when opened without inputs in its URL (the README's example)."""


def _is_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int):
    """A bound socket, so a port in use or a bad host is one line, not a server traceback."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise UsageError(f"not an address of this machine ({err}); use 127.0.0.1, ::1 or an interface's address",
                         flag="--host", value=host) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRNOTAVAIL:  # a valid address, of another machine
            raise UsageError(f"not an address of this machine ({err.strerror}); use 127.0.0.1, ::1 or an "
                             "interface's address", flag="--host", value=host) from None
        raise UsageError(f"cannot listen on {host}:{port} ({err.strerror or err}); use another --port "
                         "(0 picks a free one)", flag="--port", value=port) from None
    sock.listen(64)
    return sock


def _page_data() -> dict:
    from tpfit.cli.plan_form import TRUE_WORDS, form_fields
    from tpfit.hardware.catalog import catalog_gpus
    from tpfit.model.catalog import catalog_models

    return {
        "fields": form_fields(),
        "catalog": {"models": [{"alias": a, "hf_id": h} for a, h in catalog_models()],
                    "gpus": [{"alias": g.id, "name": g.name} for g in catalog_gpus()]},
        "example": EXAMPLE_QUERY,
        "true_words": list(TRUE_WORDS),
    }


def ui(
    host: Annotated[Optional[str], typer.Option(
        "--host", help="Interface to serve on (default 127.0.0.1: this machine only). Anything else is reachable "
                       "by others and must be given here explicitly.")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 picks a free one).")] = DEFAULT_PORT,
) -> None:
    """A local web page for planning: pick a model and GPUs, see memory per GPU, layouts, flags and deploy files."""
    try:
        import uvicorn

        from tpfit.ui.server import LOOPBACK_HOSTS, make_app
    except ImportError as err:
        raise UsageError(f"tpfit ui needs Starlette and uvicorn ({err.name} is missing); run: "
                         "pip install 'tpfit[ui]'") from None
    from tpfit.cli.plan_form import plan_view_from_query

    sock = _listen(host or DEFAULT_HOST, port)
    bound, actual_port = sock.getsockname()[:2]
    local = _is_loopback(bound)
    shown = f"[{bound}]" if ":" in bound else bound
    if not local:
        typer.echo(f"warning: serving on {bound}, reachable from other machines; anyone who reaches it can plan "
                   "and upload configs (no file of this machine is read)", err=True)
    app = make_app(plan_view=lambda query, uploads: plan_view_from_query(query, uploads=uploads),
                   page_data=_page_data(), allowed_hosts=(*LOOPBACK_HOSTS, shown) if local else None)
    typer.echo(f"tpfit ui: http://{shown}:{actual_port}/ (Ctrl+C stops it)", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
