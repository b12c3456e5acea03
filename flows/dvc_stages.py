"""dvc.yaml, made from params.yaml: one stage per dataset step, two per experiment (`model`: train, calibrate, score;
`report`: report, register, promote), each depending on exactly the project files it runs and the params it reads, so
that DVC reruns only what a change touches.

A stage's code dependencies are the import closure (read from the source, not by importing it) of the modules that do
its work: the step's module, plus the modules its entry selects by name (the format's reader, the data kind's
adapter, the model). Imports only for type checking are not followed. A comment in a module no stage runs (the
nightly scoring, a reader no dataset uses) therefore makes no stage stale. `gadflow repro` rewrites dvc.yaml
when params.yaml's datasets or experiments change; `gadflow stages --check` says whether it is current.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import yaml

from models.registry import model_module
from tasks.adapters import ADAPTERS
from tasks.params import Params, load_params, merged_params
from tasks.steps.prepare import reader_module, source_format
from tasks.steps.report import KIND_REPORTS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "tasks", "flows")  # the project's own code: the only imports followed
HEADER = "# Made by `gadflow stages` from params.yaml (`gadflow repro` keeps it current): edit params.yaml, not this file.\n"
SOURCE_READ_KEYS = ("format", "depth_range")  # the download declaration's keys a prepare stage reads beyond its files
STEP_MODULES = {  # what each stage runs, beside the modules its entry selects
    "download": ("tasks.sources.download",),
    "generate": ("tasks.sources.rgbd",),
    "prepare": ("tasks.steps.prepare",),
    "model": ("tasks.steps.train", "tasks.steps.calibrate", "tasks.steps.score"),  # train, then calibrate + score
    "report": ("tasks.steps.report", "tasks.tracking.register", "tasks.tracking.promote", "tasks.tracking.pyfunc"),  # report, register, promote
}


# --- the import closure ----------------------------------------------------------------------
def module_file(module: str) -> Path | None:
    """The source file of a project module (a package's __init__.py), or None for anything else."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _runs_nothing(path: Path) -> bool:
    """A package's __init__.py that holds a docstring at most: importing it runs nothing a stage's outputs depend on."""
    body = _tree(path).body
    return path.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@cache
def _imported(module: str, path: Path) -> frozenset[str]:
    """The project modules ``module`` imports, anywhere in its source (functions too) but for TYPE_CHECKING blocks."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = _tree(path)
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _type_checking_only(block)
                   for stmt in block.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, one level up per extra dot
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, when the name is one
    return frozenset(m for m in found if module_file(m) is not None)


@cache
def closure(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Every project file the modules run when imported (their packages' __init__ files too), sorted, relative to the root."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            name = ".".join(parts[:i])
            path = module_file(name)
            if path is None or name in seen:
                continue
            seen.add(name)
            todo.extend(_imported(name, path))
    return tuple(sorted(module_file(m).relative_to(ROOT).as_posix() for m in seen if not _runs_nothing(module_file(m))))


# --- the stages ------------------------------------------------------------------------------
def _declared(raw: dict, key: str) -> bool:
    """Whether params.yaml sets the dotted ``key``. DVC tracks only keys that are there; an absent section's defaults
    live in its settings class, which is in the stage's code dependencies."""
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _make_stage(cmd: str | list[str], code: tuple[str, ...], params: list[str], deps: list[str] = (), outs: list = (), **more) -> dict:
    stage = {"cmd": cmd, "deps": [*deps, *closure(code)]}
    if params:
        stage["params"] = params
    if outs:
        stage["outs"] = list(outs)
    stage.update(more)
    return stage


def stages(params: Params, raw: dict) -> dict[str, dict]:
    """Every stage of the pipeline for these params (``raw``: the same, as read from the file), in the order they run."""
    out: dict[str, dict] = {}

    def _stage(cmd: str | list[str], code: tuple[str, ...], keys: list[str], **parts) -> dict:
        return _make_stage(cmd, code, [k for k in keys if _declared(raw, k)], **parts)

    for name in params.download:
        out[f"download.{name}"] = _stage(f"gadflow download {name}", STEP_MODULES["download"], [f"download.{name}"], outs=[f"data/raw/{name}"])
    for name in params.generate:
        out[f"generate.{name}"] = _stage(f"gadflow generate {name}", STEP_MODULES["generate"], [f"generate.{name}"], outs=[f"data/raw/{name}"])
    for name, prep in params.prepare.items():
        spec = params.source_spec(name)
        code = (*STEP_MODULES["prepare"], reader_module(prep, source_format(spec)), ADAPTERS[params.data_kind(name)])
        # the source's files reach the stage as data/raw; of its declaration, only how to read them is a param
        source = [f"download.{prep.source}.{key}" for key in SOURCE_READ_KEYS] if spec is not None else [f"generate.{prep.source}"]
        out[f"prepare.{name}"] = _stage(f"gadflow prepare {name}", code, [f"prepare.{name}", *source], deps=[f"data/raw/{prep.source}"],
                                        outs=[f"data/prepared/{name}"])
    for name, exp in params.experiments.items():
        root, data = f"outputs/{name}", f"data/prepared/{exp.data}"
        selected = (model_module(exp.model.kind), ADAPTERS[params.data_kind(exp.data)])  # the model and its data's adapter
        key = f"experiments.{name}"
        # Training, calibration and scoring share one stage: DVC parses and rewrites the whole lock after every stage,
        # so a stage costs seconds. A calibrate or score setting reruns it, and training then resumes from its
        # finished checkpoint (train/ persists), which trains nothing and gives the same weights.
        out[f"model.{name}"] = _stage([f"gadflow train {name}", f"gadflow score {name}"], (*STEP_MODULES["model"], *selected),
                                      [f"{key}.data", f"{key}.model", f"{key}.calibrate", f"{key}.score"], deps=[data],
                                      outs=[{f"{root}/train": {"persist": True, "cache": False}}, f"{root}/model", f"{root}/calibration", f"{root}/scores"])
        kind_report = (KIND_REPORTS[kind],) if (kind := params.data_kind(exp.data)) in KIND_REPORTS else ()
        # the report, then (idempotent) registration and the promotion gate: a report-only change registers no new version
        out[f"report.{name}"] = _stage(
            f"gadflow report {name} --register", (*STEP_MODULES["report"], *selected, *kind_report), [f"{key}.report", "register", "promote"],
            deps=[data, f"{root}/train", f"{root}/model", f"{root}/calibration", f"{root}/scores",
                  *(f"outputs/{ref}/scores" for ref in params.references_of(name))],  # the references' scores, stated beside its own
            outs=[{f"{root}/report/summary.json": {"cache": False}}, {f"{root}/registry": {"cache": False}}, {f"{root}/promotion": {"cache": False}}],
            metrics=[{f"{root}/report/metrics.json": {"cache": False}}],
            plots=[{f"{root}/report/plots": {"cache": False}},
                   {f"{root}/report/roc.csv": {"cache": False, "x": "fpr", "y": "tpr", "title": "ROC"}},
                   {f"{root}/report/pr.csv": {"cache": False, "x": "recall", "y": "precision", "title": "Precision-recall"}}])
    return out


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False):  # lists indented under their key
        return super().increase_indent(flow, False)


