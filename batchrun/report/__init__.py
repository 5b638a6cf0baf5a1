"""Summary and bench results -> Markdown / HTML / JSON reports and plots.

Submodules are imported directly (report.summary, report.bench, ...): each caller loads only what
it draws. Plots are SVG written by report/svg.py (no plotting library)."""
