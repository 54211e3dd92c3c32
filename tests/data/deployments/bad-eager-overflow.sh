# Bad: --enforce-eager where CUDA graphs fit, and --gpu-memory-utilization 0.99 leaves nothing for the first requests.
vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192 --enforce-eager
vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192 --gpu-memory-utilization 0.99
