"""Where each stage reads and writes, relative to the repository root (DVC runs stages there)."""

from pathlib import Path

RAW = Path("data/raw")  # download stage outputs, one folder per dataset
PREPARED = Path("data/prepared")  # prepare stage outputs, one folder per prepared dataset
OUTPUTS = Path("outputs")  # per-experiment checkpoints, model, scores, report (git-ignored, DVC outs)


def raw_dir(dataset: str) -> Path:
    return RAW / dataset


def prepared_dir(name: str) -> Path:
    return PREPARED / name


def experiment_dir(name: str) -> Path:
    return OUTPUTS / name
