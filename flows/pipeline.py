"""The experiment flow: one (dataset, model) experiment, from training to the promotion gate, as Prefect runs it.

The chain is ``tasks.steps.run.run_experiment``; the flow runs it with the steps as Prefect tasks, so each step is a
task run (the registry calls with retries).
"""

from __future__ import annotations

import logging

from prefect import flow

from tasks.experiment import PREFECT_STEPS
from tasks.params import Experiment, Params, load_params
from tasks.steps.run import run_experiment

LIBRARY_LOGGERS = ("models", "tasks")  # the project's own log lines (resume, thresholds, progress)


@flow(name="experiment", log_prints=False)
def experiment_flow(exp: Experiment, params: Params, to_registry: bool = True) -> str:
    """Run one experiment end to end; returns the registered model URI (or the report folder)."""
    return run_experiment(exp, params, to_registry=to_registry, steps=PREFECT_STEPS)


def show_library_logs() -> None:
    """INFO from the models and tasks packages. Under a worker, prefect.yaml's PREFECT_LOGGING_EXTRA_LOGGERS=models,tasks
    sends them to the run's logs; this sets the level they pass at."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


@flow(name="experiment-from-params")
def experiment_from_params(experiment: str, params_file: str = "params.yaml", overlays: list[str] | None = None, to_registry: bool = True) -> str:
    """Deployment entry point: load and validate params (the edge; overlays merged over them), then run the experiment flow."""
    show_library_logs()
    params = load_params(params_file, overlays or ())
    return experiment_flow(params.experiment(experiment), params, to_registry=to_registry)
