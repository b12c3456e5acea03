"""The `gadflow` command line; dvc.yaml stages call these subcommands.

Heavy libraries (torch, prefect, mlflow) are imported inside the commands so that
`gadflow --help` answers fast. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="GAN anomaly detection pipeline: download, prepare, run experiments.")

ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="params file (validated on load)")

QUIET_DEFAULTS = {  # no outside calls: telemetry off (see README); each is overridable from the environment
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def _setup_environment() -> None:
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))  # one Prefect database per project
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Prefect's API calls, one line each otherwise


class _HideUserErrorTracebacks(logging.Filter):
    """Prefect logs failed runs with a traceback; for our one-line user errors the line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        from models.errors import GadflowError

        if record.exc_info and isinstance(record.exc_info[1], GadflowError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_prefect_tracebacks() -> None:
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_HideUserErrorTracebacks())


def user_errors(command):
    """Turn GadflowError (bad params, files, data) into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        _setup_environment()
        from models.errors import GadflowError

        try:
            return command(*args, **kwargs)
        except GadflowError as exc:
            typer.echo(f"gadflow: error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("gadflow: interrupted; rerun the same command to resume from the last checkpoint", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _entry(loaded, section: str, name: str, params: Path):
    """params.<section>.<name>, or a one-line error that lists what the section has."""
    from tasks.config import ParamsError

    entries = getattr(loaded, section)
    if name not in entries:
        raise ParamsError(f"{section}.{name}: no such entry in {params}; it has: {', '.join(entries) or 'nothing'}")
    return entries[name]


@app.command()
@user_errors
def download(name: str = typer.Argument(..., help="a dataset key of params.yaml `download`"), params: Path = ParamsOption) -> None:
    """Fetch a declared dataset (or copy it from $GADFLOW_DATA_MIRROR; SWaT / WADI: from $GADFLOW_SWAT_DIR / $GADFLOW_WADI_DIR) and verify its checksums."""
    from tasks.config import load_params
    from tasks.download import download_dataset
    from tasks.layout import raw_dir

    spec = _entry(load_params(params), "download", name, params)
    out = download_dataset.fn(name, spec, raw_dir(name))
    logging.getLogger("gadflow").info("%s: %d files verified in %s", name, len(spec.files), out)


@app.command()
@user_errors
def generate(name: str = typer.Argument(..., help="a key of params.yaml `generate`"), params: Path = ParamsOption) -> None:
    """Render a generated dataset (the RGB-D boxes-vs-spheres set) into data/raw/<name>."""
    from tasks.config import load_params
    from tasks.layout import raw_dir
    from tasks.rgbd import generate_rgbd

    generate_rgbd.fn(_entry(load_params(params), "generate", name, params), raw_dir(name))


@app.command()
@user_errors
def prepare(name: str = typer.Argument(..., help="a key of params.yaml `prepare`"), params: Path = ParamsOption) -> None:
    """Build the one-class train / calibration / test split of a downloaded dataset."""
    from tasks.config import load_params
    from tasks.layout import prepared_dir, raw_dir
    from tasks.prepare import prepare_dataset

    loaded = load_params(params)
    prep = _entry(loaded, "prepare", name, params)
    prepare_dataset.fn(name, prep, loaded.download.get(prep.source), raw_dir(prep.source), prepared_dir(name))  # None: generated


@app.command()
@user_errors
def run(
    experiment: str = typer.Argument(..., help="a key of params.yaml `train`, e.g. mnist-dcgan"),
    params: Path = ParamsOption,
    register: bool = typer.Option(True, help="log and register the model in MLflow"),
) -> None:
    """Run the Prefect experiment flow: train, calibrate, score, evaluate, register."""
    from tasks.config import load_params
    from tasks.layout import prepared_dir
    from tasks.prepare import check_prepared

    loaded = load_params(params)
    exp = loaded.experiment(experiment)
    check_prepared(prepared_dir(exp.train.data))  # fail fast, before Prefect's start-up cost
    wait_s = os.environ.get("GADFLOW_PREFECT_WAIT_S")  # set by `gadflow repro`: its server may still be starting
    if wait_s and os.environ.get("PREFECT_API_URL"):
        from flows.local_server import SERVER_LOG, wait_until_healthy

        wait_until_healthy(os.environ["PREFECT_API_URL"], float(wait_s), log_file=Path(os.environ["PREFECT_HOME"]) / SERVER_LOG)
    from flows.pipeline import experiment_flow

    _quiet_prefect_tracebacks()
    result = experiment_flow(exp, loaded.registry, loaded.promote, to_registry=register)
    typer.echo(result)


@app.command("train-all")
@user_errors
def train_all(
    params: Path = ParamsOption,
    experiments: str = typer.Option("", help="comma-separated experiment names (default: every entry of params `train`)"),
    deployment: str = typer.Option("", help="run each cell as a flow run of this deployment, e.g. experiment-from-params/train (needs a Prefect server)"),
    concurrency: int = typer.Option(2, help="with --deployment: how many cells may run at once"),
    register: bool = typer.Option(True, help="log and register each model in MLflow"),
) -> None:
    """Run every (dataset, model) cell; fail with a table of the cells that failed, after all have run."""
    from tasks.config import load_params

    load_params(params)  # a bad params file fails here, before Prefect's start-up cost
    from flows.train_all import train_all_flow

    _quiet_prefect_tracebacks()
    names = [n.strip() for n in experiments.split(",") if n.strip()]
    for line in train_all_flow(str(params), names or None, deployment or None, concurrency, register):
        typer.echo(line)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def repro(
    ctx: typer.Context,
    warm: bool = typer.Option(True, help="run the stages in a warm stage runner that has imported the stack once"),
) -> None:
    """`dvc repro` (extra arguments are passed on), with one local Prefect server for every stage.

    With PREFECT_API_URL already set, that server is used and none is started. The server starts
    while the data stages run; the experiment stages wait for it. With --warm (the default) each
    stage's `gadflow` command runs in a child forked from one process that imported torch, prefect
    and mlflow once (flows/stage_runner.py), which saves about 10 s per experiment stage.
    """
    import subprocess
    import tempfile

    from flows.local_server import RUNNER_LOG, SERVER_LOG, local_prefect_server, warm_stage_runner
    from flows.stage_runner import SOCKET_ENV

    dvc = str(Path(sys.executable).with_name("dvc"))
    command = [dvc, "repro", *ctx.args]
    up_to_date = subprocess.run([dvc, "status", "--json"], capture_output=True, text=True)
    if up_to_date.returncode == 0 and up_to_date.stdout.strip() in ("", "{}"):
        raise typer.Exit(subprocess.run(command).returncode)  # no stage will run: start nothing
    home = Path(os.environ["PREFECT_HOME"])
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        if not env.get("PREFECT_API_URL"):
            api_url = stack.enter_context(local_prefect_server(home / SERVER_LOG, wait=False))
            env.update(PREFECT_API_URL=api_url, GADFLOW_PREFECT_WAIT_S="90")
        if warm:
            socket_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gadflow-stages-")))
            socket_path = stack.enter_context(warm_stage_runner(socket_dir / "runner.sock", home / RUNNER_LOG, env))
            env[SOCKET_ENV] = str(socket_path)
        code = subprocess.run(command, env=env).returncode
    raise typer.Exit(code)


@app.command("nightly-score")
@user_errors
def nightly_score(
    params: Path = ParamsOption,
    models: str = typer.Option("", help="comma-separated registered model names (default: params `nightly.models`)"),
) -> None:
    """Score the new partitions under nightly.incoming with each model's @champion (what the nightly deployment runs)."""
    from tasks.config import load_params

    loaded = load_params(params)
    nightly = loaded.nightly
    names = [n.strip() for n in models.split(",") if n.strip()]
    if names:
        nightly = nightly.model_copy(update={"models": names})
    from flows.nightly import nightly_score_flow

    _quiet_prefect_tracebacks()
    for summary in nightly_score_flow(nightly, loaded.registry):
        typer.echo(f"{summary['model']} v{summary['version']}: scored {summary['scored']}, skipped {summary['skipped']}, "
                   f"quarantined {summary['quarantined']}; {summary['flagged']} of {summary['rows']} rows flagged")


@app.command("check-params")
@user_errors
def check_params(params: Path = ParamsOption, deployments: Path = typer.Option(Path("prefect.yaml"), help="prefect.yaml whose nightly-score schedule must match nightly.cron")) -> None:
    """Validate a params file (and that prefect.yaml's nightly schedule is params' `nightly.cron`); list what it declares."""
    from tasks.config import ParamsError, load_params, nightly_cron_in

    loaded = load_params(params)
    if deployments.is_file():
        cron = nightly_cron_in(deployments)
        if cron != loaded.nightly.cron:
            raise ParamsError(f"nightly.cron: '{loaded.nightly.cron}' in {params}, but {deployments} schedules nightly-score at '{cron}'; make them agree")
    typer.echo(f"{params}: ok — datasets {sorted(loaded.download)}, generated {sorted(loaded.generate)}, prepared {sorted(loaded.prepare)}, experiments {sorted(loaded.train)}")


def main() -> None:
    """The `gadflow` console entry point: a stage of `gadflow repro` runs in its warm stage runner."""
    from flows.stage_runner import delegate

    argv = sys.argv[1:]
    if argv and argv[0] != "repro":
        code = delegate(argv)
        if code is not None:
            sys.exit(code)
    app(prog_name="gadflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
