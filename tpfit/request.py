"""PlanRequest: what `tpfit plan` is asked, as one value, and the Plan it makes.

The CLI commands (plan, deploy, speed, watch), the web page and the monitoring formats build one from their
options and call `make()`; this is the edge where the model is loaded, the GPUs read and the calibration
found, so the core receives values only.
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from tpfit.core.plan import Plan
from tpfit.errors import UsageError
from tpfit.kinds import Kind, KvCacheDtype, ModelDtype, Objective


class PlanRequest(Struct, frozen=True, kw_only=True):
    """The options of `tpfit plan`, named as its parameters (None: vLLM's default, or every layout)."""

    model: str
    gpus: str | None = None
    """`--gpus` (`2xH100`); None reads this host's GPUs through NVML."""
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    enable_expert_parallel: bool | None = None
    context: int | None = None
    concurrency: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    quantization: str | None = None
    dtype: ModelDtype = ModelDtype.AUTO
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False
    language_model_only: bool = False
    vllm_version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    objective: Objective = Objective.THROUGHPUT
    ttft: float | None = None
    tpot: float | None = None
    for_speed: bool = False
    """`tpfit speed`: the plan is asked for its speed figures, so GPUs without them (given only by their size) are
    refused naming --gpus, before any speed option is (leaving that out would not help)."""

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> PlanRequest:
        """From a command's parameters (click's `ctx.params`, the page's form): the ones a plan uses.

        An enum option arrives as its string in `ctx.params` (typer converts it only for the command function), so
        a field whose default is a kind takes the value through that kind.
        """
        defaults = dict(zip(reversed(cls.__struct_fields__), reversed(cls.__struct_defaults__)))  # the last N fields
        kinds = {name: type(d) for name, d in defaults.items() if isinstance(d, Kind)}
        names = set(cls.__struct_fields__)
        return cls(**{k: kinds[k](v) if k in kinds else v for k, v in options.items() if k in names})

    def make(self) -> Plan:
        """Load the model, read or parse the GPUs, and plan (every layout the TP/PP/DP/EP options allow)."""
        from tpfit import EngineArgs, Workload, make_plan
        from tpfit.core.engine import normalize_vllm_version
        from tpfit.core.layout import Layout, enumerate_layouts
        from tpfit.core.perf import make_gpu_speed
        from tpfit.hardware.calibration import find_calibration
        from tpfit.model.load import load_model
        from tpfit.vllm_facts import CURRENT_VLLM_VERSION

        context, max_model_len, ep = self.context, self.max_model_len, self.enable_expert_parallel
        if context and max_model_len and context != max_model_len:
            raise UsageError(f"--context {context} and --max-model-len {max_model_len} disagree; give one of them",
                             flag="--context")
        if self.quantization not in (None, "fp8"):
            raise UsageError("tpfit models online --quantization fp8; for AWQ/GPTQ/FP8 checkpoints give the "
                             "quantized model itself (its config says how it is stored)", flag="--quantization",
                             value=self.quantization)
        version = CURRENT_VLLM_VERSION if self.vllm_version is None else normalize_vllm_version(self.vllm_version)
        # an older release may lack a flag the plan's layouts or options need: its own arg_utils.py says
        # (tpfit/data/vllm_flags.json); the current release has them all, and its plans skip reading the table
        lacks: set[str] = set()
        if version != CURRENT_VLLM_VERSION:
            from tpfit.deployment.flags import flag_table

            table = flag_table(version)
            wanted = (("--language-model-only", "--language-model-only", self.language_model_only),
                      ("--data-parallel-size", f"--dp {self.dp}", (self.dp or 1) > 1),
                      ("--enable-expert-parallel", "--enable-expert-parallel", bool(ep)))
            for name, option, given in wanted:
                if table.has(name):
                    continue
                lacks.add(name)
                if given:
                    first = (table.releases_with(name) or ("a newer release",))[0]
                    raise UsageError(f"{option}: vLLM {version} has no {name} (read in its {table.version} flags); "
                                     f"leave it out or plan for --vllm-version {first} or newer",
                                     flag=option.split()[0])
        engine = EngineArgs(vllm_version=version, gpu_memory_utilization=self.gpu_memory_utilization,
                            max_model_len=max_model_len or context, max_num_seqs=self.max_num_seqs,
                            max_num_batched_tokens=self.max_num_batched_tokens, kv_cache_dtype=self.kv_cache_dtype,
                            quantization=self.quantization, dtype=self.dtype, enforce_eager=self.enforce_eager,
                            language_model_only=self.language_model_only)
        workload = Workload(context=context or max_model_len, concurrency=self.concurrency,
                            input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                            objective=self.objective, ttft_s=self.ttft, tpot_s=self.tpot)
        cluster = read_cluster(self.gpus)
        if not cluster.gpu.has_speed_figures and self.for_speed:
            raise UsageError(f"{cluster.gpu.name} has no memory bandwidth to predict speed with (a GPU given only by "
                             "its size); name the GPU, such as --gpus 2x3090 or --gpus 2xL40S (tpfit plan gives its "
                             "memory figures)", flag="--gpus", value=self.gpus)
        if not cluster.gpu.has_speed_figures and (given := workload.speed_options()):  # make_plan would drop them
            flag, value = given[0]
            raise UsageError(f"{cluster.gpu.name} has no speed figures to rank by (a GPU given only by its size has "
                             f"no memory bandwidth); name the GPU, such as --gpus 2x3090 or --gpus 2xL40S, or leave "
                             f"{flag} out", flag=flag, value=value)
        spec = load_model(self.model)
        layouts = tuple(
            lay for lay in enumerate_layouts(cluster.num_gpus, is_moe=spec.is_moe or bool(ep))
            if (self.tp is None or lay.tp == self.tp) and (self.pp is None or lay.pp == self.pp)
            and (self.dp is None or lay.dp == self.dp) and (ep is None or lay.enable_expert_parallel == ep)
            and not (lay.dp > 1 and "--data-parallel-size" in lacks)
            and not (lay.enable_expert_parallel and "--enable-expert-parallel" in lacks)
        ) or (Layout(tp=self.tp or 1, pp=self.pp or 1, dp=self.dp or 1, enable_expert_parallel=bool(ep)),)
        # the GPU's calibration (the user's `tpfit calibrate` file, else a built-in one) as speed figures
        gpu_speed = make_gpu_speed(cluster.gpu, find_calibration(cluster.gpu.id))
        return make_plan(spec, cluster, workload, engine, layouts=layouts, gpu_speed=gpu_speed)


def read_cluster(gpus: str | None):
    """`--gpus` parsed, or this host's GPUs through NVML when it is not given."""
    from tpfit.hardware.cluster import Cluster

    if gpus is not None:
        return Cluster.parse(gpus)
    from tpfit.hardware.detect import detect_cluster

    return detect_cluster()
