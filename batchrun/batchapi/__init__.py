"""Batch API mode: the same rows, records and reports as online mode, at the Batch API's price.

    lines.py     request lines (endpoint/batch.py: online mode's bodies, not streamed) split into
                 files, and the provider's files kept line by line
    ledger.py    the jobs of a run, saved in run.json before each step (resume, never twice)
    api.py       files and batches through the openai SDK
    flow.py      one session: plan, upload, create, wait, collect
    mode.py      --mode auto's rule
    commands.py  `batchrun batch status / cancel DIR`

The pipeline imports mode.py for every run and flow.py only for a batch run: flow.py loads the
openai SDK (half a second).
"""
