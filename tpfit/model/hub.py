"""A Hugging Face id through huggingface_hub: config.json (cache first, offline mode respected),
the quantization sidecar, and exact weight bytes from the safetensors metadata."""

from __future__ import annotations

import difflib
import os

from msgspec.structs import replace

from tpfit.errors import OfflineError, SourceError
from tpfit.model.catalog import catalog_names
from tpfit.model.spec import ModelSpec


def is_offline() -> bool:
    """`TPFIT_OFFLINE` or `HF_HUB_OFFLINE` set to a true value (huggingface_hub's spellings)."""
    return any(os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"} for v in ("TPFIT_OFFLINE", "HF_HUB_OFFLINE"))


def _suggest(repo_id: str) -> str:
    """Bundled names close to REPO_ID, compared without case (the catalog finds LLAMA-3.1-8B, so QWEN3-30B is a
    near miss like qwen3-30b, not a name with nothing close)."""
    names = {name.lower(): name for name in catalog_names()}
    close = [names[n] for n in difflib.get_close_matches(repo_id.lower(), list(names), n=3, cutoff=0.6)]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _raise_source_error(repo_id: str, err: Exception) -> None:
    """Turn huggingface_hub's errors into one clear line (huggingface_hub `_raise_on_head_call_error`)."""
    from huggingface_hub import errors as hf

    if isinstance(err, hf.GatedRepoError):
        raise SourceError(f"{repo_id} is gated: accept its license on the Hub and set HF_TOKEN "
                          "(or run `hf auth login`)", source=repo_id) from err
    if isinstance(err, hf.RepositoryNotFoundError):
        raise SourceError(f"model {repo_id!r} not found on the Hub (or private without HF_TOKEN){_suggest(repo_id)}",
                          source=repo_id) from err
    # LocalEntryNotFoundError subclasses EntryNotFoundError: the offline case goes first
    if isinstance(err, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        raise OfflineError(f"{repo_id}: the Hub did not send config.json ({type(err).__name__}); try again, or use "
                           f"a local folder or a bundled model such as llama-3.1-70b{_suggest(repo_id)}",
                           source=repo_id) from err
    if isinstance(err, hf.EntryNotFoundError):
        raise SourceError(f"{repo_id} has no config.json; is it a model repository?", source=repo_id) from err
    raise SourceError(f"cannot read {repo_id} from the Hub: {err}", source=repo_id) from err


HUB_CONNECT_TIMEOUT_S = 3.0
"""One short attempt to reach the Hub when the cache has no copy (huggingface_hub itself retries for ~25 s)."""


def _cached(repo_id: str, filename: str, revision: str | None) -> str | None:
    """The file's path in the local Hugging Face cache, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return found if isinstance(found, str) else None


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (one connection attempt), or None when it can or a proxy decides."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=HUB_CONNECT_TIMEOUT_S).close()
    except OSError as err:
        return f"{url.hostname}: {err.strerror or err}"
    return None


def load_hub(repo_id: str, *, revision: str | None = None) -> ModelSpec:
    """Load a model's config: the local Hugging Face cache first, then (online) the Hub."""
    try:
        import huggingface_hub  # noqa: F401
        from huggingface_hub import errors as hf
        from huggingface_hub import get_safetensors_metadata, hf_hub_download
        from huggingface_hub.utils import logging as hf_logging
    except ImportError as err:  # pragma: no cover - a dependency of tpfit
        raise SourceError("huggingface_hub is missing; run: pip install huggingface_hub") from err
    hf_logging.set_verbosity_error()  # one line of ours instead of its retry warnings
    try:
        path = _cached(repo_id, "config.json", revision)
    except hf.HFValidationError as err:
        raise SourceError(f"{repo_id!r} is neither a local path, a bundled model nor a valid Hugging Face id "
                          f"(owner/name){_suggest(repo_id)}", source=repo_id) from err
    fetched = path is None
    if path is None:
        from huggingface_hub import constants

        cache = constants.HF_HUB_CACHE
        if is_offline():
            names = [v for v in ("HF_HUB_OFFLINE", "TPFIT_OFFLINE")
                     if os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"}]
            raise OfflineError(f"{repo_id} is not in the local Hugging Face cache ({cache}) and {' and '.join(names)} "
                               f"keeps tpfit off the Hub; unset it to download the config, or use a bundled model "
                               f"such as llama-3.1-70b{_suggest(repo_id)}", source=repo_id)
        why = _hub_unreachable()
        if why:
            raise OfflineError(f"{repo_id} is not in the local Hugging Face cache ({cache}) and the Hub cannot be reached "
                               f"({why}); download it where there is network (hf download {repo_id} config.json), "
                               f"give a local folder, or use a bundled model such as llama-3.1-70b"
                               f"{_suggest(repo_id)}", source=repo_id)
        try:
            path = hf_hub_download(repo_id, "config.json", revision=revision)
        except (hf.HfHubHTTPError, hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError, hf.HFValidationError,
                OSError) as err:
            if isinstance(err, hf.HFValidationError):
                raise SourceError(f"{repo_id!r} is neither a local path, a bundled model nor a valid Hugging Face "
                                  f"id (owner/name){_suggest(repo_id)}", source=repo_id) from err
            _raise_source_error(repo_id, err)
    from pathlib import Path

    from tpfit.model.folder import read_json
    from tpfit.model.validate import make_checked_spec

    config = read_json(Path(path), "config")
    sidecar = None
    try:
        side = _cached(repo_id, "hf_quant_config.json", revision)
        if side is None and fetched:
            side = hf_hub_download(repo_id, "hf_quant_config.json", revision=revision)
        sidecar = read_json(Path(side), "quantization config") if side else None
    except hf.EntryNotFoundError:  # the repository has no sidecar: most models
        sidecar = None
    except SourceError:
        raise
    except (hf.HfHubHTTPError, OSError) as err:
        # a ModelOpt FP8/NVFP4 checkpoint says how it is stored only there: without it tpfit would plan it as
        # unquantized (up to 4x the weight bytes)
        raise SourceError(f"{repo_id}: hf_quant_config.json could not be read ({type(err).__name__}: {err}); "
                          "retry, or download the model folder and give its path", source=repo_id) from err
    spec = make_checked_spec(config, model_id=repo_id, sidecar=sidecar, source=f"{repo_id} config.json ({path})",
                             spec_source=f"hub:{repo_id}")
    if fetched:  # the Hub answered a moment ago; a cached config never waits for the network
        try:
            meta = get_safetensors_metadata(repo_id, revision=revision, timeout=HUB_CONNECT_TIMEOUT_S)
            total = sum(_tensor_bytes(t) for f in meta.files_metadata.values() for t in f.tensors.values())
            spec = replace(spec, checkpoint_bytes=total)
        except (hf.HfHubHTTPError, hf.NotASafetensorsRepoError, hf.SafetensorsParsingError, OSError, ValueError):
            pass  # exact bytes are a bonus; the config is enough to plan
    return spec


def _tensor_bytes(tensor) -> int:
    from tpfit.model.safetensors import DTYPE_BITS

    return tensor.parameter_count * DTYPE_BITS.get(tensor.dtype, 16) // 8
