"""Deployment files from one plan: `vllm serve`, docker run, compose, Kubernetes, Ray / LeaderWorkerSet."""
