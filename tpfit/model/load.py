"""load_model: a local path, a bundled alias, or a Hugging Face id -> ModelSpec."""

from __future__ import annotations

import re
from pathlib import Path

from tpfit.errors import SourceError
from tpfit.model.catalog import catalog_aliases, find_in_catalog
from tpfit.model.spec import ModelSpec

_HF_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
"""owner/name; compiled on first use (re's own cache), never for a bundled model."""


def existing_path(name: str) -> Path | None:
    """NAME as a file or folder of this machine, None when it names none: a name too long to be a path (past the
    system's 255-byte limit, ENAMETOOLONG) or one that cannot be read is no path, not a crash."""
    path = Path(name).expanduser()
    try:
        return path if path.exists() else None
    except OSError:
        return None


def load_model(name: str, *, revision: str | None = None) -> ModelSpec:
    """Resolve MODEL as tpfit's CLI does: existing path, then bundled catalog, then the Hub (each source's module is
    imported only when MODEL is of its kind, so a bundled model starts without the folder and Hub readers)."""
    if not name or not name.strip():
        raise SourceError("no model given; use a bundled name such as llama-3.1-70b, a folder, or owner/name")
    path = existing_path(name)
    if path is not None:
        from tpfit.model.folder import load_folder

        return load_folder(path)
    spec = find_in_catalog(name)
    if spec is not None:
        return spec
    if name.endswith(".json") or name.startswith((".", "/", "~")) or not re.match(_HF_ID, name):
        from tpfit.model.hub import _suggest

        raise SourceError(f"model {name!r}: no such file or folder, not a bundled model "
                          f"({', '.join(catalog_aliases()[:6])}, ...), and not a Hugging Face id (owner/name)"
                          f"{_suggest(name)}", source=name)
    from tpfit.model.hub import load_hub

    return load_hub(name, revision=revision)
