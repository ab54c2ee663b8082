"""Training: losses, resumable atomic checkpoints and MLflow tracking that never stops a run."""
