"""Clinical outputs of scoring: per-series summaries of slice scores."""
