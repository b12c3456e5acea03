"""One experiment from trained model to registry, in plain Python: the chain is wired here and nowhere else.

``run_experiment`` calls the steps in order. The Prefect flow (``flows.pipeline``) passes ``PREFECT_STEPS``
(``tasks.experiment``: the same functions as Prefect tasks, with retries on the registry calls); tests and
benchmarks use the plain ``STEPS``. DVC runs the same functions one stage at a time (``gadflow train`` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..layout import OUTPUTS, ExperimentLayout
from ..tracking.promote import promote
from ..tracking.register import register
from .calibrate import calibrate
from .report import report
from .score import score
from .train import train

if TYPE_CHECKING:
    from pathlib import Path

    from ..params import Experiment, Params


@dataclass(frozen=True)
class Steps:
    """The experiment's steps, in the order they run; each writes only its own folder of the experiment's layout."""

    train: Callable
    calibrate: Callable
    score: Callable
    report: Callable
    register: Callable
    promote: Callable


STEPS = Steps(train=train, calibrate=calibrate, score=score, report=report, register=register, promote=promote)


def run_experiment(exp: Experiment, params: Params, *, to_registry: bool = True, outputs: Path = OUTPUTS, steps: Steps = STEPS) -> str:
    """Train, calibrate, score and report one experiment; then register it and run the promotion gate.

    Returns the registered model URI (or, with ``to_registry`` off, the report folder)."""
    layout = ExperimentLayout.of(exp.name, outputs)
    steps.train(exp, layout)
    steps.calibrate(exp, layout)
    steps.score(exp, layout)
    report_dir = steps.report(exp, layout)
    if not to_registry:
        return str(report_dir)
    model_uri = steps.register(exp, params.registry, layout)
    steps.promote(params.registry, params.promote, layout)  # moves @champion only on a validation metric that holds up
    return model_uri
