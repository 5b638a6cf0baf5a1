"""What a run keeps on disk: records.jsonl (records), results files (outputs)."""
