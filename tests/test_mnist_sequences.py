"""Image sequences: seeded anomalous runs, the prepare stage on tiny IDX files, and MAD-GAN with CNN frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import GadflowError
from models.frame_nets import FrameLSTMDiscriminator, FrameLSTMGenerator, check_frame_shape
from models.inputs import InputSpec
from models.madgan import MADGANDetector
from tasks.adapters import load_prepared
from tasks.adapters.series_store import read_split
from tasks.params import load_params, merged_params
from tasks.reports.series_metrics import anomaly_segments
from tasks.sources.mnist_sequences import anomaly_runs
from tasks.steps.prepare import PrepareParams, prepare_dataset
from tests.helpers.data import idx_spec
from tests.helpers.detectors import build

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@settings(max_examples=60, deadline=None)
@given(n=st.integers(10, 400), rate=st.floats(0.01, 0.3), max_run=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_anomaly_runs_count_length_and_gaps(n, rate, max_run, seed):
    mask = anomaly_runs(n, rate, max_run, np.random.default_rng(seed))
    assert mask.sum() == round(rate * n)
    runs = anomaly_segments(mask.astype(np.int8))  # (k, 2) [start, end) runs of marked frames
    assert all(1 <= end - start <= max_run for start, end in runs)
    assert all(b_start - a_end >= 1 for (_, a_end), (b_start, _) in zip(runs, runs[1:]))  # runs never touch


def sequence_params(**overrides) -> PrepareParams:
    base = dict(source="tiny", normal_classes=[0], calibration_fraction=0.2, seed=3,
                series={"seq_len": 3, "stride": 1, "scaling": "none"}, sequences={"length": 6, "anomaly_rate": 0.2, "max_run": 1})
    return PrepareParams(**{**base, **overrides})


def test_prepare_builds_frame_sequences_with_known_anomalies(tmp_path, tiny_idx):
    raw, data = tiny_idx
    out = prepare_dataset("tinyseq", sequence_params(), idx_spec(), raw, tmp_path / "out")
    prepared = load_prepared(out)
    assert prepared.kind == "series" and prepared.schema["frame_shape"] == [1, 8, 8]
    assert prepared.input_spec.shape == (3, 64) and prepared.input_spec.frame_shape == (1, 8, 8)
    frames = {tuple(np.rint(img.reshape(-1)).astype(int)): int(c) for img, c in zip(data["test_images"], data["test_labels"])}
    inserted = json.loads((out / "inserted_digits.json").read_text())
    n_normal_test = int((data["test_labels"] == 0).sum())
    seen_normal = 0
    for name, series in read_split(out / "test.arrow").items():
        for frame, label, digit in zip(series.values, series.labels, inserted[name]):
            digit_of_frame = frames[tuple(np.rint(frame * 255).astype(int))]  # pixels / 255, back to the source image
            assert (digit_of_frame != 0) == bool(label)
            assert digit == (digit_of_frame if label else -1)
            seen_normal += int(not label)
    assert seen_normal == n_normal_test  # every normal test image is used once
    train, calib = read_split(out / "train.arrow"), read_split(out / "calib.arrow")
    n_train = sum(len(s.values) for s in train.values()) + sum(len(s.values) for s in calib.values())
    assert n_train == int((data["train_labels"] == 0).sum())
    assert not any(s.labels.any() for s in train.values())


def test_prepare_is_seeded(tmp_path, tiny_idx):
    raw, _ = tiny_idx
    a = read_split(prepare_dataset("s", sequence_params(), idx_spec(), raw, tmp_path / "a") / "test.arrow")
    b = read_split(prepare_dataset("s", sequence_params(), idx_spec(), raw, tmp_path / "b") / "test.arrow")
    assert list(a) == list(b) and all(np.array_equal(a[k].values, b[k].values) for k in a)


def test_params_refuse_rescaled_pixels_and_sequences_without_series(tmp_path):
    params = merged_params(REPO / "params.yaml")
    params["prepare"]["mnistseq-x"] = {"source": "mnist", "series": {"seq_len": 10, "stride": 5}}  # scaling defaults to minmax
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(GadflowError, match="set scaling: none"):
        load_params(path)
    params["prepare"]["mnistseq-x"] = {"source": "mnist", "sequences": {"length": 50}}
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(GadflowError, match="sequences: only for an idx image source with a `series:` section"):
        load_params(path)
    with pytest.raises(ValueError):
        PrepareParams(source="mnist", series={"scaling": "none"}, sequences={"anomaly_rate": 0.5})  # at most 0.3


# the old flat config (latent_dim=3, hidden_dim=16, base_channels=4, epochs=2, batch_size=16, n_fixed_samples=4, n_seeds=2,
# steps=5, lr_z=0.1, normaliser_windows=16, device cpu), nested as params.yaml's `model`
FRAME_MADGAN = {"network": {"latent_dim": 3, "hidden_dim": 16, "base_channels": 4},
                "training": {"epochs": 2, "batch_size": 16, "n_fixed_samples": 4},
                "search": {"n_seeds": 2, "steps": 5, "lr_z": 0.1, "lr_theta": 0.0}, "normaliser_windows": 16}


def frame_detector(input_shape=(4, 64), frame_shape=(1, 8, 8)) -> MADGANDetector:
    return build("madgan", InputSpec("window", input_shape, frame_shape), base=FRAME_MADGAN)


def test_frame_variant_uses_cnn_networks_and_scores_windows():
    detector = frame_detector()
    assert isinstance(detector, MADGANDetector) and detector.inputs.frame_shape == (1, 8, 8)
    assert isinstance(detector.generator, FrameLSTMGenerator) and isinstance(detector.discriminator, FrameLSTMDiscriminator)
    rng = np.random.default_rng(0)
    blobs = np.zeros((64, 4, 8, 8), dtype=np.float32)
    blobs[:, :, 2:6, 2:6] = rng.uniform(0.6, 1.0, size=(64, 4, 1, 1))  # a bright square in every frame
    train = blobs.reshape(64, 4, 64)
    detector.fit(train, progress=False)
    samples = detector.sample(3, seed=0)
    assert samples.shape == (3, 4, 64) and ((samples >= 0) & (samples <= 1)).all()  # sigmoid pixels
    scores = detector.score(train[:5])
    assert scores.shape == (5,) and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, detector.score(train[:5]))  # seeded search: the same scores again


# A frame that does not flatten to a time step's values is refused by the input spec itself (models.inputs.InputSpec);
# one that flattens but whose sides are not multiples of 4 by the frame networks (models.frame_nets.check_frame_shape),
# which refuses both.
@pytest.mark.parametrize("input_shape, frame_shape, message, frame_nets_message", [
    ((4, 64), (1, 8, 4), r"frame_shape: \(1, 8, 4\) is not a \(C, H, W\) frame of the 64 values of a time step", "does not flatten"),
    ((4, 36), (1, 6, 6), "multiples of 4", "multiples of 4"),
])
def test_bad_frame_shapes_are_refused(input_shape, frame_shape, message, frame_nets_message):
    with pytest.raises(GadflowError, match=message):
        frame_detector(input_shape=input_shape, frame_shape=frame_shape)
    with pytest.raises(GadflowError, match=frame_nets_message):
        check_frame_shape(frame_shape, input_shape[1])
