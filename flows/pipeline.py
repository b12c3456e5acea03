"""The experiment flow: train -> calibrate -> score -> evaluate -> register -> promote, one (dataset, model) cell."""

from __future__ import annotations

import logging

from prefect import flow

from tasks.calibrate import calibrate_model
from tasks.config import Experiment, PromoteParams, RegisterParams
from tasks.evaluate import evaluate_scores
from tasks.layout import experiment_dir, prepared_dir
from tasks.promote import promote_model
from tasks.register import register_model
from tasks.score import score_test_set
from tasks.train import train_model


@flow(name="experiment", log_prints=False)
def experiment_flow(exp: Experiment, registry: RegisterParams, promote: PromoteParams | None = None, to_registry: bool = True) -> str:
    """Run one experiment end to end; returns the registered model URI (or the report folder)."""
    data_dir = prepared_dir(exp.train.data)
    out_dir = experiment_dir(exp.name)
    model_dir = train_model(exp.name, exp.train, data_dir, out_dir)
    calibrate_model(exp.calibrate, model_dir, data_dir, out_dir)
    scores = score_test_set(model_dir, data_dir, out_dir, exp.evaluate.score_batch_size)
    report = evaluate_scores(exp.name, exp.evaluate, scores, model_dir, data_dir, out_dir)
    if not to_registry:
        return str(report)
    model_uri = register_model(exp, registry, model_dir, report, out_dir)
    promote_model(registry, promote or PromoteParams(), out_dir)  # moves @champion only on a validation metric that holds up
    return model_uri


def show_library_logs() -> None:
    """INFO from the models and tasks packages (resume, thresholds, progress). Under a worker, prefect.yaml's
    PREFECT_LOGGING_EXTRA_LOGGERS=models,tasks sends them to the run's logs; this sets the level they pass at."""
    for name in ("models", "tasks"):
        logging.getLogger(name).setLevel(logging.INFO)


@flow(name="experiment-from-params")
def experiment_from_params(experiment: str, params_file: str = "params.yaml", to_registry: bool = True) -> str:
    """Deployment entry point: load and validate params (the edge), then run the experiment flow."""
    from tasks.config import load_params

    show_library_logs()
    params = load_params(params_file)
    return experiment_flow(params.experiment(experiment), params.registry, params.promote, to_registry=to_registry)
