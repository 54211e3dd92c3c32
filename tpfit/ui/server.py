"""The local web planner's ASGI app: one page, a JSON endpoint per question, bounded uploads.

Planning is not done here: `plan_view(query, uploads)` (cli/plan_form.py) runs `tpfit plan`'s own parsing
and planning, so the page answers exactly what the command line answers. The app reads no file but the
uploads it was given, which live in one private temporary folder removed at shutdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from tpfit.errors import FieldError
from tpfit.report.html import render_page

UPLOAD_LIMIT_BYTES = 1 << 20
"""Largest config.json accepted (1 MiB; real configs are 1-10 KB, DeepSeek-V3's with its quantization ~2 KB)."""
MAX_UPLOADS = 32
"""Uploads kept at once; the oldest goes first."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

PlanView = Callable[[dict, dict], tuple[dict, dict]]
"""(form query, {upload name: config path}) -> (plan JSON, view); bad input raises FieldError."""


UPLOAD_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+() -]{0,95}\.json", re.IGNORECASE)
"""A file name the page's upload keeps (`Qwen--Qwen3-32B.json`): the model is named by it as `tpfit plan FILE`
names it; any other (a path, a name without .json) is kept as `config.json`."""


def upload_file_name(name: str | None) -> str:
    """The name an uploaded file is kept under: the browser's name for it when plain, else `config.json`."""
    return name if name is not None and UPLOAD_FILE_NAME.fullmatch(name) else "config.json"


class Uploads:
    """Uploaded config files, each in its own folder under one private temporary folder, under the name the user's
    file had (`config.json`, `Qwen--Qwen3-32B.json`)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tpfit-ui-"))
        self.paths: OrderedDict[str, Path] = OrderedDict()

    def add(self, body: bytes, file_name: str = "config.json") -> str:
        """Keep a config; its name is `upload:` + the first 12 hex digits of the SHA-256 of its file name and body."""
        name = "upload:" + hashlib.sha256(file_name.encode() + b"\0" + body).hexdigest()[:12]
        if name not in self.paths:
            folder = self.root / name.replace(":", "-")
            folder.mkdir(exist_ok=True)
            (folder / file_name).write_bytes(body)
            self.paths[name] = folder / file_name
            while len(self.paths) > MAX_UPLOADS:
                _, old = self.paths.popitem(last=False)
                shutil.rmtree(old.parent, ignore_errors=True)
        return name

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def make_app(*, plan_view: PlanView, page_data: dict, allowed_hosts: tuple[str, ...] | None = None) -> Starlette:
    """The app: `/` the page, `/api/plan` `tpfit plan --json`'s object, `/api/view` the page's view,
    `/api/upload` a config.json (`?name=` the file's own name, which names the model).

    Args:
        page_data: the form's fields, catalog and example inputs, inlined into the page.
        allowed_hosts: Host headers served (loopback names when bound to loopback: a page elsewhere cannot
            reach this server through a DNS name of its own); None serves any.
    """
    uploads = Uploads()
    page = render_page({"mode": "live", "upload_limit_bytes": UPLOAD_LIMIT_BYTES, **page_data},
                       title="tpfit: vLLM deployment planner")

    def answer(request: Request, key: int) -> JSONResponse:
        query = dict(request.query_params)
        try:
            result = plan_view(query, dict(uploads.paths))
        except FieldError as err:  # anything else is a bug: a 500, with its traceback in the terminal
            return JSONResponse(err.to_dict(), status_code=400)
        return JSONResponse(result[key])

    def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    def plan_json(request: Request) -> JSONResponse:
        return answer(request, 0)

    def view_json(request: Request) -> JSONResponse:
        return answer(request, 1)

    async def upload(request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a page on another site can send a form or text/plain here, but not JSON without asking first (CORS)
            return _model_error("config.json: send it as application/json", 415)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > UPLOAD_LIMIT_BYTES):
            return _too_big()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > UPLOAD_LIMIT_BYTES:
                return _too_big()
        try:
            config = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return _model_error(f"config.json is not valid JSON ({err}); upload the model's config.json", 400)
        if not isinstance(config, dict):
            return _model_error("config.json must hold a JSON object (the model's config)", 400)
        return JSONResponse({"model": uploads.add(body, upload_file_name(request.query_params.get("name")))})

    routes = [Route("/", index), Route("/api/plan", plan_json), Route("/api/view", view_json),
              Route("/api/upload", upload, methods=["POST"])]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        uploads.close()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _model_error(message: str, status: int) -> JSONResponse:
    return JSONResponse(FieldError(message, field="model", flag="MODEL").to_dict(), status_code=status)


def _too_big() -> JSONResponse:
    return _model_error(f"config.json: more than {UPLOAD_LIMIT_BYTES} bytes; upload the model's config.json only "
                        "(no weights)", 413)
