"""Reports over finished runs: read their logged metrics and saved kernels; write tables, figures, markdown.
Nothing here is imported by training."""