def render_dvc_yaml(params_file: Path) -> str:
    """dvc.yaml's text for a params file (validated first)."""
    params = load_params(params_file)
    return HEADER + yaml.dump({"stages": stages(params, merged_params(params_file))}, Dumper=_Dumper, sort_keys=False, width=160,
                              default_flow_style=None)


def write_dvc_yaml(params_file: Path, dvc_yaml: Path) -> bool:
    """Write dvc.yaml for ``params_file`` unless it is current; True when written."""
    text = render_dvc_yaml(params_file)
    if dvc_yaml.is_file() and dvc_yaml.read_text() == text:
        return False
    from models.storage import atomic_write_text

    atomic_write_text(dvc_yaml, text)
    return True


LOCK_STAGE = re.compile(r"^  (\S[^:]*):\s*$", re.MULTILINE)  # a stage's entry in dvc.lock (`stages:`, then two spaces)


def prune_lock(dvc_yaml: Path, dvc_lock: Path) -> list[str]:
    """Drop dvc.lock's entries for stages dvc.yaml no longer has; return their names.

    DVC keeps a removed stage's entry in dvc.lock (only `dvc remove` drops it), and it parses and rewrites the
    whole lock after every stage it runs, so dead entries cost time on every run. The entries are removed with
    DVC's own YAML round trip, which keeps the rest of the file as DVC wrote it.
    """
    if not dvc_lock.is_file():
        return []
    current = set(yaml.load(dvc_yaml.read_text(), Loader=_Loader)["stages"])
    if all(name in current for name in LOCK_STAGE.findall(dvc_lock.read_text())):  # a quick look, without parsing the lock
        return []
    from dvc.utils.serialize import modify_yaml  # DVC's own format; imported only when there may be something to drop

    with modify_yaml(dvc_lock) as lock:
        dead = [name for name in lock.get("stages", {}) if name not in current]
        for name in dead:
            del lock["stages"][name]
    return dead
