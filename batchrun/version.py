"""batchrun's version, in a module of its own: the parts below the faces that write it into their
files (summary.json, run.json) import it without importing the package's face (batchrun/__init__)."""

from __future__ import annotations

__version__ = "0.1.0"
