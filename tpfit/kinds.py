"""The closed sets of values tpfit reasons about, as enums spelled the way vLLM and the HF configs spell them.

Each member is also a `str` (as vLLM's `Literal` types are strings), so JSON, `asdict` and comparisons with
a config's own spelling keep working; typer options take these enums directly.
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    """A str-valued enum whose `str()` and f-string form is its value (`StrEnum`, also on Python 3.10)."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Verdict(Kind):
    """What a layout does when vLLM starts it with the planned flags; members in order of preference."""

    STARTS = "starts"
    """Starts and holds the workload's concurrency."""
    INSUFFICIENT_CONCURRENCY = "insufficient_concurrency"
    """Starts, but the KV cache holds fewer requests of the context than asked."""
    OVERFLOWS_AT_RUNTIME = "overflows_at_runtime"
    """Starts, then runs out of memory: what comes on top of the budget exceeds the card."""
    REFUSED_AT_START = "refused_at_start"
    """vLLM refuses to start: free memory, no KV cache memory, or KV cache below one max_model_len request."""

    @property
    def serves(self) -> bool:
        """vLLM starts and keeps serving (perhaps fewer requests at once than asked)."""
        return self in _SERVING

    @property
    def rank(self) -> int:
        """0 for the best verdict: the order of the members."""
        return _VERDICTS.index(self)


# tuples, read by identity: a search asks each ~2000 times, and an enum's hash is a Python function
_VERDICTS = tuple(Verdict)
_SERVING = (Verdict.STARTS, Verdict.INSUFFICIENT_CONCURRENCY)


class AttentionKind(Kind):
    """A decoder layer's token mixer: KV attention, a recurrent state, or none."""

    FULL = "full"
    SLIDING = "sliding"
    CHUNKED = "chunked"
    """Llama-4's chunked local attention."""
    MLA = "mla"
    """Multi-head latent attention (DeepSeek V2/V3, Kimi K2): one latent per token on every rank."""
    MAMBA = "mamba"
    GDN = "gdn"
    """Gated delta net (Qwen3-Next)."""
    NONE = "none"

    @property
    def has_kv_heads(self) -> bool:
        """Q/K/V heads split over TP (vLLM `QKVParallelLinear`): full, sliding and chunked attention."""
        return self in (AttentionKind.FULL, AttentionKind.SLIDING, AttentionKind.CHUNKED)

    @property
    def has_kv_cache(self) -> bool:
        """Caches K/V (or MLA's latent) per token."""
        return self.has_kv_heads or self is AttentionKind.MLA

    @property
    def has_state(self) -> bool:
        """Keeps a per-request recurrent state instead of per-token KV."""
        return self in (AttentionKind.MAMBA, AttentionKind.GDN)


class MlpKind(Kind):
    """A decoder layer's feed-forward block."""

    GATED = "gated"
    """SwiGLU-style gate_up_proj + down_proj."""
    PLAIN = "plain"
    """fc1 + activation + fc2 (Phi-2, Nemotron-H)."""
    MOE = "moe"
    NONE = "none"


class StateKind(Kind):
    """The recurrent layer type of a hybrid model."""

    MAMBA2 = "mamba2"
    GDN = "gdn"


class MambaCacheMode(Kind):
    """vLLM's `CacheConfig.mamba_cache_mode`: how many blocks a mamba/GDN layer's state takes per request."""

    NONE = "none"
    """Prefix caching off: one state block."""
    ALIGN = "align"
    """Two state blocks (the running state and the last block-aligned one)."""
    ALL = "all"
    """A state per block of the request: cdiv(max_model_len, block_size)."""


class KvCacheDtype(Kind):
    """vLLM's `--kv-cache-dtype` (`CacheDType` in vllm/config/cache.py, the values tpfit plans)."""

    AUTO = "auto"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FP8 = "fp8"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"


class ModelDtype(Kind):
    """vLLM's `--dtype` (ModelConfig.dtype): `half` and `float` are its aliases of float16 and float32."""

    AUTO = "auto"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    HALF = "half"
    FLOAT32 = "float32"
    FLOAT = "float"

    @property
    def canonical(self) -> str:
        """The torch dtype name: `half` -> float16, `float` -> float32."""
        return {ModelDtype.HALF: "float16", ModelDtype.FLOAT: "float32"}.get(self, self.value)


class FindingStatus(Kind):
    """A doctor finding: fine, worth a look, or in the way of starting vLLM."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class Objective(Kind):
    """What `tpfit plan --objective` ranks layouts by."""

    THROUGHPUT = "throughput"
    """Most output tokens/s across all replicas at the requested concurrency."""
    LATENCY = "latency"
    """Shortest request: TTFT + (output tokens - 1) x TPOT."""


class Bound(Kind):
    """The term that sets a layout's speed (core/perf.py)."""

    MEMORY = "memory"
    """Reading weights and KV each decode step."""
    COMPUTE = "compute"
    """FLOPs (prompts, large batches)."""
    COMMUNICATION = "communication"
    """TP all-reduces and PP hand-offs."""
    OVERHEAD = "overhead"
    """Per-step CPU work (small models, small batches)."""
    QUEUE = "queue"
    """More requests than the KV cache holds: the rest wait."""


class LinkKind(Kind):
    """What joins the GPUs of one TP group."""

    NONE = "none"
    """One GPU: nothing to all-reduce."""
    NVLINK = "nvlink"
    PCIE_P2P = "pcie_p2p"
    """PCIe with peer access (datacenter and workstation cards)."""
    PCIE_HOST = "pcie_host"
    """PCIe without peer access (GeForce cards): NCCL stages through host memory, no custom all-reduce."""
    NETWORK = "network"
    """Across nodes."""


class CalibrationDevice(Kind):
    """Where `tpfit calibrate` measures (its --device)."""

    AUTO = "auto"
    """CUDA when torch sees a GPU, else the CPU."""
    CUDA = "cuda"
    CPU = "cpu"
    """torch CPU and gloo: the figures describe the CPU, for tests and for checking the tool itself."""


class Launch(Kind):
    """How a timed kernel was launched (a calibration sample's `launch`)."""

    EAGER = "eager"
    """One Python call per kernel: small kernels then time the CPU's launch cost (~20 us for a matmul, ~40 us for
    torch.distributed's all-reduce), not the GPU."""
    CUDA_GRAPH = "cuda_graph"
    """Replayed from a CUDA graph, as vLLM runs its decode steps: the GPU's own time."""
