"""Pure arithmetic over records: metrics (Summary) and compare (baseline vs current)."""
