"""make_plan: every layout for a model on a cluster, checked against vLLM's rules, with its memory.

Pure: values in, a Plan out (shared/DESIGN.md).
"""

from __future__ import annotations

from itertools import chain

from msgspec import Struct
from msgspec.structs import replace

from tpfit.core.engine import EngineArgs, Semantics, semantics_for
from tpfit.core.kv import KVGeometry, kv_bytes_per_element, make_kv_geometry
from tpfit.core.layout import Layout, StageGroup, enumerate_layouts
from tpfit.core.memory import MemoryPlan, make_memory_plan, safe_utilization
from tpfit.core.memory_model import MemoryModel
from tpfit.core.perf import GpuSpeed, Speed, SpeedWorkload, make_gpu_speed, make_speed
from tpfit.core.rank import pick_best
from tpfit.core.rules import layout_checker
from tpfit.core.vllm_messages import FLOAT16_UNSUPPORTED_MODEL_TYPES, QUANT_METHOD_MISMATCH, Violation
from tpfit.core.weights import group_weights, total_param_count
from tpfit.codec import decode, encode
from tpfit.errors import DocumentError, UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.kinds import ModelDtype, Objective, Verdict
from tpfit.model.quant import online_quant
from tpfit.model.spec import ModelSpec, QuantSpec
from tpfit.units import GB
from tpfit.vllm_facts import architecture_refusal

SCHEMA_VERSION = 3
"""Version of `tpfit plan --json`'s layout; `Plan.from_dict` refuses any other. 2 added `plan`, the exact value
that `tpfit deploy --plan` and `tpfit watch --plan` read back; 3 added `closest` and the model's
`max_model_len_before_0_30` (a file of 2 was refused as "changed after tpfit plan --json wrote it")."""


class Workload(Struct, frozen=True, kw_only=True):
    """What the deployment must serve: requests of `context` tokens, `concurrency` at once."""

    context: int | None = None
    """Tokens per request (prompt + output); becomes --max-model-len. None = the model's maximum."""
    concurrency: int = 1
    input_tokens: int | None = None
    """Prompt tokens per request for the speed figures (default: the context less the answer)."""
    output_tokens: int | None = None
    """Answer tokens per request for the speed figures (default: perf.DEFAULT_OUTPUT_TOKENS)."""
    objective: Objective = Objective.THROUGHPUT
    ttft_s: float | None = None
    """Target time to first token: layouts that meet it rank first."""
    tpot_s: float | None = None
    """Target time per output token: layouts that meet it rank first."""

    def __post_init__(self) -> None:
        if self.context is not None and self.context < 1:
            raise UsageError("must be at least 1", flag="--context", value=self.context)
        if self.concurrency < 1:
            raise UsageError("must be at least 1", flag="--concurrency", value=self.concurrency)
        for flag, value in (("--input-tokens", self.input_tokens), ("--output-tokens", self.output_tokens)):
            if value is not None and value < 1:
                raise UsageError("must be at least 1", flag=flag, value=value)
        for flag, seconds in (("--ttft", self.ttft_s), ("--tpot", self.tpot_s)):
            # NaN compared false with every figure (a target met by all), 0 with none
            if seconds is not None and not 0 < seconds < float("inf"):
                raise UsageError("a target is a number of seconds above 0, such as 0.5", flag=flag, value=seconds)
        self.speed_workload()  # requests that fit in the context, or the UsageError naming the flag

    def speed_options(self) -> tuple[tuple[str, object], ...]:
        """The options given that only the speed figures read (flag, value): `--ttft`, `--tpot`, `--objective
        latency`, `--input-tokens`, `--output-tokens`. A plan without speed figures cannot honour them."""
        given = (("--ttft", self.ttft_s), ("--tpot", self.tpot_s),
                 ("--objective", self.objective if self.objective is not Objective.THROUGHPUT else None),
                 ("--input-tokens", self.input_tokens), ("--output-tokens", self.output_tokens))
        return tuple((flag, value) for flag, value in given if value is not None)

    def speed_workload(self, max_model_len: int | None = None) -> SpeedWorkload:
        """The requests the speed figures are for (defaults filled in), within the context, else within
        `max_model_len` (the plan's: `Plan.speed_workload`)."""
        return SpeedWorkload.make(concurrency=self.concurrency, context=self.context, input_tokens=self.input_tokens,
                                  output_tokens=self.output_tokens, max_model_len=max_model_len)


