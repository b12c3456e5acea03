"""Where every file of the pipeline lives, relative to the repository root (DVC runs stages there).

Data: ``data/raw/<dataset>`` (download / generate) and ``data/prepared/<name>`` (prepare; its files are named by
the data kind's adapter). Outputs: ``outputs/<experiment>/``, one folder per step, each written by its step alone:

    train/         train step: checkpoints/last.pt, samples/epoch_NNN.png, history.json, losses.png (kept across reruns),
                   selection.json (which epoch the model keeps, and by which signal)
    model/         train step: model.pt and the files the model carries (preprocessor, series transform, windowing)
    calibration/   calibrate step: threshold.json (thresholds, calibration scores), mc_scores.npy
    scores/        score step: scores.parquet (one row per test input), points.parquet (series), val_anomaly_scores.npy
    report/        report step: metrics.json, summary.json, roc.csv, pr.csv, plots/*.png
    registry/      register step: registered.json (the MLflow model version)
    promotion/     promote step: promotion.json (the promotion gate's decision)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RAW = Path("data/raw")  # download stage outputs, one folder per dataset
PREPARED = Path("data/prepared")  # prepare stage outputs, one folder per prepared dataset
OUTPUTS = Path("outputs")  # per-experiment outputs (git-ignored, DVC outs)


def raw_dir(dataset: str) -> Path:
    return RAW / dataset


def prepared_dir(name: str) -> Path:
    return PREPARED / name


@dataclass(frozen=True)
class ExperimentLayout:
    """Every output path of one experiment, named once."""

    root: Path  # outputs/<experiment>

    @classmethod
    def of(cls, experiment: str, outputs: Path = OUTPUTS) -> "ExperimentLayout":
        return cls(Path(outputs) / experiment)

    # --- train step ---------------------------------------------------------------------
    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def checkpoints(self) -> Path:
        return self.train_dir / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.train_dir / "samples"

    def sample_grid(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:03d}.png"

    @property
    def history(self) -> Path:
        return self.train_dir / "history.json"

    @property
    def losses(self) -> Path:
        return self.train_dir / "losses.png"

    @property
    def selection(self) -> Path:
        return self.train_dir / "selection.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    # --- calibrate step -----------------------------------------------------------------
    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    @property
    def threshold(self) -> Path:
        return self.calibration_dir / "threshold.json"

    @property
    def mc_scores(self) -> Path:
        return self.calibration_dir / "mc_scores.npy"

    # --- score step ---------------------------------------------------------------------
    @property
    def scores_dir(self) -> Path:
        return self.root / "scores"

    @property
    def score_tables(self) -> dict[str, Path]:
        """The score step's tables by role: ``scores`` (one row per test input), ``points`` (time points of a series)."""
        return {"scores": self.scores_dir / "scores.parquet", "points": self.scores_dir / "points.parquet"}

    @property
    def validation_scores(self) -> Path:
        return self.scores_dir / "val_anomaly_scores.npy"  # the held-out validation anomalies (never test data)

    # --- report step --------------------------------------------------------------------
    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def metrics(self) -> Path:
        return self.report_dir / "metrics.json"

    @property
    def summary(self) -> Path:
        return self.report_dir / "summary.json"

    @property
    def plots(self) -> Path:
        return self.report_dir / "plots"

    @property
    def roc_csv(self) -> Path:
        return self.report_dir / "roc.csv"

    @property
    def pr_csv(self) -> Path:
        return self.report_dir / "pr.csv"

    # --- register step ------------------------------------------------------------------
    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    @property
    def registered(self) -> Path:
        return self.registry_dir / "registered.json"

    # --- promote step -------------------------------------------------------------------
    @property
    def promotion_dir(self) -> Path:
        return self.root / "promotion"

    @property
    def promotion(self) -> Path:
        return self.promotion_dir / "promotion.json"
