"""Like ../shared/gpu-vllm/run.py (start the real vLLM engine with dummy weights, print its memory figures),
plus --max-num-batched-tokens, to see the sampler's share of the activation peak when the forward is small.
usage (on the device, after go.sh installed vLLM): run_batched.py MODEL_DIR TP PP GMU MAX_MODEL_LEN MAX_NUM_SEQS
                                                    MAX_NUM_BATCHED_TOKENS TAG"""
import json
import sys
import time

m, tp, pp, gmu, mml, mns, mnbt, tag = sys.argv[1:9]
kw = dict(model=m, load_format="dummy", tensor_parallel_size=int(tp), pipeline_parallel_size=int(pp),
          gpu_memory_utilization=float(gmu), max_model_len=int(mml), seed=0, skip_tokenizer_init=True,
          max_num_seqs=int(mns), max_num_batched_tokens=int(mnbt))
print("RUN", tag, json.dumps(kw), flush=True)
from vllm import LLM  # noqa: E402

t = time.perf_counter()
LLM(**kw)
print("ENGINE_READY", tag, round(time.perf_counter() - t, 1), "s", flush=True)
