"""Time one short single-stream generation with the real vLLM engine (`tpfit calibrate --vllm-model DIR`).

Run by file path with the Python that has vLLM (it imports nothing of tpfit, so it runs in vLLM's own venv):

    python vllm_probe.py MODEL_DIR PROMPT_TOKENS OUTPUT_TOKENS ENGINE_ARGS_JSON

vLLM's offline `LLM` class with dummy weights (random weights of the config's shapes: no download, no tokenizer)
generates from one prompt of PROMPT_TOKENS token ids, once to 1 token and once to OUTPUT_TOKENS tokens (greedy,
ignore_eos), after a short warm-up. TPOT = (t_N - t_1) / (N - 1): the prompt's prefill is in both and cancels,
what is left are N - 1 pure decode steps of one request. Each generation runs REPEATS times; the fastest counts
(the steps are identical; a slower repeat met other work on the host). Progress goes to stderr, the result is one
JSON line on stdout: {"vllm_version", "ttft_s", "tpot_s", "prompt_tokens", "output_tokens", "engine_s"}.
"""

import json
import sys
import time

REPEATS = 3


def main() -> int:
    model, prompt_tokens, output_tokens, engine_json = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print(f"vLLM: starting the engine on {model} (dummy weights)", file=sys.stderr, flush=True)
    import vllm
    from vllm import LLM, SamplingParams

    start = time.perf_counter()
    llm = LLM(model=model, load_format="dummy", skip_tokenizer_init=True, seed=0, **json.loads(engine_json))
    engine_s = time.perf_counter() - start
    vocab = json.load(open(f"{model}/config.json")).get("vocab_size") or 1000
    prompt = {"prompt_token_ids": [1 + (i * 7919) % (min(vocab, 32000) - 1) for i in range(prompt_tokens)]}

    def generate(max_tokens: int) -> float:
        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, detokenize=False)
        best = float("inf")
        for _ in range(REPEATS):
            t = time.perf_counter()
            out = llm.generate([prompt], params, use_tqdm=False)
            best = min(best, time.perf_counter() - t)
            got = len(out[0].outputs[0].token_ids)
            if got != max_tokens:
                raise SystemExit(f"vLLM generated {got} tokens where {max_tokens} were asked")
        return best

    print(f"vLLM: engine ready in {engine_s:.0f} s; timing 1 and {output_tokens} output tokens "
          f"({REPEATS} times each)", file=sys.stderr, flush=True)
    generate(16)  # warm-up: first-call compilation and allocation
    first = generate(1)
    full = generate(output_tokens)
    tpot = (full - first) / (output_tokens - 1)
    print(json.dumps({"vllm_version": vllm.__version__, "ttft_s": first, "tpot_s": tpot,
                      "prompt_tokens": prompt_tokens, "output_tokens": output_tokens, "engine_s": engine_s}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
