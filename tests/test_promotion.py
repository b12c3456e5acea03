"""The promotion gate: @champion moves to a new version only when its validation metric is at least the champion's
(minus the tolerance); the first version of a name becomes champion; every decision is logged with both numbers.

`run_gate_scenario` is also run against real MLflow servers (sqlite and PostgreSQL backends) in test_mlflow_server.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.config import PromoteParams, RegisterParams
from tasks.promote import PROMOTION_FILE, decide, promote_model
from tasks.register import register_model

from .test_tasks_chain import chain, monkeypatch_module, params, png_archive  # noqa: F401  (module fixtures: one tiny trained model)

GATE = PromoteParams(metric="validation_auroc", tolerance=0.0)


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


def _report_with_validation(report: Path, target: Path, auroc: float | None) -> Path:
    """A copy of a real report whose validation section says `auroc` (None: no validation split, as in the PNG chain)."""
    shutil.copytree(report, target)
    metrics = json.loads((target / "metrics.json").read_text())
    metrics["validation"] = {"available": False} if auroc is None else {"available": True, "auroc": auroc, "auprc": auroc - 0.05}
    (target / "metrics.json").write_text(json.dumps(metrics))
    return target


def run_gate_scenario(chain: dict, tmp: Path, uri: str) -> list[dict]:  # noqa: F811
    """Register four versions of the chain's model through `uri` and gate each; return the four decisions.
    v1 has no validation metric (first: champion), v2 0.70 (the champion has none: promoted), v3 0.60 (worse: kept),
    v4 0.80 (better: promoted)."""
    from mlflow.tracking import MlflowClient

    registry = RegisterParams()
    decisions = []
    for i, auroc in enumerate([None, 0.70, 0.60, 0.80], start=1):
        report = _report_with_validation(chain["report"], tmp / f"report{i}", auroc)
        register_model.fn(chain["exp"], registry, chain["model_dir"], report, chain["out"])
        path = promote_model.fn(registry, GATE, chain["out"])
        decisions.append(json.loads(path.read_text()))
        champion = MlflowClient(uri).get_model_version_by_alias(chain["exp"].name, "champion")
        assert str(champion.version) == {1: "1", 2: "2", 3: "2", 4: "4"}[i], (i, decisions[-1])
    client = MlflowClient(uri)
    for decision in decisions:  # logged on the version's run and as a version tag, with both numbers
        version = client.get_model_version(chain["exp"].name, decision["candidate_version"])
        assert version.tags["promotion"].startswith("promoted" if decision["promoted"] else "kept")
        logged = json.loads(Path(client.download_artifacts(version.run_id, PROMOTION_FILE, str(tmp))).read_text())
        assert logged == decision
    assert [d["promoted"] for d in decisions] == [True, True, False, True]
    assert decisions[2]["candidate_metric"] == 0.60 and decisions[2]["champion_metric"] == 0.70
    assert client.get_run(client.get_model_version(chain["exp"].name, "4").run_id).data.metrics["promotion_champion_metric"] == 0.70
    return decisions


def test_gate_moves_champion_only_on_a_better_candidate(chain, sqlite_registry, tmp_path):  # noqa: F811
    uri, _ = sqlite_registry
    run_gate_scenario(chain, tmp_path, uri)


def test_real_chain_reports_no_validation_without_anomalous_training_data(chain):  # noqa: F811
    metrics = json.loads((chain["report"] / "metrics.json").read_text())  # PNG folders: the training set is normal only
    assert metrics["validation"]["available"] is False and "no labelled anomalies" in metrics["validation"]["reason"]
