"""The vLLM engine a plan targets: its flags (EngineArgs) and its version's semantics (Semantics).

vLLM's memory rules change between releases; every difference tpfit models is one field of
`Semantics`, chosen by `semantics_for(version)` with the evidence for each boundary beside it.
"""

from __future__ import annotations

from msgspec import Struct
from msgspec.structs import asdict, force_setattr

from tpfit.core.vllm_messages import BATCH_BELOW_MAX_NUM_SEQS
from tpfit.errors import UsageError
from tpfit.kinds import KvCacheDtype, MambaCacheMode, ModelDtype
from tpfit.limits import MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS
from tpfit.vllm_facts import CURRENT_VLLM_VERSION, default_gpu_memory_utilization, parse_version, read_release, \
    unpublished, unpublished_text

MODELLED_VLLM_VERSIONS = ("0.6.0", CURRENT_VLLM_VERSION)
"""The oldest and newest vLLM release whose memory rules tpfit models (patch releases of the newest included).
`--vllm-version` outside this range is refused, naming it; `semantics_for` holds the differences inside it."""


def normalize_vllm_version(text: str | None, *, flag: str = "--vllm-version") -> str:
    """One spelling per release, the one its package and image tag use (after "v"), within MODELLED_VLLM_VERSIONS.
    A post release or hotfix keeps its name (so `deploy` pins its image) and plans as its X.Y.Z (`parse_version`).

    Valid: "0.26.0", "v0.26.0", "V0.26", "0.26.0+cu129" (all -> "0.26.0"), "0.33.1", "v0.8.5.post1" (->
    "0.8.5.post1"), "0.10.1.1". Not valid: "", "abc", "0.26.0.1" (no such release), "0.26.0rc1", "0.1" and "99.0"
    (outside the modelled range).
    """
    low, high = MODELLED_VLLM_VERSIONS
    raw = (text or "").strip()
    try:
        release = read_release(raw)
    except ValueError as err:
        raise UsageError(f"{err} (tpfit models {low} to {high})", flag=flag, value=repr(text) if not raw else raw) \
            from None
    if outside_modelled(release.name):
        raise UsageError(f"tpfit models vLLM {low} to {high} (patch releases included); plan with one of those",
                         flag=flag, value=raw)
    same = unpublished(release)
    if same is not None:
        raise UsageError(f"{unpublished_text(release, same)}; plan with one of those", flag=flag, value=raw)
    return release.name


def outside_modelled(version: str) -> int:
    """-1 when the release `version` names is older than MODELLED_VLLM_VERSIONS, 1 when newer (the newest's patch
    releases are inside), 0 inside."""
    low, high = MODELLED_VLLM_VERSIONS
    base = parse_version(version)
    return -1 if base < parse_version(low) else 1 if base[:2] > parse_version(high)[:2] else 0


def check_batch(*, max_num_seqs: int, max_num_batched_tokens: int, seqs_given: bool, tokens_given: bool) -> None:
    """vLLM's SchedulerConfig refuses a step of fewer tokens than sequences; it lowers only its own default
    max_num_seqs to the batch (V1; the V0 engine lowers none). A UsageError naming the flag the user gave."""
    seqs, tokens = max_num_seqs, max_num_batched_tokens
    if tokens >= seqs:
        return
    quoted = BATCH_BELOW_MAX_NUM_SEQS.format(max_num_batched_tokens=tokens, max_num_seqs=seqs).rstrip(".")
    fix = f"use --max-num-seqs {tokens} or less, or --max-num-batched-tokens {seqs} or more"
    if seqs_given:
        what = (f"more than --max-num-batched-tokens {tokens}" if tokens_given else
                f"more than the {tokens} tokens vLLM batches per step by default here (--max-num-batched-tokens)")
        raise UsageError(f"{what}, which vLLM refuses (\"{quoted}\"); {fix}", flag="--max-num-seqs", value=seqs)
    raise UsageError(f"fewer than the {seqs} sequences vLLM runs by default (--max-num-seqs), which it refuses "
                     f"(\"{quoted}\"); {fix}", flag="--max-num-batched-tokens", value=tokens)


