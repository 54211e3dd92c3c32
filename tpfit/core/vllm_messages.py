"""vLLM's refusal messages, each written once: the text vLLM prints (a template), and the pattern that finds
it in a log, derived from that same text.

`core/rules.py` (layout rules) and `core/startup.py` (start-up refusals) format them into a `Violation`;
`tpfit explain` searches logs with them. Sources: shared/reference/vllm-internals.md and the vLLM files named.
"""

from __future__ import annotations

import re
from functools import lru_cache

from msgspec import Struct

FIELD_PATTERN = r"[-\w:]+(?:\.[-\w:]+)*"
"""What a `{field}` matches in a log unless the message says otherwise: a number or a name (`2048.0`, `cuda:0`),
not a sentence's full stop."""
INT_PATTERN = r"\d+"
NUMBER_PATTERN = r"\d+(?:\.\d+)?"
"""Fields a diagnosis reads as numbers (`int`, `float`): a text that only looks like vLLM's message (a document
quoting it with `X` for the number) is then not taken for it."""


class VllmMessage(Struct, frozen=True, kw_only=True):
    """One message vLLM prints when it refuses a configuration.

    `template` is the text with `{field}` placeholders. In a log, sentences after the first may be missing or
    worded differently by another release or backend (the CPU build adds a clause), and an apostrophe may be
    dropped; the fields of the sentences that are there come back from `search`.
    """

    template: str
    source: str
    """The vLLM file and function that raise it."""
    fields: tuple[tuple[str, str], ...] = ()
    """(field, regex) where a field's log text is not a plain number or name."""
    fix: str = ""
    """What to do, where that needs no numbers of the case (else the rule that finds it writes the fix)."""
    in_logs: bool = True
    """False for tpfit's own wording of a refusal vLLM has no message for (never searched for in logs)."""

    @property
    def pattern(self) -> re.Pattern:
        """The log pattern, compiled on first use (planning never needs it: `tpfit plan` starts faster)."""
        return _compiled(self.template, self.fields)

    def format(self, **values: object) -> str:
        """The message as vLLM prints it for these values."""
        return self.template.format(**values)

    def search(self, text: str) -> re.Match | None:
        return self.pattern.search(text)


@lru_cache(maxsize=None)
def _compiled(template: str, fields: tuple[tuple[str, str], ...]) -> re.Pattern:
    return re.compile(_derive_pattern(template, dict(fields)))


def _derive_pattern(template: str, fields: dict[str, str]) -> str:
    import string  # its import compiles string.Template's pattern; only explain reads logs

    sentences = re.split(r"(?<=\.) ", template)
    parts = []
    for sentence in sentences:
        regex = ""
        for literal, name, _, _ in string.Formatter().parse(sentence):
            # tolerate what releases vary: a dropped apostrophe, spacing around "=" and between words
            regex += re.sub(r"(\\ )+", " +", re.escape(literal)).replace("'", "'?").replace(" +=", " *=").replace(
                "= +", "= *")
            if name is not None:
                regex += f"(?P<{name}>{fields.get(name, FIELD_PATTERN)})"
        parts.append(regex)
    # "first( second( third)?)?": a later sentence counts only after the ones before it
    regex = parts[-1]
    for part in reversed(parts[:-1]):
        regex = f"{part}(?: {regex})?"
    return regex


class Violation(Struct, frozen=True, kw_only=True, gc=False):
    """Why vLLM refuses a configuration: the rule, the numbers, vLLM's own message, and what to do."""

    rule: str
    detail: str
    vllm_error: str
    fix: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "detail": self.detail, "vllm_error": self.vllm_error, "fix": self.fix}


# ---- layout rules (core/rules.py) ------------------------------------------------------------

HEADS_NOT_DIVISIBLE = VllmMessage(
    template="Total number of attention heads ({heads}) must be divisible by tensor parallel size ({tp}).",
    source="vllm/config/model.py::ModelConfig.verify_with_parallel_config")
NOT_DIVISIBLE = VllmMessage(
    template="AssertionError: {numerator} is not divisible by {denominator}",
    source="vllm/distributed/utils.py::ensure_divisibility (divide() in every parallel layer)",
    fields=(("numerator", INT_PATTERN), ("denominator", INT_PATTERN)))
EP_WITHOUT_EXPERTS = VllmMessage(
    template="Number of experts in the model must be greater than 0 when expert parallelism is enabled.",
    source="vllm/config/model.py::ModelConfig._verify_with_expert_parallelism",
    fix="drop --enable-expert-parallel")
PP_NOT_SUPPORTED = VllmMessage(
    template="Pipeline parallelism is not supported for this model. Supported models implement the `SupportsPP` "
             "interface.",
    source="vllm/config/model.py::ModelConfig.verify_with_parallel_config",
    fix="use --pipeline-parallel-size 1")
PP_STAGE_WITHOUT_LAYERS = VllmMessage(
    template="a pipeline stage would hold no layer",
    source="vllm/distributed/utils.py::get_pp_indices (no check of its own: a stage would get zero layers)",
    in_logs=False)
