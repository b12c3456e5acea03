"""Register step: log the run to MLflow and register the model with its threshold and report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models import Calibration
from models.threshold import THRESHOLD_FILE
from models.errors import GadflowError

from .config import Experiment, RegisterParams
from .evaluate import METRICS_FILE
from .files import atomic_write_text
from .train import train_paths

log = logging.getLogger(__name__)

DEFAULT_DB = Path("mlflow.db")
DEFAULT_ARTIFACTS = Path("mlartifacts")
REGISTERED_FILE = "registered.json"


def tracking_uri(registry: RegisterParams) -> str:
    """MLFLOW_TRACKING_URI, else params' tracking_uri, else sqlite:///<repo>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or registry.tracking_uri or f"sqlite:///{DEFAULT_DB.resolve()}"


def experiment_id(client, name: str, uri: str) -> str:
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = DEFAULT_ARTIFACTS.resolve().as_uri() if uri.startswith("sqlite:") else None
    return client.create_experiment(name, artifact_location=location)


def _flat(prefix: str, values: dict) -> dict[str, str]:
    """Nested params -> {'train.search.steps': '19', ...} for mlflow.log_params."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(f"{prefix}.{key}", value))
        else:
            out[f"{prefix}.{key}"] = str(value)
    return out


@task(retries=2, retry_delay_seconds=[5, 20], cache_policy=NONE, persist_result=False)
def register_model(exp: Experiment, registry: RegisterParams, model_dir: Path, report_dir: Path, out_dir: Path) -> str:
    """Log params, losses, metrics, figures and the pyfunc model; register it and alias the new version."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    uri = tracking_uri(registry)
    try:
        return _log_and_register(exp, registry, uri, model_dir, report_dir, out_dir)
    except (MlflowException, RequestException, ConnectionError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GadflowError(f"MLflow at {uri} failed while registering {exp.name}: {first_line[:300]}") from None


def _log_and_register(exp: Experiment, registry: RegisterParams, uri: str, model_dir: Path, report_dir: Path, out_dir: Path) -> str:
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    metrics = json.loads((report_dir / METRICS_FILE).read_text())
    calibration = Calibration.load(model_dir / THRESHOLD_FILE)
    paths = train_paths(out_dir)
    history = json.loads(paths["history"].read_text())

    with mlflow.start_run(experiment_id=experiment_id(client, registry.experiment, uri), run_name=exp.name) as run:
        mlflow.log_params({**_flat("train", exp.train.model_dump()), **_flat("calibrate", exp.calibrate.model_dump()), **_flat("evaluate", exp.evaluate.model_dump())})
        for record in history:
            mlflow.log_metrics({k: v for k, v in record.items() if k not in ("epoch", "seconds")}, step=record["epoch"])
        mlflow.log_metrics({k: metrics[k] for k in ("precision", "recall", "f1", "auroc", "auprc", "achieved_fpr", "threshold", "nominal_fpr")})
        mlflow.log_metrics({f"fpr_{m}": v["fpr"] for m, v in metrics["thresholds"].items()})
        validation = metrics.get("validation", {})
        if validation.get("available"):  # the promotion gate's metrics (validation split, not test)
            mlflow.log_metrics({f"validation_{k}": validation[k] for k in ("auroc", "auprc")})
        if "paper_protocol" in metrics:  # reported for comparison with published numbers; its threshold is a test statistic
            mlflow.log_metrics({f"paper_protocol_{k}": metrics["paper_protocol"][k] for k in ("precision", "recall", "f1", "fpr")})
        mlflow.log_artifacts(str(report_dir), "report")
        if paths["samples"].is_dir():  # per-epoch sample grids (image models only)
            mlflow.log_artifacts(str(paths["samples"]), "samples")
        mlflow.log_artifact(str(paths["losses"]))
        example = _input_example(model_dir)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc.py")),  # model from code: nothing pickled
            artifacts={"model": str(model_dir)},
            code_paths=[str(Path(__file__).parent.parent / "models")],
            signature=infer_signature(example, pd.DataFrame({"score": [0.0], "p_value": [1.0], "is_anomaly": [False]})),
            input_example=example,
            pip_requirements=_requirements(),
        )
    tags = {
        "threshold": calibration.threshold,
        "threshold_method": calibration.method,
        "nominal_fpr": calibration.nominal_fpr,
        "model_id": calibration.model_id,
        **{f"test_{k}": metrics[k] for k in ("precision", "recall", "f1", "auroc")},
        **({f"validation_{k}": validation[k] for k in ("auroc", "auprc")} if validation.get("available") else {}),
        **({f"test_paper_protocol_{k}": metrics["paper_protocol"][k] for k in ("precision", "recall", "f1")} if "paper_protocol" in metrics else {}),
    }
    # tags are created with the version, so no version ever exists without its threshold
    version = mlflow.register_model(info.model_uri, exp.name, tags={k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(exp.name, registry.alias, version.version)
    model_uri = f"models:/{exp.name}@{registry.alias}"
    atomic_write_text(out_dir / REGISTERED_FILE, json.dumps({"name": exp.name, "version": version.version, "run_id": run.info.run_id, "uri": model_uri, "tracking_uri": uri}, indent=1))
    log.info("registered %s version %s as %s", exp.name, version.version, model_uri)
    return model_uri


def _input_example(model_dir: Path) -> pd.DataFrame:
    """Images: two all-zero rows with the model's pixel columns p0 … p{C*H*W-1} (float).
    Tabular: two raw records (numeric 0, each categorical column's first known value), as the preprocessor takes them.
    Window models: seq_len all-zero sensor rows with the training channel columns."""
    from models import load_detector
    from models.series_transform import WINDOWING_FILE
    from models.tabular import TabularPreprocessor

    from models.tabular import PREPROCESSOR_FILE

    if (model_dir / PREPROCESSOR_FILE).is_file():
        pre = TabularPreprocessor.load(model_dir / PREPROCESSOR_FILE)
        return pd.DataFrame({c: [pre.categorical[c][0]] * 2 if c in pre.categorical else [0.0, 0.0] for c in pre.columns})
    if (model_dir / WINDOWING_FILE).is_file():  # window models: one window's worth of sensor rows
        windowing = json.loads((model_dir / WINDOWING_FILE).read_text())
        return pd.DataFrame(np.zeros((windowing["seq_len"], len(windowing["input_channels"]))), columns=windowing["input_channels"])
    detector = load_detector(model_dir, device="cpu")
    n = int(np.prod(detector.input_shape))
    if n <= 0:
        raise GadflowError(f"{model_dir}: model has no input size")
    return pd.DataFrame(np.zeros((2, n)), columns=[f"p{i}" for i in range(n)])


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "numpy", "pandas", "mlflow", "tqdm")]