class EngineArgs(Struct, frozen=True, kw_only=True):
    """The vLLM flags a plan is made for; None means "vLLM's default for this version and GPU"."""

    vllm_version: str = CURRENT_VLLM_VERSION
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    quantization: str | None = None
    """`--quantization`: only `fp8` (online FP8 of an unquantized checkpoint) changes the weights."""
    dtype: ModelDtype = ModelDtype.AUTO
    enforce_eager: bool = False
    language_model_only: bool = False
    """`--language-model-only`: a multimodal model starts without its vision tower (text prompts only)."""
    block_size: int | None = None
    kv_cache_memory_bytes: int | None = None
    api_server: bool = True
    """`vllm serve` (True) or the offline `LLM` class (False): their batch defaults differ."""

    def __post_init__(self) -> None:
        try:
            parse_version(self.vllm_version)
        except ValueError as err:
            raise UsageError(str(err), flag="--vllm-version", value=self.vllm_version) from None
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise UsageError("must be in (0, 1]", flag="--gpu-memory-utilization", value=self.gpu_memory_utilization)
        for flag, n, most in (("--max-num-seqs", self.max_num_seqs, MAX_NUM_SEQS),
                              ("--max-num-batched-tokens", self.max_num_batched_tokens, MAX_NUM_BATCHED_TOKENS)):
            if n is not None and not 1 <= n <= most:
                raise UsageError(f"must be from 1 to {most:,} (tpfit/limits.py: far above any real server's)",
                                 flag=flag, value=n)
        if self.max_num_seqs is not None and self.max_num_batched_tokens is not None:
            check_batch(max_num_seqs=self.max_num_seqs, max_num_batched_tokens=self.max_num_batched_tokens,
                        seqs_given=True, tokens_given=True)
        for name, kind, flag in (("kv_cache_dtype", KvCacheDtype, "--kv-cache-dtype"), ("dtype", ModelDtype, "--dtype")):
            value = getattr(self, name)
            if type(value) is not kind:  # a plain string of the same spelling becomes the member
                try:
                    force_setattr(self, name, kind(value))
                except ValueError:
                    raise UsageError(f"use one of {', '.join(kind)}", flag=flag, value=value) from None

    def to_dict(self) -> dict:
        return asdict(self)


class Semantics(Struct, frozen=True, kw_only=True):
    """What one vLLM version does with memory, as far as a prediction needs it."""

    version: tuple[int, int, int]
    default_gpu_memory_utilization: float
    cudagraphs_in_budget: bool
    """CUDA-graph memory is estimated and subtracted before the KV cache is sized."""
    comm_buffers_in_budget: bool
    """NCCL / custom all-reduce buffers grow after the memory snapshot, so they count as non-torch."""
    requested_ceil: bool
    """requested = ceil(total x util) (newer) instead of total x util."""
    estimate_deducts_null_block: bool
    """The "estimated maximum model length" leaves the null block out (newer)."""
    three_batch_tiers: bool
    """Batch defaults have a >=160 GiB tier (B200) besides the >=70 GiB one."""
    dtype_auto_fallback: bool = False
    """Under `--dtype auto` a dtype the GPU lacks falls back (float16, or float32 for FLOAT16_UNSUPPORTED_MODEL_TYPES)
    and an explicit float16 of those types is refused (from 0.9.1: `_resolve_auto_dtype`, `_check_valid_dtype`);
    before, vLLM kept the checkpoint's bfloat16 and refused it below compute capability 8.0."""
    yarn_rescales_max_len: bool = False
    """The derived max_model_len multiplies a YaRN rope_scaling factor in (before 0.30: ModelSpec
    .max_model_len_before_0_30)."""
    engine_v0: bool = False
    """The V0 `LLMEngine` (0.6, 0.7): 256 sequences, no chunked prefill below 32K tokens, so the profile run is
    max(max_model_len, 2048) tokens long; KV = total x util - (everything the worker allocated since its first
    snapshot); the "max seq len ... larger than the maximum number of tokens that can be stored in KV cache"
    refusal."""


