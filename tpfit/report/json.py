"""Plan -> plain JSON (`tpfit plan --json`): a stable contract, documented in the README."""

from __future__ import annotations

from tpfit.core.memory import cudagraphs_in_budget, profile_era
from tpfit.core.plan import SCHEMA_VERSION, Candidate, Plan
from tpfit.core.recommend import make_flags, summarize, weights_gib_per_gpu
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
    w = plan.workload.speed_workload()
    return {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens}


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
        "candidates": [candidate_to_dict(plan, c) for c in plan.candidates],
    }

