#!/bin/bash
# Source: written from vLLM's examples/online_serving/disaggregated_prefill.sh (its structure: a default model
# from the environment, a cleanup function, a readiness loop, and two `vllm serve` instances started in the
# background on GPUs 2 and 3 with a P2P NCCL KV connector). Shortened; the serve lines keep its flags; the model
# is named as Hugging Face names it today (the script says meta-llama/Meta-Llama-3.1-8B-Instruct).
set -xe
MODEL_NAME=${HF_MODEL_NAME:-meta-llama/Llama-3.1-8B-Instruct}
trap 'cleanup' INT
cleanup() {
    echo "Caught Ctrl+C, cleaning up..."
    pgrep python | xargs kill -9
    exit 0
}
if [[ -z "${VLLM_HOST_IP:-}" ]]; then
    export VLLM_HOST_IP=127.0.0.1
fi
wait_for_server() {
  local port=$1
  timeout 1200 bash -c "
    until curl -i localhost:${port}/v1/models > /dev/null; do
      sleep 1
    done" && return 0 || return 1
}
# prefilling instance, the KV producer
CUDA_VISIBLE_DEVICES=2 vllm serve $MODEL_NAME \
    --host 0.0.0.0 \
    --port 8100 \
    --max-model-len 100 \
    --gpu-memory-utilization 0.8 \
    --trust-remote-code \
    --kv-transfer-config \
    '{"kv_connector":"P2pNcclConnector","kv_role":"kv_producer","kv_rank":0,"kv_parallel_size":2}' &
# decoding instance, the KV consumer
CUDA_VISIBLE_DEVICES=3 vllm serve $MODEL_NAME \
    --host 0.0.0.0 \
    --port 8200 \
    --max-model-len 100 \
    --gpu-memory-utilization 0.8 \
    --trust-remote-code \
    --kv-transfer-config \
    '{"kv_connector":"P2pNcclConnector","kv_role":"kv_consumer","kv_rank":1,"kv_parallel_size":2}' &
wait_for_server 8100
wait_for_server 8200
output1=$(curl -X POST -s http://localhost:8000/v1/completions -H "Content-Type: application/json" \
  -d '{"model": "'"$MODEL_NAME"'", "prompt": "San Francisco is a", "max_tokens": 10}')
echo "Output of first request: $output1"
