"""The kit's run.py (../shared/gpu-vllm) with extra engine arguments: a 12th argument of
key=value pairs separated by '/', e.g. mnbt=2048/ep=1/lmo=1/bs=32,128 (max_num_batched_tokens,
enable_expert_parallel, language_model_only: a multimodal config started text-only; bs: with 'bench',
also time batches of those sizes x 1024 -> 128 tokens).
usage: run2.py MODEL_DIR TP PP GMU MAX_MODEL_LEN QUANT KV_DTYPE MAX_NUM_SEQS TAG [bench|-] [EXTRA]"""
import json, random, subprocess, sys, time

m, tp, pp, gmu, mml, q, kvd, mns, tag = sys.argv[1:10]
bench = len(sys.argv) > 10 and sys.argv[10] == "bench"
extra = sys.argv[11] if len(sys.argv) > 11 else ""
kw = dict(model=m, load_format="dummy", tensor_parallel_size=int(tp), pipeline_parallel_size=int(pp),
          gpu_memory_utilization=float(gmu), max_model_len=int(mml), seed=0, skip_tokenizer_init=True)
if q != "none": kw["quantization"] = q
if kvd != "auto": kw["kv_cache_dtype"] = kvd
if mns != "0": kw["max_num_seqs"] = int(mns)
for item in filter(None, extra.split("/")):
    k, v = item.split("=")
    if k == "mnbt": kw["max_num_batched_tokens"] = int(v)
    elif k == "ep": kw["enable_expert_parallel"] = v == "1"
    elif k == "lmo": kw["language_model_only"] = v == "1"
    elif k == "eager": kw["enforce_eager"] = v == "1"
    elif k == "bs": pass  # bench batch sizes, read below
    else: raise SystemExit(f"unknown extra {k}")
print("RUN", tag, json.dumps(kw), flush=True)
from vllm import LLM, SamplingParams

def smi():
    return subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip().replace("\n", "; ")

t = time.perf_counter(); llm = LLM(**kw)
print("ENGINE_READY", tag, round(time.perf_counter() - t, 1), "s; smi:", smi(), flush=True)
if bench:
    cfg = json.load(open(f"{m}/config.json"))
    vocab = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size", 32000)
    rng = random.Random(0)
    def gen(n, length, out):
        ps = [{"prompt_token_ids": [rng.randrange(1, min(vocab, 32000)) for _ in range(length)]} for _ in range(n)]
        sp = SamplingParams(max_tokens=out, ignore_eos=True, temperature=0.0, detokenize=False)
        t = time.perf_counter(); o = llm.generate(ps, sp, use_tqdm=False); dt = time.perf_counter() - t
        return dt, sum(len(x.outputs[0].token_ids) for x in o)
    gen(4, 128, 16)
    sizes = [int(x) for item in extra.split("/") if item.startswith("bs=") for x in item[3:].split(",")]
    by_size = {}
    for b in sizes:  # extra batches of b x 1024 -> 128 tokens (bs=32,128): throughput at other concurrencies
        dtb, nb = gen(b, 1024, 128)
        by_size[f"batch{b}_out_tok_s"] = round(nb / dtb, 1); by_size[f"batch{b}_s"] = round(dtb, 3)
    dt, n = gen(64, 1024, 128)
    t1, _ = gen(1, 1024, 1); t257, _ = gen(1, 1024, 257)
    res = {"batch64_out_tok_s": round(n / dt, 1), "batch64_s": round(dt, 3), "single_ttft_s": round(t1, 4),
           "single_decode_tok_s": round(256 / max(t257 - t1, 1e-9), 1), **by_size, "smi_after": smi()}
    print("RESULT", tag, json.dumps(res), flush=True)
