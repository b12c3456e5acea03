"""The promotion gate: @champion moves to a new version only when its validation metric is at least the champion's
(minus the tolerance); the first version of a name becomes champion; every decision is logged with both numbers.

`run_gate_scenario` (tests/helpers/registry.py) is also run against real MLflow servers (sqlite and PostgreSQL backends) in test_mlflow_server.py.
"""

from __future__ import annotations

import json

import pytest

from tasks.tracking.promote import PromoteParams, decide
from tests.helpers.registry import run_gate_scenario


@pytest.mark.parametrize("candidate, champion_version, champion, tolerance, promoted, reason", [
    (0.7, None, None, 0.0, True, "first model of this name"),
    (None, None, None, 0.0, True, "first model of this name"),
    (0.8, "1", 0.7, 0.0, True, ">= champion's 0.7000"),
    (0.7, "1", 0.7, 0.0, True, ">= champion's 0.7000"),  # "at least the champion's"
    (0.69, "1", 0.7, 0.02, True, "- tolerance 0.02"),
    (0.6, "1", 0.7, 0.02, False, "< champion's 0.7000"),
    (None, "1", 0.7, 0.0, False, "has no validation_auroc"),
    (0.6, "1", None, 0.0, True, "the champion (version 1) has no validation_auroc"),
    (0.9, "2", 0.9, 0.0, False, "already the champion"),
])
def test_decide(candidate, champion_version, champion, tolerance, promoted, reason):
    got, why = decide(candidate, champion_version, champion, "2", PromoteParams(tolerance=tolerance))
    assert got is promoted and reason in why


def test_gate_moves_champion_only_on_a_better_candidate(chain, sqlite_registry, tmp_path):
    uri, _ = sqlite_registry
    run_gate_scenario(chain, tmp_path, uri)


def test_real_chain_reports_no_validation_without_anomalous_training_data(chain):
    metrics = json.loads(chain["layout"].metrics.read_text())  # PNG folders: the training set is normal only
    assert metrics["validation"]["available"] is False and "no labelled anomalies" in metrics["validation"]["reason"]
