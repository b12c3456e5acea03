"""params.yaml validation: every problem is one ParamsError line naming the dotted key; the CLI shows it without a traceback.

The schema is tasks/params.py: the settings classes of the code that uses them, and each experiment's model config
(models/, stdlib dataclasses checked on construction). Overlays (tests/fixtures/params-smoke.yaml,
configs/params-gpu.yaml) are merged over params.yaml and validated the same way. dvc.yaml is made from params.yaml
(flows/dvc_stages.py): each stage depends on the code it runs, and only on it.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tasks.params import Experiment, load_params, merged_params
from tasks.settings import ParamsError

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
SMOKE = REPO / "tests" / "fixtures" / "params-smoke.yaml"
GPU = REPO / "configs" / "params-gpu.yaml"
EXP = "mnist-dcgan"


@pytest.fixture(scope="module")
def good() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def write(tmp_path: Path, data, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def load_error(path: Path, overlays: list[Path] = ()) -> str:
    with pytest.raises(ParamsError) as info:
        load_params(path, overlays)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


# --- valid files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("overlays", [[], [SMOKE], [GPU]], ids=["params.yaml", "params.yaml+params-smoke.yaml", "params.yaml+params-gpu.yaml"])
def test_repo_params_files_load(overlays):
    params = load_params(PARAMS, overlays)
    assert {"mnist", "kdd99"} <= set(params.download)
    assert set(params.download["kdd99"].files) == {"train", "test"}
    assert params.prepare["kdd99"].kdd99.anomaly_labels == ["normal."]  # the paper protocol's anomaly class
    assert set(params.download["mnist"].files) == {"train_images", "train_labels", "test_images", "test_labels"}
    assert params.prepare["mnist"].source == "mnist"
    exp = params.experiment(EXP)
    assert isinstance(exp, Experiment) and exp.name == EXP
    assert exp.data == "mnist" and exp.model.kind == "dcgan"
    assert 0 < exp.calibrate.nominal_fpr < 0.5
    assert params.registry.alias == "candidate"


def test_smoke_params_are_small():
    smoke = load_params(PARAMS, [SMOKE])
    exp = smoke.experiment(EXP)
    assert exp.model.training.epochs <= 2 and exp.calibrate.mc_samples <= 2000
    assert all(e.model.training.epochs <= 2 for e in smoke.experiments.values() if hasattr(e.model, "training"))  # references fit in one pass
    assert set(smoke.experiments) == set(load_params(PARAMS).experiments)  # the overlay changes settings, not the experiments


def test_unknown_experiment(good, tmp_path):
    params = load_params(write(tmp_path, good))
    with pytest.raises(ParamsError, match="unknown experiment 'nope'"):
        params.experiment("nope")


# --- invalid files: one line naming the key -------------------------------------------------------------
def set_key(data: dict, dotted: list[str], value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for part in dotted[:-1]:
        node = node[part]
    node[dotted[-1]] = value
    return data


X = "experiments"
CASES = [
    # (id, path to set, value, key that the message must name)
    ("unknown-key", [X, EXP, "model", "training", "epoch"], 3, f"{X}.{EXP}.model.training.epoch"),
    ("unknown-top-level", ["bogus"], 1, "bogus"),
    ("unknown-register-key", ["register", "alias_name"], "x", "register.alias_name"),
    ("wrong-type-int", [X, EXP, "model", "training", "epochs"], "many", f"{X}.{EXP}.model.training.epochs"),
    ("wrong-type-float-for-int", [X, EXP, "model", "training", "batch_size"], 2.5, f"{X}.{EXP}.model.training.batch_size"),
    ("wrong-type-list", ["prepare", "mnist", "normal_classes"], "zero", "prepare.mnist.normal_classes"),
    ("epochs-zero", [X, EXP, "model", "training", "epochs"], 0, f"{X}.{EXP}.model.training.epochs: must be ≥ 1"),
    ("nominal-fpr-too-big", [X, EXP, "calibrate", "nominal_fpr"], 0.7, f"{X}.{EXP}.calibrate.nominal_fpr"),
    ("calibration-fraction-too-big", ["prepare", "mnist", "calibration_fraction"], 1.5, "prepare.mnist.calibration_fraction"),
    ("negative-class", ["prepare", "mnist", "normal_classes"], [-1], "prepare.mnist.normal_classes.0"),
    ("mc-samples-too-few", [X, EXP, "calibrate", "mc_samples"], 10, f"{X}.{EXP}.calibrate.mc_samples"),
    ("unknown-model", [X, EXP, "model", "kind"], "vae", f"{X}.{EXP}.model: Input tag 'vae' found using 'kind'"),
    ("bad-device", [X, EXP, "model", "device"], "gpu", f"{X}.{EXP}.model.device"),
    ("bad-label-method", [X, EXP, "calibrate", "label_method"], "oracle", f"{X}.{EXP}.calibrate.label_method"),
    ("bad-sha256", ["download", "mnist", "files", "train_labels", "sha256"], "abc", "download.mnist.files.train_labels.sha256"),
    ("bad-format", ["download", "mnist", "format"], "jpeg", "download.mnist.format"),
    ("bad-experiment-reference", [X, EXP, "data"], "x", f"{X}.{EXP}.data"),
    ("bad-prepare-reference", ["prepare", "mnist", "source"], "cifar", "prepare.mnist.source"),
    ("egbad-alpha-too-big", [X, "mnist-egbad", "model", "alpha"], 1.5, f"{X}.mnist-egbad.model.alpha: must be ≤ 1"),
    ("egbad-bad-score-method", [X, "mnist-egbad", "model", "score_method"], "l2", f"{X}.mnist-egbad.model.score_method"),
    ("ganomaly-negative-weight", [X, "mnist-ganomaly", "model", "training", "w_con"], -1, f"{X}.mnist-ganomaly.model.training.w_con"),
    ("ganomaly-empty-widths", [X, "kdd99-ganomaly", "model", "network", "hidden_dims"], [], f"{X}.kdd99-ganomaly.model.network.hidden_dims"),
    ("kdd99-bad-test-file", ["prepare", "kdd99", "kdd99", "test_file"], "other", "prepare.kdd99.kdd99.test_file"),
    ("kdd99-no-anomaly-labels", ["prepare", "kdd99", "kdd99", "anomaly_labels"], [], "prepare.kdd99.kdd99.anomaly_labels"),
    ("paper-fraction-too-big", [X, "kdd99-egbad", "report", "paper_top_fraction"], 1.0, f"{X}.kdd99-egbad.report.paper_top_fraction"),
    # the model configs' own bounds, under the discriminated union (its tag is not shown)
    ("search-steps-negative", [X, "mnist-adgan", "model", "search", "steps"], -1, f"{X}.mnist-adgan.model.search.steps: must be ≥ 0"),
    ("warm-start-steps-zero", [X, "mnist-adgan", "model", "warm_start"], {"steps": 0}, f"{X}.mnist-adgan.model.warm_start.steps: must be ≥ 1"),
    ("score-batch-size-zero", [X, EXP, "score", "batch_size"], 0, f"{X}.{EXP}.score.batch_size"),
]


@pytest.mark.parametrize("dotted, value, key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_value_names_the_key(good, tmp_path, dotted, value, key):
    message = load_error(write(tmp_path, set_key(good, dotted, value)))
    assert key in message, message
    assert message.startswith(str(tmp_path / "params.yaml"))
    assert ".dcgan." not in message and ".adgan." not in message  # the union's tag is dropped from the shown key


@pytest.mark.parametrize("dotted, value, expected", [
    # a setting of another model: the model's own config has no such key
    ([X, EXP, "model", "alpha"], 0.5, f"{X}.{EXP}.model.alpha: unknown key; allowed: kind, device, network, training"),
    ([X, "mnist-egbad", "model", "training", "w_con"], 1.0, f"{X}.mnist-egbad.model.training.w_con: unknown key"),
    ([X, "mnist-egbad", "model", "search"], {"steps": 3}, f"{X}.mnist-egbad.model.search: unknown key; allowed: kind, device, network, training, selection, alpha, score_method"),
    ([X, EXP, "model", "warm_start"], {"steps": 3}, f"{X}.{EXP}.model.warm_start: unknown key"),
    ([X, "mnist-adgan", "model", "feature_weight"], 0.2, f"{X}.mnist-adgan.model.feature_weight: unknown key"),
    ([X, "kdd99-egbad", "model"], {"kind": "dcgan"}, f"{X}.kdd99-egbad.model.kind: 'dcgan' takes image inputs, but 'kdd99' is tabular data; use one of egbad, ganomaly"),
    ([X, "mnist-ganomaly", "model", "network", "discriminator_norm"], "spectral", f"{X}.mnist-ganomaly.model.network.discriminator_norm: unknown key"),
    (["prepare", "mnist", "kdd99"], {"test_fraction": 0.5}, "prepare.mnist.kdd99: only for kdd99 datasets"),
    ([X, "mnist-anogan", "model", "search", "lr_theta"], 1e-4, f"{X}.mnist-anogan.model.search: anogan keeps the generator frozen"),
    ([X, "mnist-adgan", "model", "selection"], {"epoch": "best"}, f"{X}.mnist-adgan.model.selection: adgan keeps the last epoch"),
    ([X, "mnist-dcgan", "model", "selection", "signal"], "test", f"{X}.mnist-dcgan.model.selection.signal"),
])
def test_model_sections_and_data_kinds_must_match(good, tmp_path, dotted, value, expected):
    message = load_error(write(tmp_path, set_key(good, dotted, value)))
    assert expected in message, message


def test_reference_error_names_the_missing_key(good, tmp_path):
    message = load_error(write(tmp_path, set_key(good, [X, EXP, "data"], "x")))
    assert f"{X}.{EXP}.data: 'x' is not a key of `prepare`" in message


def test_unknown_key_says_so_and_lists_the_allowed_keys(good, tmp_path):
    message = load_error(write(tmp_path, set_key(good, [X, EXP, "model", "training", "epoch"], 3)))
    assert f"{X}.{EXP}.model.training.epoch: unknown key" in message
    assert "allowed:" in message and "epochs" in message and "lr_g" in message


def test_unknown_top_level_key_lists_the_sections(good, tmp_path):
    message = load_error(write(tmp_path, set_key(good, ["bogus"], 1)))
    assert "bogus: unknown key" in message
    allowed = message.split("allowed:")[1]
    for section in ("download", "generate", "prepare", "experiments", "register", "promote", "nightly"):
        assert section in allowed
    for gone in ("train", "calibrate", "evaluate"):  # the old per-step sections: an experiment holds its steps' settings
        assert gone not in allowed


def test_missing_role_of_a_dataset(good, tmp_path):
    data = copy.deepcopy(good)
    del data["download"]["mnist"]["files"]["test_labels"]
    message = load_error(write(tmp_path, data))
    assert "download.mnist" in message and "test_labels" in message


def test_experiment_entry_holds_every_steps_settings(good, tmp_path):
    """Replaces the old rule that every experiment of `train` has an entry in `calibrate` and `evaluate`: the
    `experiments` section holds one entry per experiment with all its settings; data and model are required,
    calibrate / score / report take their defaults, and the old per-step sections are refused."""
    from tasks.steps.calibrate import CalibrateSettings
    from tasks.steps.report import ReportSettings
    from tasks.steps.score import ScoreSettings

    for section in ("train", "calibrate", "evaluate"):
        message = load_error(write(tmp_path, set_key(good, [section], {EXP: {}})))
        assert f"{section}: unknown key" in message and "experiments" in message
    for step in ("train", "evaluate"):
        message = load_error(write(tmp_path, set_key(good, [X, EXP, step], {})))
        assert f"{X}.{EXP}.{step}: unknown key; allowed: data, model, calibrate, score, report" in message
    for required in ("data", "model"):
        data = copy.deepcopy(good)
        del data[X][EXP][required]
        assert f"{X}.{EXP}.{required}: Field required" in load_error(write(tmp_path, data))
    data = copy.deepcopy(good)
    del data[X][EXP]["model"]["kind"]
    assert f"{X}.{EXP}.model: Unable to extract tag using discriminator 'kind'" in load_error(write(tmp_path, data))
    minimal = set_key(good, [X, EXP], {"data": "mnist", "model": {"kind": "dcgan"}})
    exp = load_params(write(tmp_path, minimal)).experiment(EXP)
    assert (exp.calibrate, exp.score, exp.report) == (CalibrateSettings(), ScoreSettings(), ReportSettings())
    assert exp.model == type(exp.model)()  # the model's own defaults
    data = copy.deepcopy(good)
    data["nightly"]["models"] = ["nope"]
    assert "nightly.models: 'nope' is not an experiment" in load_error(write(tmp_path, data))


def test_missing_section(good, tmp_path):
    data = copy.deepcopy(good)
    del data[X]
    assert f"{X}: Field required" in load_error(write(tmp_path, data))


def test_bad_experiment_name(good, tmp_path):
    data = copy.deepcopy(good)
    data[X]["Bad Name"] = data[X].pop(EXP)
    assert f"{X}.Bad Name" in load_error(write(tmp_path, data))


@pytest.mark.parametrize("text", ["train: [unclosed\n", "a: b: c\n", "download:\n  - x\n - y\n"])
def test_invalid_yaml(tmp_path, text):
    assert "not valid YAML" in load_error(write(tmp_path, text))


def test_empty_and_missing_files(tmp_path):
    assert "download" in load_error(write(tmp_path, ""))
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")


# --- overlays ------------------------------------------------------------------------------------------
def test_overlay_merges_mappings_key_by_key(tmp_path):
    base = load_params(PARAMS)
    overlay = write(tmp_path, {X: {EXP: {"model": {"training": {"epochs": 3}}}}, "prepare": {"mnist": {"normal_classes": [1, 2]}}}, "overlay.yaml")
    merged = load_params(PARAMS, [overlay])
    exp, before = merged.experiment(EXP), base.experiment(EXP)
    assert exp.model.training.epochs == 3
    assert exp.model.training.replace(epochs=before.model.training.epochs) == before.model.training  # the siblings kept
    assert (exp.model.network, exp.calibrate, exp.report) == (before.model.network, before.calibrate, before.report)
    assert merged.prepare["mnist"].normal_classes == [1, 2]  # a list is replaced, not merged
    assert merged.prepare["mnist"].calibration_fraction == base.prepare["mnist"].calibration_fraction
    assert {n: e for n, e in merged.experiments.items() if n != EXP} == {n: e for n, e in base.experiments.items() if n != EXP}
    assert merged.download == base.download and merged.nightly == base.nightly
    # overlays apply in order: the last one wins
    later = write(tmp_path, {X: {EXP: {"model": {"training": {"epochs": 5}}}}}, "later.yaml")
    assert load_params(PARAMS, [overlay, later]).experiment(EXP).model.training.epochs == 5
    assert load_params(PARAMS, [later, overlay]).experiment(EXP).model.training.epochs == 3


def test_overlay_null_removes_a_key(tmp_path):
    from models.trainer import TrainingConfig

    base = load_params(PARAMS)
    assert base.experiments["mnist-egbad"].model.training.epochs != TrainingConfig().epochs
    overlay = write(tmp_path, {X: {"mnist-egbad": {"model": {"training": {"epochs": None}}}, "mnist-ganomaly": None},
                               "prepare": {"smd": {"series": {"machines": None}}}}, "overlay.yaml")
    merged = load_params(PARAMS, [overlay])
    training = merged.experiments["mnist-egbad"].model.training
    assert training.epochs == TrainingConfig().epochs  # removed: its default applies
    assert training.batch_size == base.experiments["mnist-egbad"].model.training.batch_size
    assert "mnist-ganomaly" not in merged.experiments and set(merged.experiments) == set(base.experiments) - {"mnist-ganomaly"}
    assert merged.prepare["smd"].series.machines is None and base.prepare["smd"].series.machines  # None: every declared machine
    raw = merged_params(PARAMS, [overlay])
    assert "epochs" not in raw[X]["mnist-egbad"]["model"]["training"] and "machines" not in raw["prepare"]["smd"]["series"]
    assert "mnist-ganomaly" not in raw[X]
    assert load_params(PARAMS, [GPU]).prepare["smd"].series.machines is None  # the GPU overlay takes every machine so


def test_overlay_result_is_validated_and_errors_name_the_files(good, tmp_path):
    overlay = write(tmp_path, {X: {EXP: {"model": {"training": {"epochs": 0}}}}}, "overlay.yaml")
    message = load_error(PARAMS, [overlay])
    assert message.startswith(f"{PARAMS} + {overlay}: {X}.{EXP}.model.training.epochs: must be ≥ 1"), message
    second = write(tmp_path, {"register": {"alias": "Bad Alias"}}, "second.yaml")
    assert load_error(PARAMS, [SMOKE, second]).startswith(f"{PARAMS} + {SMOKE} + {second}: register.alias")
    # an overlay cannot bring back the old sections, nor add an experiment without its model
    assert f"{X}.{EXP}.train: unknown key" in load_error(PARAMS, [write(tmp_path, {X: {EXP: {"train": {"epochs": 1}}}}, "old.yaml")])
    assert f"{X}.new-one.model: Field required" in load_error(PARAMS, [write(tmp_path, {X: {"new-one": {"data": "mnist"}}}, "new.yaml")])
    # the overlay's own file problems name it
    broken = write(tmp_path, "experiments: [unclosed\n", "broken.yaml")
    assert load_error(PARAMS, [broken]).startswith(f"{broken}: not valid YAML")
    absent = tmp_path / "absent.yaml"
    assert load_error(PARAMS, [absent]) == f"{absent}: not found"
    # the same merge of a base file that is itself invalid names the base first
    bad_base = write(tmp_path, set_key(good, [X, EXP, "calibrate", "nominal_fpr"], 0.7))
    assert load_error(bad_base, [SMOKE]).startswith(f"{bad_base} + {SMOKE}: {X}.{EXP}.calibrate.nominal_fpr")


def test_gpu_params_variant_matches_the_defaults_structurally():
    """configs/params-gpu.yaml: the paper-scale settings for GPU workers, an overlay over params.yaml."""
    gpu = load_params(PARAMS, [GPU])
    cpu = load_params(PARAMS)
    assert set(gpu.experiments) == set(cpu.experiments) and set(gpu.prepare) == set(cpu.prepare)
    assert gpu.experiments["mnist-adgan"].model.search.lr_theta == 6e-9  # the seed's setting
    assert all(e.model.device == "cuda" for e in gpu.experiments.values())
    assert all(gpu.experiments[name].model.kind == cpu.experiments[name].model.kind for name in cpu.experiments)
    assert all(gpu.experiments[name].data == cpu.experiments[name].data for name in cpu.experiments)


# --- CLI ---------------------------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch):
    """CliRunner on flows.cli.app; the environment defaults the CLI sets are undone after the test."""
    from flows.cli import QUIET_DEFAULTS, app

    for key in [*QUIET_DEFAULTS, "PREFECT_HOME"]:
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_check_params_bad_file(cli, good, tmp_path):
    bad = write(tmp_path, set_key(good, [X, EXP, "calibrate", "nominal_fpr"], 0.7))
    result = cli("check-params", "--params", bad)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("gadflow: error:")
    assert f"{X}.{EXP}.calibrate.nominal_fpr" in lines[0]
    assert "Traceback" not in result.output


def test_cli_check_params_invalid_yaml(cli, tmp_path):
    result = cli("check-params", "--params", write(tmp_path, "train: [unclosed\n"))
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [result.output.strip()]
    assert result.output.startswith("gadflow: error:") and "Traceback" not in result.output


def test_cli_check_params_good_file(cli):
    result = cli("check-params", "--params", PARAMS)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and EXP in result.output


def test_cli_check_params_with_overlays(cli, tmp_path):
    for overlay in (SMOKE, GPU):
        result = cli("check-params", "--params", PARAMS, "--overlay", overlay)
        assert result.exit_code == 0, result.output
        assert "ok" in result.output and EXP in result.output
    bad = write(tmp_path, {X: {EXP: {"model": {"training": {"epochs": 0}}}}}, "overlay.yaml")
    result = cli("check-params", "--params", PARAMS, "-o", SMOKE, "-o", bad)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"gadflow: error: {PARAMS} + {SMOKE} + {bad}: {X}.{EXP}.model.training.epochs: must be ≥ 1 (got 0)"


@pytest.mark.parametrize("overlay", [SMOKE, GPU], ids=["params-smoke.yaml", "params-gpu.yaml"])
def test_cli_params_prints_the_merged_params(cli, tmp_path, overlay):
    """`gadflow params --overlay F` prints params.yaml with F merged over it: a params file load_params validates
    on its own, with the very settings of the overlay (what a DVC run of the overlay's settings needs)."""
    result = cli("params", "--params", PARAMS, "--overlay", overlay)
    assert result.exit_code == 0, result.output
    printed = write(tmp_path, result.stdout, "merged.yaml")
    assert yaml.safe_load(printed.read_text()) == merged_params(PARAMS, [overlay])
    assert load_params(printed) == load_params(PARAMS, [overlay])
    assert load_params(printed) != load_params(PARAMS)
    bad = write(tmp_path, {X: {EXP: {"model": {"kind": "vae"}}}}, "bad.yaml")
    result = cli("params", "--params", PARAMS, "--overlay", bad)
    assert result.exit_code == 2 and not result.stdout and "gadflow: error:" in result.output


def test_invalid_yaml_names_line_and_column(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(ParamsError, match=r"not valid YAML at line \d+, column \d+"):
        load_params(bad)


@pytest.mark.parametrize("field, value", [("urls", ["ftp://example.org/x.gz"]), ("urls", ["x.gz"])])
def test_download_urls_must_be_http_or_file(field, value):
    from tasks.sources.download import FileSpec

    with pytest.raises(Exception, match="pattern"):
        FileSpec(file="x.gz", sha256="0" * 64, **{field: value})


def test_mirror_dir_cannot_leave_the_mirror():
    from tasks.sources.download import DatasetSpec

    files = {"archive": {"file": "a.tar.gz", "sha256": "0" * 64, "urls": ["file:///tmp/a.tar.gz"]}}
    with pytest.raises(Exception, match="pattern"):
        DatasetSpec(format="png_folder", mirror_dir="../..", files=files)


# --- time-series sections ----------------------------------------------------------------------------
def _with_madgan(good: dict, data: str) -> dict:
    bad = copy.deepcopy(good)
    bad[X]["x-madgan"] = {"data": data, "model": {"kind": "madgan", "search": {"lr_theta": 0.0}}}
    return bad


@pytest.mark.parametrize("edit, message", [
    (lambda g: g["prepare"]["rgbd"].update(series={"seq_len": 30}), "prepare.rgbd.series: only for time-series datasets"),
    (lambda g: g["prepare"]["smd"]["series"].update(machines=["machine-9-9"]), "machine-9-9 is not declared in download.smd"),
    (lambda g: g["prepare"]["skab"]["series"].update(machines=["machine-1-2"]), "series.machines: only for smd datasets"),
    (lambda g: g["prepare"]["smd"]["series"].update(train_rows=400), "series.train_rows: only for skab datasets"),
    (lambda g: g["prepare"]["smd"]["series"].update(seq_len=1), "prepare.smd.series.seq_len"),
    (lambda g: g["prepare"]["smd"]["series"].update(seq_len=10, stride=11), "stride 11 > seq_len 10 leaves points between windows unscored"),
    (lambda g: g["prepare"]["smd"]["series"].update(files=["a.csv"]), "prepare.smd.series.files: only for skab datasets"),
    (lambda g: g["prepare"]["skab"]["series"].update(files=["nope.csv"]), "prepare.skab.series.files: nope.csv is not declared in download.skab"),
])
def test_series_prepare_errors(tmp_path, good, edit, message):
    bad = copy.deepcopy(good)
    edit(bad)
    assert message in load_error(write(tmp_path, bad))


def test_models_must_match_the_data_kind(tmp_path, good):
    assert "'madgan' takes window inputs, but 'mnist' is image data" in load_error(write(tmp_path, _with_madgan(good, "mnist")))
    bad = _with_madgan(good, "smd")
    bad[X]["x-madgan"]["model"]["search"]["lr_theta"] = 1e-4
    assert f"{X}.x-madgan.model.search: madgan keeps the generator frozen" in load_error(write(tmp_path, bad))
    bad = copy.deepcopy(good)
    bad[X][EXP]["data"] = "skab"
    assert "'dcgan' takes image inputs, but 'skab' is series data; use one of madgan" in load_error(write(tmp_path, bad))
    assert load_params(write(tmp_path, _with_madgan(good, "smd"))).experiments["x-madgan"].model.kind == "madgan"
    bad = _with_madgan(good, "smd")
    bad[X]["x-madgan"]["calibrate"] = {"label_method": "monte_carlo"}
    assert f"{X}.x-madgan.calibrate.label_method: 'madgan' is labelled on time points" in load_error(write(tmp_path, bad))


# --- POT threshold -------------------------------------------------------------------------------------
def test_pot_label_method_loads(good, tmp_path):
    data = set_key(good, [X, EXP, "calibrate", "label_method"], "pot")
    calibrate = load_params(write(tmp_path, data)).experiment(EXP).calibrate
    assert calibrate.label_method == "pot" and calibrate.pot_initial_quantile == 0.9
    data = set_key(data, [X, EXP, "calibrate", "pot_initial_quantile"], 0.98)
    data = set_key(data, [X, EXP, "calibrate", "nominal_fpr"], 0.001)
    assert load_params(write(tmp_path, data)).experiment(EXP).calibrate.pot_initial_quantile == 0.98
    series = _with_madgan(good, "smd")
    series[X]["x-madgan"]["calibrate"] = {"label_method": "pot"}  # fitted on calibration points, like 'calibration'
    assert load_params(write(tmp_path, series)).experiments["x-madgan"].calibrate.label_method == "pot"


@pytest.mark.parametrize("label_method", ["pot", "calibration"])
def test_pot_initial_quantile_must_sit_below_the_target_quantile(good, tmp_path, label_method):
    data = set_key(good, [X, EXP, "calibrate", "label_method"], label_method)
    data = set_key(data, [X, EXP, "calibrate", "nominal_fpr"], 0.05)
    data = set_key(data, [X, EXP, "calibrate", "pot_initial_quantile"], 0.95)
    message = load_error(write(tmp_path, data))
    assert f"{X}.{EXP}.calibrate.pot_initial_quantile: initial_quantile 0.95 must be below 1 - nominal_fpr = 0.95" in message, message
    data = set_key(data, [X, EXP, "calibrate", "pot_initial_quantile"], 1.0)
    assert f"{X}.{EXP}.calibrate.pot_initial_quantile" in load_error(write(tmp_path, data))


def test_default_pot_level_does_not_refuse_a_large_nominal_fpr(good, tmp_path):
    # POT is only reported here: the calibrate step skips it with a warning rather than refusing the file
    data = set_key(good, [X, EXP, "calibrate", "nominal_fpr"], 0.2)
    assert load_params(write(tmp_path, data)).experiment(EXP).calibrate.pot_initial_quantile == 0.9
    data = set_key(data, [X, EXP, "calibrate", "label_method"], "pot")
    assert "must be below 1 - nominal_fpr = 0.8" in load_error(write(tmp_path, data))


# --- dvc.yaml, made from params.yaml (flows/dvc_stages.py) ---------------------------------------------
NIGHTLY_MODULES = ("tasks/nightly.py", "tasks/tracking/nightly.py", "flows/nightly.py")


@pytest.fixture(scope="module")
def rendered() -> dict:
    from flows.dvc_stages import render_dvc_yaml

    return yaml.safe_load(render_dvc_yaml(PARAMS))["stages"]


def test_cli_stages_check_passes_on_the_repository(cli, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    result = cli("stages", "--check")
    assert result.exit_code == 0, result.output
    assert "dvc.yaml: current" in result.output
    monkeypatch.chdir(tmp_path)  # a stale dvc.yaml: one line, status 2
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text().replace("gadflow train mnist-dcgan", "gadflow train mnist"))
    result = cli("stages", "--check", "--params", PARAMS)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"gadflow: error: dvc.yaml is not the one {PARAMS} makes; run `gadflow stages`"]


def test_stages_drop_the_lock_entries_of_stages_dvc_yaml_no_longer_has(cli, monkeypatch, tmp_path):
    """DVC keeps a removed stage's lock entry and rewrites the whole lock after every stage: `gadflow stages` drops it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    entry = "    cmd: gadflow {0}\n    deps:\n    - path: tasks/x.py\n      hash: md5\n      md5: d41d8cd98f00b204e9800998ecf8427e\n      size: 7\n"
    live, dead = f"model.{EXP}", "experiment@mnist-dcgan"
    (tmp_path / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  {dead}:\n{entry.format('run')}  {live}:\n{entry.format('train')}")
    result = cli("stages", "--params", PARAMS)
    assert result.exit_code == 0, result.output
    assert f"dvc.lock: dropped the entry of 1 stage dvc.yaml no longer has: {dead}" in result.output
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert list(lock["stages"]) == [live] and lock["stages"][live]["deps"] == [{"path": "tasks/x.py", "hash": "md5", "md5": "d41d8cd98f00b204e9800998ecf8427e", "size": 7}]
    assert "dropped" not in cli("stages", "--params", PARAMS).output  # nothing left to drop


# What each stage's command runs (flows/cli.py), beside the modules its params entry selects.
STAGE_STEPS = {
    "download": ("tasks.sources.download",),
    "generate": ("tasks.sources.rgbd",),
    "prepare": ("tasks.steps.prepare",),
    "model": ("tasks.steps.train", "tasks.steps.calibrate", "tasks.steps.score"),  # train, then score (calibrate + score)
    "report": ("tasks.steps.report", "tasks.tracking.register", "tasks.tracking.promote", "tasks.tracking.pyfunc"),  # report --register
}

# Imports each group of modules in a fresh child (forked from a parent that imported only third-party libraries, to
# spare the start-up per group) and prints the project files each child then has in sys.modules.
IMPORT_PROBE = r"""
import json, os, sys
import numpy, pandas, pyarrow, pyarrow.parquet, pydantic, yaml, sklearn.metrics, torch, PIL.Image, tqdm
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot
import mlflow, mlflow.pyfunc, mlflow.models
root = os.path.realpath(sys.argv[1])
groups = json.loads(sys.stdin.read())
assert not [m for m in sys.modules if m.split(".")[0] in ("models", "tasks", "flows")]
out = {}
for key, modules in groups.items():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import importlib
        for m in modules:
            importlib.import_module(m)
        project = [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("models", "tasks", "flows")]
        files = sorted({os.path.relpath(os.path.realpath(f), root) for mod in project
                        if (f := getattr(mod, "__file__", None)) and os.path.realpath(f).startswith(root + os.sep)})
        os.write(w, json.dumps(files).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    assert os.waitpid(pid, 0)[1] == 0, key
    out[key] = json.loads(data)
print(json.dumps(out))
"""


def _runs_code(relative: str) -> bool:
    """False for a package __init__.py that holds a docstring at most (importing it runs nothing)."""
    path = REPO / relative
    body = ast.parse(path.read_text()).body
    return not (path.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body))


@pytest.fixture(scope="module")
def stage_modules() -> dict[str, tuple[str, ...]]:
    """Stage name -> the modules its command imports to run: the step modules and those its entry selects."""
    from models.registry import model_module
    from tasks.adapters import ADAPTERS
    from tasks.steps.prepare import reader_module, source_format
    from tasks.steps.report import KIND_REPORTS

    params = load_params(PARAMS)
    out = {}
    for name in params.download:
        out[f"download.{name}"] = STAGE_STEPS["download"]
    for name in params.generate:
        out[f"generate.{name}"] = STAGE_STEPS["generate"]
    for name, prep in params.prepare.items():
        reader = reader_module(prep, source_format(params.source_spec(name)))
        out[f"prepare.{name}"] = (*STAGE_STEPS["prepare"], reader, ADAPTERS[params.data_kind(name)])
    for name, exp in params.experiments.items():
        kind = params.data_kind(exp.data)
        selected = (model_module(exp.model.kind), ADAPTERS[kind])
        out[f"model.{name}"] = (*STAGE_STEPS["model"], *selected)
        out[f"report.{name}"] = (*STAGE_STEPS["report"], *selected, *([KIND_REPORTS[kind]] if kind in KIND_REPORTS else []))
    return out


@pytest.fixture(scope="module")
def imported(stage_modules) -> dict[tuple[str, ...], set[str]]:
    """Module group -> the project files (those that run code) a fresh interpreter has loaded after importing it."""
    from tasks.adapters import ADAPTERS

    groups = {json.dumps(m): list(m) for m in set(stage_modules.values())}
    for adapter in ADAPTERS.values():  # a prepare stage without its reader: what the step itself imports
        groups[json.dumps((*STAGE_STEPS["prepare"], adapter))] = [*STAGE_STEPS["prepare"], adapter]
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(REPO)], input=json.dumps(groups), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {tuple(json.loads(k)): {f for f in files if _runs_code(f)} for k, files in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def test_dvc_yaml_is_made_from_params_yaml(rendered):
    params = load_params(PARAMS)
    expected = {f"download.{d}" for d in params.download} | {f"generate.{g}" for g in params.generate} | {f"prepare.{p}" for p in params.prepare}
    expected |= {f"{step}.{e}" for e in params.experiments for step in ("model", "report")}
    assert set(rendered) == expected
    assert not [name for name in rendered if "@" in name]
    assert rendered[f"model.{EXP}"]["cmd"] == [f"gadflow train {EXP}", f"gadflow score {EXP}"]  # score: calibrate, then score
    assert rendered[f"report.{EXP}"]["cmd"] == f"gadflow report {EXP} --register"  # the report, then registration and the gate


def test_a_prepare_stage_depends_on_its_formats_reader_only(rendered, imported):
    from tasks.adapters import ADAPTERS
    from tasks.steps.prepare import READERS, reader_module, source_format

    readers = {"tasks/sources/" + m.rpartition(".")[2] + ".py" for m in READERS.values()}
    assert {"tasks/sources/idx.py", "tasks/sources/swat_wadi.py", "tasks/sources/png_folder.py", "tasks/sources/rgbd_png.py"} <= readers
    mnist = set(rendered["prepare.mnist"]["deps"])
    assert "tasks/sources/idx.py" in mnist
    assert not mnist & {"tasks/sources/swat_wadi.py", "tasks/sources/png_folder.py", "tasks/sources/rgbd_png.py"}
    params = load_params(PARAMS)
    for name, prep in params.prepare.items():
        own = "tasks/" + reader_module(prep, source_format(params.source_spec(name))).removeprefix("tasks.").replace(".", "/") + ".py"
        # the step and its adapter import no reader themselves (the settings of `prepare` live with the step)
        assert not imported[(*STAGE_STEPS["prepare"], ADAPTERS[params.data_kind(name)])] & readers, name
        readers_run = set(rendered[f"prepare.{name}"]["deps"]) & readers
        assert own in readers_run and readers_run <= {own, "tasks/sources/idx.py"}, name  # image sequences read IDX frames


def test_a_prepare_stage_reads_how_to_read_its_source_not_where_it_came_from(rendered):
    """The files reach a prepare stage as data/raw/<source>; a new mirror or URL reruns the download stage only."""
    params = load_params(PARAMS)
    for name, prep in params.prepare.items():
        keys = rendered[f"prepare.{name}"]["params"]
        if params.source_spec(name) is None:
            assert keys == [f"prepare.{name}", f"generate.{prep.source}"], name
        else:
            assert keys[0] == f"prepare.{name}" and f"download.{prep.source}.format" in keys, name
            assert set(keys[1:]) <= {f"download.{prep.source}.format", f"download.{prep.source}.depth_range"}, name
        assert f"data/raw/{prep.source}" in rendered[f"prepare.{name}"]["deps"], name


def test_no_stage_depends_on_the_nightly_scoring(rendered):
    for name, stage in rendered.items():
        assert not set(stage["deps"]) & set(NIGHTLY_MODULES), name


def test_a_report_stage_reads_only_its_report_and_registry_params(rendered, good):
    for name in load_params(PARAMS).experiments:
        declared = "report" in good[X][name]
        assert rendered[f"report.{name}"].get("params", []) == [*([f"{X}.{name}.report"] if declared else []), "register", "promote"], name
    assert rendered[f"report.{EXP}"]["params"] == [f"{X}.{EXP}.report", "register", "promote"]


def test_every_module_a_stage_imports_is_among_its_deps(rendered, stage_modules, imported):
    assert set(stage_modules) == set(rendered)
    for name, modules in stage_modules.items():
        files = imported[modules]
        assert "/".join(modules[0].split(".")) + ".py" in files, name
        missing = sorted(files - set(rendered[name]["deps"]))
        assert not missing, f"{name} imports {missing} at run time, but dvc.yaml does not list them"
