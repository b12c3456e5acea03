"""train-all in-process (no Prefect server): every named cell runs, and the failed ones come back as one table."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.project import BIN, REPO, SMOKE_OVERLAY, project_env


def gadflow(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "gadflow"), *args], cwd=cwd, env=project_env(cwd), capture_output=True, text=True, timeout=timeout)


def smoke_project(root: Path) -> Path:
    """params.yaml and the smoke overlay (passed to every command with --overlay: no DVC here, so nothing is merged into params.yaml)."""
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copy(SMOKE_OVERLAY, root / "smoke.yaml")
    return root


@pytest.mark.integration
def test_train_all_runs_every_cell_and_tables_the_failed_ones(tmp_path):
    smoke_project(tmp_path)
    for step in (["generate", "rgbd"], ["prepare", "rgbd"]):  # rgbd is rendered, so no download is needed
        done = gadflow([*step, "--overlay", "smoke.yaml"], tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    # mnist-dcgan's data were never prepared: that cell fails, after which rgbd-adgan still runs
    result = gadflow(["train-all", "--overlay", "smoke.yaml", "--experiments", "mnist-dcgan,rgbd-adgan"], tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "gadflow: error: 1 of 2 train-all cells failed:" in result.stderr
    table = result.stderr[result.stderr.index("1 of 2 train-all cells failed:"):]
    assert "mnist-dcgan  Failed" in table and "prepared data incomplete" in table
    assert "rgbd-adgan  " not in table.split("\n", 2)[2]  # only the failed cell is in the table
    assert (tmp_path / "outputs" / "rgbd-adgan" / "report" / "metrics.json").is_file()
    assert (tmp_path / "outputs" / "rgbd-adgan" / "registry" / "registered.json").is_file()
    assert len(json.loads((tmp_path / "outputs" / "rgbd-adgan" / "train" / "history.json").read_text())) == 1  # the overlay's 1 epoch
    assert not (tmp_path / "outputs" / "mnist-dcgan" / "model").exists()


def test_train_all_refuses_unknown_cells_before_running_any(tmp_path):
    smoke_project(tmp_path)
    result = gadflow(["train-all", "--overlay", "smoke.yaml", "--experiments", "rgbd-adgan,no-such-cell"], tmp_path)
    assert result.returncode == 2
    assert "train-all: no such experiment in params.yaml: no-such-cell" in result.stderr
    assert "Starting temporary server" not in result.stdout + result.stderr  # refused before Prefect starts a server
    assert not (tmp_path / "outputs").exists()
