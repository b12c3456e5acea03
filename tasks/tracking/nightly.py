"""Nightly scoring steps: find the champion, score each incoming partition once per model version, log the night.

Layout (each root a folder or an fsspec URI):
  <incoming>/<model>/<partition>.parquet   table rows (raw records, sensor rows in time order, or pixel columns)
  <incoming>/<model>/<partition>.npy       images, uint8 (N, C, H, W) or (N, H, W)
  <scored>/<model>/v<version>/<partition>.parquet   id, score, p_value, is_anomaly, threshold, model_name, model_version
  <quarantine>/<model>/<partition>.<ext> + <partition>.<ext>.reason.txt

A scored file is written to a temporary name beside its target and renamed, so a crash leaves no half file, and its
existence is what marks the partition as done for that version.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from models.errors import GadflowError

from ..settings import Name, Strict
from .register import RegisterParams, experiment_id, shown_uri, tracking_uri

log = logging.getLogger(__name__)

class NightlyParams(Strict):
    """Nightly scoring: each partition under <incoming>/<model>/ is scored by models:/<model>@<alias>
    into <scored>/<model>/v<version>/<partition>.parquet; unreadable ones go to <quarantine>/<model>/."""

    cron: str = "0 2 * * *"  # the nightly-score deployment's schedule (prefect.yaml must agree: `gadflow check-params`)
    models: list[Name] = []  # registered model names (= experiment names) scored each night
    incoming: str = "data/incoming"  # a folder, or an fsspec URI (file://, s3://, ...)
    scored: str = "outputs/nightly/scored"
    quarantine: str = "outputs/nightly/quarantine"
    alias: Name = "champion"
    id_column: Name = "id"  # parquet partitions: the ids copied to the output (row numbers when the column is absent)
    max_flagged_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2  # the run fails above this share of flagged rows
    mlflow_experiment: Name = "gadflow-nightly"

    @model_validator(mode="after")
    def _cron_has_five_fields(self) -> "NightlyParams":
        if len(self.cron.split()) != 5:
            raise ValueError(f"cron: '{self.cron}' needs five fields (minute hour day month weekday)")
        return self


PARTITION_SUFFIXES = (".parquet", ".npy")
_LOADED: dict[str, object] = {}  # model URI -> loaded pyfunc, so each version is loaded once per process


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    uri: str  # models:/<name>/<version>: pinned, so an alias moved mid-night does not mix versions
    threshold: float
    tracking_uri: str


@dataclass(frozen=True)
class PartitionResult:
    partition: str
    status: str  # scored | skipped | quarantined
    rows: int = 0
    flagged: int = 0
    output: str = ""
    reason: str = ""


def _fs(uri: str):
    """(filesystem, path) of a folder or fsspec URI."""
    from fsspec.core import url_to_fs

    return url_to_fs(uri)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def resolve_champion(registry: RegisterParams, name: str, alias: str) -> Champion:
    """The version of `name` that holds `alias` now, with its threshold tag."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(registry)
    try:
        version = MlflowClient(uri).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise GadflowError(f"nightly-score: no version of model '{name}' holds @{alias} at {shown_uri(uri)} "
                           f"({str(exc).strip().splitlines()[0][:200]}); train and register it first") from None
    return Champion(name=name, version=str(version.version), uri=f"models:/{name}/{version.version}",
                    threshold=float(version.tags["threshold"]), tracking_uri=uri)


def list_partitions(incoming: str, model: str) -> list[str]:
    """Partition URIs under <incoming>/<model>/, sorted by name; other files are ignored."""
    fs, root = _fs(_join(incoming, model))
    if not fs.exists(root):
        log.info("nightly-score: %s has no incoming folder %s", model, _join(incoming, model))
        return []
    names = sorted(p for p in fs.ls(root, detail=False) if p.endswith(PARTITION_SUFFIXES) and not Path(p).name.startswith("."))
    return [_join(incoming, model, Path(p).name) for p in names]


def scored_uri(params: NightlyParams, champion: Champion, partition: str) -> str:
    return _join(params.scored, champion.name, f"v{champion.version}", Path(partition).stem + ".parquet")


def _read_partition(partition: str, id_column: str) -> tuple[np.ndarray, pd.DataFrame]:
    """(ids (N,), model input). Images become pixel-column rows p0 … p{C*H*W-1}, as the pyfunc takes them."""
    fs, path = _fs(partition)
    with fs.open(path, "rb") as handle:
        raw = handle.read()
    if partition.endswith(".npy"):
        images = np.load(io.BytesIO(raw), allow_pickle=False)
        if images.ndim == 3:  # (N, H, W): one channel
            images = images[:, None]
        if images.ndim != 4:
            raise GadflowError(f"an image partition is (N, C, H, W) or (N, H, W); this one is {images.shape}")
        if images.dtype != np.uint8:
            raise GadflowError(f"image partitions hold uint8 pixels; this one is {images.dtype}")
        flat = images.reshape(len(images), -1).astype(np.float32)
        return np.arange(len(images)), pd.DataFrame(flat, columns=[f"p{i}" for i in range(flat.shape[1])])
    frame = pd.read_parquet(io.BytesIO(raw))
    if len(frame) == 0:
        raise GadflowError("the partition has no rows")
    if id_column in frame.columns:
        return frame[id_column].to_numpy(), frame.drop(columns=[id_column])
    return np.arange(len(frame)), frame


def _model(uri: str, tracking: str):
    if uri not in _LOADED:
        import mlflow

        mlflow.set_tracking_uri(tracking)
        _LOADED[uri] = mlflow.pyfunc.load_model(uri)
    return _LOADED[uri]


