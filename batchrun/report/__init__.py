"""Summary and bench results -> Markdown / HTML / JSON reports and plots.

Submodules are imported directly (report.summary, report.bench, ...) so that matplotlib is loaded only
when a plot is drawn."""
