# Bad: Qwen2.5-7B has 28 attention heads; TP=3 does not divide them (vLLM refuses at start).
vllm serve Qwen/Qwen2.5-7B-Instruct --tensor-parallel-size 3 --max-model-len 8192
