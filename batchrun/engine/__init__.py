"""The worker pool: concurrency, rate limits, retries, tool-call rounds."""
