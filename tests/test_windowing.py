"""Sliding windows, window labels and point scores against naive loops; the series transform's fit-on-train rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import GadflowError
from models.series_transform import SeriesTransform
from models.windowing import point_channel_scores, point_scores, sliding_windows, window_labels, window_starts


def naive_starts(n_points: int, seq_len: int, stride: int, tail: str) -> list[int]:
    starts = []
    s = 0
    while s + seq_len <= n_points:
        starts.append(s)
        s += stride
    if tail == "align_end" and starts[-1] != n_points - seq_len:
        starts.append(n_points - seq_len)
    return starts


series_shapes = st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(1, 15), st.integers(1, 4))  # extra, seq_len, stride, channels


@settings(max_examples=150, deadline=None)
@given(shape=series_shapes, tail=st.sampled_from(["align_end", "drop"]), seed=st.integers(0, 2**16))
def test_windows_match_a_naive_loop(shape, tail, seed):
    extra, seq_len, stride, channels = shape
    n_points = seq_len + extra - 1  # at least one whole window
    series = np.random.default_rng(seed).normal(size=(n_points, channels))
    windows = sliding_windows(series, seq_len, stride, tail)
    starts = windows.starts
    expected = naive_starts(n_points, seq_len, stride, tail)
    assert starts.tolist() == expected
    assert windows.shape == (len(expected), seq_len, channels) == windows[:].shape
    for w, s in enumerate(expected):
        np.testing.assert_array_equal(windows[w], series[s:s + seq_len])
    np.testing.assert_array_equal(windows[np.array([len(expected) - 1, 0])], windows[:][[-1, 0]])
    # The stride rule: consecutive regular starts are `stride` apart; only the align_end window may be closer.
    gaps = np.diff(starts)
    regular = gaps[:-1] if tail == "align_end" and len(gaps) else gaps
    assert (regular == stride).all()
    if tail == "align_end":
        assert starts[-1] + seq_len == n_points  # every point covered
    else:
        assert starts[-1] + seq_len > n_points - stride  # the uncovered tail is shorter than one stride


@settings(max_examples=150, deadline=None)
@given(shape=series_shapes, rule=st.sampled_from(["any", "last", "majority"]), seed=st.integers(0, 2**16))
def test_window_labels_match_a_naive_loop(shape, rule, seed):
    extra, seq_len, stride, _ = shape
    n_points = seq_len + extra - 1
    labels = (np.random.default_rng(seed).random(n_points) < 0.2).astype(int)
    starts = window_starts(n_points, seq_len, stride)
    got = window_labels(labels, starts, seq_len, rule)
    for w, s in enumerate(starts):
        chunk = labels[s:s + seq_len]
        want = {"any": chunk.any(), "last": chunk[-1] == 1, "majority": chunk.sum() > seq_len / 2}[rule]
        assert got[w] == int(want)


@settings(max_examples=100, deadline=None)
@given(shape=series_shapes, how=st.sampled_from(["mean", "max"]), tail=st.sampled_from(["align_end", "drop"]), seed=st.integers(0, 2**16))
def test_point_scores_match_a_naive_loop(shape, how, tail, seed):
    extra, seq_len, stride, channels = shape
    n_points = seq_len + extra - 1
    rng = np.random.default_rng(seed)
    starts = window_starts(n_points, seq_len, stride, tail)
    scores = rng.normal(size=starts.shape[0])
    per_channel = rng.normal(size=(starts.shape[0], seq_len, channels))
    got = point_scores(scores, starts, seq_len, n_points, how)
    got_channels = point_channel_scores(per_channel, starts, n_points, how)
    pool = np.mean if how == "mean" else np.max
    for t in range(n_points):
        covering = [w for w, s in enumerate(starts) if s <= t < s + seq_len]
        if not covering:
            assert np.isnan(got[t]) and np.isnan(got_channels[t]).all()
            continue
        assert got[t] == pytest.approx(pool(scores[covering]))
        np.testing.assert_allclose(got_channels[t], pool(np.stack([per_channel[w, t - starts[w]] for w in covering]), axis=0))


def test_hand_worked_point_scores():
    # T = 5, seq_len = 3, stride = 2: windows [0,3) and [2,5); point 2 is covered by both.
    starts = window_starts(5, 3, 2)
    assert starts.tolist() == [0, 2]
    np.testing.assert_allclose(point_scores(np.array([1.0, 3.0]), starts, 3, 5, "mean"), [1, 1, 2, 3, 3])
    np.testing.assert_allclose(point_scores(np.array([1.0, 3.0]), starts, 3, 5, "max"), [1, 1, 3, 3, 3])
    # T = 6 with the drop rule: window [4,6) would not fit whole, so point 5 has no window.
    starts = window_starts(6, 3, 2, "drop")
    assert starts.tolist() == [0, 2]
    assert np.isnan(point_scores(np.array([1.0, 3.0]), starts, 3, 6)[5])
    assert window_starts(6, 3, 2, "align_end").tolist() == [0, 2, 3]


def test_windows_hold_no_copy_of_the_series():
    series = np.arange(200, dtype=np.float32).reshape(100, 2)
    windows = sliding_windows(series, 30, 10)
    assert windows.series is series and np.shares_memory(windows.view(), series)
    assert windows[0:2].shape == (2, 30, 2)


@pytest.mark.parametrize("call, message", [
    (lambda: window_starts(5, 6, 1), "shorter than one window"),
    (lambda: window_starts(5, 0, 1), "must be ≥ 1"),
    (lambda: window_starts(5, 2, 0), "must be ≥ 1"),
    (lambda: sliding_windows(np.zeros(10), 3, 1), "2-D"),
    (lambda: window_labels(np.zeros(10), window_starts(10, 3, 1), 3, "some"), "label rule"),
    (lambda: point_scores(np.zeros(3), window_starts(10, 3, 1), 3, 10), "window scores"),
])
def test_bad_window_arguments_are_clear_errors(call, message):
    with pytest.raises(GadflowError, match=message):
        call()


# --- series transform ------------------------------------------------------------------------
@pytest.mark.parametrize("scaling", ["minmax", "standard", "none"])
@pytest.mark.parametrize("pca_components", [None, 2])
def test_transform_is_fitted_on_train_only(scaling, pca_components):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    test = rng.normal(size=(200, 4))
    fitted = SeriesTransform(scaling, pca_components).fit(train)
    before = fitted.transform(test)
    # Transforming a shifted test set changes nothing fitted: the shifted output is the transform of the shifted input.
    parameters = fitted.to_dict()
    fitted.transform(test + 100.0)
    assert fitted.to_dict() == parameters
    np.testing.assert_array_equal(fitted.transform(test), before)
    assert before.shape == (200, pca_components or 4) and before.dtype == np.float32


def test_minmax_maps_the_training_range_to_unit_interval_and_does_not_clip():
    train = np.array([[0.0, 10.0, 5.0], [2.0, 20.0, 5.0]])
    fitted = SeriesTransform("minmax").fit(train)
    np.testing.assert_allclose(fitted.transform(train), [[0, 0, 0], [1, 1, 0]])
    np.testing.assert_allclose(fitted.transform(np.array([[4.0, 0.0, 6.0]])), [[2.0, -1.0, 1.0]])  # constant column: scale 1


def test_pca_keeps_the_top_components(tmp_path):
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(1000, 2)) * [10.0, 5.0]
    train = np.concatenate([latent, rng.normal(size=(1000, 3)) * 0.01], axis=1)  # 2 strong directions, 3 weak
    fitted = SeriesTransform("none", 2).fit(train)
    assert sum(fitted.explained_variance_ratio) > 0.999
    loaded = SeriesTransform.load(fitted.save(tmp_path / "t.json"))
    np.testing.assert_array_equal(loaded.transform(train), fitted.transform(train))
    assert loaded.n_outputs == 2 and loaded.n_inputs == 5


def test_transform_errors(tmp_path):
    with pytest.raises(GadflowError, match="row 1, channel 0"):
        SeriesTransform().fit(np.array([[1.0], [np.nan]]))
    fitted = SeriesTransform().fit(np.zeros((4, 3)))
    with pytest.raises(GadflowError, match="2 channels, the transform was fitted on 3"):
        fitted.transform(np.zeros((4, 2)))
    with pytest.raises(GadflowError, match="before it was fitted"):
        SeriesTransform().transform(np.zeros((2, 2)))
    with pytest.raises(GadflowError, match="pca_components"):
        SeriesTransform("minmax", 4).fit(np.zeros((10, 3)))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(GadflowError, match="not a gadflow series transform"):
        SeriesTransform.load(tmp_path / "bad.json")


def test_pca_over_several_series_equals_pca_of_their_concatenation():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    parts = [rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) for _ in range(3)]  # each series has its own directions
    fitted = SeriesTransform("standard", 3).fit(parts)
    whole = np.concatenate(parts)
    scaled = (whole - whole.mean(axis=0)) / whole.std(axis=0)
    reference = PCA(n_components=3, svd_solver="full").fit(scaled)
    np.testing.assert_allclose(np.abs(fitted.components), np.abs(reference.components_), atol=1e-8)
    np.testing.assert_allclose(fitted.explained_variance_ratio, reference.explained_variance_ratio_, atol=1e-10)
    np.testing.assert_allclose(SeriesTransform("standard", 3).fit(whole).components, fitted.components, atol=1e-10)  # one array or parts: same fit
