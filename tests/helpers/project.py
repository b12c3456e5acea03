"""The end-to-end tests' project copy: the dataset mirror, a copy of the project's files with the smoke overlay's
settings as its params.yaml, and the environment its `gadflow` / `dvc` / `prefect` processes run in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOKE_OVERLAY = REPO / "tests" / "fixtures" / "params-smoke.yaml"
BIN = Path(sys.executable).parent  # the venv's gadflow, dvc and prefect


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a `gadflow` / `dvc` / `prefect` process run in the copy at ``root``.

    No configured tracking store, Prefect server or stage runner is inherited; Prefect's database is the
    copy's own; the venv's tools come first on PATH; telemetry is off. ``extra`` adds or overrides variables.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "PREFECT_API", "GADFLOW_STAGE"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PREFECT_HOME=str(root / ".prefect"), DO_NOT_TRACK="true",
               MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90", **extra)
    return env


def dataset_mirror(needs: str) -> Path:
    """$GADFLOW_DATA_MIRROR (default ../shared/datasets), which must hold the dataset folder ``needs``."""
    path = Path(os.environ.get("GADFLOW_DATA_MIRROR") or REPO.parent / "shared" / "datasets")
    assert (path / needs).is_dir(), f"dataset mirror not found at {path}: set GADFLOW_DATA_MIRROR"
    return path


def copy_project(root: Path, skip: tuple[str, ...] = (), overlay: Path | None = SMOKE_OVERLAY) -> Path:
    """Copy the files git tracks (but those under the ``skip`` prefixes) to ``root``. With an ``overlay``, the copy's
    params.yaml is params.yaml with the overlay merged over it (what `gadflow params --overlay` prints): DVC tracks
    the values in params.yaml, so a DVC run of the overlay's settings needs them there."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        if (REPO / rel).is_file() and not (skip and rel.startswith(skip)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    if overlay is not None:  # what `gadflow params --overlay` prints
        from tasks.params import merged_params_yaml

        (root / "params.yaml").write_text(merged_params_yaml(root / "params.yaml", [overlay]))
    return root
