"""The recommended layout as vLLM flags with their reasons, and the one-line answer."""

from __future__ import annotations

from msgspec import Struct

from tpfit.core.layout import Layout
from tpfit.core.memory import MemoryPlan
from tpfit.core.plan import Candidate, Plan
from tpfit.core.rank import SPEED_TIE, rank_accepted
from tpfit.kinds import KvCacheDtype, ModelDtype, Objective, Verdict
from tpfit.units import GIB, format_gib


class Flag(Struct, frozen=True, kw_only=True):
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


def layout_flags(layout) -> str:
    """The vLLM flags that select one layout: `--tensor-parallel-size 2 --pipeline-parallel-size 2`."""
    flags = [f"--tensor-parallel-size {layout.tp}"]
    if layout.pp > 1:
        flags.append(f"--pipeline-parallel-size {layout.pp}")
    if layout.dp > 1:
        flags.append(f"--data-parallel-size {layout.dp}")
    if layout.enable_expert_parallel:
        flags.append("--enable-expert-parallel")
    return " ".join(flags)


def _rule_refusal(plan: Plan, head: str) -> str:
    """Every layout broke a vLLM rule: say which rule, with the user's own flags, and its fix."""
    first = plan.candidates[0].violations[0]
    if len(plan.candidates) == 1:
        what = layout_flags(plan.candidates[0].layout)
    else:
        common = {v.rule for v in plan.candidates[0].violations}
        for c in plan.candidates[1:]:
            common &= {v.rule for v in c.violations}
        first = next((v for v in plan.candidates[0].violations if v.rule in common), first)
        what = f"all {len(plan.candidates)} layouts"
    return f"{head}: vLLM refuses {what}: {first.detail}; {first.fix}"


def closest(plan: Plan) -> Candidate | None:
    """The recommended layout, or when none starts the accepted one nearest to starting (None if every
    layout broke a rule)."""
    ranked = rank_accepted(plan.cluster, plan.candidates, plan.workload)
    return plan.best or (plan.candidates[ranked[0]] if ranked else None)


def num_seqs(m: MemoryPlan) -> int:
    """The `--max-num-seqs` the command gives for a memory plan: the requests its KV cache holds (whole ones, at
    least one), at most the batch the plan was made with (the given flag or vLLM's default). The one-line answer
    quotes the same figure."""
    return max(1, min(m.max_num_seqs, int(m.max_concurrency)))


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
    if lay.enable_expert_parallel:  # vLLM uses expert parallel only across TP x DP above 1 (FusedMoEParallelConfig)
        flags.append(Flag(name="--enable-expert-parallel", value=None,
                          reason="whole experts per GPU" if lay.moe_parallel_size > 1 else
                          "as asked, but vLLM ignores it here: expert parallel needs TP x DP above 1, and each "
                          "GPU already holds every expert of its layers"))
    if plan.model.quant and plan.model.quant.online:
        flags.append(Flag(name="--quantization", value=plan.model.quant.method, reason="FP8 weights, loaded from bf16"))
    flags.append(Flag(name="--max-model-len", value=str(m.max_model_len),
                      reason=f"requests up to {m.max_model_len} tokens; at most {m.max_model_len_fit} fit one request"))
    holds = f"the KV cache holds {m.max_concurrency:.2f} requests of {m.max_model_len} tokens{_each(lay)}"
    if m.max_num_seqs < int(m.max_concurrency):  # the batch, not the KV cache, limits what runs at once
        whose = "as given" if plan.engine.max_num_seqs else "vLLM's limit for this batch"
        holds = f"at most {m.max_num_seqs} requests run at once ({whose}); {holds}"
    flags.append(Flag(name="--max-num-seqs", value=str(num_seqs(m)), reason=holds))
    free = min(g.free_bytes for g in m.gpus)
    flags.append(Flag(name="--gpu-memory-utilization", value=f"{m.gpu_memory_utilization:g}",
                      reason=f"leaves {format_gib(free)} GiB free per GPU while serving"))
    if plan.engine.max_num_batched_tokens:
        flags.append(Flag(name="--max-num-batched-tokens", value=str(m.max_num_batched_tokens),
                          reason="as planned: it sets the profile run's activation peak"))
    if plan.engine.dtype is not ModelDtype.AUTO:
        flags.append(Flag(name="--dtype", value=plan.engine.dtype, reason="as planned"))
    if plan.engine.kv_cache_dtype is not KvCacheDtype.AUTO:
        flags.append(Flag(name="--kv-cache-dtype", value=plan.engine.kv_cache_dtype, reason="as planned"))
    elif plan.cluster.gpu.fp8_supported and plan.model.dtype_bytes == 2 \
            and m.max_concurrency < 2 * plan.workload.concurrency:
        flags.append(Flag(name="--kv-cache-dtype", value=KvCacheDtype.FP8, optional=True,
                          reason=f"{plan.cluster.gpu.name} supports FP8: about twice the KV tokens "
                                 f"(~{2 * m.kv_cache_tokens:,} instead of {m.kv_cache_tokens:,})"))
    if plan.engine.language_model_only:
        flags.append(Flag(name="--language-model-only", value=None, reason="text only: no vision tower loaded"))
    if plan.engine.enforce_eager:
        flags.append(Flag(name="--enforce-eager", value=None, reason="no CUDA graphs: frees their memory, slower decode"))
    elif m.verdict is Verdict.OVERFLOWS_AT_RUNTIME:
        flags.append(Flag(name="--enforce-eager", value=None, optional=True,
                          reason=f"saves {format_gib(m.worst.cuda_graph_bytes)} GiB of CUDA graphs per GPU at the "
                                 "cost of slower decoding"))
    return tuple(flags)


