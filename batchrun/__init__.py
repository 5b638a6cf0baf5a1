"""batchrun: bulk-query and benchmark any OpenAI-compatible chat endpoint."""

from __future__ import annotations

__version__ = "0.1.0"
