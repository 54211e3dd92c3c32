"""Read an existing vLLM deployment (shell, docker/podman run, compose, Kubernetes, a live server) into values."""
