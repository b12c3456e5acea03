"""params.yaml schema: one section per stage, validated once at load (data sections: ``tasks.config_data``).

An unknown key, a wrong type or an out-of-range value stops with one line that names the key
and what is allowed (``ParamsError``), never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from .config_data import (  # noqa: F401  (re-exported: the schema is imported from tasks.config)
    NAME, Name, TABULAR_FORMATS, SERIES_FORMATS, USER_DATA_ENV, SMD_PARTS, ParamsError, Strict,
    FileSpec, DatasetSpec, GenerateParams, KDD99Protocol, SeriesParams, ImageSequenceParams, PrepareParams,
)

SERIES_MODELS = ("madgan",)  # models that take windows
TABULAR_MODELS = ("egbad", "ganomaly")  # models with networks for feature rows as well as images


# --- train / calibrate / evaluate per experiment ---------------------------------------------
class SearchParams(Strict):
    """Latent-search scoring (adgan, anogan): S restarts × k Adam steps per sample."""

    n_seeds: Annotated[int, Field(ge=1, le=64)] = 3
    steps: Annotated[int, Field(ge=0, le=10_000)] = 19
    lr_z: Annotated[float, Field(ge=0.0, le=10.0)] = 5e-2
    lr_theta: Annotated[float, Field(ge=0.0, le=1.0)] = 6e-9  # 0 = generator frozen (fast path); anogan needs 0
    memory_budget_mb: Annotated[float, Field(gt=0.0, le=1_000_000.0)] = 1024.0
    seed: int = 0
    max_pairs_per_chunk: Annotated[int, Field(ge=1, le=10_000_000)] = 768  # (sample, restart) pairs per batched step
    max_pairs_per_chunk_theta: Annotated[int, Field(ge=1, le=10_000_000)] = 48  # the same when lr_theta > 0
    channels_last: bool = False  # lr_theta = 0 only: faster on CPU, not bit-comparable with the reference
    anogan_lambda: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    encoder_warm_start: bool = False  # restart 0 starts from E(x); E is fitted to invert G on G's own samples
    encoder_steps: Annotated[int, Field(ge=1, le=1_000_000)] = 2000


Widths = Annotated[list[Annotated[int, Field(ge=1, le=65_536)]], Field(min_length=1, max_length=8)]


class EGBADParams(Strict):
    """BiGAN/EGBAD scoring A(x) = α·‖x − G(E(x))‖₁ + (1 − α)·L_D(x), and the tabular network widths."""

    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9  # weight of the residual (the paper's α; 1 − α weighs L_D)
    score_method: Literal["feature_matching", "cross_entropy"] = "feature_matching"
    hidden_dims: Widths = [128, 64]  # tabular data: MLP widths, input side first
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2  # tabular discriminator


class GANomalyParams(Strict):
    """GANomaly's generator loss weights, and the tabular network widths."""

    w_adv: Annotated[float, Field(ge=0.0, le=1e6)] = 1.0  # feature matching on D's intermediate features
    w_con: Annotated[float, Field(ge=0.0, le=1e6)] = 50.0  # contextual L1 ‖x − x̂‖₁
    w_enc: Annotated[float, Field(ge=0.0, le=1e6)] = 1.0  # encoder L2 ‖z − ẑ‖²
    hidden_dims: Widths = [128, 64]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2


class MADGANParams(Strict):
    """MAD-GAN's LSTM sizes and DR-score weight (its latent search is the `search` section, θ frozen)."""

    hidden_dim: Annotated[int, Field(ge=1, le=4096)] = 100  # LSTM units of G and D (the paper's 100)
    num_layers: Annotated[int, Field(ge=1, le=8)] = 1
    dr_lambda: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # weight of the discrimination term; 1 − λ weighs the reconstruction
    normaliser_windows: Annotated[int, Field(ge=2, le=1_000_000)] = 512  # training windows the two terms are standardised on


MADGAN_SEARCH_FIELDS = ("n_seeds", "steps", "lr_z", "memory_budget_mb", "max_pairs_per_chunk")  # the search fields MAD-GAN uses


