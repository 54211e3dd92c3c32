# Source: vLLM docs, docs/getting_started/quickstart.md ("OpenAI-Compatible Server").
vllm serve Qwen/Qwen2.5-1.5B-Instruct
