"""The Python face, one module per command; `batchrun/__init__.py` curates what is public."""
