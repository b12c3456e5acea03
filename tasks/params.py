"""params.yaml's schema, composed of the settings classes of the code that uses them, loaded and validated once.

    download.<dataset>      tasks.sources.download.DatasetSpec
    generate.<dataset>      tasks.sources.rgbd.GenerateParams
    prepare.<name>          tasks.steps.prepare.PrepareParams (kdd99: sources.kdd99, series: adapters.series, ...)
    experiments.<name>      Experiment below: data, model (the model's own config, models/), calibrate, score, report
    register / promote      tasks.tracking.register / tasks.tracking.promote
    nightly                 tasks.tracking.nightly.NightlyParams

Overlays (``tests/fixtures/params-smoke.yaml``, ``configs/params-gpu.yaml``) hold only what differs from params.yaml;
they are merged over it (mappings key by key, anything else replaced; ``null`` resets a key to its default) and
the result is validated like params.yaml itself. An unknown key, a wrong type or an out-of-range value stops with
one line that names the dotted key and what is allowed (``ParamsError``), never a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from models.registry import capabilities, get_detector, model_names

from .adapters import MODEL_INPUT
from .settings import Name, ParamsError, Strict
from .sources.download import SERIES_FORMATS, USER_DATA_ENV, DatasetSpec
from .sources.rgbd import GenerateParams
from .steps.calibrate import CalibrateSettings
from .steps.prepare import PrepareParams, data_kind, source_format
from .steps.report import ReportSettings
from .steps.score import ScoreSettings
from .tracking.nightly import NightlyParams
from .tracking.promote import PromoteParams
from .tracking.register import RegisterParams

MODEL_CONFIGS = tuple(get_detector(kind).config_cls for kind in model_names())
ModelSettings = Annotated[Union[MODEL_CONFIGS], Field(discriminator="kind")]  # each model's config, chosen by `kind`


class ExperimentEntry(Strict):
    """One (dataset, model) experiment: every stage's settings. Registered in MLflow under the experiment's name."""

    data: Name  # a key of `prepare`
    model: ModelSettings  # the model's config: `kind` (models.registry) and that model's own settings
    calibrate: CalibrateSettings = CalibrateSettings()
    score: ScoreSettings = ScoreSettings()
    report: ReportSettings = ReportSettings()

    @model_validator(mode="after")
    def _monte_carlo_labels_apply(self) -> "ExperimentEntry":
        if self.calibrate.label_method != "monte_carlo":
            return self
        model = capabilities(self.model.kind)
        if not model.generator:
            raise ValueError(f"calibrate.label_method: '{self.model.kind}' has no generator, so there is no Monte Carlo threshold; "
                             "use 'calibration' or 'pot'")
        if not model.monte_carlo_labels:
            raise ValueError(f"calibrate.label_method: '{self.model.kind}' is labelled on time points, and the Monte Carlo threshold "
                             "is a quantile of generated windows' scores; use 'calibration' or 'pot' (both fitted on the calibration series' point scores)")
        return self


class Experiment(ExperimentEntry):
    name: Name
    # The reference detectors' experiments on the same data, which the report states beside this one's figures
    # (Params.experiment fills it from params; not a params.yaml key).
    references: tuple[Name, ...] = ()


class Params(Strict):
    download: dict[Name, DatasetSpec]
    generate: dict[Name, GenerateParams] = {}
    prepare: dict[Name, PrepareParams]
    experiments: dict[Name, ExperimentEntry]
    registry: RegisterParams = Field(default_factory=RegisterParams, alias="register")  # `register` shadows a pydantic name
    promote: PromoteParams = Field(default_factory=PromoteParams)
    nightly: NightlyParams = Field(default_factory=NightlyParams)

    @model_validator(mode="after")
    def _references(self) -> "Params":
        if set(self.download) & set(self.generate):
            raise ValueError(f"generate: names also used in `download`: {sorted(set(self.download) & set(self.generate))}")
        for name, prep in self.prepare.items():
            _check_prepare(name, prep, self.download, self.generate)
        for name, exp in self.experiments.items():
            if exp.data not in self.prepare:
                raise ValueError(f"experiments.{name}.data: '{exp.data}' is not a key of `prepare` ({', '.join(self.prepare)})")
            kind = self.data_kind(exp.data)
            takes = capabilities(exp.model.kind).input_kinds
            if MODEL_INPUT[kind] not in takes:
                fit = [m for m in model_names() if MODEL_INPUT[kind] in capabilities(m).input_kinds]
                raise ValueError(f"experiments.{name}.model.kind: '{exp.model.kind}' takes {' or '.join(takes)} inputs, but '{exp.data}' "
                                 f"is {kind} data; use one of {', '.join(fit)}")
        unknown_models = [m for m in self.nightly.models if m not in self.experiments]
        if unknown_models:
            raise ValueError(f"nightly.models: '{unknown_models[0]}' is not an experiment (the registered model names: {', '.join(self.experiments)})")
        return self

    def source_spec(self, prepared: str) -> DatasetSpec | None:
        """The declared dataset a prepare entry reads (None: a generated one)."""
        return self.download.get(self.prepare[prepared].source)

    def data_kind(self, prepared: str) -> str:
        """'image', 'tabular' or 'series': what prepare entry ``prepared`` makes."""
        return data_kind(self.prepare[prepared], source_format(self.source_spec(prepared)))

    def experiment(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise ParamsError(f"unknown experiment '{name}'; params `experiments` has: {', '.join(self.experiments)}")
        return Experiment(name=name, references=self.references_of(name), **dict(self.experiments[name]))

    def is_reference(self, name: str) -> bool:
        """Whether experiment ``name``'s model is a reference detector (models.reference: no GAN, no training seed)."""
        return capabilities(self.experiments[name].model.kind).reference

    def references_of(self, name: str) -> tuple[str, ...]:
        """The other experiments on ``name``'s data whose model is a reference detector, in params order: the report of
        ``name`` states their AUROC / AUPRC on the same split, and the gap to them."""
        data = self.experiments[name].data
        return tuple(other for other, exp in self.experiments.items() if other != name and exp.data == data and self.is_reference(other))


