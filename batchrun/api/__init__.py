"""The Python face: what `batchrun.run`, `batchrun.arun` and the other names of `batchrun` are.

keywords.py makes each face function's keywords from the option declarations (and typed.py, the
TypedDicts type checkers read, generated from them); run.py is `run`, `arun` and the `Run` they
return. The command line's commands call these same functions.
"""
