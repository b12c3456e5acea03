"""The pipeline's steps. Prefect tasks are the top-level modules (``tasks.experiment``, ``tasks.nightly``), each a short
wrapper; the logic they wrap sits in plain modules grouped by concern:

- ``tasks.sources``: where data come from (download and checksums, the readers of each raw format, the RGB-D renderer);
- ``tasks.adapters``: one adapter per data kind (image, tabular, series): prepared splits, scores to points, the files
  shipped with a model, the served model's input;
- ``tasks.steps``: prepare, train, calibrate, score, report, and ``run_experiment`` that chains them;
- ``tasks.reports``: metrics and figures;
- ``tasks.tracking``: MLflow registration, the promotion gate, the served pyfunc, nightly scoring;
- ``tasks.params``: params.yaml's schema, composed of the settings classes above, loaded once at the edge;
- ``tasks.layout``: where every file of the pipeline lives.
"""
