"""The page as one self-contained HTML file: inline CSS, JS and data, no request leaves it.

`tpfit plan --html` writes it with the plan's view (mode "report"); `tpfit ui` serves the same file with
the form's fields and catalog instead (mode "live"), so the two show a plan the same way.
"""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from importlib import resources

_ASSETS = "tpfit.report.assets"
_SLOT = re.compile(r"/\*(TITLE|CSS|DATA|JS)\*/")


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return resources.files(_ASSETS).joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict) -> str:
    """JSON safe inside <script>: no `</script>`, `<!--` or `&` can end or change the block."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026")


def render_page(data: dict, *, title: str) -> str:
    """The page with DATA (`mode` "live" or "report") inlined."""
    parts = {"TITLE": html.escape(title), "CSS": _asset("page.css"), "DATA": _script_json(data),
             "JS": _asset("page.js")}
    # one pass, so text inside the data can never be taken for a placeholder
    return _SLOT.sub(lambda m: parts[m.group(1)], _asset("page.html"))


def render_report(view: dict) -> str:
    """The saved report of one plan (report/view.py `make_view`)."""
    return render_page({"mode": "report", "view": view}, title=f"tpfit: {view['plan']['model']['id']}")