_V2_RUNNER_ARCHITECTURES: tuple[tuple[tuple[int, int, int], frozenset[str]], ...] = (
    ((0, 22, 0), frozenset({"Qwen3ForCausalLM"})),
    ((0, 23, 0), frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM"})),
    ((0, 24, 0), frozenset({"Qwen3ForCausalLM", "DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM", "GraniteMoeForCausalLM",
                            "LlamaForCausalLM", "MistralForCausalLM"})),
    ((0, 25, 0), frozenset({"DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM", "GraniteMoeForCausalLM"})),
    ((0, 26, 0), frozenset({"DeepseekV2ForCausalLM", "GraniteMoeForCausalLM", "InklingForCausalLM",
                            "InklingForConditionalGeneration", "LongcatFlashNgramForCausalLM", "Qwen2MoeForCausalLM"})),
    ((0, 27, 0), frozenset({"DeepseekV2ForCausalLM", "GraniteMoeForCausalLM", "InklingForCausalLM",
                            "InklingForConditionalGeneration", "KimiK3ForConditionalGeneration",
                            "LongcatFlashNgramForCausalLM", "Qwen2MoeForCausalLM"})),
    ((0, 28, 0), frozenset({"DeepseekV2ForCausalLM", "DeepseekV4ForCausalLM", "GraniteMoeForCausalLM",
                            "InklingForCausalLM", "InklingForConditionalGeneration", "KimiK3ForConditionalGeneration",
                            "LongcatFlashNgramForCausalLM", "Qwen2MoeForCausalLM"})),
)
"""`DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES` in each release's `config/vllm.py` (0.22.1, 0.23.0, 0.24.0, 0.25.1,
0.26.0, 0.27.1, 0.28.0 wheels), from the release that set it; 0.29 removed the list (V2 for every model)."""


def uses_model_runner_v2(version: tuple[int, int, int], *, architecture: str, is_moe: bool, is_hybrid: bool,
                         is_quantized: bool) -> bool:
    """Whether vLLM runs the model on Model Runner V2 (`vllm/v1/worker/gpu/model_runner.py`) rather than the V1
    `GPUModelRunner`, as `VllmConfig.use_v2_model_runner` decides without VLLM_USE_V2_MODEL_RUNNER set.

    The two runners profile differently, which moves the KV cache by GiBs on the same GPU: V1's dummy sampler run
    costs ~15 bytes per [max_num_seqs x vocab] logit (every 0.19 row; 0.26's Qwen3-MoE and Mixtral runs on
    2xH200, calibration/vllm-0.26-h200x2), V2's a third of that; V1 subtracts its CUDA-graph estimate from the
    budget once VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 (0.20; "Estimated CUDA graph memory" in those
    0.26 logs), V2 in 0.26 did not (the dense 0.26 runs). The default, per `_is_default_v2_model_runner_model`:
    - < 0.22: V1 only (V2 only through the environment variable).
    - 0.22, 0.23: listed architectures, unless MoE or quantized.
    - 0.24: listed architectures (MoE and quantized too).
    - 0.25, 0.26: listed architectures or any non-MoE model; never hybrid (mamba/GDN) ones.
    - 0.27, 0.28: as 0.26, but a listed hybrid architecture runs on V2.
    - >= 0.29: every model (config/vllm.py 0.29.0 `use_v2_model_runner` returns True but for unsupported features).
    """
    if version < (0, 22, 0):
        return False
    if version >= (0, 29, 0):
        return True
    listed = architecture in next(a for v, a in reversed(_V2_RUNNER_ARCHITECTURES) if version >= v)
    if version < (0, 24, 0):
        return listed and not is_moe and not is_quantized
    if version < (0, 25, 0):
        return listed
    if is_hybrid and (version < (0, 27, 0) or not listed):
        return False
    return listed or not is_moe


MAMBA_PREFIX_CACHING_ARCHITECTURES = frozenset({"NemotronHForCausalLM"})
"""Hybrid architectures whose class is `SupportsMambaPrefixCaching` (NemotronHForCausalLM in the 0.19.0 and 0.26.0
sources; Qwen3NextForCausalLM in none of 0.19 to 0.33; 0.33's NemotronHForCausalLM no longer is)."""


def mamba_cache_mode(version: tuple[int, int, int], architecture: str) -> MambaCacheMode:
    """The `mamba_cache_mode` a hybrid (mamba / GDN) model starts with when the flags leave it and prefix caching
    at their defaults.

    - 0.26, 0.27: prefix caching is off by default for hybrid models ("Hybrid models support prefix caching but keep
      it opt-in for now", `_set_default_chunked_prefill_and_prefix_caching_args`, 0.26.0 engine/arg_utils.py:2514-2522;
      the same in 0.27.0, not in 0.25.0 or 0.28.0), so the mode stays "none": one state block a request. Measured:
      Qwen3-Next-80B at TP=2 on 2xH200 logged `enable_prefix_caching=False` and 400.00x concurrency
      (calibration/vllm-0.26-h200x2/qnt2.log), which two blocks a request would halve on its state group.
    - Before 0.26 (and 0.8 to 0.18, read as 0.19): prefix caching is on, and `MambaModelConfig` picks "all" for a
      model that supports mamba prefix caching, else "align" (0.19.0 model_executor/models/config.py:436-441; the same
      in the 0.20.0 to 0.25.0 wheels).
    - From 0.28: prefix caching on, and the mode is "align" whatever the model (0.28.0 to 0.33.0 wheels; 0.33.0
      model_executor/models/config.py:763-765).
    `MambaSpec.max_memory_usage_bytes` turns the mode into blocks (0.26.0 v1/kv_cache_interface.py:709-718)."""
    if (0, 26, 0) <= version < (0, 28, 0):
        return MambaCacheMode.NONE
    if version < (0, 26, 0) and architecture in MAMBA_PREFIX_CACHING_ARCHITECTURES:
        return MambaCacheMode.ALL
    return MambaCacheMode.ALIGN


def semantics_for(version: str) -> Semantics:
    """The semantics of a vLLM release.

    Boundaries and their evidence:
    - 0.20: `gpu_memory_utilization` default 0.9 -> 0.92, and `VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`
      default "0" -> "1" (read in the 0.19.0 / 0.20.0 wheels' `config/cache.py` and `envs.py`).
    - CUDA graphs in the budget: the env default is "1" from 0.20, but real vLLM 0.26.0 on H100
      (calibration/vllm-0.26-h100) logged no estimate and sized the KV cache without it (KV =
      requested - weights - activation - non-torch to 0.01 GiB in all 9 runs). 0.33's source applies
      it. tpfit puts the boundary after the last measured version: 0.27.
    - Communication buffers: 0.19 logs count ~2.07 GiB non-torch at TP>1; 0.26 counts 0.06 GiB
      (0.33's `init_device` builds them before the snapshot).
    - 0.6, 0.7: the V0 engine (V1 became the default engine in 0.8.0: `EngineArgs._set_default_args_v1` /
      VLLM_USE_V1 unset means V1 in the 0.8.5 wheel's arg_utils.py). From the 0.6.0 wheel:
      `worker/worker.py::determine_num_available_blocks` (lines 204-249) takes
      num_gpu_blocks = (total x gpu_memory_utilization - peak) // block bytes, with peak = the free memory at
      `init_device` (after the CUDA context, before NCCL) minus the free memory after the profile run: weights,
      the activation peak (reserved, not returned), NCCL and other buffers; no CUDA-graph estimate (graphs are
      captured afterwards, outside the budget) and no null block. `raise_if_cache_size_invalid` (lines 468-481)
      refuses a max_model_len above block_size x num_gpu_blocks. `config.py::SchedulerConfig` (lines 973-996):
      max_num_batched_tokens = max(max_model_len, 2048) without chunked prefill, 512 with it (2048 from 0.6.5);
      arg_utils.py lines 843-869: chunked prefill only by default above 32768 tokens; `max_num_seqs` 256,
      utilization 0.90. 0.6.4 measures torch's allocated peak plus non-torch memory instead of free memory, and
      0.6.5 on `memory_profiling` (the 0.6.4 / 0.6.5 wheels' worker.py): the same terms, the allocator's cache
      no longer counted.
    - 0.9.1: `--dtype auto` falls back from a dtype the GPU lacks, and refuses float16 for some model types (the
      0.9.0 and 0.9.1 wheels' config.py `_resolve_auto_dtype`, `_FLOAT16_NOT_SUPPORTED_MODELS`).
    - 0.30: the derived max_model_len no longer multiplies a YaRN rope_scaling factor in (the 0.29.0 and 0.30.0
      wheels' config/model.py `_get_and_verify_max_len`; 0.6.0 to 0.29 reset "yarn" to
      original_max_position_embeddings x factor).
    - 0.8 to 0.18: the V1 engine, read as 0.19: utilization 0.9 and the two batch tiers match (0.11.2 / 0.13.0
      arg_utils.py); the profile arithmetic is assumed to be 0.19's (not read in those wheels, not measured).
    """
    v = parse_version(version)
    return Semantics(
        version=v,
        default_gpu_memory_utilization=default_gpu_memory_utilization(version),
        cudagraphs_in_budget=v >= (0, 27, 0),
        comm_buffers_in_budget=v < (0, 20, 0),
        requested_ceil=v >= (0, 20, 0),
        estimate_deducts_null_block=v >= (0, 20, 0),
        three_batch_tiers=v >= (0, 20, 0),
        dtype_auto_fallback=v >= (0, 9, 1),
        yarn_rescales_max_len=v < (0, 30, 0),
        engine_v0=v < (0, 8, 0),
    )
