"""Rank accepted layouts, turn the best into vLLM flags with reasons, and answer in one line."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tpfit.model.spec import QuantSpec
from tpfit.units import GIB, format_gib

if TYPE_CHECKING:
    from tpfit.core.plan import Candidate, Plan

PP_DISCOUNT = 0.8
"""Weight of each extra pipeline stage when ranking by capacity (PP adds a bubble; TP keeps one step)."""
_VERDICT_ORDER = {"starts": 0, "insufficient_concurrency": 1, "overflows_at_runtime": 2, "refused_at_start": 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    """One vLLM flag and why tpfit sets it."""

    name: str
    value: str | None
    reason: str
    optional: bool = False
    """A suggestion beside the plan (its figures are for the plan without it), not part of the command."""

    def argv(self) -> list[str]:
        return [self.name] if self.value is None else [self.name, self.value]

    def to_dict(self) -> dict:
        return {"flag": self.name, "value": self.value, "reason": self.reason, "optional": self.optional}


def _score(cluster, c: Candidate) -> tuple:
    m = c.memory
    cross_node_tp = c.layout.tp > cluster.gpus_per_node
    capacity = m.max_concurrency * c.layout.dp
    # starts first; then no TP across nodes (vLLM: TP within a node, PP across nodes); then every GPU put to
    # work; then the most concurrent requests, each extra pipeline stage discounted 20 % (it adds a bubble);
    # then, among layouts that don't fit, the one closest to fitting
    # Without NVLink between the GPUs, vLLM's docs prefer PP to TP: there the TP all-reduce is what costs
    stages = c.layout.pp - 1 if has_nvlink(cluster) else (c.layout.tp > 1) * 1.0
    return (_VERDICT_ORDER[m.verdict], cross_node_tp, -c.layout.num_gpus,
            -round(capacity * PP_DISCOUNT ** stages, 1), c.layout.pp, -m.worst.kv_cache_bytes)


def has_nvlink(cluster) -> bool:
    """NVLink between the GPUs of a node: detected pairs when NVML read them, else the catalog's word."""
    n = cluster.gpus_per_node
    if cluster.source == "nvml":
        return n == 1 or len(cluster.nvlink_pairs) >= n * (n - 1) // 2
    return n == 1 or cluster.gpu.nvlink


def pick_best(cluster, candidates: tuple[Candidate, ...]) -> int | None:
    """Index of the accepted layout tpfit recommends, or None when vLLM refuses every layout."""
    ranked = sorted((i for i, c in enumerate(candidates) if c.accepted and c.memory),
                    key=lambda i: _score(cluster, candidates[i]))
    return ranked[0] if ranked else None


def make_flags(plan: Plan, c: Candidate) -> tuple[Flag, ...]:
    """The `vllm serve` flags for one candidate, each with its reason."""
    m, lay = c.memory, c.layout
    flags = [Flag(name="--tensor-parallel-size", value=str(lay.tp),
                  reason=f"{plan.model.num_attention_heads} heads split over {lay.tp} GPU(s)")]
    if lay.pp > 1:
        flags.append(Flag(name="--pipeline-parallel-size", value=str(lay.pp),
                          reason=f"{plan.model.num_hidden_layers} layers in {lay.pp} stages"))
    if lay.dp > 1:
        flags.append(Flag(name="--data-parallel-size", value=str(lay.dp), reason=f"{lay.dp} independent replicas"))
    if lay.enable_expert_parallel:
        flags.append(Flag(name="--enable-expert-parallel", value=None, reason="whole experts per GPU"))
    if plan.model.quant and plan.model.quant.online:
        flags.append(Flag(name="--quantization", value=plan.model.quant.method, reason="FP8 weights, loaded from bf16"))
    flags.append(Flag(name="--max-model-len", value=str(m.max_model_len),
                      reason=f"requests up to {m.max_model_len} tokens; at most {m.max_model_len_fit} fit one request"))
    seqs = max(1, min(m.max_num_seqs, int(m.max_concurrency)))
    flags.append(Flag(name="--max-num-seqs", value=str(seqs),
                      reason=f"the KV cache holds {m.max_concurrency:.2f} requests of {m.max_model_len} tokens"))
    free = min(g.free_bytes for g in m.gpus)
    flags.append(Flag(name="--gpu-memory-utilization", value=f"{m.gpu_memory_utilization:g}",
                      reason=f"leaves {format_gib(free)} GiB free per GPU while serving"))
    if plan.engine.max_num_batched_tokens:
        flags.append(Flag(name="--max-num-batched-tokens", value=str(m.max_num_batched_tokens),
                          reason="as planned: it sets the profile run's activation peak"))
    if plan.engine.dtype != "auto":
        flags.append(Flag(name="--dtype", value=plan.engine.dtype, reason="as planned"))
    if plan.engine.kv_cache_dtype != "auto":
        flags.append(Flag(name="--kv-cache-dtype", value=plan.engine.kv_cache_dtype, reason="as planned"))
    elif plan.cluster.gpu.fp8_supported and plan.model.dtype_bytes == 2 \
            and m.max_concurrency < 2 * plan.workload.concurrency:
        flags.append(Flag(name="--kv-cache-dtype", value="fp8", optional=True,
                          reason=f"{plan.cluster.gpu.name} supports FP8: about twice the KV tokens "
                                 f"(~{2 * m.kv_cache_tokens:,} instead of {m.kv_cache_tokens:,})"))
    if plan.engine.enforce_eager:
        flags.append(Flag(name="--enforce-eager", value=None, reason="no CUDA graphs: frees their memory, slower decode"))
    elif m.verdict == "overflows_at_runtime":
        flags.append(Flag(name="--enforce-eager", value=None, optional=True,
                          reason=f"saves {format_gib(m.worst.cuda_graph_bytes)} GiB of CUDA graphs per GPU at the "
                                 "cost of slower decoding"))
    return tuple(flags)


