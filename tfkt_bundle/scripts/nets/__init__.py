"""Networks (hybrid CNN -> transformer regressors) and their initial weights from local files."""
