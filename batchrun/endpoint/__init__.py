"""The endpoint: which URL and model a run uses (resolve), request bodies (requests), one streamed request -> one Record (client)."""
