"""The real-server tier: batchrun against llama-server (and vLLM on demand) on loopback."""
