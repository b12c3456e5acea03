"""The promotion gate's scenario on the PNG chain's model, for a registry given by its tracking URI (sqlite in
tests/test_promotion.py, real MLflow servers on sqlite and PostgreSQL in tests/test_mlflow_server.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tasks.layout import ExperimentLayout
from tasks.tracking.promote import PromoteParams, promote
from tasks.tracking.register import RegisterParams, register

GATE = PromoteParams(metric="validation_auroc", tolerance=0.0)


def candidate_layout(chain: dict, target: Path, version: int, auroc: float | None) -> ExperimentLayout:
    """A copy of the chain's outputs whose threshold is nudged by ``version`` (registration is idempotent: the same
    weights with the same threshold would be the same version) and whose validation section says ``auroc`` (None:
    no validation split, as in the PNG chain)."""
    layout = ExperimentLayout(target / chain["exp"].name)
    shutil.copytree(chain["layout"].root, layout.root, ignore=shutil.ignore_patterns("registry", "promotion"))
    threshold = json.loads(layout.threshold.read_text())
    threshold["thresholds"][threshold["method"]] += version * 1e-6
    layout.threshold.write_text(json.dumps(threshold))
    metrics = json.loads(layout.metrics.read_text())
    metrics["validation"] = {"available": False} if auroc is None else {"available": True, "auroc": auroc, "auprc": auroc - 0.05}
    layout.metrics.write_text(json.dumps(metrics))
    return layout


def run_gate_scenario(chain: dict, tmp: Path, uri: str) -> list[dict]:
    """Register four versions of the chain's model through `uri` and gate each; return the four decisions.
    v1 has no validation metric (first: champion), v2 0.70 (the champion has none: promoted), v3 0.60 (worse: kept),
    v4 0.80 (better: promoted)."""
    from mlflow.tracking import MlflowClient

    registry = RegisterParams()
    name = chain["exp"].name
    decisions = []
    for i, auroc in enumerate([None, 0.70, 0.60, 0.80], start=1):
        layout = candidate_layout(chain, tmp / f"candidate{i}", i, auroc)
        register(chain["exp"], registry, layout)
        path = promote(registry, GATE, layout)
        decisions.append(json.loads(path.read_text()))
        champion = MlflowClient(uri).get_model_version_by_alias(name, "champion")
        assert str(champion.version) == {1: "1", 2: "2", 3: "2", 4: "4"}[i], (i, decisions[-1])
    client = MlflowClient(uri)
    for decision in decisions:  # logged on the version's run and as a version tag, with both numbers
        version = client.get_model_version(name, decision["candidate_version"])
        assert version.tags["promotion"].startswith("promoted" if decision["promoted"] else "kept")
        logged = json.loads(Path(client.download_artifacts(version.run_id, "promotion.json", str(tmp))).read_text())
        assert logged == decision
    assert [d["promoted"] for d in decisions] == [True, True, False, True]
    assert decisions[2]["candidate_metric"] == 0.60 and decisions[2]["champion_metric"] == 0.70
    assert client.get_run(client.get_model_version(name, "4").run_id).data.metrics["promotion_champion_metric"] == 0.70
    return decisions