# gc=False here and on the other values a search makes by the thousand (Layout, StageGroup, MemoryPlan, GpuMemory,
# Speed, StepTerms, Violation): frozen values built bottom-up hold no reference cycles, and the collector would
# otherwise walk ~10,000 of them per 64-GPU search (~5 ms of DeepSeek-V3's).
class Candidate(Struct, frozen=True, kw_only=True, gc=False):
    """One layout: accepted (with its memory) or refused (with vLLM's reasons)."""

    layout: Layout
    violations: tuple[Violation, ...]
    weight_bytes_per_gpu: tuple[int, ...]
    """Per GPU in rank order (TP innermost, then PP, then DP)."""
    memory: MemoryPlan | None = None
    speed: Speed | None = None
    """Predicted TTFT, TPOT and throughput (core/perf.py), for layouts whose KV cache holds a request."""

    @property
    def accepted(self) -> bool:
        return not self.violations

    @property
    def reason(self) -> str:
        return "; ".join(v.detail for v in self.violations)


class RuleOfThumb(Struct, frozen=True, kw_only=True):
    """What the common guides would say, beside vLLM's figure."""

    params: int
    weights_bytes: int
    """params x bytes per parameter of the checkpoint dtype."""
    kv_bytes_at_context: int
    """"1 GB per 1K tokens of context": context / 1000 GB per request."""


class Plan(Struct, frozen=True, kw_only=True):
    model: ModelSpec
    cluster: Cluster
    workload: Workload
    engine: EngineArgs
    semantics: Semantics
    candidates: tuple[Candidate, ...]
    rule_of_thumb: RuleOfThumb
    recommended: int | None = None
    """Index into `candidates` of the layout tpfit recommends (core/rank.py ranks them once)."""
    fallback: Plan | None = None
    """When this plan does not fit: the same model as an AWQ 4-bit checkpoint (as planned, else without CUDA
    graphs), if that serves at least one request; the one-line answer suggests it."""
    notes: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.accepted)

    @property
    def rejected(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if not c.accepted)

    @property
    def best(self) -> Candidate | None:
        return None if self.recommended is None else self.candidates[self.recommended]

    def speed_workload(self) -> SpeedWorkload:
        """The requests the speed figures are for: the workload's, within the longest request this plan's server
        takes (its --max-model-len, else the model's)."""
        return self.workload.speed_workload(self.engine.max_model_len or self.model.max_model_len)

    def to_dict(self) -> dict:
        """Every field as plain JSON values (tpfit/codec.py): what `from_dict` reads back equal."""
        return encode(self)

    @classmethod
    def from_dict(cls, data: object) -> Plan:
        """A plan saved by `to_dict`, equal to the one that was saved; DocumentError naming the field otherwise.
        A plan's AWQ fallback has none of its own (make_plan), so a deeper nesting is refused."""
        plan = decode(cls, data)
        if plan.fallback is not None and plan.fallback.fallback is not None:
            raise DocumentError("fallback.fallback must be null (a fallback plan has no fallback of its own)",
                                field="fallback.fallback")
        if plan.recommended is not None and not 0 <= plan.recommended < len(plan.candidates):
            raise DocumentError(f"recommended is {plan.recommended} but there are {len(plan.candidates)} candidates",
                                field="recommended")
        return plan


