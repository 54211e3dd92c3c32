# Bad: a value vLLM's argument parser refuses, and the API key in plain text.
vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size two --api-key sk-secret-0123456789
