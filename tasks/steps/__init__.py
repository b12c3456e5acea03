"""The pipeline's steps as plain functions (prepare, train, calibrate, score, report) and run_experiment, which chains them."""