def resolve_model(model: ModelSpec, engine: EngineArgs, cluster: Cluster | None = None) -> ModelSpec:
    """The model as the engine will load it: its release's derived maximum length, `--dtype` and online
    `--quantization` applied.

    Under `--dtype auto` (from vLLM 0.9.1) a bfloat16 checkpoint on an NVIDIA GPU below compute capability 8.0 is
    served in float16, with vLLM's warning (`_resolve_auto_dtype`: "Your device ... doesn't support torch.bfloat16.
    Falling back to torch.float16 for compatibility."), or float32 for the model types vLLM refuses float16 for
    (FLOAT16_UNSUPPORTED_MODEL_TYPES), as a float16 checkpoint of those types is served in bfloat16 (float32 without
    it); before 0.9.1, and for an explicit `--dtype`, a rule refuses what the GPU or model type does not take.
    """
    cc = cluster.gpu.compute_capability if cluster is not None and cluster.gpu.vendor == "NVIDIA" else None
    if model.checkpoint_float32 and engine.dtype is ModelDtype.AUTO and model.model_type != "gemma2" \
            and not semantics_for(engine.vllm_version).dtype_auto_fallback:
        # 0.6.0 to 0.9.0: "Following common practice, we use float16 for float32 models" (Gemma 2: bfloat16)
        model = replace(model, dtype="float16", checkpoint_float32=False)
    if engine.dtype is ModelDtype.AUTO and cc is not None:
        no_fp16 = model.model_type in FLOAT16_UNSUPPORTED_MODEL_TYPES
        lacks = "bfloat16" if model.dtype == "bfloat16" and cc < 8.0 else "float16" if model.dtype == "float16" \
            and no_fp16 else None
        if lacks is not None and semantics_for(engine.vllm_version).dtype_auto_fallback:
            served = "bfloat16" if cc >= 8.0 else "float32" if no_fp16 else "float16"
            why = (f"{cluster.gpu.name} (compute capability {cc}) has no bfloat16" if lacks == "bfloat16" else
                   f"vLLM refuses float16 for {model.model_type}")
            note = f"{why}: vLLM serves this {model.dtype} checkpoint in {served} under --dtype auto, as planned here"
            return resolve_model(replace(model, dtype=served, notes=(*model.notes, note)), engine)
    if model.max_model_len_before_0_30 and semantics_for(engine.vllm_version).yarn_rescales_max_len:
        model = replace(model, max_model_len=model.max_model_len_before_0_30, max_model_len_before_0_30=0)
    if engine.dtype is not ModelDtype.AUTO and engine.dtype.canonical != model.dtype:
        model = replace(model, dtype=engine.dtype.canonical)
    if engine.quantization and model.quant is None:
        model = replace(model, quant=online_quant(engine.quantization))
    elif engine.quantization and not model.quant.online and model.quant.method != engine.quantization:
        quoted = QUANT_METHOD_MISMATCH.format(quant_method=model.quant.method, quantization=engine.quantization)
        raise UsageError(f"the checkpoint is stored quantized ({model.quant.method}), which vLLM loads as it is and "
                         f"refuses to quantize again (\"{quoted.rstrip('.')}\"); leave --quantization out",
                         flag="--quantization", value=engine.quantization)
    if engine.language_model_only and model.vision_params:
        model = replace(model, extra_replicated_params=model.extra_replicated_params - model.vision_params,
                        vision_params=0)
    return model


AWQ_FALLBACK = QuantSpec(method="awq", weight_bits=4, group_size=128, has_zero_points=True)
"""The quantized checkpoint suggested when a model does not fit: AWQ 4-bit, group 128 (the common export)."""