class TrainParams(Strict):
    data: Name  # a key of `prepare`
    model: Literal["dcgan", "adgan", "anogan", "egbad", "ganomaly", "madgan"]
    seed: int = 0
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 20
    batch_size: Annotated[int, Field(ge=2, le=65_536)] = 64
    latent_dim: Annotated[int, Field(ge=1, le=4096)] = 64
    base_channels: Annotated[int, Field(ge=4, le=1024)] = 32
    lr_g: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-4
    lr_d: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-4
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    discriminator_norm: Literal["batch", "spectral"] = "batch"  # spectral: Miyato et al. 2018, no BatchNorm in D
    search: SearchParams | None = None  # required by adgan and anogan, not allowed for the others
    egbad: EGBADParams | None = None  # model egbad only (defaults when absent)
    ganomaly: GANomalyParams | None = None  # model ganomaly only (defaults when absent)
    madgan: MADGANParams | None = None  # model madgan only (defaults when absent)

    @model_validator(mode="after")
    def _search_matches_model(self) -> "TrainParams":
        for section in ("egbad", "ganomaly", "madgan"):
            if getattr(self, section) is not None and self.model != section:
                raise ValueError(f"{section}: only model '{section}' takes an `{section}` section (this is '{self.model}')")
        if self.model in ("egbad", "ganomaly", "madgan") and self.discriminator_norm != "batch":
            raise ValueError(f"discriminator_norm: model '{self.model}' supports only 'batch'")
        searching = ("adgan", "anogan", "madgan")
        if self.model not in searching and self.search is not None:
            raise ValueError(f"search: only latent-search models ({', '.join(searching)}) take a `search` section")
        if self.model in searching and self.search is None:
            raise ValueError(f"search: model '{self.model}' needs a `search` section (n_seeds, steps, lr_z, lr_theta, ...)")
        if self.model in ("anogan", "madgan") and self.search.lr_theta != 0:
            raise ValueError(f"search.lr_theta: {self.model} keeps the generator frozen, so it must be 0 (got {self.search.lr_theta})")
        if self.model == "madgan" and (self.search.encoder_warm_start or self.search.channels_last):
            raise ValueError("search: madgan has no encoder warm start and no channels_last path")
        return self

    def detector_fields(self) -> dict:
        """The detector config's fields: training settings, plus the model's own section flattened."""
        fields = self.model_dump(exclude={"data", "model", "search", "egbad", "ganomaly", "madgan", "discriminator_norm"})
        if self.model in ("dcgan", "adgan", "anogan"):
            fields["discriminator_norm"] = self.discriminator_norm
        if self.model == "madgan":  # base_channels: the frame CNNs' width, on image sequences
            fields.update({k: getattr(self.search, k) for k in MADGAN_SEARCH_FIELDS}, search_seed=self.search.seed)
            fields.update((self.madgan or MADGANParams()).model_dump())
            return fields
        if self.search is not None:
            search = self.search.model_dump()
            search["search_seed"] = search.pop("seed")  # `seed` is the training seed
            fields.update(search)
        if self.model == "egbad":
            fields.update((self.egbad or EGBADParams()).model_dump())
        if self.model == "ganomaly":
            fields.update((self.ganomaly or GANomalyParams()).model_dump())
        return fields


class CalibrateParams(Strict):
    mc_samples: Annotated[int, Field(ge=100, le=10_000_000)] = 10_000
    nominal_fpr: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    label_method: Literal["calibration", "monte_carlo", "pot"] = "calibration"
    pot_initial_quantile: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9  # POT fits the calibration scores' tail above this quantile
    seed: int = 1

    @model_validator(mode="after")
    def _pot_level_below_target(self) -> "CalibrateParams":
        # Checked when POT labels or its level is set: otherwise POT is only reported, and skipped with a warning
        # when nominal_fpr is too large for the default level.
        pot_wanted = self.label_method == "pot" or "pot_initial_quantile" in self.model_fields_set
        if pot_wanted and not self.pot_initial_quantile < 1.0 - self.nominal_fpr:
            raise ValueError(f"pot_initial_quantile: {self.pot_initial_quantile:g} must be below 1 - nominal_fpr = {1.0 - self.nominal_fpr:g} "
                             "(POT fits the tail above that quantile and extrapolates it to the nominal FPR)")
        return self


