"""What the benchmark scripts share: the settings they run, a work folder, the pipeline's own steps, the JSON line.

A benchmark runs the experiments of params.yaml as they are. ``--overlay FILE`` (``--quick``: the smoke overlay,
tests/fixtures/params-smoke.yaml) and ``--set dotted.key=value`` change them explicitly, and the JSON object a script
prints last records the params file, each overlay and each ``--set``, with the machine and the commit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks.params import Params, merged_params  # noqa: E402
from tasks.settings import ParamsError  # noqa: E402

SMOKE_OVERLAY = REPO / "tests" / "fixtures" / "params-smoke.yaml"
log = logging.getLogger("benchmark")


@dataclass
class Settings:
    """The params a benchmark runs, and how they came about (recorded in its JSON)."""

    raw: dict  # params.yaml with the overlays and --set changes merged over it, not yet validated
    record: dict = field(default_factory=dict)

    @property
    def params(self) -> Params:
        return validated(self.raw)

    def changed(self, changes: dict[str, object]) -> Params:
        """These params with dotted-key changes that the benchmark's own design makes (e.g. one digit after another)."""
        raw = json.loads(json.dumps(self.raw))
        for key, value in changes.items():
            set_key(raw, key, value)
        return validated(raw)


def validated(raw: dict) -> Params:
    from pydantic import ValidationError

    from tasks.params import describe_validation_error

    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(describe_validation_error(exc)) from None


def set_key(raw: dict, dotted: str, value: object) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the settings options every benchmark takes."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=REPO / "params.yaml", help="the params file (default: params.yaml)")
    p.add_argument("--overlay", type=Path, action="append", default=[], help="a params overlay merged over it (repeatable)")
    p.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE",
                   help="one setting, by dotted key, the value read as YAML (repeatable), e.g. experiments.mnist-adgan.model.search.steps=50")
    p.add_argument("--quick", action="store_true", help=f"the smoke overlay's tiny settings ({SMOKE_OVERLAY.relative_to(REPO)})")
    return p


def settings(args: argparse.Namespace) -> Settings:
    """Load the params the arguments name; set up logging and the dataset mirror."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    overlays = [*([SMOKE_OVERLAY] if args.quick else []), *args.overlay]
    raw = merged_params(args.params, overlays)
    changes = {}
    for change in args.changes:
        key, sep, value = change.partition("=")
        if not sep:
            raise SystemExit(f"--set {change}: expected KEY=VALUE")
        changes[key] = yaml.safe_load(value)
        set_key(raw, key, changes[key])
    loaded = Settings(raw, {"params": str(args.params), "overlays": [str(o) for o in overlays], "set": changes})
    loaded.params  # refuse bad settings before any work
    return loaded


def one_class(loaded: Settings, experiment: str, digit: int, also: dict[str, object] | None = None) -> tuple[Params, dict]:
    """The params with ``digit`` as the only normal class of ``experiment``'s data (the benchmark's own change,
    prepare.<data>.normal_classes) and the benchmark's other design changes ``also`` (dotted keys), and those
    changes, for the JSON's ``design``."""
    data_name = loaded.params.experiments[experiment].data
    changes = {f"prepare.{data_name}.normal_classes": [digit], **(also or {})}
    return loaded.changed(changes), changes


@contextlib.contextmanager
def workspace(prefix: str = "gadflow-bench-") -> Iterator[Path]:
    """A temporary project folder, the current folder for the duration: the steps write data/ and outputs/ there."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(previous)


def prepare(params: Params, name: str) -> Path:
    """Fetch (download or render) the source of prepare entry ``name`` into the workspace, once, and prepare it."""
    from tasks.layout import prepared_dir, raw_dir
    from tasks.sources.download import download_dataset
    from tasks.sources.rgbd import generate_rgbd
    from tasks.steps.prepare import prepare_dataset

    prep = params.prepare[name]
    raw = raw_dir(prep.source)
    spec = params.source_spec(name)
    if not raw.is_dir():
        download_dataset(prep.source, spec, raw) if spec is not None else generate_rgbd(params.generate[prep.source], raw)
    return prepare_dataset(name, prep, spec, raw, prepared_dir(name))


def run(params: Params, experiment: str, to_registry: bool = False, outputs: Path = Path("outputs"), seconds: dict | None = None) -> dict:
    """One experiment through the pipeline's own steps (``run_experiment``); its metrics.json, with the training history.

    With ``seconds`` (a dict), each step's wall time is recorded in it by the step's name (train, calibrate, score, report,
    and with ``to_registry`` register and promote)."""
    from tasks.layout import ExperimentLayout
    from tasks.steps.run import STEPS, run_experiment

    steps = STEPS if seconds is None else timed_steps(seconds)
    run_experiment(params.experiment(experiment), params, to_registry=to_registry, outputs=outputs, steps=steps)
    layout = ExperimentLayout.of(experiment, outputs)
    return {**json.loads(layout.metrics.read_text()), "history": json.loads(layout.history.read_text())}


def with_references(params: Params, experiments: list[str]) -> list[str]:
    """The experiments to run, each one's reference detectors (models.reference) first, each once: every GAN's report
    then states their AUROC on the same test rows, and the gap to them (they are read from the same outputs folder)."""
    return list(dict.fromkeys([ref for e in experiments for ref in params.references_of(e)] + list(experiments)))


def reference_figures(metrics: dict, keys: tuple[str, ...] = ("auroc", "auroc_gap")) -> dict[str, dict]:
    """A report's reference detectors that were compared (metrics.json ``reference``), with these of their figures."""
    return {ref: {k: m[k] for k in keys} for ref, m in metrics["reference"].items() if m["available"]}


