"""The train-all flow: every experiment cell of params `experiments`, one experiment flow run each, as mapped tasks.

With ``deployment`` set (on a Prefect server), each cell is a flow run of that deployment, e.g.
``experiment-from-params/train`` on the `gpu` work pool, created by ``run_deployment``; at most ``concurrency`` of them
are in flight. Without it the cells run one after another in this process (they would share its cores). Either way
the flow waits for every cell and then fails, naming each failed cell and why, if any did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prefect import flow, task, unmapped
from prefect.cache_policies import NONE
from prefect.task_runners import ThreadPoolTaskRunner

from models.errors import GadflowError
from tasks.params import Params, ParamsError, load_params
from tasks.tracking.register import one_line

from flows.pipeline import experiment_flow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellResult:
    experiment: str
    state: str  # "Completed", or the failed run's state name (Failed, Crashed, Cancelled, ...)
    detail: str  # the registered model URI / report folder / flow run, or why it failed

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


@task(cache_policy=NONE, persist_result=False, task_run_name="cell-{experiment}")
def run_cell(experiment: str, params_file: str, overlays: list[str], deployment: str | None, to_registry: bool) -> CellResult:
    """One experiment: a run of ``deployment``, or the experiment flow in this process. Never raises: a failed cell is a result."""
    if deployment:
        from prefect.deployments import run_deployment

        run = run_deployment(name=deployment, as_subflow=True, flow_run_name=f"train-{experiment}",  # blocks until the run ends
                             parameters={"experiment": experiment, "params_file": params_file, "overlays": overlays, "to_registry": to_registry})
        state = run.state
        if state is not None and state.is_completed():
            return CellResult(experiment, "Completed", f"flow run {run.name} ({run.id})")
        reason = (state.message or "") if state is not None else "no state"
        return CellResult(experiment, state.name if state is not None else "Unknown", f"flow run {run.name} ({run.id}): {reason[:300]}")
    try:
        params = load_params(params_file, overlays)
        detail = experiment_flow(params.experiment(experiment), params, to_registry=to_registry)
    except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the others
        return CellResult(experiment, "Failed", one_line(exc))
    return CellResult(experiment, "Completed", str(detail))


def cells_to_run(params: Params, params_file: str, experiments: list[str] | None, concurrency: int) -> list[str]:
    """The cells a train-all run takes (those named, else every experiment), or a ParamsError before any runs."""
    cells = list(experiments) if experiments else list(params.experiments)
    unknown = [c for c in cells if c not in params.experiments]
    if unknown:
        raise ParamsError(f"train-all: no such experiment in {params_file}: {', '.join(unknown)}; it has: {', '.join(params.experiments)}")
    if concurrency < 1:
        raise ParamsError(f"train-all: concurrency must be at least 1, got {concurrency}")
    return cells


@flow(name="train-all")
def train_all_flow(params_file: str = "params.yaml", experiments: list[str] | None = None, deployment: str | None = None,
                   concurrency: int = 2, to_registry: bool = True, overlays: list[str] | None = None) -> list[str]:
    """Run every experiment cell (or those named); returns what each produced, or fails with a table of failed cells."""
    cells = cells_to_run(load_params(params_file, overlays or ()), params_file, experiments, concurrency)
    workers = concurrency if deployment else 1
    log.info("train-all: %d cells %s, at most %d at a time", len(cells), f"through deployment {deployment}" if deployment else "in this process", workers)
    with ThreadPoolTaskRunner(max_workers=workers) as runner:
        futures = runner.map(run_cell, {"experiment": cells, "params_file": unmapped(params_file), "overlays": unmapped(list(overlays or ())),
                                        "deployment": unmapped(deployment), "to_registry": unmapped(to_registry)})
        results = futures.result()
    for r in results:
        log.info("train-all: %s %s: %s", r.experiment, r.state, r.detail)
    if not all(r.ok for r in results):
        raise CellsFailed(failure_table(results))
    return [r.detail for r in results]
