"""Live: talks to hosts and vLLM servers; returns frozen values the core can compare."""
