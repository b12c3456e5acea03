"""params.yaml validation: every problem is one ParamsError line naming the dotted key; the CLI shows it without a traceback."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tasks.config import ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
SMOKE = REPO / "tests" / "fixtures" / "params-smoke.yaml"
EXP = "mnist-dcgan"


@pytest.fixture(scope="module")
def good() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


# --- valid files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [PARAMS, SMOKE], ids=["params.yaml", "params-smoke.yaml"])
def test_repo_params_files_load(path):
    params = load_params(path)
    assert {"mnist", "kdd99"} <= set(params.download)
    assert set(params.download["kdd99"].files) == {"train", "test"}
    assert params.prepare["kdd99"].kdd99.anomaly_labels == ["normal."]  # the paper protocol's anomaly class
    assert set(params.download["mnist"].files) == {"train_images", "train_labels", "test_images", "test_labels"}
    assert params.prepare["mnist"].source == "mnist"
    exp = params.experiment(EXP)
    assert exp.train.data == "mnist" and exp.train.model == "dcgan"
    assert 0 < exp.calibrate.nominal_fpr < 0.5
    assert params.registry.alias == "candidate"


def test_smoke_params_are_small():
    exp = load_params(SMOKE).experiment(EXP)
    assert exp.train.epochs <= 2 and exp.calibrate.mc_samples <= 2000


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


CASES = [
    # (id, path to set, value, key that the message must name)
    ("unknown-key", ["train", EXP, "epoch"], 3, f"train.{EXP}.epoch"),
    ("unknown-top-level", ["bogus"], 1, "bogus"),
    ("unknown-register-key", ["register", "alias_name"], "x", "register.alias_name"),
    ("wrong-type-int", ["train", EXP, "epochs"], "many", f"train.{EXP}.epochs"),
    ("wrong-type-float-for-int", ["train", EXP, "batch_size"], 2.5, f"train.{EXP}.batch_size"),
    ("wrong-type-list", ["prepare", "mnist", "normal_classes"], "zero", "prepare.mnist.normal_classes"),
    ("epochs-zero", ["train", EXP, "epochs"], 0, f"train.{EXP}.epochs"),
    ("nominal-fpr-too-big", ["calibrate", EXP, "nominal_fpr"], 0.7, f"calibrate.{EXP}.nominal_fpr"),
    ("calibration-fraction-too-big", ["prepare", "mnist", "calibration_fraction"], 1.5, "prepare.mnist.calibration_fraction"),
    ("negative-class", ["prepare", "mnist", "normal_classes"], [-1], "prepare.mnist.normal_classes.0"),
    ("mc-samples-too-few", ["calibrate", EXP, "mc_samples"], 10, f"calibrate.{EXP}.mc_samples"),
    ("unknown-model", ["train", EXP, "model"], "vae", f"train.{EXP}.model"),
    ("bad-device", ["train", EXP, "device"], "gpu", f"train.{EXP}.device"),
    ("bad-label-method", ["calibrate", EXP, "label_method"], "oracle", f"calibrate.{EXP}.label_method"),
    ("bad-sha256", ["download", "mnist", "files", "train_labels", "sha256"], "abc", "download.mnist.files.train_labels.sha256"),
    ("bad-format", ["download", "mnist", "format"], "jpeg", "download.mnist.format"),
    ("bad-train-reference", ["train", EXP, "data"], "x", f"train.{EXP}.data"),
    ("bad-prepare-reference", ["prepare", "mnist", "source"], "cifar", "prepare.mnist.source"),
    ("egbad-alpha-too-big", ["train", "mnist-egbad", "egbad", "alpha"], 1.5, "train.mnist-egbad.egbad.alpha"),
    ("egbad-bad-score-method", ["train", "mnist-egbad", "egbad", "score_method"], "l2", "train.mnist-egbad.egbad.score_method"),
    ("ganomaly-negative-weight", ["train", "mnist-ganomaly", "ganomaly", "w_con"], -1, "train.mnist-ganomaly.ganomaly.w_con"),
    ("ganomaly-empty-widths", ["train", "kdd99-ganomaly", "ganomaly", "hidden_dims"], [], "train.kdd99-ganomaly.ganomaly.hidden_dims"),
    ("kdd99-bad-test-file", ["prepare", "kdd99", "kdd99", "test_file"], "other", "prepare.kdd99.kdd99.test_file"),
    ("kdd99-no-anomaly-labels", ["prepare", "kdd99", "kdd99", "anomaly_labels"], [], "prepare.kdd99.kdd99.anomaly_labels"),
    ("paper-fraction-too-big", ["evaluate", "kdd99-egbad", "paper_top_fraction"], 1.0, "evaluate.kdd99-egbad.paper_top_fraction"),
]


@pytest.mark.parametrize("dotted, value, key", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_value_names_the_key(good, tmp_path, dotted, value, key):
    message = load_error(write(tmp_path, set_key(good, dotted, value)))
    assert key in message, message
    assert message.startswith(str(tmp_path / "params.yaml"))


@pytest.mark.parametrize("dotted, value, expected", [
    (["train", "mnist-dcgan", "egbad"], {"alpha": 0.5}, "egbad: only model 'egbad'"),
    (["train", "mnist-egbad", "ganomaly"], {"w_con": 1.0}, "ganomaly: only model 'ganomaly'"),
    (["train", "mnist-egbad", "search"], {"steps": 3}, "search: only latent-search models"),
    (["train", "kdd99-egbad"], {"data": "kdd99", "model": "dcgan"}, "'dcgan' takes images, but 'kdd99' is tabular"),
    (["train", "mnist-ganomaly", "discriminator_norm"], "spectral", "supports only 'batch'"),
    (["prepare", "mnist", "kdd99"], {"test_fraction": 0.5}, "prepare.mnist.kdd99: only for kdd99 datasets"),
])
def test_model_sections_and_data_kinds_must_match(good, tmp_path, dotted, value, expected):
    message = load_error(write(tmp_path, set_key(good, dotted, value)))
    assert expected in message, message


def test_reference_error_names_the_missing_key(good, tmp_path):
    message = load_error(write(tmp_path, set_key(good, ["train", EXP, "data"], "x")))
    assert f"train.{EXP}.data: 'x' is not a key of `prepare`" in message


def test_unknown_key_says_so_and_lists_the_allowed_keys(good, tmp_path):
    message = load_error(write(tmp_path, set_key(good, ["train", EXP, "epoch"], 3)))
    assert f"train.{EXP}.epoch: unknown key" in message
    assert "allowed:" in message and "epochs" in message and "lr_g" in message


def test_unknown_top_level_key_lists_the_sections(good, tmp_path):
    message = load_error(write(tmp_path, set_key(good, ["bogus"], 1)))
    assert "bogus: unknown key" in message
    for section in ("download", "prepare", "train", "calibrate", "evaluate", "register"):
        assert section in message.split("allowed:")[1]


def test_missing_role_of_a_dataset(good, tmp_path):
    data = copy.deepcopy(good)
    del data["download"]["mnist"]["files"]["test_labels"]
    message = load_error(write(tmp_path, data))
    assert "download.mnist" in message and "test_labels" in message


def test_experiment_missing_from_calibrate(good, tmp_path):
    data = copy.deepcopy(good)
    data["calibrate"] = {}
    message = load_error(write(tmp_path, data))
    assert "calibrate" in message and EXP in message


def test_missing_section(good, tmp_path):
    data = copy.deepcopy(good)
    del data["evaluate"]
    assert "evaluate" in load_error(write(tmp_path, data))


def test_bad_experiment_name(good, tmp_path):
    data = copy.deepcopy(good)
    for section in ("train", "calibrate", "evaluate"):
        data[section]["Bad Name"] = data[section].pop(EXP)
    assert "train.Bad Name" in load_error(write(tmp_path, data))


@pytest.mark.parametrize("text", ["train: [unclosed\n", "a: b: c\n", "download:\n  - x\n - y\n"])
def test_invalid_yaml(tmp_path, text):
    assert "not valid YAML" in load_error(write(tmp_path, text))


def test_empty_and_missing_files(tmp_path):
    assert "download" in load_error(write(tmp_path, ""))
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")


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
    return lambda *args: runner.invoke(app, list(args))


def test_cli_check_params_bad_file(cli, good, tmp_path):
    bad = write(tmp_path, set_key(good, ["calibrate", EXP, "nominal_fpr"], 0.7))
    result = cli("check-params", "--params", str(bad))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("gadflow: error:")
    assert f"calibrate.{EXP}.nominal_fpr" in lines[0]
    assert "Traceback" not in result.output


def test_cli_check_params_invalid_yaml(cli, tmp_path):
    result = cli("check-params", "--params", str(write(tmp_path, "train: [unclosed\n")))
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [result.output.strip()]
    assert result.output.startswith("gadflow: error:") and "Traceback" not in result.output


def test_cli_check_params_good_file(cli):
    result = cli("check-params", "--params", str(PARAMS))
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and EXP in result.output


def test_invalid_yaml_names_line_and_column(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(ParamsError, match=r"not valid YAML at line \d+, column \d+"):
        load_params(bad)


@pytest.mark.parametrize("field, value", [("urls", ["ftp://example.org/x.gz"]), ("urls", ["x.gz"])])
def test_download_urls_must_be_http_or_file(field, value):
    from tasks.config import FileSpec

    with pytest.raises(Exception, match="pattern"):
        FileSpec(file="x.gz", sha256="0" * 64, **{field: value})


def test_mirror_dir_cannot_leave_the_mirror():
    from tasks.config import DatasetSpec

    files = {"archive": {"file": "a.tar.gz", "sha256": "0" * 64, "urls": ["file:///tmp/a.tar.gz"]}}
    with pytest.raises(Exception, match="pattern"):
        DatasetSpec(format="png_folder", mirror_dir="../..", files=files)


def test_gpu_params_variant_matches_the_defaults_structurally():
    """configs/params-gpu.yaml: the paper-scale settings for GPU workers, same experiments as params.yaml."""
    gpu = load_params(REPO / "configs" / "params-gpu.yaml")
    cpu = load_params(REPO / "params.yaml")
    assert set(gpu.train) == set(cpu.train) and set(gpu.prepare) == set(cpu.prepare)
    assert gpu.train["mnist-adgan"].search.lr_theta == 6e-9  # the seed's setting
    assert all(t.device == "cuda" for t in gpu.train.values())
    assert all(gpu.train[name].model == cpu.train[name].model for name in cpu.train)


# --- time-series sections ----------------------------------------------------------------------------
def _with_madgan(good: dict, data: str) -> dict:
    bad = copy.deepcopy(good)
    bad["train"]["x-madgan"] = {"data": data, "model": "madgan", "search": {"lr_theta": 0.0}}
    bad["calibrate"]["x-madgan"] = {}
    bad["evaluate"]["x-madgan"] = {}
    return bad


@pytest.mark.parametrize("edit, message", [
    (lambda g: g["prepare"]["rgbd"].update(series={"seq_len": 30}), "prepare.rgbd.series: only for time-series datasets"),
    (lambda g: g["prepare"]["smd"]["series"].update(machines=["machine-9-9"]), "machine-9-9 is not declared in download.smd"),
    (lambda g: g["prepare"]["skab"]["series"].update(machines=["machine-1-2"]), "series.machines: only for smd datasets"),
    (lambda g: g["prepare"]["smd"]["series"].update(train_rows=400), "series.train_rows: only for skab datasets"),
    (lambda g: g["prepare"]["smd"]["series"].update(seq_len=1), "prepare.smd.series.seq_len"),
    (lambda g: g["prepare"]["smd"]["series"].update(seq_len=10, stride=11), "stride 11 > seq_len 10 leaves points between windows unscored"),
])
def test_series_prepare_errors(tmp_path, good, edit, message):
    bad = copy.deepcopy(good)
    edit(bad)
    assert message in load_error(write(tmp_path, bad))


def test_models_must_match_the_data_kind(tmp_path, good):
    assert "'mnist' is not a time series; 'madgan' takes windows" in load_error(write(tmp_path, _with_madgan(good, "mnist")))
    bad = _with_madgan(good, "smd")
    bad["train"]["x-madgan"]["search"]["lr_theta"] = 1e-4
    assert "madgan keeps the generator frozen" in load_error(write(tmp_path, bad))
    bad = copy.deepcopy(good)
    bad["train"][EXP]["data"] = "skab"
    assert "'skab' is a time series; use one of madgan" in load_error(write(tmp_path, bad))
    assert load_params(write(tmp_path, _with_madgan(good, "smd"))).train["x-madgan"].model == "madgan"
    bad = _with_madgan(good, "smd")
    bad["calibrate"]["x-madgan"] = {"label_method": "monte_carlo"}
    assert "calibrate.x-madgan.label_method: a time series labels time points" in load_error(write(tmp_path, bad))


# --- POT threshold -------------------------------------------------------------------------------------
def test_pot_label_method_loads(good, tmp_path):
    data = set_key(good, ["calibrate", EXP, "label_method"], "pot")
    calibrate = load_params(write(tmp_path, data)).experiment(EXP).calibrate
    assert calibrate.label_method == "pot" and calibrate.pot_initial_quantile == 0.9
    data = set_key(data, ["calibrate", EXP, "pot_initial_quantile"], 0.98)
    data = set_key(data, ["calibrate", EXP, "nominal_fpr"], 0.001)
    assert load_params(write(tmp_path, data)).experiment(EXP).calibrate.pot_initial_quantile == 0.98
    series = _with_madgan(good, "smd")
    series["calibrate"]["x-madgan"] = {"label_method": "pot"}  # fitted on calibration points, like 'calibration'
    assert load_params(write(tmp_path, series)).calibrate["x-madgan"].label_method == "pot"


@pytest.mark.parametrize("label_method", ["pot", "calibration"])
def test_pot_initial_quantile_must_sit_below_the_target_quantile(good, tmp_path, label_method):
    data = set_key(good, ["calibrate", EXP, "label_method"], label_method)
    data = set_key(data, ["calibrate", EXP, "nominal_fpr"], 0.05)
    data = set_key(data, ["calibrate", EXP, "pot_initial_quantile"], 0.95)
    message = load_error(write(tmp_path, data))
    assert f"calibrate.{EXP}: pot_initial_quantile: 0.95 must be below 1 - nominal_fpr = 0.95" in message, message
    data = set_key(data, ["calibrate", EXP, "pot_initial_quantile"], 1.0)
    assert f"calibrate.{EXP}.pot_initial_quantile" in load_error(write(tmp_path, data))


def test_default_pot_level_does_not_refuse_a_large_nominal_fpr(good, tmp_path):
    # POT is only reported here: the calibrate step skips it with a warning rather than refusing the file
    data = set_key(good, ["calibrate", EXP, "nominal_fpr"], 0.2)
    assert load_params(write(tmp_path, data)).experiment(EXP).calibrate.pot_initial_quantile == 0.9
    data = set_key(data, ["calibrate", EXP, "label_method"], "pot")
    assert "must be below 1 - nominal_fpr = 0.8" in load_error(write(tmp_path, data))