def _check_prepare(name: str, prep: PrepareParams, download: dict[str, DatasetSpec], generate: dict) -> None:
    """The rules across a prepare entry and the dataset it reads."""
    if prep.source not in download and prep.source not in generate:
        raise ValueError(f"prepare.{name}.source: '{prep.source}' is not a dataset in `download` or `generate` ({', '.join([*download, *generate])})")
    fmt = download[prep.source].format if prep.source in download else None
    if prep.kdd99 is not None and fmt != "kdd99":
        raise ValueError(f"prepare.{name}.kdd99: only for kdd99 datasets; '{prep.source}' is not one")
    if prep.series is not None and fmt not in (*SERIES_FORMATS, "kdd99", "idx"):
        raise ValueError(f"prepare.{name}.series: only for time-series datasets ({', '.join(SERIES_FORMATS)}), "
                         f"kdd99 read as a sequence and idx images made into sequences; '{prep.source}' is none of them")
    if prep.sequences is not None and (fmt != "idx" or prep.series is None):
        raise ValueError(f"prepare.{name}.sequences: only for an idx image source with a `series:` section (image sequences)")
    if fmt == "idx" and prep.series is not None and (prep.series.scaling != "none" or prep.series.pca_components is not None):
        raise ValueError(f"prepare.{name}.series: image sequences keep pixels / 255 as they are; set scaling: none and no pca_components")
    if prep.series is not None and prep.series.machines is not None:
        if fmt != "smd":
            raise ValueError(f"prepare.{name}.series.machines: only for smd datasets")
        unknown = sorted(set(prep.series.machines) - set(download[prep.source].smd_machines()))
        if unknown:
            raise ValueError(f"prepare.{name}.series.machines: {unknown[0]} is not declared in download.{prep.source}")
    if prep.series is not None and (prep.series.train_rows is not None or prep.series.files is not None) and fmt != "skab":
        raise ValueError(f"prepare.{name}.series.{'train_rows' if prep.series.train_rows is not None else 'files'}: only for skab datasets")
    if prep.series is not None and prep.series.files is not None and fmt == "skab":
        declared = {f.file for f in download[prep.source].files.values()}
        unknown = [f for f in prep.series.files if f not in declared]
        if unknown:
            raise ValueError(f"prepare.{name}.series.files: {unknown[0]} is not declared in download.{prep.source}")
    if prep.series is not None and prep.series.skip_rows is not None and fmt not in USER_DATA_ENV:
        raise ValueError(f"prepare.{name}.series.skip_rows: only for {' and '.join(USER_DATA_ENV)} datasets")


# --- loading ---------------------------------------------------------------------------------
def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})") from None


