"""The nightly-score flow: for each model of params `nightly`, score the new incoming partitions with its @champion.

Reads top to bottom: resolve the champion (pinned to its version) -> list partitions -> score each (skipped when
this version has scored it, quarantined when unreadable) -> log the night to MLflow. Afterwards it fails, naming
them, when a model flagged more than `max_flagged_fraction` of tonight's rows or had no champion.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from prefect import flow

from models.errors import GadflowError
from tasks.nightly import list_partitions, log_night, resolve_champion, score_partition
from tasks.tracking.nightly import NightlyParams
from tasks.tracking.register import RegisterParams

log = logging.getLogger(__name__)


@flow(name="nightly-score")
def nightly_score_flow(nightly: NightlyParams, registry: RegisterParams) -> list[dict]:
    """Score every model's new partitions; returns one summary per model."""
    summaries, problems = [], []
    with tempfile.TemporaryDirectory(prefix="gadflow-nightly-") as workdir:
        for model in nightly.models:
            try:
                champion = resolve_champion(registry, model, nightly.alias)
            except GadflowError as exc:
                problems.append(str(exc))
                continue
            results = [score_partition(champion, partition, nightly) for partition in list_partitions(nightly.incoming, model)]
            summary = log_night(champion, results, nightly, Path(workdir))
            summaries.append(summary)
            if summary["flagged_fraction"] > nightly.max_flagged_fraction:
                problems.append(f"{model} v{champion.version} flagged {summary['flagged']} of {summary['rows']} rows "
                                f"({summary['flagged_fraction']:.1%}), above max_flagged_fraction {nightly.max_flagged_fraction:.1%}")
    if problems:
        raise GadflowError("nightly-score: " + "; ".join(problems))
    return summaries


@flow(name="nightly-score-from-params")
def nightly_score_from_params(params_file: str = "params.yaml", overlays: list[str] | None = None) -> list[dict]:
    """Deployment entry point: load and validate params (the edge), then run the nightly-score flow."""
    from flows.pipeline import show_library_logs
    from tasks.params import load_params

    show_library_logs()
    params = load_params(params_file, overlays or ())
    return nightly_score_flow(params.nightly, params.registry)
