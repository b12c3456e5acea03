"""The train-all flow: every (dataset, model) cell of params `train`, one experiment flow run each.

With ``deployment`` set (on a Prefect server), each cell is a flow run of that deployment, e.g.
``experiment-from-params/train`` on the `gpu` work pool, created by ``run_deployment``; at most
``concurrency`` of them are in flight. Without it the cells run one after another in this process.
Either way the flow waits for every cell and then fails, naming each failed cell and why, if any did.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prefect import flow

from models.errors import GadflowError
from tasks.config import Params, ParamsError, load_params

from flows.pipeline import experiment_flow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellResult:
    experiment: str
    state: str  # "Completed", or the failed run's state name (Failed, Crashed, Cancelled, ...)
    detail: str  # the registered model URI / report folder, or why it failed

    @property
    def ok(self) -> bool:
        return self.state == "Completed"


class CellsFailed(GadflowError):
    """Some cells of a train-all run failed; the message is a table of them."""


def failure_table(results: list[CellResult]) -> str:
    failed = [r for r in results if not r.ok]
    width = max(len("experiment"), *(len(r.experiment) for r in failed))
    rows = [f"{'experiment':<{width}}  state      reason", *(f"{r.experiment:<{width}}  {r.state:<9}  {r.detail}" for r in failed)]
    return f"{len(failed)} of {len(results)} train-all cells failed:\n" + "\n".join(rows)


def _run_in_process(experiment: str, params: Params, to_registry: bool) -> CellResult:
    try:
        detail = experiment_flow(params.experiment(experiment), params.registry, params.promote, to_registry=to_registry)
    except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the others
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return CellResult(experiment, "Failed", first_line[:300])
    return CellResult(experiment, "Completed", str(detail))


def _run_on_deployment(experiment: str, deployment: str, params_file: str, to_registry: bool) -> CellResult:
    from prefect.deployments import run_deployment

    run = run_deployment(name=deployment, parameters={"experiment": experiment, "params_file": params_file, "to_registry": to_registry},
                         flow_run_name=f"train-{experiment}", as_subflow=True)  # blocks until the run ends
    state = run.state
    if state is not None and state.is_completed():
        return CellResult(experiment, "Completed", f"flow run {run.name} ({run.id})")
    reason = (state.message or "") if state is not None else "no state"
    return CellResult(experiment, state.name if state is not None else "Unknown", f"flow run {run.name} ({run.id}): {reason[:300]}")


@flow(name="train-all")
def train_all_flow(params_file: str = "params.yaml", experiments: list[str] | None = None, deployment: str | None = None,
                   concurrency: int = 2, to_registry: bool = True) -> list[str]:
    """Run every experiment cell (or those named); returns what each produced, or fails with a table of failed cells."""
    params = load_params(params_file)
    cells = list(experiments) if experiments else list(params.train)
    unknown = [c for c in cells if c not in params.train]
    if unknown:
        raise ParamsError(f"train-all: no such experiment in {params_file}: {', '.join(unknown)}; it has: {', '.join(params.train)}")
    if concurrency < 1:
        raise ParamsError(f"train-all: concurrency must be at least 1, got {concurrency}")
    if deployment:
        log.info("train-all: %d cells through deployment %s, at most %d at a time", len(cells), deployment, concurrency)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:  # each thread gets this flow's context: the runs link as subflows
            futures = [pool.submit(contextvars.copy_context().run, _run_on_deployment, c, deployment, params_file, to_registry) for c in cells]
            results = [f.result() for f in futures]
    else:
        log.info("train-all: %d cells in this process, one after another", len(cells))
        results = [_run_in_process(c, params, to_registry) for c in cells]
    for r in results:
        log.info("train-all: %s %s: %s", r.experiment, r.state, r.detail)
    if not all(r.ok for r in results):
        raise CellsFailed(failure_table(results))
    return [r.detail for r in results]