def merge(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``: mappings merged key by key (recursively), anything else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(overlay)


def merged_params(path: Path | str = "params.yaml", overlays: typing.Sequence[Path | str] = ()) -> dict:
    """params.yaml with each overlay merged over it, in order (not validated)."""
    raw = _read_yaml(Path(path)) or {}
    for overlay in overlays:
        raw = merge(raw, _read_yaml(Path(overlay)) or {})
    return _drop_nulls(raw)


def merged_params_yaml(path: Path | str = "params.yaml", overlays: typing.Sequence[Path | str] = ()) -> str:
    """The merged params as a params.yaml (validated first): what a DVC run of these settings needs as its params.yaml."""
    load_params(path, overlays)
    return yaml.safe_dump(merged_params(path, overlays), sort_keys=False, allow_unicode=True, width=140)


def _drop_nulls(raw: Any) -> Any:
    """An overlay's ``key: null`` resets the key: it is left out, so its default applies."""
    if isinstance(raw, dict):
        return {k: _drop_nulls(v) for k, v in raw.items() if v is not None}
    return raw


def load_params(path: Path | str = "params.yaml", overlays: typing.Sequence[Path | str] = ()) -> Params:
    """Read params.yaml (and the overlays over it) and validate; any problem becomes one ParamsError line."""
    raw = merged_params(path, overlays)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        where = " + ".join(str(p) for p in [path, *overlays])
        raise ParamsError(f"{where}: {describe_validation_error(exc)}") from None


def nightly_cron_in(prefect_yaml: Path) -> str | None:
    """The cron of the nightly-score deployment's first schedule in a prefect.yaml (None when it has none)."""
    deployments = (yaml.safe_load(Path(prefect_yaml).read_text()) or {}).get("deployments") or []
    for deployment in deployments:
        if deployment.get("name") == "nightly-score":
            schedules = deployment.get("schedules") or []
            return schedules[0].get("cron") if schedules else None
    return None


# --- error messages --------------------------------------------------------------------------
def _unwrap(annotation: Any) -> Any:
    """The class inside Annotated / Optional / a discriminated union's member named by the next loc part."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_origin(annotation) in (Union, types.UnionType) else []
    return args[0] if len(args) == 1 else annotation


def _fields(cls: Any) -> dict[str, Any] | None:
    """Key -> annotation of a pydantic model or a config dataclass; None for anything else."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {(f.alias or n): f.annotation for n, f in cls.model_fields.items()}
    if dataclasses.is_dataclass(cls):
        return typing.get_type_hints(cls)
    return None


def _allowed_keys(loc: list) -> list[str]:
    """Keys of the settings class found by walking ``loc`` down from Params."""
    current: Any = Params
    for part in loc:
        current = _unwrap(current)
        fields = _fields(current)
        if fields is not None:
            if part not in fields:
                return []
            current = fields[part]
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]  # dict[Name, X]: the part is a user key
        elif typing.get_origin(current) is Union:  # a discriminated union: the part is the member's tag
            current = next((m for m in typing.get_args(current) if getattr(m, "__dataclass_fields__", {}).get("kind")
                            and m.__dataclass_fields__["kind"].default == part), None)
        else:
            return []
    fields = _fields(_unwrap(current))
    return list(fields) if fields else []


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem as 'key.path: message (got value)', plus a count of any others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    raw_loc = [part for part in first["loc"] if not re.fullmatch(r"function-after\[.*\]", str(part))]
    # a discriminated union puts the member's tag in the path: experiments.x.model.<kind>.search -> experiments.x.model.search
    shown = [str(p) for i, p in enumerate(raw_loc) if not (i > 0 and raw_loc[i - 1] == "model" and p in model_names())]
    msg = first["msg"].removeprefix("Value error, ")
    field = re.match(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): ", msg)  # 'epochs: ...' or 'calibrate.label_method: ...'
    named = field.group(1).split(".") if field else []
    if first["type"] == "value_error" and field and shown and shown[-len(named):] != named:  # a check names its field (path)
        shown.extend(named)
        msg = msg[field.end():]
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(list(raw_loc[:-1]))
        msg = f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
    got = "" if first["type"] in ("missing", "value_error", "union_tag_invalid", "union_tag_not_found") else f" (got {first.get('input')!r})"
    more = f" [+{len(errors) - 1} more]" if len(errors) > 1 else ""
    return f"{'.'.join(shown) or '<top>'}: {msg}{got}{more}"