class EvaluateParams(Strict):
    grid_images: Annotated[int, Field(ge=1, le=256)] = 32  # most / least anomalous test images shown
    # The paper protocol of EGBAD / ALAD / DAGMM on KDD99: flag this top fraction of the *test* scores. It uses
    # test statistics, so it is reported beside the label-free thresholds for comparison only, never used to label.
    paper_top_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    score_batch_size: Annotated[int, Field(ge=1, le=65_536)] = 512
    trajectory_lr_theta_high: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-4  # latent-search models: the "high lr_θ" row of the trajectory figure


class RegisterParams(Strict):
    tracking_uri: str = ""  # "" = sqlite file mlflow.db in the repo; MLFLOW_TRACKING_URI overrides both
    experiment: Name = "gadflow"
    alias: Name = "candidate"


class PromoteParams(Strict):
    """The promotion gate: a new version gets `alias` when its validation metric is at least the champion's minus
    `tolerance`. The metric is measured on the validation split (calibration normals against held-out training
    anomalies), never on test data; a version without it is never promoted over a champion."""

    metric: Literal["validation_auroc", "validation_auprc"] = "validation_auroc"
    tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    alias: Name = "champion"


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


class Params(Strict):
    download: dict[Name, DatasetSpec]
    generate: dict[Name, GenerateParams] = {}
    prepare: dict[Name, PrepareParams]
    train: dict[Name, TrainParams]
    calibrate: dict[Name, CalibrateParams]
    evaluate: dict[Name, EvaluateParams]
    registry: RegisterParams = Field(default_factory=RegisterParams, alias="register")  # `register` shadows a pydantic name
    promote: PromoteParams = Field(default_factory=PromoteParams)
    nightly: NightlyParams = Field(default_factory=NightlyParams)

    @model_validator(mode="after")
    def _references(self) -> "Params":
        if set(self.download) & set(self.generate):
            raise ValueError(f"generate: names also used in `download`: {sorted(set(self.download) & set(self.generate))}")
        for name, prep in self.prepare.items():
            if prep.source not in self.download and prep.source not in self.generate:
                raise ValueError(f"prepare.{name}.source: '{prep.source}' is not a dataset in `download` or `generate` ({', '.join([*self.download, *self.generate])})")
            is_kdd99 = prep.source in self.download and self.download[prep.source].format == "kdd99"
            if prep.kdd99 is not None and not is_kdd99:
                raise ValueError(f"prepare.{name}.kdd99: only for kdd99 datasets; '{prep.source}' is not one")
            series_format = self.download[prep.source].format if prep.source in self.download else None
            if prep.series is not None and series_format not in (*SERIES_FORMATS, "kdd99", "idx"):
                raise ValueError(f"prepare.{name}.series: only for time-series datasets ({', '.join(SERIES_FORMATS)}), "
                                 f"kdd99 read as a sequence and idx images made into sequences; '{prep.source}' is none of them")
            if prep.sequences is not None and (series_format != "idx" or prep.series is None):
                raise ValueError(f"prepare.{name}.sequences: only for an idx image source with a `series:` section (image sequences)")
            if series_format == "idx" and prep.series is not None and (prep.series.scaling != "none" or prep.series.pca_components is not None):
                raise ValueError(f"prepare.{name}.series: image sequences keep pixels / 255 as they are; set scaling: none and no pca_components")
            if prep.series is not None and prep.series.machines is not None:
                if series_format != "smd":
                    raise ValueError(f"prepare.{name}.series.machines: only for smd datasets")
                unknown = sorted(set(prep.series.machines) - set(self.download[prep.source].smd_machines()))
                if unknown:
                    raise ValueError(f"prepare.{name}.series.machines: {unknown[0]} is not declared in download.{prep.source}")
            if prep.series is not None and prep.series.train_rows is not None and series_format != "skab":
                raise ValueError(f"prepare.{name}.series.train_rows: only for skab datasets")
            if prep.series is not None and prep.series.skip_rows is not None and series_format not in USER_DATA_ENV:
                raise ValueError(f"prepare.{name}.series.skip_rows: only for {' and '.join(USER_DATA_ENV)} datasets")
        for name, train in self.train.items():
            if train.data not in self.prepare:
                raise ValueError(f"train.{name}.data: '{train.data}' is not a key of `prepare` ({', '.join(self.prepare)})")
            source = self.prepare[train.data].source
            series = self.is_series(train.data)
            tabular = source in self.download and self.download[source].format in TABULAR_FORMATS and not series
            if tabular and train.model not in TABULAR_MODELS:
                raise ValueError(f"train.{name}.model: '{train.model}' takes images, but '{train.data}' is tabular; use one of {', '.join(TABULAR_MODELS)}")
            if series and name in self.calibrate and self.calibrate[name].label_method == "monte_carlo":
                raise ValueError(f"calibrate.{name}.label_method: a time series labels time points, and the Monte Carlo threshold "
                                 "is a quantile of generated windows' scores; use 'calibration' or 'pot' (both fitted on the calibration series' point scores)")
            if series != (train.model in SERIES_MODELS):
                wanted = f"use one of {', '.join(SERIES_MODELS)}" if series else f"'{train.model}' takes windows of a time series"
                raise ValueError(f"train.{name}.model: '{train.data}' is {'a time series' if series else 'not a time series'}; {wanted}")
        unknown_models = [m for m in self.nightly.models if m not in self.train]
        if unknown_models:
            raise ValueError(f"nightly.models: '{unknown_models[0]}' is not an experiment of `train` (the registered model names: {', '.join(self.train)})")
        for section in ("calibrate", "evaluate"):
            missing = set(self.train) - set(getattr(self, section))
            extra = set(getattr(self, section)) - set(self.train)
            if missing or extra:
                raise ValueError(f"{section}: needs one entry per experiment in `train`; missing {sorted(missing)}, unknown {sorted(extra)}")
        return self

    def is_series(self, prepared: str) -> bool:
        """Whether prepare entry ``prepared`` makes windows of a time series: a series format, or kdd99 / idx with `series:`."""
        prep = self.prepare[prepared]
        fmt = self.download[prep.source].format if prep.source in self.download else None
        return fmt in SERIES_FORMATS or prep.series is not None

    def experiment(self, name: str) -> "Experiment":
        if name not in self.train:
            raise ParamsError(f"unknown experiment '{name}'; params.yaml `train` has: {', '.join(self.train)}")
        return Experiment(name=name, train=self.train[name], calibrate=self.calibrate[name], evaluate=self.evaluate[name])


