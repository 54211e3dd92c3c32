"""The largest inputs tpfit accepts: beyond them a value is a typo, not a model or a cluster.

Each bound is several times the largest real value (quoted beside it), so no real model or cluster is
refused, while a typo (`num_hidden_layers: 1e12`, `--gpus 10000xH100`) gets one clear line instead of
minutes of arithmetic. The README's "Bounds" table lists them; `tests/test_fuzz.py` plans at them.
"""

from __future__ import annotations

# ---- model config fields (tpfit/model/validate.py) --------------------------------------------------

MAX_LAYERS = 1024
"""num_hidden_layers: Llama-3.1-405B has 126, DeepSeek-V3 61."""
MAX_HIDDEN_SIZE = 65_536
"""hidden_size: Llama-3.1-405B has 16,384."""
MAX_INTERMEDIATE_SIZE = 1 << 20
"""intermediate_size and expert widths: Llama-3.1-405B has 53,248."""
MAX_HEADS = 1024
"""num_attention_heads / num_key_value_heads / other head counts: the largest real models have 128."""
MAX_HEAD_DIM = 4096
"""head_dim and the MLA ranks: 576 (kv_lora_rank 512 + rope 64) is the largest cached width."""
MAX_VOCAB = 1 << 22
"""vocab_size: Gemma has 256,000."""
MAX_EXPERTS = 4096
"""Routed experts: Qwen3-Next has 512, Kimi-K2 384."""
MAX_POSITIONS = 1 << 27
"""max_position_embeddings and other context keys: Llama-4-Scout has 10,485,760."""

MAX_LOG_BYTES = 64 << 20
"""`tpfit explain`, `verify --log` and `check --log` read a log's last 64 MiB (tpfit/live/log_file.py): vLLM's
refusal ends its run, and a start-up log is under 1 MB (a server's log of days can grow past any memory;
`/dev/zero` never ends)."""
MAX_JSON_BYTES = 64 << 20
"""A config, quantization sidecar or saved plan file: real configs are under 100 KB, plans of 128 GPUs ~30 MB (every candidate, and the Plan value itself)."""

# ---- vLLM's batch flags (`--max-num-seqs`, `--max-num-batched-tokens`; tpfit/core/engine.py EngineArgs) ----------

MAX_NUM_SEQS = 1 << 16
"""`--max-num-seqs`: vLLM's largest default is 1,024 (B200 and H100-class GPUs; 256 on smaller ones,
shared/reference/vllm-internals.md "batch defaults"), and servers of many short chats set a few thousand. 65,536
is 64 times that default; above it the sampler's [seqs x vocab] logits alone are tens of GiB, so a larger value is a
typo, refused in one line instead of planned (65,536 sequences x Llama-3's 128,256 logits in float32 are 31 GiB)."""
MAX_NUM_BATCHED_TOKENS = MAX_POSITIONS
"""`--max-num-batched-tokens`: the defaults are 2,048 to 16,384 per step, but without chunked prefill a step holds a
whole prompt, so a server of Llama-4-Scout's 10,485,760-token context may set that many: the bound is the longest
context tpfit reads (134,217,728). `--max-num-batched-tokens 100000000000000000000` answered "needs 1e16 GiB"."""

# ---- clusters (`--gpus`, tpfit/hardware/cluster.py) ---------------------------------------------------

MAX_NODES = 16
"""Nodes in `--gpus NODESxCOUNTxGPU`: vLLM's own multi-node recipes go to a few nodes."""
MAX_GPUS_PER_NODE = 16
"""GPUs per node: 8 on HGX/DGX boards, 16 on the largest PCIe servers."""
MAX_GPUS = 128
"""GPUs in all: the layout search lists every TP x PP x DP (~2,100 layouts at 128) and answers in seconds."""
MAX_PARALLEL_SIZE = 1024
"""`--tp`, `--pp`, `--dp`: eight times the most GPUs, so `--tp 999` is still answered by vLLM's rule (it needs 999
GPUs), while `--dp 1398387975` is refused before a per-GPU list of that length is built (10 GB)."""
MAX_GPU_MEMORY_GIB = 2048
"""A GPU described by size (`--gpus 2x24GB`): B300 has 288 GB."""
