"""The `gadflow` command line. dvc.yaml's stages call the step commands (download ... register); `run`, `train-all` and
`nightly-score` run the Prefect flows.

Heavy libraries (torch, prefect, mlflow) are imported inside the commands so that `gadflow --help` answers fast.
User errors print one line and exit with status 2.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="GAN anomaly detection pipeline: download, prepare, train, score, report, register.")

ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="params file (validated on load)")
OverlayOption = typer.Option([], "--overlay", "-o", help="a params overlay merged over the params file (repeatable; e.g. configs/params-gpu.yaml)")
ExperimentArgument = typer.Argument(..., help="an experiment of params.yaml `experiments`, e.g. mnist-dcgan")

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


def _load(params: Path, overlay: list[Path]):
    from tasks.params import load_params

    return load_params(params, overlay)


def _entry(loaded, section: str, name: str, params: Path):
    """params.<section>.<name>, or a one-line error that lists what the section has."""
    from tasks.settings import ParamsError

    entries = getattr(loaded, section)
    if name not in entries:
        raise ParamsError(f"{section}.{name}: no such entry in {params}; it has: {', '.join(entries) or 'nothing'}")
    return entries[name]


# --- data stages ---------------------------------------------------------------------------
@app.command()
@user_errors
def download(name: str = typer.Argument(..., help="a dataset key of params.yaml `download`"), params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Fetch a declared dataset (or copy it from $GADFLOW_DATA_MIRROR; SWaT / WADI: from $GADFLOW_SWAT_DIR / $GADFLOW_WADI_DIR) and verify its checksums."""
    from tasks.layout import raw_dir
    from tasks.sources.download import download_dataset

    spec = _entry(_load(params, overlay), "download", name, params)
    out = download_dataset(name, spec, raw_dir(name))
    logging.getLogger("gadflow").info("%s: %d files verified in %s", name, len(spec.files), out)


