"""Plan -> plain JSON (`tpfit plan --json`): a stable contract, documented in the README; and a saved one read
back as the Plan it was written from (`tpfit deploy --plan`, `tpfit watch --plan`)."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from tpfit.core.memory import cudagraphs_in_budget, profile_era
from tpfit.core.plan import SCHEMA_VERSION, Candidate, Plan
from tpfit.core.recommend import closest, make_flags, summarize, weights_gib_per_gpu
from tpfit.units import gib


def candidate_to_dict(plan: Plan, c: Candidate) -> dict:
    return {
        "layout": c.layout.to_dict(),
        "accepted": c.accepted,
        "reasons": [v.to_dict() for v in c.violations],
        "weights_gib_per_gpu": weights_gib_per_gpu(c),
        "memory": c.memory.to_dict() if c.memory else None,
        "speed": c.speed.to_dict() if c.speed else None,
        "flags": [f.to_dict() for f in make_flags(plan, c)] if c.memory else [],
    }


def _speed_workload(plan: Plan) -> dict:
    w = plan.speed_workload()
    return {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens}


def _closest_index(plan: Plan) -> int | None:
    """Index of the layout the terminal shows when none starts ("Closest layout TP2 PP1"): the recommended one, else
    the accepted one nearest to starting (recommend.closest); None when every layout broke a rule."""
    near = closest(plan)
    return None if near is None else next(i for i, c in enumerate(plan.candidates) if c is near)


def plan_to_dict(plan: Plan) -> dict:
    from tpfit import __version__

    spec = plan.model
    thumb = plan.rule_of_thumb
    return {
        "schema_version": SCHEMA_VERSION,
        "tpfit_version": __version__,
        "model": {
            "id": spec.model_id, "architecture": spec.architecture, "model_type": spec.model_type,
            "source": spec.source, "dtype": spec.dtype, "num_hidden_layers": spec.num_hidden_layers,
            "num_attention_heads": spec.num_attention_heads, "num_key_value_heads": spec.num_key_value_heads,
            "head_dim": spec.head_dim, "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size,
            "max_model_len": spec.max_model_len, "num_experts": spec.num_experts, "mla": spec.mla is not None,
            "attention_kinds": sorted(spec.attention_kinds),
            "quantization": spec.quant.method if spec.quant else None,
            "params": thumb.params, "checkpoint_gib": gib(spec.checkpoint_bytes) if spec.checkpoint_bytes else None,
            "notes": list(spec.notes),
        },
        "cluster": plan.cluster.to_dict(),
        "engine": {**plan.engine.to_dict(), "cudagraphs_in_budget": cudagraphs_in_budget(spec, plan.semantics),
                   "model_runner": profile_era(spec, plan.semantics).value,
                   "default_gpu_memory_utilization": plan.semantics.default_gpu_memory_utilization},
        "workload": {"context": plan.workload.context, "concurrency": plan.workload.concurrency,
                     "objective": plan.workload.objective.value, "ttft_s": plan.workload.ttft_s,
                     "tpot_s": plan.workload.tpot_s, **_speed_workload(plan)},
        "rule_of_thumb": {
            "weights_gib": gib(thumb.weights_bytes),
            "weights_rule": "params x bytes per parameter",
            "kv_gib_per_request": gib(thumb.kv_bytes_at_context),
            "kv_rule": "1 GB per 1K tokens of context",
        },
        "summary": summarize(plan),
        "recommended": plan.recommended,
        "closest": _closest_index(plan),
        "candidates": [candidate_to_dict(plan, c) for c in plan.candidates],
        "plan": plan.to_dict(),
    }


def plan_json(plan: Plan) -> str:
    """`tpfit plan --json`'s text: `plan_to_dict` as JSON indented by one space, written by msgspec's encoder (the
    standard library's falls back to pure Python when it indents: a few ms of every cold `tpfit plan --json`).
    Non-ASCII characters (the summary's "×", a folder's name) are `\\u` escapes, as the standard library writes
    them, so the text prints on a terminal of any encoding."""
    text = msgspec.json.format(msgspec.json.encode(plan_to_dict(plan)), indent=1).decode()
    return text if text.isascii() else re.sub(r"[^\x00-\x7f]", _escape, text)


def _escape(match: re.Match) -> str:
    """One character as JSON's `\\u` escape; beyond the basic plane, as its UTF-16 surrogate pair."""
    code = ord(match[0])
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


_SAVE_AGAIN = "save the plan again with tpfit plan --json"


def _first_difference(saved: object, made: object, path: str = "") -> str | None:
    """The path of the first value where two JSON documents differ, None when they are equal."""
    if isinstance(saved, dict) and isinstance(made, dict):
        for key in list(made) + [k for k in saved if k not in made]:
            if key not in saved or key not in made:
                return f"{path}.{key}".lstrip(".")
            found = _first_difference(saved[key], made[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(saved, list) and isinstance(made, list) and len(saved) == len(made):
        for i, (a, b) in enumerate(zip(saved, made)):
            found = _first_difference(a, b, f"{path}.{i}")
            if found is not None:
                return found
        return None
    return None if saved == made and type(saved) is type(made) else (path.lstrip(".") or "the document")


def plan_from_dict(doc: dict, *, where: str) -> Plan:
    """The Plan a saved `tpfit plan --json` holds (its `plan` field), checked against the rest of the file: a
    figure or flag changed by hand would otherwise be ignored, so it is refused, naming the field. UsageError
    naming --plan (`where`: the file) for a file that is not such a plan."""
    from tpfit import __version__
    from tpfit.errors import DocumentError, UsageError

    version = doc.get("schema_version")
    if version is None or "candidates" not in doc:
        raise UsageError(f"not a `tpfit plan --json` file; {_SAVE_AGAIN}", flag="--plan", value=where)
    if version != SCHEMA_VERSION:
        raise UsageError(f"schema_version is {version!r}, this tpfit reads {SCHEMA_VERSION}; {_SAVE_AGAIN}",
                         flag="--plan", value=where)
    if "plan" not in doc:
        raise UsageError(f"not a `tpfit plan --json` file: plan is missing; {_SAVE_AGAIN}", flag="--plan", value=where)
    try:
        plan = Plan.from_dict(doc["plan"])
    except DocumentError as err:
        raise UsageError(f"not a `tpfit plan --json` file: plan{'.' if err.field else ': '}{err}; {_SAVE_AGAIN}",
                         flag="--plan", value=where) from None
    except RecursionError:
        raise UsageError(f"not a `tpfit plan --json` file: plan nests too deeply; {_SAVE_AGAIN}", flag="--plan",
                         value=where) from None
    try:
        rendered = plan_to_dict(plan)
    # the Plan decoded field by field, but its parts disagree (a recommended layout of None beside one that serves,
    # a NaN concurrency): rendering it fails somewhere in the summary, which only a file edited by hand reaches
    except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise UsageError(f"not a `tpfit plan --json` file: the plan it holds contradicts itself ({type(err).__name__}: "
                         f"{err}); {_SAVE_AGAIN}", flag="--plan", value=where) from None
    made = msgspec.json.decode(msgspec.json.encode({**rendered, "tpfit_version": doc.get("tpfit_version")}))
    changed = None if doc == made else _first_difference(doc, made)  # the walk only to name what differs
    if changed is not None:
        # a build of the same version and schema may word the answer otherwise: the file can't tell the two apart
        by = (f", or another build of tpfit {__version__} wrote it" if doc.get("tpfit_version") == __version__
              else f" (or tpfit {doc.get('tpfit_version')!r} wrote it)")
        raise UsageError(f"{changed} differs from the plan the file holds: it was changed after tpfit plan --json "
                         f"wrote it{by}; {_SAVE_AGAIN}", flag="--plan", value=where)
    return plan


def read_plan_file(path: Path) -> Plan:
    """`tpfit deploy --plan FILE`: the Plan saved there (plan_from_dict), errors naming --plan and the field."""
    from tpfit.model.folder import read_json

    return plan_from_dict(read_json(path, "plan"), where=str(path))

