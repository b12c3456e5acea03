"""The report of series data: point-level metrics, per series and overall, sensor attribution, and the timeline figure.

Every metric is named for what it counts (``tasks.reports.series_metrics``). The point-adjusted F1 is always
reported beside the same figure for random scores that flag as many points, computed here in the same run.
``metrics`` and ``figures`` are what the report step asks of a data kind's report module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import ranking_metrics, threshold_metrics
from .plots import frames_as_images, image_grid, series_timeline
from .series_metrics import point_adjust, random_flags, series_report, skab_aggregate

RANDOM_REFERENCE_SEED = 0


def metrics(data, frame: pd.DataFrame, threshold: float, detector) -> dict:
    """The series section of metrics.json, and the window count."""
    from .attribution import attribution_hits

    found = series_metrics(frame, threshold)
    if detector.capabilities.channel_residuals:  # SMD's root-cause labels: hit@k of the residual ranking
        found["attribution"] = attribution_hits(data, detector)
    return {"series": found, "counts": {"windows_test": int(len(data.test_labels))}}


def figures(name: str, data, frame: pd.DataFrame, threshold: float, detector, settings, plots: Path) -> None:
    series_figures(name, frame, threshold, plots, data)


def series_metrics(points: pd.DataFrame, threshold: float) -> dict:
    """points: one row per scored test point (series, t, label, score). Flags are score > threshold."""
    labels = points["label"].to_numpy()
    scores = points["score"].to_numpy()
    # One (name, labels, scores, flags) per series; segments never span two series: point adjustment and events are per series.
    groups = [(str(name), g["label"].to_numpy(), g["score"].to_numpy(), (g["score"].to_numpy() > threshold).astype(np.int8))
              for name, g in points.groupby("series", sort=False, observed=True)]
    per_series = {name: series_report(y, s, f) for name, y, s, f in groups}
    counts = [{k: r[f"pointwise_{k}"] for k in ("tp", "fp", "fn", "tn")} for r in per_series.values()]
    pooled = skab_aggregate(counts)  # the per-series counts sum to the pooled point-wise counts
    flagged_fraction = sum(int(f.sum()) for _, _, _, f in groups) / len(scores) if len(scores) else float("nan")
    rng = np.random.default_rng(RANDOM_REFERENCE_SEED)
    reference_flags = [random_flags(len(y), flagged_fraction if len(scores) else 0.0, rng) for _, y, _, _ in groups]
    events = sum(r["events"] for r in per_series.values())
    overall = {
        **{f"pointwise_{k}": pooled[k] for k in ("precision", "recall", "f1")}, "pointwise_fpr": pooled["far"],
        **{f"pointwise_{k}": pooled[k] for k in ("tp", "fp", "fn", "tn")},
        "flagged_fraction": flagged_fraction,
        **ranking_metrics(labels, scores),
        "event_recall": sum(r["events_detected"] for r in per_series.values()) / events if events else float("nan"),
        "point_adjusted_f1": _pooled_point_adjusted_f1([y for _, y, _, _ in groups], [f for _, _, _, f in groups]),
        "point_adjusted_f1_random_scores": _pooled_point_adjusted_f1([y for _, y, _, _ in groups], reference_flags),
    }
    return {
        "overall": overall,
        "aggregated_over_series": pooled,  # SKAB's convention: TP / FP / FN / TN summed over files
        "per_series": per_series,
        "mean_over_series": {k: float(np.nanmean([r[k] for r in per_series.values()]))
                             for k in ("pointwise_f1", "auroc", "auprc", "event_recall", "point_adjusted_f1")},
        "notes": "point-adjusted F1 rewards noise: read it against point_adjusted_f1_random_scores "
                 "(uniformly random scores flagging the same share of points of every series, this run)",
    }


def _pooled_point_adjusted_f1(labels: list[np.ndarray], flags: list[np.ndarray]) -> float:
    """F1 over all series of the flags point-adjusted within each series."""
    adjusted = np.concatenate([point_adjust(y, f) for y, f in zip(labels, flags)])
    return threshold_metrics(np.concatenate(labels), adjusted)["f1"]


def series_figures(name: str, points: pd.DataFrame, threshold: float, plots: Path, data=None, max_series: int = 4, max_frames: int = 40) -> None:
    """Score over time with the labelled anomalies shaded, for the series with the most labelled anomaly points.
    Image sequences (``data`` with a frame shape) also get the frames of that series, each captioned with its score."""
    by_anomalies = points.groupby("series", observed=True)["label"].sum().sort_values(ascending=False)
    chosen = [str(s) for s in by_anomalies.index[:max_series]]
    series_timeline({s: points[points["series"] == s] for s in chosen}, threshold, plots / "series_scores.png",
                    f"{name}: point scores over time (red: labelled anomalies; dashed: threshold)")
    if data is None or "frame_shape" not in data.schema or not chosen:
        return
    series = {n: s for n, s, _ in data.series_windows("test")}[chosen[0]]
    rows = points[points["series"] == chosen[0]].set_index("t")
    t = np.arange(min(max_frames, len(series.labels)))
    frames = frames_as_images(series.values[t], data.schema["frame_shape"])
    captions = [f"{rows['score'].get(i, float('nan')):.2g} {'A' if series.labels[i] else 'N'}{' flagged' if rows['is_anomaly'].get(i, False) else ''}"
                for i in t]
    image_grid(frames, plots / "frame_sequence.png", f"{name}: the first {len(t)} frames of {chosen[0]} (point score, N/A = normal/inserted)",
               captions, ncol=10)
