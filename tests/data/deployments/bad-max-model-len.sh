# Bad: no --max-model-len, so vLLM takes Llama 3.1's 131072 tokens; one L4 (24 GB) cannot hold that KV cache.
vllm serve meta-llama/Llama-3.1-8B-Instruct --gpu-memory-utilization 0.9
