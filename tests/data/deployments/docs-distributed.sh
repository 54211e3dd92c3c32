# Source: vLLM docs, docs/serving/distributed_serving.md ("Running vLLM on multiple nodes"): run on the head node
# of a Ray cluster started with examples/online_serving/run_cluster.sh.
bash run_cluster.sh \
    vllm/vllm-openai \
    ip_of_head_node \
    --head \
    /path/to/the/huggingface/home/in/this/node \
    -e VLLM_HOST_IP=ip_of_this_node
vllm serve /path/to/the/model/in/the/container \
    --tensor-parallel-size 8 \
    --pipeline-parallel-size 2
