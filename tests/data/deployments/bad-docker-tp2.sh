#!/usr/bin/env bash
# Bad: TP=2 in docker without --ipc=host or --shm-size (64 MB /dev/shm: bus error, vLLM PR #1125, issue #1710),
# the token pasted in plain text, no Hugging Face cache volume, and a misspelled flag.
docker run --runtime nvidia --gpus all \
    -e HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123456789 \
    -p 8000:8000 \
    vllm/vllm-openai:v0.33.0 \
    --model meta-llama/Llama-3.1-70B-Instruct \
    --tensor-parallel-size 2 \
    --max-model-length 8192