WORLD_SIZE_ABOVE_GPUS = VllmMessage(
    template="World size ({world_size}) is larger than the number of available GPUs ({gpus}) in this node.",
    source="vllm/config/parallel.py::ParallelConfig.__post_init__")
MARLIN_GROUP_SIZE = VllmMessage(
    template="Marlin does not support group_size = {group_size}. Only group_sizes = {supported} are supported.",
    source="vllm/model_executor/layers/quantization/utils/marlin_utils.py::verify_marlin_supported",
    fields=(("supported", r"\[[^\]]*\]"),))
QUANT_INPUT_NOT_ALIGNED = VllmMessage(
    template="The input size is not aligned with the quantized weight shape. This can be caused by too large "
             "tensor parallel size.",
    source="vllm/model_executor/layers/quantization/awq.py, gptq.py::create_weights")
QUANT_OUTPUT_NOT_ALIGNED = VllmMessage(
    template="The output size is not aligned with the quantized weight shape. This can be caused by too large "
             "tensor parallel size.",
    source="vllm/model_executor/layers/quantization/awq.py, gptq.py::create_weights")
FP8_BLOCK_K = VllmMessage(
    template="Weight input_size_per_partition = {size} is not divisible by weight quantization block_k = {block_k}.",
    source="vllm/model_executor/layers/quantization/utils/fp8_utils.py::validate_fp8_block_shape")
FP8_BLOCK_N = VllmMessage(
    template="Weight output_partition_size = {size} is not divisible by weight quantization block_n = {block_n}.",
    source="vllm/model_executor/layers/quantization/utils/fp8_utils.py::validate_fp8_block_shape")
FP8_MOE_BLOCK_N = VllmMessage(
    template="The output_size of gate's and up's weight = {size} is not divisible by weight quantization block_n = "
             "{block_n}.",
    source="vllm/model_executor/layers/quantization/fp8.py::Fp8MoEMethod.create_weights")
MARLIN_GROUP_SPLIT = VllmMessage(
    template="Weight input_size_per_partition = {size} is not divisible by group_size = {group_size}.",
    source="vllm/model_executor/layers/quantization/utils/marlin_utils.py::verify_marlin_supports_shape")
MARLIN_MIN_THREAD_N = VllmMessage(
    template="Weight output_size_per_partition = {size} is not divisible by  min_thread_n = {min_thread_n}.",
    source="vllm/model_executor/layers/quantization/utils/marlin_utils.py::verify_marlin_supports_shape")
MARLIN_MIN_THREAD_K = VllmMessage(
    template="Weight input_size_per_partition = {size} is not divisible by min_thread_k = {min_thread_k}.",
    source="vllm/model_executor/layers/quantization/utils/marlin_utils.py::verify_marlin_supports_shape")
QUANT_CAPABILITY = VllmMessage(
    template="The quantization method {method} is not supported for the current GPU. Minimum capability: "
             "{minimum}. Current capability: {current}.",
    source="vllm/config/model.py::_verify_quantization / vllm/model_executor/model_loader",
    fields=(("minimum", INT_PATTERN), ("current", INT_PATTERN)), fix="use an AWQ/GPTQ checkpoint or a newer GPU")
QUANT_DTYPE = VllmMessage(
    template="{dtype} is not supported for quantization method {method}. Supported dtypes: {supported}",
    source="vllm/config/vllm.py::_get_quantization_config (0.19, 0.33; model_loader/loader.py in 0.6): the quant "
           "config's get_supported_act_dtypes",
    fields=(("supported", r"\[[^\]]*\]"),),
    fix="use --dtype auto (the checkpoint's) or one of the dtypes listed")
FLOAT16_UNSUPPORTED = VllmMessage(
    template="The model type '{model_type}' does not support float16. Reason: {reason}",
    source="vllm/config/model.py::_check_valid_dtype (0.9.1 to 0.33; not in 0.9.0)",
    fields=(("reason", r"(?:[^.\n\[]+\.)+"),),  # whole sentences: "Numerical instability. Please use ..."
    fix="use --dtype bfloat16 (or --dtype auto), or float32 on a GPU without bfloat16")
_NUMERICAL_INSTABILITY = "Numerical instability. Please use bfloat16 or float32 instead."
FLOAT16_UNSUPPORTED_MODEL_TYPES = {"gemma2": _NUMERICAL_INSTABILITY, "gemma3": _NUMERICAL_INSTABILITY,
                                   "gemma3_text": _NUMERICAL_INSTABILITY, "plamo2": _NUMERICAL_INSTABILITY,
                                   "glm4": _NUMERICAL_INSTABILITY}
