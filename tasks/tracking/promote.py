"""Promotion gate: move the champion alias to a newly registered version only when its validation metric holds up.

The metric (params `promote.metric`) is a version tag written at registration from the validation split: the
normal calibration split against held-out training anomalies. Test metrics are reported, never selected on.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from models.errors import GadflowError
from models.storage import atomic_write_text

from ..settings import Name, Strict
from .register import RegisterParams, one_line, shown_uri, tracking_uri

if TYPE_CHECKING:
    from ..layout import ExperimentLayout

log = logging.getLogger(__name__)


class PromoteParams(Strict):
    """The promotion gate: a new version gets `alias` when its validation metric is at least the champion's minus
    `tolerance`. The metric is measured on the validation split (calibration normals against held-out training
    anomalies), never on test data; a version without it is never promoted over a champion."""

    metric: Literal["validation_auroc", "validation_auprc"] = "validation_auroc"
    tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    alias: Name = "champion"


def _metric(tags: dict[str, str], name: str) -> float | None:
    value = tags.get(name)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def decide(candidate: float | None, champion_version: str | None, champion: float | None, candidate_version: str,
           params: PromoteParams) -> tuple[bool, str]:
    """(promote?, reason). The first version of a name is promoted; after that, only a candidate whose metric is at
    least the champion's minus the tolerance. A candidate without the metric never displaces a champion."""
    if champion_version is None:
        return True, "first model of this name"
    if champion_version == candidate_version:
        return False, "already the champion"
    if candidate is None:
        return False, f"the candidate has no {params.metric} (no labelled validation split for its data); promote it by hand"
    if champion is None:
        return True, f"the champion (version {champion_version}) has no {params.metric}"
    if candidate >= champion - params.tolerance:
        return True, f"{params.metric} {candidate:.4f} >= champion's {champion:.4f} - tolerance {params.tolerance:g}"
    return False, f"{params.metric} {candidate:.4f} < champion's {champion:.4f} - tolerance {params.tolerance:g}"


def promote(registry: RegisterParams, params: PromoteParams, layout: ExperimentLayout) -> Path:
    """Decide on the version named in registered.json, set the alias if it passes, log the decision and both numbers
    to the version's run (promotion.json, metrics) and its tags; write promotion/promotion.json."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    registered = json.loads(layout.registered.read_text())
    uri = tracking_uri(registry)
    try:
        decision = _decide_and_log(uri, registered, params)
    except (MlflowException, RequestException, ConnectionError) as exc:
        raise GadflowError(f"MLflow at {shown_uri(uri)} failed during the promotion of {registered['name']}: {one_line(exc)}") from None
    path = atomic_write_text(layout.promotion, json.dumps(decision, indent=1))
    log.info("%s version %s: %s (%s)", decision["name"], decision["candidate_version"],
             "promoted to @" + params.alias if decision["promoted"] else "not promoted", decision["reason"])
    return path


def _decide_and_log(uri: str, registered: dict, params: PromoteParams) -> dict:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    name, version = registered["name"], str(registered["version"])
    candidate = client.get_model_version(name, version)
    try:
        current = client.get_model_version_by_alias(name, params.alias)
    except MlflowException as exc:  # no version holds the alias yet
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        current = None
    champion_version = str(current.version) if current is not None else None  # versions are ints or strings by store
    candidate_metric = _metric(candidate.tags, params.metric)
    champion_metric = _metric(current.tags, params.metric) if current is not None else None
    promoted, reason = decide(candidate_metric, champion_version, champion_metric, version, params)
    decision = {"name": name, "candidate_version": version, "champion_version": champion_version,
                "metric": params.metric, "tolerance": params.tolerance, "candidate_metric": candidate_metric,
                "champion_metric": champion_metric, "promoted": promoted, "reason": reason, "alias": params.alias}
    run_id = candidate.run_id
    client.log_dict(run_id, decision, "promotion.json")
    for key, value in (("promotion_candidate_metric", candidate_metric), ("promotion_champion_metric", champion_metric)):
        if value is not None:
            client.log_metric(run_id, key, value)
    client.set_model_version_tag(name, version, "promotion", f"{'promoted' if promoted else 'kept'}: {reason}")
    if promoted:
        client.set_registered_model_alias(name, params.alias, version)
    return decision