def _check_columns(model, frame: pd.DataFrame) -> None:
    """The model signature's input columns must all be there (MLflow's own error starts with a dump of the data)."""
    schema = model.metadata.get_input_schema()
    wanted = schema.input_names() if schema is not None else []
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise GadflowError(f"schema mismatch: {len(missing)} of the model's {len(wanted)} input columns missing (first: '{missing[0]}'); "
                           f"the partition has {frame.shape[1]} columns")


def _write_atomic(target: str, table_bytes: bytes) -> None:
    """Write to a hidden temporary name beside the target, then rename (a single PUT on object stores)."""
    fs, path = _fs(target)
    fs.makedirs(str(Path(path).parent), exist_ok=True)
    tmp = str(Path(path).parent / f".{Path(path).name}.{uuid.uuid4().hex}.tmp")
    with fs.open(tmp, "wb") as handle:
        handle.write(table_bytes)
    try:
        fs.mv(tmp, path)
    except Exception:
        fs.rm(tmp)
        raise


def _quarantine(partition: str, params: NightlyParams, model: str, reason: str) -> str:
    """Move the partition to <quarantine>/<model>/ with a .reason.txt beside it; returns where it went."""
    src_fs, src = _fs(partition)
    target = _join(params.quarantine, model, Path(partition).name)
    dst_fs, dst = _fs(target)
    dst_fs.makedirs(str(Path(dst).parent), exist_ok=True)
    with dst_fs.open(dst + ".reason.txt", "w") as handle:
        handle.write(reason + "\n")
    if type(src_fs) is type(dst_fs):
        src_fs.mv(src, dst)
    else:  # another store: copy, then remove the original
        with src_fs.open(src, "rb") as a, dst_fs.open(dst, "wb") as b:
            b.write(a.read())
        src_fs.rm(src)
    return target


def score_partition(champion: Champion, partition: str, params: NightlyParams) -> PartitionResult:
    """Score one partition with the champion, unless this version has scored it already. An unreadable or
    schema-mismatched partition is quarantined with the reason (the night goes on)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow.exceptions import MlflowException

    target = scored_uri(params, champion, partition)
    fs, path = _fs(target)
    if fs.exists(path):
        return PartitionResult(partition, "skipped", output=target, reason=f"already scored by version {champion.version}")
    try:
        ids, model_input = _read_partition(partition, params.id_column)
        model = _model(champion.uri, champion.tracking_uri)
        _check_columns(model, model_input)
        predicted = model.predict(model_input)
    except (GadflowError, MlflowException, ValueError, TypeError, KeyError, OSError, pa.ArrowException) as exc:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ''}"
        where = _quarantine(partition, params, champion.name, reason)
        log.warning("nightly-score: %s quarantined to %s: %s", partition, where, reason)
        return PartitionResult(partition, "quarantined", output=where, reason=reason)
    table = pa.table({
        "id": ids,
        "score": predicted["score"].to_numpy(np.float64),  # higher = more anomalous
        "p_value": predicted["p_value"].to_numpy(np.float64),
        "is_anomaly": predicted["is_anomaly"].to_numpy(bool),
        "threshold": np.full(len(ids), champion.threshold),
        "model_name": [champion.name] * len(ids),
        "model_version": [champion.version] * len(ids),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    _write_atomic(target, buf.getvalue())
    flagged = int(table["is_anomaly"].to_numpy().sum())
    log.info("nightly-score: %s -> %s (%d rows, %d flagged)", partition, target, len(ids), flagged)
    return PartitionResult(partition, "scored", rows=len(ids), flagged=flagged, output=target)


def _scores(scored_file: str) -> np.ndarray:
    fs, path = _fs(scored_file)
    with fs.open(path, "rb") as handle:
        return pd.read_parquet(handle, columns=["score"])["score"].to_numpy()


def log_night(champion: Champion, results: list[PartitionResult], params: NightlyParams, workdir: Path) -> dict:
    """Log the night's counts, flagged fraction and score distribution (quantiles + histogram) to MLflow; returns
    the summary. Nothing is logged on a night with nothing new."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ..reports.plots import score_histogram

    scored = [r for r in results if r.status == "scored"]
    summary = {"model": champion.name, "version": champion.version,
               **{status: sum(r.status == status for r in results) for status in ("scored", "skipped", "quarantined")},
               "rows": sum(r.rows for r in scored), "flagged": sum(r.flagged for r in scored)}
    summary["flagged_fraction"] = summary["flagged"] / summary["rows"] if summary["rows"] else 0.0
    if not scored and not summary["quarantined"]:
        return summary
    scores = np.concatenate([_scores(r.output) for r in scored]) if scored else np.zeros(0)
    if scores.size:
        summary.update({f"score_p{q}": float(np.percentile(scores, q)) for q in (50, 90, 99)})
        summary.update(score_mean=float(scores.mean()), score_max=float(scores.max()))
    mlflow.set_tracking_uri(champion.tracking_uri)
    experiment = experiment_id(MlflowClient(champion.tracking_uri), params.mlflow_experiment, champion.tracking_uri)
    with mlflow.start_run(experiment_id=experiment, run_name=f"{champion.name}-v{champion.version}"):
        mlflow.set_tags({"model_name": champion.name, "model_version": champion.version, "model_uri": champion.uri})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if k not in ("model", "version")})
        mlflow.log_dict({"summary": summary, "partitions": [asdict(r) for r in results]}, "nightly.json")
        if scores.size:
            figure = score_histogram({"scored tonight": scores}, {"champion": champion.threshold},
                                     Path(workdir) / f"{champion.name}-scores.png", f"{champion.name} v{champion.version}: tonight's scores")
            mlflow.log_artifact(str(figure))
    log.info("nightly-score: %s", json.dumps(summary))
    return summary
