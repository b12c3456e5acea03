"""Helpers for the end-to-end tests: the dataset mirror, and a copy of the project's tracked files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE_PARAMS = REPO / "tests" / "fixtures" / "params-smoke.yaml"


def dataset_mirror(needs: str) -> Path:
    """$GADFLOW_DATA_MIRROR (default ../shared/datasets), which must hold the dataset folder ``needs``."""
    path = Path(os.environ.get("GADFLOW_DATA_MIRROR") or REPO.parent / "shared" / "datasets")
    assert (path / needs).is_dir(), f"dataset mirror not found at {path}: set GADFLOW_DATA_MIRROR"
    return path


def copy_tracked_files(root: Path, skip: tuple[str, ...] = ()) -> Path:
    """Copy the files git tracks (but those under the ``skip`` prefixes) to ``root``, with the smoke params as params.yaml."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        if (REPO / rel).is_file() and not (skip and rel.startswith(skip)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    shutil.copy(SMOKE_PARAMS, root / "params.yaml")
    return root
