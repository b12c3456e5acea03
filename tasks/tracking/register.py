"""Register step: log the run to MLflow and register the model with its threshold and report; writes ``registry/``.

Registration is idempotent: when a version of this name already holds these very weights (``model_id``) and this
threshold, no run is logged and no version made. That version gets the candidate alias, its report artifacts,
report metrics and metric tags are refreshed (a report-only change reruns this step), and registered.json names it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from models.errors import GadflowError
from models.registry import load_detector
from models.storage import atomic_write_text
from models.threshold import Calibration

from ..adapters import served_input
from ..settings import Name, Strict

if TYPE_CHECKING:
    from ..layout import ExperimentLayout
    from ..params import Experiment

log = logging.getLogger(__name__)

DEFAULT_DB = Path("mlflow.db")
DEFAULT_ARTIFACTS = Path("mlartifacts")
PYFUNC = Path(__file__).with_name("pyfunc.py")  # the served model's code, logged as a "model from code"
SHIPPED_CODE = [Path(__file__).parents[2] / "models", Path(__file__).parents[1]]  # models/ and tasks/: what the pyfunc imports
REPORTED = ("precision", "recall", "f1", "auroc", "auprc", "achieved_fpr", "threshold", "nominal_fpr")  # run metrics from metrics.json


class RegisterParams(Strict):
    tracking_uri: str = ""  # "" = sqlite file mlflow.db in the repo; MLFLOW_TRACKING_URI overrides both
    experiment: Name = "gadflow"  # the MLflow experiment the runs go to
    alias: Name = "candidate"  # given to each newly registered version


def tracking_uri(registry: RegisterParams) -> str:
    """MLFLOW_TRACKING_URI, else params' tracking_uri, else sqlite:///<repo>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or registry.tracking_uri or f"sqlite:///{DEFAULT_DB.resolve()}"


def shown_uri(uri: str) -> str:
    """A tracking URI as it may be printed or stored: a password in it (postgresql://user:secret@host/db) is masked."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def experiment_id(client, name: str, uri: str) -> str:
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = DEFAULT_ARTIFACTS.resolve().as_uri() if uri.startswith("sqlite:") else None
    return client.create_experiment(name, artifact_location=location)


def one_line(exc: BaseException) -> str:
    """An exception's first line, at most 300 characters (MLflow's messages can carry whole responses)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _flat(prefix: str, values: dict) -> dict[str, str]:
    """Nested params -> {'model.search.steps': '19', ...} for mlflow.log_params."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(f"{prefix}.{key}", value))
        else:
            out[f"{prefix}.{key}"] = str(value)
    return out


def register(exp: Experiment, registry: RegisterParams, layout: ExperimentLayout) -> str:
    """Log params, losses, metrics, figures and the pyfunc model; register it and alias the version. Returns its URI."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    uri = tracking_uri(registry)
    try:
        return _log_and_register(exp, registry, uri, layout)
    except (MlflowException, RequestException, ConnectionError) as exc:
        raise GadflowError(f"MLflow at {shown_uri(uri)} failed while registering {exp.name}: {one_line(exc)}") from None


def _version_tags(calibration: Calibration, metrics: dict) -> dict[str, str]:
    validation = metrics.get("validation", {})
    tags = {
        "threshold": calibration.threshold,
        "threshold_method": calibration.method,
        "nominal_fpr": calibration.nominal_fpr,
        "model_id": calibration.model_id,
        "selection_signal": metrics.get("selection", {}).get("signal"),  # what chose the model's settings (never test labels)
        **{f"test_{k}": metrics[k] for k in ("precision", "recall", "f1", "auroc")},
        **({f"validation_{k}": validation[k] for k in ("auroc", "auprc")} if validation.get("available") else {}),
        **({f"test_paper_protocol_{k}": metrics["paper_protocol"][k] for k in ("precision", "recall", "f1")} if "paper_protocol" in metrics else {}),
    }
    return {k: str(v) for k, v in tags.items()}