def _describe_gpus(plan: Plan) -> str:
    cl = plan.cluster
    nodes = f"{cl.nodes}×" if cl.nodes > 1 else ""
    return f"{nodes}{cl.gpus_per_node}×{cl.gpu.id.replace('rtx-', '').upper()}"


def _command(plan: Plan, c: Candidate) -> str:
    """The flags of the one-line answer: the plan's own (no optional suggestions), the utilization only where
    it differs from what the user gave or vLLM's default."""
    given = plan.engine.gpu_memory_utilization or plan.semantics.default_gpu_memory_utilization
    return " ".join(" ".join(f.argv()) for f in make_flags(plan, c) if not f.optional and (
        f.name != "--gpu-memory-utilization" or c.memory.gpu_memory_utilization != given))


def summarize(plan: Plan) -> str:
    """One line for the common question: does it fit, with which layout and flags."""
    from tpfit.core.plan import make_plan

    name = plan.model.model_id.split("/")[-1]
    head = f"{name} on {_describe_gpus(plan)}"
    best = plan.best
    ctx, conc = plan.engine.max_model_len or plan.model.max_model_len, plan.workload.concurrency
    if best is not None and best.memory.verdict == "starts":
        m = best.memory
        return (f"{head}: fits as {best.layout} with {m.max_concurrency:.1f} sequences of {ctx} tokens "
                f"({m.kv_cache_tokens:,} KV tokens); use {_command(plan, best)}")
    dtype = "bf16" if plan.model.dtype == "bfloat16" else plan.model.dtype
    what = f"does not fit in {dtype}" if plan.model.quant is None else "does not fit"
    if best is not None and best.memory.verdict == "insufficient_concurrency":
        m = best.memory
        what = (f"starts as {best.layout} but holds {m.max_concurrency:.2f} sequences of {ctx} tokens, not {conc}"
                f" (--max-num-seqs {max(1, int(m.max_concurrency))})")
    elif best is not None and best.memory.reasons:
        what += f" ({best.memory.reasons[0]})"
    if plan.model.quant is None:
        awq = QuantSpec(method="awq", weight_bits=4, group_size=128, has_zero_points=True)
        # AWQ as planned; failing that, AWQ without CUDA graphs (their memory goes to the KV cache)
        for engine in (plan.engine, replace(plan.engine, enforce_eager=True)):
            alt = make_plan(replace(plan.model, quant=awq), plan.cluster, plan.workload, engine)
            alt_best = alt.best
            if alt_best is None or alt_best.memory.verdict not in ("starts", "insufficient_concurrency"):
                continue
            seqs = max(1, min(conc, int(alt_best.memory.max_concurrency)))
            if alt_best.memory.max_concurrency >= 1:
                return (f"{head}: {what}; AWQ 4-bit fits with {seqs} sequence{'s' if seqs > 1 else ''} of {ctx} tokens; "
                        f"use {_command(alt, alt_best)} with an AWQ checkpoint")
    return f"{head}: {what}; use more or larger GPUs, a quantized checkpoint, or a shorter --max-model-len"


def weights_gib_per_gpu(c: Candidate) -> list[float]:
    return [round(b / GIB, 2) for b in c.weight_bytes_per_gpu]
