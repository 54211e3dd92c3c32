"""A Hugging Face id through huggingface_hub: config.json (cache first, offline mode respected),
the quantization sidecar, and exact weight bytes from the safetensors metadata."""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import replace

from tpfit.errors import OfflineError, SourceError
from tpfit.model.catalog import catalog_names
from tpfit.model.hf_config import make_spec
from tpfit.model.spec import ModelSpec


def is_offline() -> bool:
    """`TPFIT_OFFLINE` or `HF_HUB_OFFLINE` set to a true value (huggingface_hub's spellings)."""
    return any(os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"} for v in ("TPFIT_OFFLINE", "HF_HUB_OFFLINE"))


def _suggest(repo_id: str) -> str:
    close = difflib.get_close_matches(repo_id, catalog_names(), n=3, cutoff=0.6)
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
        raise OfflineError(f"{repo_id} is not in the local Hugging Face cache and the Hub cannot be reached "
                           f"(offline); unset HF_HUB_OFFLINE / TPFIT_OFFLINE, or use a bundled model such as "
                           f"llama-3.1-70b{_suggest(repo_id)}", source=repo_id) from err
    if isinstance(err, hf.EntryNotFoundError):
        raise SourceError(f"{repo_id} has no config.json; is it a model repository?", source=repo_id) from err
    raise SourceError(f"cannot read {repo_id} from the Hub: {err}", source=repo_id) from err


def load_hub(repo_id: str, *, revision: str | None = None) -> ModelSpec:
    """Load a model's config from the Hub (the local cache first)."""
    try:
        from huggingface_hub import errors as hf
        from huggingface_hub import get_safetensors_metadata, hf_hub_download
    except ImportError as err:  # pragma: no cover - a dependency of tpfit
        raise SourceError("huggingface_hub is missing; run: pip install huggingface_hub") from err
    offline = is_offline()
    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision, local_files_only=offline)
    except (hf.HfHubHTTPError, hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError, hf.HFValidationError,
            OSError) as err:
        if isinstance(err, hf.HFValidationError):
            raise SourceError(f"{repo_id!r} is neither a local path, a bundled model nor a valid Hugging Face id "
                              f"(owner/name){_suggest(repo_id)}", source=repo_id) from err
        _raise_source_error(repo_id, err)
    try:
        config = json.loads(open(path).read())
    except (OSError, json.JSONDecodeError) as err:
        raise SourceError(f"{repo_id}: config.json in the cache is not valid JSON ({err})", source=repo_id) from err
    sidecar = None
    try:
        sidecar = json.loads(open(hf_hub_download(repo_id, "hf_quant_config.json", revision=revision,
                                                  local_files_only=offline)).read())
    except Exception:  # noqa: BLE001 - the sidecar is optional
        sidecar = None
    spec = make_spec(config, model_id=repo_id, sidecar=sidecar, source=f"hub:{repo_id}")
    if not offline:
        try:
            meta = get_safetensors_metadata(repo_id, revision=revision)
            total = sum(_tensor_bytes(t) for f in meta.files_metadata.values() for t in f.tensors.values())
            spec = replace(spec, checkpoint_bytes=total)
        except Exception:  # noqa: BLE001 - exact bytes are a bonus; the config is enough to plan
            pass
    return spec


def _tensor_bytes(tensor) -> int:
    from tpfit.model.safetensors import DTYPE_BITS

    return tensor.parameter_count * DTYPE_BITS.get(tensor.dtype, 16) // 8
