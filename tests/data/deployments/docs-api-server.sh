# Source: vLLM docs before `vllm serve` (docs/serving/openai_compatible_server.md, v0.4-v0.5 era), the module form
# that examples/online_serving scripts still use; model and length as in those examples.
python -m vllm.entrypoints.openai.api_server \
    --model meta-llama/Llama-3.1-8B-Instruct \
    --max-model-len 8192 \
    --disable-log-requests
