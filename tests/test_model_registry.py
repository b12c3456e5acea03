"""Every registered model, on every input kind it takes: fit on a tiny set, score shape, a higher score for
obviously anomalous inputs, save/load round trip, determinism, and no test-set statistics in the scores.

The cases come from ``models.registry``, so a new model is covered as soon as it is registered (and
fails here until it has an entry in ``tests.helpers.detectors.TINY``).
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.base import Detector
from models.errors import GadflowError
from models.inputs import INPUT_RANK, InputKind, InputSpec
from models.registry import capabilities, get_detector, load_detector, model_names
from tests.helpers.detectors import TINY, config

IMAGE_SHAPE = (1, 16, 16)
N_FEATURES = 6
WINDOW_SHAPE = (12, 3)  # seq_len, channels
SHAPES = {"image": IMAGE_SHAPE, "tabular": (N_FEATURES,), "window": WINDOW_SHAPE}

# Tiny, CPU-only settings per model: tests.helpers.detectors.TINY (nested like params.yaml's model section).
DETECTORS = {kind: get_detector(kind) for kind in model_names()}
CASES = [(kind, input_kind) for kind, cls in DETECTORS.items() for input_kind in cls.capabilities.input_kinds]


def normal_inputs(input_kind: str, n: int, seed: int) -> np.ndarray:
    """Images: a bright 4×4 blob at a random place on a dark, noisy ground, uint8 (n, 1, 16, 16).
    Tabular: points near a 2-D plane in 6-D feature space, float32 (n, 6), inside [0, 1] like scaled features.
    Window: windows of three phase-locked sines with a random phase, float32 (n, 12, 3), inside [0, 1]."""
    rng = np.random.default_rng(seed)
    if input_kind == "image":
        out = rng.integers(0, 40, size=(n, *IMAGE_SHAPE)).astype(np.uint8)
        for img, (r, c) in zip(out, rng.integers(2, 11, size=(n, 2))):
            img[0, r : r + 4, c : c + 4] = 230
        return out
    if input_kind == "window":
        t = np.arange(WINDOW_SHAPE[0])[None, :, None] * 0.5 + rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        shifts = np.array([0.0, 1.0, 2.0])[None, None, :]
        return (0.5 + 0.4 * np.sin(t + shifts) + rng.normal(0, 0.01, size=(n, *WINDOW_SHAPE))).astype(np.float32)
    t = rng.uniform(0, 1, size=(n, 2))
    mixing = np.random.default_rng(99).uniform(-0.3, 0.3, size=(2, N_FEATURES))
    return (0.5 + (t - 0.5) @ mixing + rng.normal(0, 0.01, size=(n, N_FEATURES))).astype(np.float32)


def anomalous_inputs(input_kind: str, n: int, seed: int) -> np.ndarray:
    """Obviously unlike the normal inputs: inverted images (a dark blob on a bright ground), or feature rows far off the plane."""
    rng = np.random.default_rng(seed)
    if input_kind == "image":
        return 255 - normal_inputs(input_kind, n, seed)
    if input_kind == "window":  # each channel's sine pushed up or down by 0.6, out of the normal range
        return (normal_inputs(input_kind, n, seed) + rng.choice([-1.0, 1.0], size=(n, 1, WINDOW_SHAPE[1])) * 0.6).astype(np.float32)
    return (normal_inputs(input_kind, n, seed) + rng.choice([-1.0, 1.0], size=(n, N_FEATURES)) * 0.6).astype(np.float32)


def build(kind: str, input_kind: str, changes: dict | None = None):
    return get_detector(kind)(config(kind, changes), InputSpec(input_kind, SHAPES[input_kind]))


def fitted(kind: str, input_kind: str, changes: dict | None = None):
    detector = build(kind, input_kind, changes)
    n_train = 512 if input_kind == "window" else 96  # an LSTM GAN needs more (cheap) windows than a tiny conv GAN needs images
    detector.fit(normal_inputs(input_kind, n_train, seed=0), progress=False)
    return detector


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained():
    cache: dict[tuple[str, str], object] = {}

    def get(kind: str, input_kind: str):
        if (kind, input_kind) not in cache:
            cache[kind, input_kind] = fitted(kind, input_kind)
        return cache[kind, input_kind]

    return get


def test_every_registered_model_has_tiny_settings():
    assert set(TINY) == set(DETECTORS)
    assert {"dcgan", "adgan", "anogan", "egbad", "ganomaly"} <= set(DETECTORS)
    assert ("egbad", "tabular") in CASES and ("ganomaly", "tabular") in CASES and ("madgan", "window") in CASES


@pytest.mark.parametrize("kind", model_names())
def test_every_registered_model_is_named_by_its_config_and_takes_valid_input_kinds(kind):
    cls = get_detector(kind)
    assert issubclass(cls, Detector)
    kind_field = next(f for f in dataclasses.fields(cls.config_cls) if f.name == "kind")
    assert kind_field.default == kind  # params.yaml's model.kind picks this class
    assert cls.kind == kind
    assert config(kind).kind == kind  # its tiny config, built from a nested mapping, keeps the name
    input_kinds = cls.capabilities.input_kinds
    assert input_kinds and len(set(input_kinds)) == len(input_kinds)
    assert set(input_kinds) <= set(typing.get_args(InputKind)) == set(INPUT_RANK)
    for input_kind in input_kinds:
        assert InputSpec(input_kind, SHAPES[input_kind]).kind == input_kind  # a valid InputSpec of that kind
    assert capabilities(kind) is cls.capabilities


@pytest.mark.parametrize("kind, input_kind", CASES)
def test_scores_have_one_finite_value_per_sample(trained, kind, input_kind):
    scores = trained(kind, input_kind).score(normal_inputs(input_kind, 23, seed=1))
    assert scores.shape == (23,) and scores.dtype == np.float64
    assert np.isfinite(scores).all() and scores.std() > 0


@pytest.mark.parametrize("kind, input_kind", CASES)
def test_obviously_anomalous_inputs_score_higher(trained, kind, input_kind):
    detector = trained(kind, input_kind)
    normal, anomalous = normal_inputs(input_kind, 40, seed=2), anomalous_inputs(input_kind, 40, seed=3)
    scores = np.concatenate([detector.score(normal), detector.score(anomalous)])
    auroc = roc_auc_score(np.repeat([0, 1], 40), scores)
    assert auroc >= 0.9, f"{kind} on {input_kind} inputs: AUROC {auroc:.3f} between held-out normals and obvious anomalies"


@pytest.mark.parametrize("kind, input_kind", CASES)
def test_save_load_round_trip_gives_identical_scores(trained, tmp_path, kind, input_kind):
    detector = trained(kind, input_kind)
    x = np.concatenate([normal_inputs(input_kind, 10, seed=4), anomalous_inputs(input_kind, 5, seed=5)])
    detector.save(tmp_path)
    loaded = load_detector(tmp_path, device="cpu")
    assert type(loaded) is type(detector) and loaded.config == detector.config and loaded.model_id == detector.model_id
    np.testing.assert_array_equal(loaded.score(x), detector.score(x))
    if detector.capabilities.generator:  # the references draw no samples
        np.testing.assert_array_equal(loaded.sample(4, seed=1), detector.sample(4, seed=1))


@pytest.mark.parametrize("kind, input_kind", CASES)
def test_same_seed_gives_same_scores(trained, kind, input_kind):
    torch.manual_seed(123)  # the global RNG must not matter
    again = fitted(kind, input_kind)
    x = normal_inputs(input_kind, 12, seed=6)
    np.testing.assert_array_equal(again.score(x), trained(kind, input_kind).score(x))
    if capabilities(kind).generator:  # a reference's fit has no seed: the same data give the same model
        other = fitted(kind, input_kind, {"training": {"seed": 1}})
        assert other.model_id != again.model_id
    else:
        assert again.model_id == trained(kind, input_kind).model_id


@pytest.mark.parametrize("kind, input_kind", CASES)
def test_scores_use_no_statistics_of_the_test_set(trained, kind, input_kind):
    """Scoring a test set together with extra, shifted samples leaves the original samples' scores unchanged."""
    detector = trained(kind, input_kind)
    x = normal_inputs(input_kind, 20, seed=7)
    if input_kind == "image":
        shifted = np.clip(normal_inputs(input_kind, 30, seed=8).astype(int) + 120, 0, 255).astype(np.uint8)
    else:
        shifted = normal_inputs(input_kind, 30, seed=8) + np.float32(5.0)
    alone = detector.score(x)
    np.testing.assert_allclose(detector.score(np.concatenate([x, shifted]))[: len(x)], alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(detector.score(np.concatenate([shifted, x]))[len(shifted):], alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(detector.score(x[::-1])[::-1], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", [k for k, cls in DETECTORS.items() if cls.capabilities.input_kinds == ("image",)])
def test_image_only_models_refuse_tabular_data(kind):
    with pytest.raises(GadflowError, match=rf"model '{kind}' takes image inputs; this data gives tabular samples \({N_FEATURES},\)"):
        build(kind, "tabular")


@pytest.mark.parametrize("kind", [k for k, cls in DETECTORS.items() if cls.capabilities.input_kinds == ("window",)])
@pytest.mark.parametrize("input_kind", ["image", "tabular"])
def test_sequence_models_refuse_images_and_rows(kind, input_kind):
    with pytest.raises(GadflowError, match=rf"model '{kind}' takes window inputs; this data gives {input_kind} samples"):
        build(kind, input_kind)
