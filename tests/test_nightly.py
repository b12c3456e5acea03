"""Nightly scoring against a real registered champion (the PNG chain's tiny model, sqlite MLflow): partitions scored
once per version, atomic outputs, quarantine with the reason, the night logged to MLflow, fsspec URIs, and the
`gadflow nightly-score` flow failing loudly above the flagged-fraction bound while still writing its outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tasks.adapters import load_prepared
from tasks.layout import prepared_dir
from tasks.tracking.nightly import NightlyParams, list_partitions, log_night, resolve_champion, score_partition
from tasks.tracking.promote import PromoteParams, promote
from tasks.tracking.register import register
from tests.helpers.project import BIN, project_env

MODEL = "parts-dcgan"


@pytest.fixture
def champion_registry(chain, sqlite_registry):
    """The chain's model registered and promoted (first version: @champion) in a fresh sqlite registry."""
    uri, registry = sqlite_registry
    register(chain["exp"], registry, chain["layout"])
    promote(registry, PromoteParams(), chain["layout"])
    return uri, registry


def _test_images(chain: dict) -> np.ndarray:
    return np.asarray(load_prepared(chain["work"] / prepared_dir(chain["exp"].data)).test)  # uint8 (40, 4, 16, 16)


def _incoming(chain: dict, root: Path) -> dict[str, Path]:
    """Four partitions: two good image sets (the first ten test images; the five the model scored highest), a corrupt
    parquet file and images of the wrong geometry."""
    test = _test_images(chain)
    top5 = np.argsort(pd.read_parquet(chain["layout"].score_tables["scores"])["score"].to_numpy())[::-1][:5]
    folder = root / MODEL
    folder.mkdir(parents=True)
    np.save(folder / "2026-12-01.npy", test[:10])
    np.save(folder / "2026-12-02.npy", test[top5])
    (folder / "2026-12-03.parquet").write_bytes(b"PAR1 this is not a parquet file")
    np.save(folder / "2026-12-04.npy", np.zeros((3, 3, 8, 8), dtype=np.uint8))
    (folder / "notes.txt").write_text("not a partition")
    return {"test": test, "top5": top5}


