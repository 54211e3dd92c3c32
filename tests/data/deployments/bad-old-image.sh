# Bad: an image of vLLM 0.8.5 with flags it does not have yet (--async-scheduling, --kv-cache-memory-bytes from 0.10).
docker run --gpus all --ipc=host -v ~/.cache/huggingface:/root/.cache/huggingface \
    vllm/vllm-openai:v0.8.5 --model meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192 --async-scheduling
