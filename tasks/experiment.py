"""The experiment's steps as Prefect tasks: each a short wrapper of its plain function (``tasks.steps``, ``tasks.tracking``).

Paths and small settings objects go in and out, never tensors or models, so no result is cached. Only the registry
calls retry: a 40-minute training is never retried by the engine (a rerun resumes from its checkpoint instead).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from .layout import ExperimentLayout
from .params import Experiment
from .steps import calibrate, report, run, score, train
from .tracking import promote, register


@task(cache_policy=NONE, persist_result=False)
def train_task(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Train the model on the normal training split (resumes from its checkpoint)."""
    return train.train(exp, layout)


@task(cache_policy=NONE, persist_result=False)
def calibrate_task(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Fit the thresholds on the calibration split and generated samples."""
    return calibrate.calibrate(exp, layout)


@task(cache_policy=NONE, persist_result=False)
def score_task(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Score the test split and the validation anomalies."""
    return score.score(exp, layout)


@task(cache_policy=NONE, persist_result=False)
def report_task(exp: Experiment, layout: ExperimentLayout) -> Path:
    """Write the metrics, the summary and the figures."""
    return report.report(exp, layout)


@task(retries=2, retry_delay_seconds=[5, 20], cache_policy=NONE, persist_result=False)
def register_task(exp: Experiment, registry: register.RegisterParams, layout: ExperimentLayout) -> str:
    """Log the run and register the model in MLflow (no new version for unchanged weights and threshold)."""
    return register.register(exp, registry, layout)


@task(retries=2, retry_delay_seconds=[5, 20], cache_policy=NONE, persist_result=False)
def promote_task(registry: register.RegisterParams, params: promote.PromoteParams, layout: ExperimentLayout) -> Path:
    """Move @champion to the new version when its validation metric holds up."""
    return promote.promote(registry, params, layout)


PREFECT_STEPS = run.Steps(train=train_task, calibrate=calibrate_task, score=score_task, report=report_task,
                          register=register_task, promote=promote_task)