def _describe_gpus(plan: Plan) -> str:
    cl = plan.cluster
    nodes = f"{cl.nodes}×" if cl.nodes > 1 else ""
    return f"{nodes}{cl.gpus_per_node}×{cl.gpu.short_name}"


def _command(plan: Plan, c: Candidate) -> str:
    """The flags of the one-line answer: the plan's own (no optional suggestions), the utilization only where
    it differs from what the user gave or vLLM's default."""
    given = plan.engine.gpu_memory_utilization or plan.semantics.default_gpu_memory_utilization
    return " ".join(" ".join(f.argv()) for f in make_flags(plan, c) if not f.optional and (
        f.name != "--gpu-memory-utilization" or c.memory.gpu_memory_utilization != given))


def _kind(lay) -> str:
    """A layout in a word for the comparison line: DP=2, TP=2, PP=2, TP=2 PP=2, 1 GPU."""
    parts = [f"{k}={v}" for k, v in (("TP", lay.tp), ("PP", lay.pp), ("DP", lay.dp)) if v > 1]
    return (" ".join(parts) + (" EP" if lay.enable_expert_parallel else "")) if parts else "1 GPU"


def _times(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio < 1.1 else f"{ratio:.1f}×"


def compare_speed(plan: Plan) -> str:
    """Why the recommended layout wins, against the runner-up by the objective and the layout best at the other
    measure: "DP=2: 1.3× the throughput of TP=2; TP=2 answers each request 1.5× faster"."""
    best = plan.best
    if best is None or best.speed is None:
        return ""
    others = [c for c in plan.accepted if c.speed is not None and c is not best
              and c.memory.verdict is best.memory.verdict]
    if not others:
        return ""
    b = best.speed
    quick = min(others, key=lambda c: c.speed.request_s)
    bulk = max(others, key=lambda c: c.speed.total_output_tok_s)
    if plan.workload.objective is Objective.THROUGHPUT:
        ratio = b.total_output_tok_s / bulk.speed.total_output_tok_s
        line = (f"{_kind(best.layout)}: {_times(ratio)} the throughput of {_kind(bulk.layout)}" if ratio >= 1 else
                f"{_kind(best.layout)}: within {SPEED_TIE:.0%} of {_kind(bulk.layout)}'s throughput, simpler")
        if quick.speed.request_s * 1.05 < b.request_s:
            line += f"; {_kind(quick.layout)} answers each request {_times(b.request_s / quick.speed.request_s)} faster"
        return line
    ratio = quick.speed.request_s / b.request_s
    line = (f"{_kind(best.layout)}: answers each request {_times(ratio)} faster than {_kind(quick.layout)}"
            if ratio >= 1 else f"{_kind(best.layout)}: within {SPEED_TIE:.0%} of {_kind(quick.layout)}'s latency, simpler")
    if bulk.speed.total_output_tok_s > 1.05 * b.total_output_tok_s:
        line += f"; {_kind(bulk.layout)} gives {_times(bulk.speed.total_output_tok_s / b.total_output_tok_s)} the throughput"
    return line


def _speed_clause(plan: Plan) -> str:
    """"; about 3,850 output tok/s at 64 concurrent (TTFT 0.15 s, TPOT 16 ms; DP=2: 1.2× the throughput of TP=2)"."""
    sp = plan.best.speed
    if sp is None:
        return ""
    why = compare_speed(plan)
    idle = plan.cluster.num_gpus - plan.best.layout.num_gpus
    spare = f"; {idle} GPU{'s' if idle > 1 else ''} left free" if idle else ""
    w = plan.workload  # a target the layout misses is said beside its figure (ranked first, it met none better)
    ttft = f" over --ttft {w.ttft_s:g}" if w.ttft_s is not None and sp.ttft_s > w.ttft_s else ""
    tpot = f" over --tpot {w.tpot_s:g}" if w.tpot_s is not None and sp.tpot_s > w.tpot_s else ""
    return (f"; about {sp.total_output_tok_s:,.0f} output tok/s at {sp.concurrency} concurrent (TTFT {sp.ttft_s:.2f} s"
            f"{ttft}, TPOT {sp.tpot_s * 1e3:.0f} ms{tpot}{'; ' + why if why else ''}{spare})")


def _each(lay: Layout) -> str:
    """" per replica" for a layout of several replicas: a memory plan's figures, like --max-num-seqs, are one
    engine's, and DP engines share the requests out."""
    return " per replica" if lay.dp > 1 else ""


def _sequences(c: Candidate, ctx: int) -> str:
    """"111.37 sequences of 4096 tokens per replica": what one engine's KV cache holds, as the table gives it."""
    return f"{c.memory.max_concurrency:.2f} sequences of {ctx} tokens{_each(c.layout)}"


def _batch_clause(plan: Plan, c: Candidate) -> str:
    """"; --max-num-seqs 4 runs 8 of the 64 requests at once (4 per replica), the others wait": the KV cache holds
    --concurrency, but the batch (a given --max-num-seqs, or vLLM's default) runs fewer; the speed figures queue the
    rest (perf.py), and the verdict, which is the KV cache's, stays."""
    seqs, dp, conc = num_seqs(c.memory), c.layout.dp, plan.workload.concurrency
    if seqs >= c.layout.requests_per_replica(conc):  # each replica runs its share of the requests
        return ""
    per = f" ({seqs} per replica)" if dp > 1 else ""
    return f"; --max-num-seqs {seqs} runs {seqs * dp} of the {conc} requests at once{per}, the others wait"


def summarize(plan: Plan) -> str:
    """One line for the common question: does it fit, with which layout and flags."""
    name = plan.model.model_id.split("/")[-1]
    head = f"{name} on {_describe_gpus(plan)}"
    if not plan.accepted:
        return _rule_refusal(plan, head)
    best = closest(plan)
    ctx, conc = plan.engine.max_model_len or plan.model.max_model_len, plan.workload.concurrency
    if best is not None and best.memory.verdict is Verdict.STARTS:
        m = best.memory
        each = " each" if best.layout.dp > 1 else ""
        return (f"{head}: fits as {best.layout} with {_sequences(best, ctx)} ({m.kv_cache_tokens:,} KV "
                f"tokens{each}){_batch_clause(plan, best)}{_speed_clause(plan)}; use {_command(plan, best)}")
    dtype = "bf16" if plan.model.dtype == "bfloat16" else plan.model.dtype
    what = f"does not fit in {dtype}" if plan.model.quant is None else "does not fit"
    if best is not None and best.memory.verdict is Verdict.INSUFFICIENT_CONCURRENCY:
        m = best.memory
        # the verdict weighs each replica's share of the requests
        share = f"the {best.layout.requests_per_replica(conc)} of {conc} each gets" if best.layout.dp > 1 else str(conc)
        what = f"starts as {best.layout} but holds {_sequences(best, ctx)}, not {share} (--max-num-seqs {num_seqs(m)})"
    elif best is not None and best.memory.reasons:
        what += f" ({best.memory.reasons[0]})"
    alt = plan.fallback
    if alt is not None:  # the sequences its KV cache holds, as the fitting answer above gives them
        return (f"{head}: {what}; AWQ 4-bit fits as {alt.best.layout} with {_sequences(alt.best, ctx)}; "
                f"use {_command(alt, alt.best)} with an AWQ checkpoint")
    return f"{head}: {what}; use more or larger GPUs, a quantized checkpoint, or a shorter --max-model-len"


def weights_gib_per_gpu(c: Candidate) -> list[float]:
    return [round(b / GIB, 2) for b in c.weight_bytes_per_gpu]
