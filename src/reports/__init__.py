"""Reports over finished runs: read their logged metrics and saved kernels; write tables, figures, markdown.
Each report is run as ``python -m src.reports.<name>``. Nothing here is imported by training."""
