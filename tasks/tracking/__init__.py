"""MLflow: registration, the promotion gate, the served pyfunc, nightly scoring."""