def _report_metrics(metrics: dict) -> dict[str, float]:
    out = {k: metrics[k] for k in REPORTED}
    out.update({f"fpr_{m}": v["fpr"] for m, v in metrics["thresholds"].items()})
    validation = metrics.get("validation", {})
    if validation.get("available"):  # the promotion gate's metrics (validation split, not test)
        out.update({f"validation_{k}": validation[k] for k in ("auroc", "auprc")})
    if "paper_protocol" in metrics:  # reported for comparison with published numbers; its threshold is a test statistic
        out.update({f"paper_protocol_{k}": metrics["paper_protocol"][k] for k in ("precision", "recall", "f1", "fpr")})
    for ref, m in metrics.get("reference", {}).items():  # the reference detectors on the same test rows, and the gaps to them
        if m["available"]:
            out.update({f"reference_{ref}_{k}": m[k] for k in ("auroc", "auprc", "auroc_gap", "auprc_gap")})
    epoch = metrics.get("selection", {}).get("choices", {}).get("epoch", {})
    if epoch.get("rule") == "best":  # the epoch kept, chosen without test labels, and its selection AUROC
        out.update({"selected_epoch": epoch["epoch"], "selection_auroc": epoch["auroc"]})
    return out


def registered_version(client, name: str, calibration: Calibration):
    """The newest version of ``name`` holding these weights and this threshold, or None."""
    same = [v for v in client.search_model_versions(f"name='{name}'")
            if v.tags.get("model_id") == calibration.model_id and v.tags.get("threshold") == str(calibration.threshold)
            and v.tags.get("threshold_method") == calibration.method and v.tags.get("nominal_fpr") == str(calibration.nominal_fpr)]
    return max(same, key=lambda v: int(v.version), default=None)


def _log_and_register(exp: Experiment, registry: RegisterParams, uri: str, layout: ExperimentLayout) -> str:
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    metrics = json.loads(layout.metrics.read_text())
    calibration = Calibration.load(layout.threshold)
    tags = _version_tags(calibration, metrics)
    existing = registered_version(client, exp.name, calibration)
    if existing is not None:  # the same weights and threshold: no new version, the report refreshed on its run
        client.log_artifacts(existing.run_id, str(layout.report_dir), "report")
        for key, value in _report_metrics(metrics).items():
            client.log_metric(existing.run_id, key, value)
        for key, value in tags.items():
            client.set_model_version_tag(exp.name, existing.version, key, value)
        version, run_id = existing.version, existing.run_id
        log.info("%s: version %s already holds model %s with this threshold; report refreshed, no new version", exp.name, version, calibration.model_id)
    else:
        history = json.loads(layout.history.read_text())
        with mlflow.start_run(experiment_id=experiment_id(client, registry.experiment, uri), run_name=exp.name) as run:
            mlflow.log_params({"data": exp.data, **_flat("model", exp.model.to_dict()), **_flat("calibrate", exp.calibrate.model_dump()),
                               **_flat("score", exp.score.model_dump()), **_flat("report", exp.report.model_dump())})
            for record in history:
                mlflow.log_metrics({k: v for k, v in record.items() if k not in ("epoch", "seconds")}, step=record["epoch"])
            mlflow.log_metrics(_report_metrics(metrics))
            mlflow.log_artifacts(str(layout.report_dir), "report")
            if layout.samples.is_dir():  # per-epoch sample grids (models of image data)
                mlflow.log_artifacts(str(layout.samples), "samples")
            mlflow.log_artifact(str(layout.losses))
            example = served_input(layout.model_dir, load_detector(layout.model_dir, device="cpu")).example()
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC),  # model from code: nothing pickled
                artifacts={"model": str(layout.model_dir), "threshold": str(layout.threshold)},
                code_paths=[str(p) for p in SHIPPED_CODE],
                signature=infer_signature(example, pd.DataFrame({"score": [0.0], "p_value": [1.0], "is_anomaly": [False]})),
                input_example=example,
                pip_requirements=_requirements(),
            )
        # tags are created with the version, so no version ever exists without its threshold
        version, run_id = mlflow.register_model(info.model_uri, exp.name, tags=tags).version, run.info.run_id
    client.set_registered_model_alias(exp.name, registry.alias, version)
    model_uri = f"models:/{exp.name}@{registry.alias}"
    atomic_write_text(layout.registered, json.dumps({"name": exp.name, "version": version, "run_id": run_id, "uri": model_uri,
                                                     "tracking_uri": shown_uri(uri), "new_version": existing is None}, indent=1))
    log.info("registered %s version %s as %s", exp.name, version, model_uri)
    return model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "numpy", "pandas", "pyarrow", "pydantic", "mlflow", "tqdm")]