def test_partitions_scored_once_quarantined_with_reason_and_logged(chain, champion_registry, tmp_path):
    import mlflow

    uri, registry = champion_registry
    _incoming(chain, tmp_path / "incoming")
    nightly = NightlyParams(models=[MODEL], incoming=str(tmp_path / "incoming"), scored=str(tmp_path / "scored"),
                            quarantine=str(tmp_path / "quarantine"))
    champion = resolve_champion(registry, MODEL, "champion")
    assert champion.version == "1" and champion.uri == f"models:/{MODEL}/1"
    partitions = list_partitions(nightly.incoming, MODEL)
    assert [Path(p).name for p in partitions] == ["2026-12-01.npy", "2026-12-02.npy", "2026-12-03.parquet", "2026-12-04.npy"]

    results = [score_partition(champion, p, nightly) for p in partitions]
    assert [r.status for r in results] == ["scored", "scored", "quarantined", "quarantined"]
    scored = pd.read_parquet(tmp_path / "scored" / MODEL / "v1" / "2026-12-01.parquet")
    assert list(scored.columns) == ["id", "score", "p_value", "is_anomaly", "threshold", "model_name", "model_version"]
    expected = pd.read_parquet(chain["layout"].score_tables["scores"])["score"].to_numpy()[:10]  # the pipeline's own test scores of those images
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=1e-6)
    assert scored["id"].tolist() == list(range(10)) and set(scored["model_version"]) == {"1"} and set(scored["model_name"]) == {MODEL}
    assert (scored["is_anomaly"] == (scored["score"] > champion.threshold)).all()
    assert results[0].flagged == int(scored["is_anomaly"].sum())
    quarantine = tmp_path / "quarantine" / MODEL
    assert not (tmp_path / "incoming" / MODEL / "2026-12-03.parquet").exists() and (quarantine / "2026-12-03.parquet").is_file()
    assert "parquet" in (quarantine / "2026-12-03.parquet.reason.txt").read_text().lower()
    assert (quarantine / "2026-12-04.npy.reason.txt").read_text() == (
        "GadflowError: schema mismatch: 832 of the model's 1024 input columns missing (first: 'p192'); the partition has 192 columns\n")
    assert not list((tmp_path / "scored").rglob(".*"))  # no temporary file left behind

    again = [score_partition(champion, p, nightly) for p in list_partitions(nightly.incoming, MODEL)]
    assert [r.status for r in again] == ["skipped", "skipped"]  # the same version scores a partition once

    summary = log_night(champion, results, nightly, tmp_path)
    assert (summary["scored"], summary["quarantined"], summary["rows"]) == (2, 2, 15)
    assert summary["flagged_fraction"] == pytest.approx(sum(r.flagged for r in results) / 15)
    run = mlflow.search_runs(experiment_names=["gadflow-nightly"], output_format="list")[0]
    assert run.data.metrics["flagged_fraction"] == pytest.approx(summary["flagged_fraction"])
    assert {"score_p50", "score_p90", "score_p99", "score_max"} <= set(run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert {"nightly.json", f"{MODEL}-scores.png"} <= artifacts
    assert log_night(champion, again, nightly, tmp_path)["scored"] == 0  # nothing new: nothing logged
    assert len(mlflow.search_runs(experiment_names=["gadflow-nightly"], output_format="list")) == 1


def test_object_store_uris(chain, champion_registry, tmp_path):
    """fsspec URIs (here the in-memory store) for incoming, scored and quarantine, as for s3:// with s3fs."""
    import fsspec

    _, registry = champion_registry
    memory = fsspec.filesystem("memory")
    test = _test_images(chain)
    with memory.open(f"/incoming/{MODEL}/a.npy", "wb") as handle:
        np.save(handle, test[:4])
    memory.pipe(f"/incoming/{MODEL}/b.parquet", b"garbage")
    nightly = NightlyParams(models=[MODEL], incoming="memory://incoming", scored="memory://scored", quarantine="memory://quarantine")
    champion = resolve_champion(registry, MODEL, "champion")
    statuses = [score_partition(champion, p, nightly).status for p in list_partitions(nightly.incoming, MODEL)]
    assert statuses == ["scored", "quarantined"]
    with memory.open(f"/scored/{MODEL}/v1/a.parquet", "rb") as handle:
        assert len(pd.read_parquet(handle)) == 4
    assert memory.exists(f"/quarantine/{MODEL}/b.parquet.reason.txt") and not memory.exists(f"/incoming/{MODEL}/b.parquet")


@pytest.mark.integration
def test_nightly_flow_fails_loudly_above_the_bound_and_a_rerun_writes_nothing(chain, params, champion_registry, tmp_path):
    uri, _ = champion_registry
    _incoming(chain, tmp_path / "incoming")
    declared = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
    declared["nightly"] = {"models": [MODEL], "incoming": str(tmp_path / "incoming"), "scored": str(tmp_path / "scored"),
                           "quarantine": str(tmp_path / "quarantine"), "max_flagged_fraction": 0.01}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(declared))

    def nightly() -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "gadflow"), "nightly-score"], cwd=tmp_path, env=project_env(tmp_path, MLFLOW_TRACKING_URI=uri),
                              capture_output=True, text=True, timeout=300)

    first = nightly()
    flagged = sum(int(pd.read_parquet(p)["is_anomaly"].sum()) for p in (tmp_path / "scored" / MODEL / "v1").glob("*.parquet"))
    assert flagged > 0, first.stderr[-2000:]  # half the chain's test images are anomalies
    assert first.returncode == 2, first.stdout + first.stderr[-3000:]
    assert f"gadflow: error: nightly-score: {MODEL} v1 flagged {flagged} of 15 rows" in first.stderr
    assert "above max_flagged_fraction 1.0%" in first.stderr
    outputs = sorted(p.name for p in (tmp_path / "scored" / MODEL / "v1").iterdir())
    assert outputs == ["2026-12-01.parquet", "2026-12-02.parquet"]  # written before the run failed
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "scored").rglob("*.parquet")}

    second = nightly()
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{MODEL} v1: scored 0, skipped 2, quarantined 0; 0 of 0 rows flagged" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "scored").rglob("*.parquet")} == stamps
