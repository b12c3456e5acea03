"""Time-series metrics against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import GadflowError
from tasks.reports.metrics import threshold_metrics
from tasks.reports.series_metrics import (anomaly_segments, event_recall, point_adjust, random_flags, series_report,
                                  skab_aggregate)

#                 t: 0  1  2  3  4  5  6  7  8  9
LABELS = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])  # segments [1, 4) and [6, 8)
FLAGS = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])  # hits segment 1 once; misses segment 2; 2 false alarms


def test_segments():
    assert anomaly_segments(LABELS).tolist() == [[1, 4], [6, 8]]
    assert anomaly_segments(np.array([1, 1, 0, 1])).tolist() == [[0, 2], [3, 4]]  # runs touching both ends
    assert anomaly_segments(np.zeros(4, dtype=int)).shape == (0, 2)


def test_point_adjust_fills_only_hit_segments():
    assert point_adjust(LABELS, FLAGS).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]


def test_hand_worked_report():
    report = series_report(LABELS, scores=FLAGS.astype(float), flagged=FLAGS)
    # Point-wise: TP = 1 (t=2), FP = 2 (t=0, 9), FN = 4 (t=1, 3, 6, 7), TN = 3.
    assert (report["pointwise_tp"], report["pointwise_fp"], report["pointwise_fn"], report["pointwise_tn"]) == (1, 2, 4, 3)
    assert report["pointwise_precision"] == pytest.approx(1 / 3)
    assert report["pointwise_recall"] == pytest.approx(1 / 5)
    assert report["pointwise_f1"] == pytest.approx(2 * (1 / 3) * (1 / 5) / (1 / 3 + 1 / 5))
    assert report["pointwise_fpr"] == pytest.approx(2 / 5)
    # Point-adjusted: segment [1, 4) counts in full, so TP = 3, FP = 2, FN = 2.
    assert report["point_adjusted_precision"] == pytest.approx(3 / 5)
    assert report["point_adjusted_recall"] == pytest.approx(3 / 5)
    assert report["point_adjusted_f1"] == pytest.approx(3 / 5)
    # Event-wise: 1 of 2 segments hit.
    assert (report["event_recall"], report["events"], report["events_detected"]) == (0.5, 2, 1)
    assert report["flagged_fraction"] == pytest.approx(0.3)
    assert 0.0 <= report["auroc"] <= 1.0 and 0.0 <= report["auprc"] <= 1.0


def test_event_recall_without_anomalies_is_nan():
    assert np.isnan(event_recall(np.zeros(5, dtype=int), np.ones(5, dtype=int))["event_recall"])


def test_random_reference_flags_the_same_fraction_and_is_seeded():
    labels = np.zeros(1000, dtype=int)
    labels[100:200] = 1  # one long segment: any random flag in it adjusts all 100 points
    flags = random_flags(len(labels), 0.05, np.random.default_rng(3))
    assert flags.sum() == 50 and np.array_equal(flags, random_flags(len(labels), 0.05, np.random.default_rng(3)))
    f1 = threshold_metrics(labels, point_adjust(labels, flags))["f1"]
    # 50 random flags: about 5 land in the segment, so point adjustment recovers all of it (TP = 100).
    # FP ≈ 45, hence F1 ≈ 2·100 / (2·100 + 45) — far above the point-wise F1 (≈ 0.07) of the same flags.
    assert f1 == pytest.approx(200 / 245, abs=0.03)
    with pytest.raises(GadflowError, match="flagged_fraction"):
        random_flags(10, 1.5, np.random.default_rng(0))


def test_skab_aggregation_sums_counts_before_dividing():
    files = [{"tp": 8, "fp": 2, "fn": 2, "tn": 88}, {"tp": 0, "fp": 0, "fn": 10, "tn": 90}]
    out = skab_aggregate(files)
    assert (out["tp"], out["fp"], out["fn"], out["tn"], out["files"]) == (8, 2, 12, 178, 2)
    assert out["precision"] == pytest.approx(0.8)
    assert out["recall"] == pytest.approx(0.4)
    assert out["f1"] == pytest.approx(2 * 0.8 * 0.4 / 1.2)
    assert out["far"] == pytest.approx(2 / 180)
    assert out["mar"] == pytest.approx(12 / 20)


@pytest.mark.parametrize("labels, flags, message", [
    (np.array([0, 2]), np.array([0, 1]), "0 or 1"),
    (np.array([0, 1, 0]), np.array([0, 1]), "3 labels but 2 flags"),
    (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
])
def test_bad_inputs_are_clear_errors(labels, flags, message):
    with pytest.raises(GadflowError, match=message):
        point_adjust(labels, flags)