@app.command()
@user_errors
def generate(name: str = typer.Argument(..., help="a key of params.yaml `generate`"), params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Render a generated dataset (the RGB-D boxes-vs-spheres set) into data/raw/<name>."""
    from tasks.layout import raw_dir
    from tasks.sources.rgbd import generate_rgbd

    generate_rgbd(_entry(_load(params, overlay), "generate", name, params), raw_dir(name))


@app.command()
@user_errors
def prepare(name: str = typer.Argument(..., help="a key of params.yaml `prepare`"), params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Build the one-class train / calibration / test split of a downloaded dataset."""
    from tasks.layout import prepared_dir, raw_dir
    from tasks.steps.prepare import prepare_dataset

    loaded = _load(params, overlay)
    prep = _entry(loaded, "prepare", name, params)
    prepare_dataset(name, prep, loaded.source_spec(name), raw_dir(prep.source), prepared_dir(name))  # spec None: generated


# --- experiment stages (DVC runs each on its own; `run` runs them all as one Prefect flow) ------------
def _experiment(experiment: str, params: Path, overlay: list[Path]):
    """(params, the experiment, its output layout), after checking its prepared data are there."""
    from tasks.adapters.base import read_schema
    from tasks.layout import ExperimentLayout, prepared_dir

    loaded = _load(params, overlay)
    exp = loaded.experiment(experiment)
    read_schema(prepared_dir(exp.data))  # fail fast, naming the missing prepare stage
    return loaded, exp, ExperimentLayout.of(exp.name)


@app.command()
@user_errors
def train(experiment: str = ExperimentArgument, params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Train the experiment's model (resumes from its last checkpoint): outputs/<experiment>/train and model."""
    from tasks.steps.train import train as train_step

    _, exp, layout = _experiment(experiment, params, overlay)
    typer.echo(train_step(exp, layout))


@app.command()
@user_errors
def score(experiment: str = ExperimentArgument, params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Fit the thresholds (calibrate), then score the test split: outputs/<experiment>/calibration and scores."""
    from tasks.steps.calibrate import calibrate
    from tasks.steps.score import score as score_step

    _, exp, layout = _experiment(experiment, params, overlay)
    calibrate(exp, layout)
    typer.echo(score_step(exp, layout))


@app.command()
@user_errors
def report(experiment: str = ExperimentArgument, params: Path = ParamsOption, overlay: list[Path] = OverlayOption,
           register: bool = typer.Option(False, help="then register the model and run the promotion gate, as `gadflow register` (dvc.yaml's report stage does)")) -> None:
    """Write the metrics, the summary and the figures: outputs/<experiment>/report."""
    from tasks.steps.report import report as report_step

    loaded, exp, layout = _experiment(experiment, params, overlay)
    typer.echo(report_step(exp, layout))
    if register:
        typer.echo(_register(loaded, exp, layout))


def _register(loaded, exp, layout) -> str:
    from tasks.tracking.promote import promote
    from tasks.tracking.register import register as register_step

    uri = register_step(exp, loaded.registry, layout)
    promote(loaded.registry, loaded.promote, layout)
    return uri


@app.command()
@user_errors
def register(experiment: str = ExperimentArgument, params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Register the model in MLflow (no new version for unchanged weights and threshold), then run the promotion gate."""
    loaded, exp, layout = _experiment(experiment, params, overlay)
    typer.echo(_register(loaded, exp, layout))


@app.command()
@user_errors
def run(
    experiment: str = ExperimentArgument,
    params: Path = ParamsOption,
    overlay: list[Path] = OverlayOption,
    register: bool = typer.Option(True, help="log and register the model in MLflow"),
) -> None:
    """Run the whole experiment as one Prefect flow: train, calibrate, score, report, register, promote."""
    loaded, exp, _ = _experiment(experiment, params, overlay)
    from flows.pipeline import experiment_flow

    _quiet_prefect_tracebacks()
    typer.echo(experiment_flow(exp, loaded, to_registry=register))


# --- orchestration -------------------------------------------------------------------------------
@app.command("train-all")
@user_errors
def train_all(
    params: Path = ParamsOption,
    overlay: list[Path] = OverlayOption,
    experiments: str = typer.Option("", help="comma-separated experiment names (default: every entry of params `experiments`)"),
    deployment: str = typer.Option("", help="run each cell as a flow run of this deployment, e.g. experiment-from-params/train (needs a Prefect server)"),
    concurrency: int = typer.Option(2, help="with --deployment: how many cells may run at once"),
    register: bool = typer.Option(True, help="log and register each model in MLflow"),
) -> None:
    """Run every (dataset, model) cell; fail with a table of the cells that failed, after all have run."""
    from flows.train_all import cells_to_run, train_all_flow

    names = [n.strip() for n in experiments.split(",") if n.strip()]
    cells_to_run(_load(params, overlay), str(params), names, concurrency)  # bad params or cells fail here, before Prefect starts a server
    _quiet_prefect_tracebacks()
    for line in train_all_flow(str(params), names or None, deployment or None, concurrency, register, [str(o) for o in overlay]):
        typer.echo(line)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def repro(
    ctx: typer.Context,
    warm: bool = typer.Option(True, help="run the stages in a warm stage runner that has imported the stack once"),
) -> None:
    """`gadflow stages` (dvc.yaml for params.yaml's datasets and experiments), then `dvc repro` (extra arguments are passed on).

    With --warm (the default) each stage's `gadflow` command runs in a child forked from one process that imported
    torch, mlflow and the pipeline once (flows/stage_runner.py), which saves seconds per stage. That process imports
    while dvc.yaml is written and `dvc status` runs. When no stage is stale (and no arguments were passed on), the
    runner is stopped and `dvc repro`, which would only repeat that check, is not run.
    """
    import subprocess
    import tempfile

    from flows.local_server import RUNNER_LOG, warm_stage_runner
    from flows.stage_runner import SOCKET_ENV

    dvc = str(Path(sys.executable).with_name("dvc"))
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        if warm:
            socket_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gadflow-stages-")))
            socket_path = stack.enter_context(warm_stage_runner(socket_dir / "runner.sock", Path(env["PREFECT_HOME"]) / RUNNER_LOG, env))
            env[SOCKET_ENV] = str(socket_path)
        _write_stages(Path("params.yaml"))
        if not ctx.args and _up_to_date(dvc):
            typer.echo("dvc status: no stage is stale; nothing to run")
            raise typer.Exit(0)  # leaving the block stops the runner without waiting on its imports
        code = subprocess.run([dvc, "repro", *ctx.args], env=env).returncode
    raise typer.Exit(code)


def _up_to_date(dvc: str) -> bool:
    """Whether `dvc status` finds no stale stage (an error counts as stale: `dvc repro` will report it)."""
    import subprocess

    status = subprocess.run([dvc, "status", "--json"], capture_output=True, text=True)
    return status.returncode == 0 and status.stdout.strip() in ("", "{}")


def _write_stages(params: Path) -> None:
    from flows.dvc_stages import prune_lock, write_dvc_yaml

    typer.echo("dvc.yaml: written" if write_dvc_yaml(params, Path("dvc.yaml")) else "dvc.yaml: already current")
    if dead := prune_lock(Path("dvc.yaml"), Path("dvc.lock")):
        typer.echo(f"dvc.lock: dropped the entr{'y' if len(dead) == 1 else 'ies'} of {len(dead)} stage{'' if len(dead) == 1 else 's'} "
                   f"dvc.yaml no longer has: {', '.join(dead)}")


@app.command()
@user_errors
def stages(check: bool = typer.Option(False, help="only check that dvc.yaml is current (exit 2 when not)"), params: Path = ParamsOption) -> None:
    """Write dvc.yaml: one stage per dataset step, two per experiment (model, report), each depending on exactly the files it runs."""
    from flows.dvc_stages import render_dvc_yaml
    from tasks.settings import ParamsError

    if check:
        if not Path("dvc.yaml").is_file() or Path("dvc.yaml").read_text() != render_dvc_yaml(params):
            raise ParamsError(f"dvc.yaml is not the one {params} makes; run `gadflow stages`")
        typer.echo("dvc.yaml: current")
        return
    _write_stages(params)


@app.command("nightly-score")
@user_errors
def nightly_score(
    params: Path = ParamsOption,
    overlay: list[Path] = OverlayOption,
    models: str = typer.Option("", help="comma-separated registered model names (default: params `nightly.models`)"),
) -> None:
    """Score the new partitions under nightly.incoming with each model's @champion (what the nightly deployment runs)."""
    loaded = _load(params, overlay)
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
def check_params(params: Path = ParamsOption, overlay: list[Path] = OverlayOption,
                 deployments: Path = typer.Option(Path("prefect.yaml"), help="prefect.yaml whose nightly-score schedule must match nightly.cron")) -> None:
    """Validate a params file (with its overlays), and that prefect.yaml's nightly schedule is `nightly.cron`; list what it declares."""
    from tasks.params import nightly_cron_in
    from tasks.settings import ParamsError

    loaded = _load(params, overlay)
    if deployments.is_file():
        cron = nightly_cron_in(deployments)
        if cron != loaded.nightly.cron:
            raise ParamsError(f"nightly.cron: '{loaded.nightly.cron}' in {params}, but {deployments} schedules nightly-score at '{cron}'; make them agree")
    typer.echo(f"{params}: ok — datasets {sorted(loaded.download)}, generated {sorted(loaded.generate)}, prepared {sorted(loaded.prepare)}, "
               f"experiments {sorted(loaded.experiments)}")


@app.command("params")
@user_errors
def show_params(params: Path = ParamsOption, overlay: list[Path] = OverlayOption) -> None:
    """Print params.yaml with the overlays merged over it (validated): what a DVC run of these settings needs as its params.yaml."""
    from tasks.params import merged_params_yaml

    typer.echo(merged_params_yaml(params, overlay), nl=False)


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
