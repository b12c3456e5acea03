"""Detection metrics of the anomaly class: a hand-worked example and sklearn as the reference."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from tasks.reports.metrics import ranking_metrics, threshold_metrics


def test_threshold_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 0])
    flagged = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=bool)
    m = threshold_metrics(labels, flagged)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 2, 1, 4)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert m["fpr"] == pytest.approx(2 / 6)


def test_threshold_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    flagged = rng.random(500) < np.where(labels == 1, 0.7, 0.1)
    m = threshold_metrics(labels, flagged)
    assert m["precision"] == pytest.approx(precision_score(labels, flagged))
    assert m["recall"] == pytest.approx(recall_score(labels, flagged))
    assert m["f1"] == pytest.approx(f1_score(labels, flagged))
    assert m["fpr"] == pytest.approx(np.mean(flagged[labels == 0]))
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == 500
    assert m["tp"] == int(np.sum(flagged & (labels == 1)))


def test_threshold_metrics_nothing_flagged_and_no_normals():
    m = threshold_metrics(np.array([0, 1, 0]), np.zeros(3, bool))
    assert (m["precision"], m["recall"], m["f1"], m["fpr"]) == (0.0, 0.0, 0.0, 0.0)
    m = threshold_metrics(np.array([1, 1]), np.array([True, False]))
    assert m["recall"] == 0.5 and math.isnan(m["fpr"])


def test_ranking_metrics_by_hand():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    m = ranking_metrics(labels, scores)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 (anomaly, normal) pairs ordered right
    assert m["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # AP: recall steps at ranks 1 and 3


def test_ranking_metrics_against_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(labels * 0.8, 1.0)
    m = ranking_metrics(labels, scores)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["auprc"] == pytest.approx(average_precision_score(labels, scores))
    assert 0.6 < m["auroc"] < 0.85


def test_ranking_metrics_single_class_is_nan():
    m = ranking_metrics(np.zeros(5, int), np.arange(5.0))
    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_search_convergence_flags_a_search_that_leaves_its_own_samples_unreconstructed():
    from tasks.reports.evaluation import search_convergence

    logger, handler = logging.getLogger("tasks.reports.evaluation"), ListHandler()  # prefect's logging config bypasses caplog
    logger.addHandler(handler)
    try:
        normal = np.full(50, 0.04)
        finished = search_convergence(np.full(200, 0.003), normal)
        assert finished == {"generated_to_normal_loss_ratio": pytest.approx(0.075), "unfinished": False}
        assert handler.messages == []
        unfinished = search_convergence(np.full(200, 0.034), normal)
    finally:
        logger.removeHandler(handler)
    assert unfinished["unfinished"] and unfinished["generated_to_normal_loss_ratio"] == pytest.approx(0.85)
    assert any("latent search unfinished: the loss left on G's own samples is 85%" in m for m in handler.messages)