"""vLLM's `_FLOAT16_NOT_SUPPORTED_MODELS` from 0.9.1 (as read in the 0.19, 0.26 and 0.33 wheels; 0.33's no longer
lists plamo2) and their reasons: an explicit float16 is refused, and `--dtype auto` never picks it for them (it falls
back to float32 where the GPU has no bfloat16). Of these, tpfit models only gemma2 (tpfit/model/families)."""
BF16_CAPABILITY = VllmMessage(
    template="Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your {gpu_name} GPU has "
             "compute capability {capability}. You can use float16 instead by explicitly setting the `dtype` flag in "
             "CLI, for example: --dtype=half.",
    source="vllm/platforms/cuda.py::check_if_supports_dtype",
    fields=(("gpu_name", r".+?"),),
    fix="use --dtype half (or --dtype auto, which vLLM turns into float16 here)")
DSV4_KV_CACHE_DTYPE = VllmMessage(
    template="DeepseekV4 fp8_ds_mla layout only supports fp8 kv-cache, got {kv_cache_dtype}. Please set "
             "`--kv-cache-dtype fp8` or select a backend that supports bfloat16 KV cache.",
    source="vllm/models/deepseek_v4/attention.py::_resolve_dsv4_kv_cache_dtype (0.33, lines 107-117)",
    fix="leave --kv-cache-dtype at auto (vLLM stores fp8_ds_mla) or set it to fp8")
MAX_LEN_ABOVE_DERIVED = VllmMessage(
    template="User-specified max_model_len ({max_model_len}) is greater than the derived max_model_len "
             "({max_len_key}={derived} or model_max_length={model_max_length} in model's config.json). To allow overriding this "
             "maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.",
    source="vllm/config/model.py::_get_and_verify_max_len")

# ---- start-up refusals (core/startup.py) -----------------------------------------------------

FREE_MEMORY_BELOW_REQUEST = VllmMessage(
    template="Free memory on device {device}({free_gib}/{total_gib} GiB) on startup is less than desired GPU memory "
             "utilization ({gpu_memory_utilization}, {requested_gib} GiB).",
    source="vllm/v1/worker/utils.py::request_memory",
    fields=(("device", r"(?:\S+ )?"), ("free_gib", NUMBER_PATTERN), ("total_gib", NUMBER_PATTERN)))
CUDA_OUT_OF_MEMORY = VllmMessage(
    template="torch.OutOfMemoryError: CUDA out of memory.",
    source="torch's caching allocator (c10/cuda/CUDACachingAllocator.cpp), raised in vLLM's model loading or profile "
           "run (vllm/v1/worker/gpu_worker.py load_model, determine_available_memory): what it tried to allocate "
           "follows, a figure tpfit cannot know",
    in_logs=False)  # explain's own OOM signature finds it, and where in the start-up it struck
NO_KV_CACHE_MEMORY = VllmMessage(
    template="No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing "
             "the engine.",
    source="vllm/v1/core/kv_cache_utils.py::check_enough_kv_cache_memory")
KV_CACHE_BELOW_MAX_LEN = VllmMessage(
    template="To serve at least one request with the model's max seq len ({max_model_len}), ({needed_gib} GiB KV "
             "cache is needed, which is larger than the available KV cache memory ({available_gib} GiB). Based on "
             "the available memory, the estimated maximum model length is {estimated}. Try increasing "
             "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
    source="vllm/v1/core/kv_cache_utils.py::check_enough_kv_cache_memory")
V0_KV_CACHE_BELOW_MAX_LEN = VllmMessage(
    template="The model's max seq len ({max_model_len}) is larger than the maximum number of tokens that can be "
             "stored in KV cache ({max_seq_len}). Try increasing `gpu_memory_utilization` or decreasing "
             "`max_model_len` when initializing the engine.",
    source="vllm/worker/worker.py::raise_if_cache_size_invalid (V0 engine, 0.6 and 0.7; 0.6.0 lines 468-481)")

# ---- engine flags (core/engine.py EngineArgs) -------------------------------------------------

BATCH_BELOW_MAX_NUM_SEQS = VllmMessage(
    template="max_num_batched_tokens ({max_num_batched_tokens}) must be greater than or equal to max_num_seqs "
             "({max_num_seqs}).",
    source="vllm/config/scheduler.py::SchedulerConfig.verify_max_model_len (0.33; 0.6.0 config.py::_verify_args): "
           "vLLM lowers only its own default max_num_seqs to the batch, a given one is refused")

QUANT_METHOD_MISMATCH = VllmMessage(
    template="Quantization method specified in the model config ({quant_method}) does not match the quantization "
             "method specified in the `quantization` argument ({quantization}).",
    source="vllm/config/model.py::ModelConfig._verify_quantization: a quantized checkpoint is loaded as it is "
           "stored; --quantization may only name its own method")
V0_BATCH_BELOW_MAX_LEN = VllmMessage(
    template="max_num_batched_tokens ({max_num_batched_tokens}) is smaller than max_model_len ({max_model_len}). "
             "This effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject "
             "longer sequences. Please increase max_num_batched_tokens or decrease max_model_len.",
    source="vllm/config.py::SchedulerConfig._verify_args (V0 engine, 0.6 and 0.7: without chunked prefill, which "
           "is on by default only above 32768 tokens)")

MESSAGES = tuple(v for v in globals().values() if isinstance(v, VllmMessage))
"""Every message above, in order."""