def make_plan(model: ModelSpec, cluster: Cluster, workload: Workload | None = None, engine: EngineArgs | None = None,
              *, memory_model: MemoryModel, layouts: tuple[Layout, ...] | None = None,
              gpu_speed: GpuSpeed | None = None) -> Plan:
    """Every layout (or the given ones) with vLLM's verdict, memory and speed, under the fitted `memory_model`
    (`tpfit.make_plan` passes the bundled one) and `gpu_speed` (a calibration chosen at the edge; default the
    spec sheet x perf.py's efficiencies)."""
    workload = workload or Workload()
    engine = engine or EngineArgs()
    if workload.context and engine.max_model_len is None:
        engine = replace(engine, max_model_len=workload.context)
    sem = semantics_for(engine.vllm_version)
    if refusal := architecture_refusal(model.architecture, model.model_type, sem.version):
        raise UsageError(refusal, flag="--vllm-version", value=engine.vllm_version)
    spec = resolve_model(model, engine, cluster)
    is_moe = spec.is_moe
    layouts = layouts or enumerate_layouts(cluster.num_gpus, is_moe=is_moe)
    candidates = []
    speed_work = workload.speed_workload(engine.max_model_len or spec.max_model_len)
    shared: dict = {}  # what layouts share, for the whole search: stage groups, activation peaks, layer costs
    geometries: dict[int, KVGeometry] = {}  # the KV layout depends on TP only
    kv_bytes = kv_bytes_per_element(spec, engine)
    # DP replicas don't change a GPU's memory, except that MoE experts are split over TP x DP
    cache: dict[tuple, tuple[tuple[int, ...], MemoryPlan | None]] = {}  # per-GPU weights of one replica, memory
    check_layout = layout_checker(spec, cluster, engine)
    speed_of = (gpu_speed or make_gpu_speed(cluster.gpu)) if cluster.gpu.has_speed_figures else None
    for layout in layouts:
        violations = check_layout(layout)
        tp, pp = layout.tp, layout.pp
        per_replica = layout.requests_per_replica(workload.concurrency)
        key = (pp, per_replica, tp, layout.moe_parallel_size if is_moe else 1, layout.enable_expert_parallel)
        hit = cache.get(key)
        if hit is None or (hit[1] is None and not violations):
            stages: tuple[tuple[StageGroup, int], ...] = ()
            rank_weights: list[int] = []
            if pp <= spec.num_hidden_layers:
                stages = group_weights(spec, layout, shared)
                rank_weights = [0] * pp
                for group, weight in stages:
                    for rank in group.ranks:
                        rank_weights[rank] = weight
            memory = None
            if not violations:
                if tp not in geometries:
                    geometries[tp] = make_kv_geometry(spec, tp=tp, kv_bytes=kv_bytes, block_size=engine.block_size)
                memory = make_memory_plan(spec, layout, cluster, engine, sem, memory_model=memory_model,
                                          concurrency=per_replica, stages=stages, geometry=geometries[tp],
                                          cache=shared)
                if memory.verdict is Verdict.OVERFLOWS_AT_RUNTIME and engine.gpu_memory_utilization is None:
                    # the default budget leaves too little for what comes on top: plan the highest safe one
                    lower = make_memory_plan(spec, layout, cluster,
                                             replace(engine, gpu_memory_utilization=safe_utilization(memory)),
                                             sem, memory_model=memory_model, concurrency=per_replica,
                                             stages=stages, geometry=geometries[tp], cache=shared)
                    if lower.verdict.serves:
                        memory = lower
            # each stage's weight once per TP rank: one stage's tuple repeated (in C), else zip of tp references to
            # the list repeats each item in place
            if tp == 1 or pp == 1:
                replica = tuple(rank_weights) * tp
            else:
                replica = tuple(chain.from_iterable(zip(*[rank_weights] * tp)))
            hit = cache[key] = (replica, memory)
        replica, memory = hit
        speed = None
        if speed_of is not None and not violations and memory is not None and memory.verdict.serves:
            speed = make_speed(spec, layout, memory, cluster, speed_of, speed_work, kv_bytes=kv_bytes, cache=shared)
        candidates.append(Candidate(layout=layout, violations=violations, weight_bytes_per_gpu=replica * layout.dp,
                                    memory=None if violations else memory, speed=speed))
    params = total_param_count(spec)
    context = engine.max_model_len or spec.max_model_len
    thumb = RuleOfThumb(params=params, weights_bytes=params * model.dtype_bytes,
                        kv_bytes_at_context=context * GB // 1000)
    candidates = tuple(candidates)
    recommended = pick_best(cluster, candidates, workload)
    fits = recommended is not None and candidates[recommended].memory.verdict is Verdict.STARTS
    # a layout refused by a rule is reported as such (recommend.summarize), not answered with a quantized model
    refused_by_rules = not any(c.accepted for c in candidates)
    fallback = None if fits or spec.quant is not None or refused_by_rules else _awq_fallback(
        spec, cluster, workload, engine, memory_model, layouts, gpu_speed)
    return Plan(model=spec, cluster=cluster, workload=workload, engine=engine, semantics=sem, candidates=candidates,
                rule_of_thumb=thumb, recommended=recommended, fallback=fallback, notes=spec.notes)


def _awq_fallback(spec: ModelSpec, cluster: Cluster, workload: Workload, engine: EngineArgs,
                  memory_model: MemoryModel, layouts: tuple[Layout, ...], gpu_speed: GpuSpeed | None) -> Plan | None:
    """The model as an AWQ checkpoint, over the same layouts (the user's --tp/--pp/--dp hold); failing that,
    without CUDA graphs (their memory goes to the KV cache)."""
    for eng in (engine, replace(engine, enforce_eager=True)):
        alt = make_plan(replace(spec, quant=AWQ_FALLBACK), cluster, workload, eng, memory_model=memory_model,
                        layouts=layouts, gpu_speed=gpu_speed)
        if alt.best is not None and alt.best.memory.verdict.serves and alt.best.memory.max_concurrency >= 1:
            return alt
    return None

