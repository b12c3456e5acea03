"""The reference detectors beside a report: their AUROC / AUPRC on the same test rows, and the gap to them.

A reference (``knn``, ``pca``: models.reference) is fitted on the same training normals. Its figures are read from
its own score step's table, so nothing is refitted here; the rows must be the same ones (same ``index`` and
``label`` columns), or the comparison is refused with the reason rather than made on another split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..layout import ExperimentLayout
from .metrics import ranking_metrics

log = logging.getLogger(__name__)

SAME_ROWS = ("index", "label")  # the score-table columns that identify a test row and its truth


def reference_scores(frame: pd.DataFrame, outputs: Path, references: tuple[str, ...]) -> dict[str, np.ndarray | str]:
    """For each reference experiment: its test scores aligned with ``frame``'s rows, or why there are none."""
    found: dict[str, np.ndarray | str] = {}
    for name in references:
        table = ExperimentLayout.of(name, outputs).score_tables["scores"]
        if not table.is_file():
            found[name] = f"not scored yet: {table} is missing (`gadflow train {name}` and `gadflow score {name}`, or `dvc repro`)"
            continue
        theirs = pd.read_parquet(table, columns=[*SAME_ROWS, "score"])
        same = len(theirs) == len(frame) and all(np.array_equal(theirs[c].to_numpy(), frame[c].to_numpy()) for c in SAME_ROWS)
        found[name] = theirs["score"].to_numpy() if same else f"scored on other rows than this report ({table}): rescore it on the current data"
    return found


def reference_metrics(labels: np.ndarray, ours: dict[str, float], scores: dict[str, np.ndarray | str]) -> dict[str, dict]:
    """Each reference's AUROC / AUPRC and the gaps (ours − reference: positive means this detector ranks better)."""
    out = {}
    for name, ref in scores.items():
        if isinstance(ref, str):
            log.warning("reference %s: %s", name, ref)
            out[name] = {"available": False, "reason": ref}
            continue
        theirs = ranking_metrics(labels, ref)
        out[name] = {"available": True, **theirs, **{f"{k}_gap": ours[k] - theirs[k] for k in ("auroc", "auprc")}}
    return out


def reference_sentence(metrics: dict[str, dict]) -> str:
    """One sentence for the summary's interpretation."""
    parts = [f"{name} AUROC {m['auroc']:.3f} (gap {m['auroc_gap']:+.3f}), AUPRC {m['auprc']:.3f} (gap {m['auprc_gap']:+.3f})"
             for name, m in metrics.items() if m["available"]]
    missing = [name for name, m in metrics.items() if not m["available"]]
    text = f" References on the same test rows: {'; '.join(parts)}." if parts else ""
    return text + (f" Not compared (see metrics.json): {', '.join(missing)}." if missing else "")