class Experiment(Strict):
    """Everything one (dataset, model) experiment's flow needs."""

    name: str
    train: TrainParams
    calibrate: CalibrateParams
    evaluate: EvaluateParams


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; any problem becomes one ParamsError line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})") from None
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        raise ParamsError(f"{path}: {describe_validation_error(exc)}") from None


def _allowed_keys(model: type[BaseModel], loc: list) -> list[str]:
    """Field names (by alias) of the model found by walking ``loc`` down from ``model``."""
    from typing import get_args, get_origin

    current: object = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]  # dict[Name, X]: the part is a user key
        else:
            return []
        while get_origin(current) is Annotated:
            current = get_args(current)[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def nightly_cron_in(prefect_yaml: Path) -> str | None:
    """The cron of the nightly-score deployment's first schedule in a prefect.yaml (None when it has none)."""
    deployments = (yaml.safe_load(Path(prefect_yaml).read_text()) or {}).get("deployments") or []
    for deployment in deployments:
        if deployment.get("name") == "nightly-score":
            schedules = deployment.get("schedules") or []
            return schedules[0].get("cron") if schedules else None
    return None


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem as 'key.path: message (got value)', plus a count of any others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"] if not re.fullmatch(r"function-after\[.*\]", str(part)))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(Params, [p for p in first["loc"][:-1]])
        msg = f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
    got = "" if first["type"] in ("missing", "value_error") else f" (got {first.get('input')!r})"
    more = f" [+{len(errors) - 1} more]" if len(errors) > 1 else ""
    return f"{loc or '<top>'}: {msg}{got}{more}"