def selected_epoch(metrics: dict) -> dict:
    """What chose a report's weights (metrics.json ``selection``): the rule, the signal, the epoch and its selection AUROC."""
    epoch = metrics["selection"]["choices"]["epoch"]
    return {k: epoch.get(k) for k in ("rule", "signal", "epoch", "auroc")}


def gaps_text(reference: dict[str, dict]) -> str:
    """One log-line part: each reference's AUROC and the gap to it."""
    return "  ".join(f"{ref} AUROC {m['auroc']:.4f} (gap {m['auroc_gap']:+.4f})" for ref, m in reference.items())


def timed_steps(seconds: dict):
    """The pipeline's steps (``tasks.steps.run.STEPS``), each recording its wall time in ``seconds[<step>]``."""
    from tasks.steps.run import STEPS, Steps

    def timed(name: str, step):
        def run_step(*args, **kwargs):
            start = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                seconds[name] = time.perf_counter() - start

        return run_step

    return Steps(**{f.name: timed(f.name, getattr(STEPS, f.name)) for f in dataclasses.fields(Steps)})


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a `gadflow` / `dvc` / `prefect` process in a project copy at ``root``: no configured tracking
    store, Prefect server or stage runner inherited, Prefect's home in the copy, the venv's tools first on PATH, the
    dataset mirror, telemetry off; ``extra`` adds or overrides variables."""
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "PREFECT_API", "GADFLOW_STAGE"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PREFECT_HOME=str(root / ".prefect"),
               GADFLOW_DATA_MIRROR=os.environ.get("GADFLOW_DATA_MIRROR", str(REPO.parent / "shared" / "datasets")),
               DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1", **extra)
    return env


def clone_head(root: Path, args: argparse.Namespace, loaded: Settings) -> Path:
    """A fresh clone of the committed HEAD at ``root``, whose params.yaml holds the settings the arguments name.

    The clone's own params.yaml (or ``--params``) with each overlay merged over it by `gadflow params --overlay ...`
    (the smoke overlay of ``--quick`` is the clone's tests/fixtures/params-smoke.yaml), then the ``--set`` changes:
    DVC tracks the values in params.yaml, so a run of other settings needs them there."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    default_params = Path(args.params).resolve() == (REPO / "params.yaml").resolve()
    base = root / "params.yaml" if default_params else Path(args.params).resolve()
    overlays = [*([root / SMOKE_OVERLAY.relative_to(REPO)] if args.quick else []), *(Path(o).resolve() for o in args.overlay)]
    if overlays or not default_params:
        shown = lambda path: str(path.relative_to(root) if path.is_relative_to(root) else path)  # noqa: E731
        command = [str(Path(sys.executable).with_name("gadflow")), "params", "--params", shown(base)]
        for overlay in overlays:
            command += ["--overlay", shown(overlay)]
        done = subprocess.run(command, cwd=root, env=project_env(root), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[1:])} failed in the clone:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        (root / "params.yaml").write_text(done.stdout)
    if loaded.record["set"]:
        raw = yaml.safe_load((root / "params.yaml").read_text())
        for key, value in loaded.record["set"].items():
            set_key(raw, key, value)
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=140))
    validated(merged_params(root / "params.yaml"))  # what the clone runs, refused here if it is not valid
    return root


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {device}"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def emit(benchmark: str, loaded: Settings | None, result: dict) -> None:
    """The one JSON object a benchmark prints last: its result, the settings it ran, the machine and the commit."""
    print(json.dumps({"benchmark": benchmark, **result, **({"settings": loaded.record} if loaded else {}), "machine": machine(), "commit": commit()}))
