"""Input files -> Prompt: CSV / JSONL / Parquet / Batch API readers (streamed, line numbers kept).

Public: rows.read_prompts, prompt.Prompt, prompt.BadRow. readers is private to this folder."""
