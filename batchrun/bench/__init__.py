"""bench: the sync baseline and async runs at several concurrencies, on the same prompts."""
