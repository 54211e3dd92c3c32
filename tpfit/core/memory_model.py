"""The memory terms a config can't give (activation peak, non-torch memory, CUDA graphs), as one value.

Fitted to real vLLM start-ups by bench/fit_memory_model.py and stored in tpfit/data/memory_model.json;
`tpfit.data.load_memory_model()` reads it at the edge and the core receives it as an argument.
"""

from __future__ import annotations

from msgspec import Struct

from tpfit.kinds import Kind


class ProfileEra(Kind):
    """vLLM's model runners, whose profile runs peak differently (the keys of the runner-dependent constants);
    which one a model starts on is `core.engine.uses_model_runner_v2`."""

    MODEL_RUNNER_V1 = "model_runner_v1"
    """`GPUModelRunner` (every model before 0.22; MoE and hybrid ones until 0.29): a large sampler warm-up, no
    activation floor."""
    MODEL_RUNNER_V2 = "model_runner_v2"
    """`vllm/v1/worker/gpu/model_runner.py`: a cheaper sampler warm-up, ~1 GiB / TP floor."""
    ENGINE_V0 = "engine_v0"
    """The V0 engine's runner (0.6, 0.7): its profile peak holds the last tokens' logits in the model dtype."""


class EraConstants(Struct, frozen=True, kw_only=True):
    """The profile-run constants that differ between eras."""

    sampler_bytes_per_logit: float
    """Bytes of the sampler warm-up per logit (min(max_num_seqs, tokens) x padded vocab, last stage)."""
    activation_floor_gib: float
    """Smallest activation peak reported at TP=1 (divided by TP)."""


class MemoryModel(Struct, frozen=True, kw_only=True):
    """Fitted constants of tpfit's memory prediction (units in the names; GiB as fitted)."""

    bytes_per_token_per_mlp_width_bf16: float
    """Forward activation: bytes per batched token per unit of per-GPU MLP width, in bf16."""
    bytes_per_token_per_hidden_bf16: float
    """Forward activation: bytes per batched token per unit of hidden size, in bf16."""
    eras: tuple[tuple[ProfileEra, EraConstants], ...]
    non_torch_single_gpu_gib: float
    non_torch_multi_gpu_gib: float
    comm_buffers_gib: float
    """NCCL / custom all-reduce buffers counted as non-torch where vLLM builds them after its snapshot."""
    comm_buffers_gib_per_tp: float
    pre_snapshot_single_gpu_gib: float
    """CUDA context before vLLM's memory snapshot, one GPU."""
    pre_snapshot_multi_gpu_gib: float
    pre_snapshot_gib_per_extra_group: float
    """A second process group's communicators (PP beside TP, experts beside TP) before the snapshot."""
    """CUDA context + NCCL communicators before the snapshot, several GPUs."""
    cuda_graph_base_gib: float
    cuda_graph_gib_per_layer: float
    cuda_graph_gib_per_layer_per_khidden_per_tp: float
    cuda_graph_estimate_share_v1: float = 1.0
    """The V1 runner's CUDA-graph estimate (what it subtracts from the budget) as a share of the pool."""
    source: str = ""
    """Where the fit came from (rows, files)."""

    def era(self, era: ProfileEra) -> EraConstants:
        return dict(self.eras)[era]

    @classmethod
    def from_dict(cls, d: dict) -> MemoryModel:
        """From memory_model.json's layout (sections activation, non_torch, pre_snapshot, cuda_graphs)."""
        act, nt, pre, cg = d["activation"], d["non_torch"], d["pre_snapshot"], d["cuda_graphs"]
        return cls(
            bytes_per_token_per_mlp_width_bf16=act["bytes_per_token_per_mlp_width_bf16"],
            bytes_per_token_per_hidden_bf16=act["bytes_per_token_per_hidden_bf16"],
            eras=tuple((era, EraConstants(sampler_bytes_per_logit=act["sampler_bytes_per_logit"][era.value],
                                          activation_floor_gib=act["floor_gib"][era.value])) for era in ProfileEra),
            non_torch_single_gpu_gib=nt["single_gpu_gib"], non_torch_multi_gpu_gib=nt["multi_gpu_gib"],
            comm_buffers_gib=nt["comm_buffers_gib"], comm_buffers_gib_per_tp=nt["comm_buffers_gib_per_tp"],
            pre_snapshot_single_gpu_gib=pre["single_gpu_gib"], pre_snapshot_multi_gpu_gib=pre["multi_gpu_gib"],
            pre_snapshot_gib_per_extra_group=pre["gib_per_extra_group"],
            cuda_graph_base_gib=cg["base_gib"], cuda_graph_gib_per_layer=cg["gib_per_layer"],
            cuda_graph_gib_per_layer_per_khidden_per_tp=cg["gib_per_layer_per_khidden_per_tp"],
            cuda_graph_estimate_share_v1=cg.get("estimate_share_model_runner_v1", 1.0),
            source=d.get("source", ""),
        )
