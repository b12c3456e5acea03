"""WindowStack: the lazy windows of several series, against their concatenation; training reads it batch by batch."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import GadflowError
from models.inputs import InputSpec
from models.storage import data_key
from models.windowing import WindowStack, sliding_windows
from tests.helpers.detectors import build


def make_stack(lengths: list[int], seq_len: int, stride: int, channels: int, seed: int) -> tuple[WindowStack, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = [sliding_windows(rng.normal(size=(n, channels)).astype(np.float32), seq_len, stride) for n in lengths]
    return WindowStack(parts), np.concatenate([w[:] for w in parts])


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(0, 30), min_size=1, max_size=4), seq_len=st.integers(1, 6), stride=st.integers(1, 5),
       channels=st.integers(1, 3), seed=st.integers(0, 2**16), data=st.data())
def test_indexing_a_stack_equals_indexing_the_concatenated_windows(lengths, seq_len, stride, channels, seed, data):
    stack, expected = make_stack([seq_len + n for n in lengths], seq_len, stride, channels, seed)
    assert stack.shape == expected.shape and len(stack) == len(expected) and stack.dtype == expected.dtype
    np.testing.assert_array_equal(np.asarray(stack), expected)
    rows = data.draw(st.lists(st.integers(-len(expected), len(expected) - 1), max_size=20))
    np.testing.assert_array_equal(stack[np.array(rows, dtype=np.int64)], expected[np.array(rows, dtype=np.int64)])  # any order, repeats
    start, stop = sorted(data.draw(st.tuples(st.integers(0, len(expected)), st.integers(0, len(expected)))))
    np.testing.assert_array_equal(stack[start:stop], expected[start:stop])
    np.testing.assert_array_equal(stack[rows[0] if rows else 0], expected[rows[0] if rows else 0])


def test_first_nonfinite_names_the_first_window_that_covers_a_bad_point():
    a = np.zeros((20, 2), np.float32)
    b = np.zeros((20, 2), np.float32)
    b[13, 1] = np.nan  # series b, point 13
    stack = WindowStack([sliding_windows(a, 5, 5), sliding_windows(b, 5, 5)])  # 4 windows each; b's third covers 10..14
    assert stack.first_nonfinite() == 4 + 2
    naive = next(i for i in range(len(stack)) if not np.isfinite(stack[i]).all())
    assert naive == 6
    assert WindowStack([sliding_windows(a, 5, 5)]).first_nonfinite() is None
    c = np.zeros((12, 1), np.float32)
    c[5] = np.inf  # stride 6, seq_len 4, tail dropped: windows 0..3 and 6..9, point 5 in none of them
    assert WindowStack([sliding_windows(c, 4, 6, "drop")]).first_nonfinite() is None


def test_a_stack_keys_like_its_materialised_windows():
    stack, expected = make_stack([50, 33], 7, 3, 4, seed=1)
    assert data_key(stack, chunk_rows=5) == data_key(expected) == data_key(expected, chunk_rows=1000)


def test_a_stack_refuses_mixed_series_and_bad_indices():
    with pytest.raises(GadflowError, match="same seq_len"):
        WindowStack([sliding_windows(np.zeros((9, 2)), 3, 1), sliding_windows(np.zeros((9, 3)), 3, 1)])
    with pytest.raises(GadflowError, match="at least one"):
        WindowStack([])
    stack, _ = make_stack([10], 3, 1, 1, seed=0)
    with pytest.raises(IndexError):
        stack[np.array([len(stack)])]
    with pytest.raises(GadflowError, match="1-D"):
        stack[np.zeros((2, 2), dtype=np.int64)]


def test_madgan_trains_on_a_stack_without_gathering_every_window(tmp_path):
    """Same weights and scores as training on the gathered windows, at a fraction of the memory (traced numpy allocations)."""
    import torch

    rng = np.random.default_rng(0)
    series = [(np.sin(np.linspace(0, 200, 20_000))[:, None] + 0.1 * rng.normal(size=(20_000, 3))).astype(np.float32) for _ in range(2)]
    stack = WindowStack([sliding_windows(s, 30, 1) for s in series])  # 39,942 windows of 30 x 3: 14.4 MB gathered, series 0.5 MB
    gathered_bytes = len(stack) * 30 * 3 * 4
    inputs_spec = InputSpec("window", stack.shape[1:])
    settings = {"network": {"hidden_dim": 8, "latent_dim": 4}, "training": {"epochs": 1, "batch_size": 1024, "seed": 3},
                "search": {"steps": 2, "lr_theta": 0.0}, "normaliser_windows": 64}  # the rest: MAD-GAN's defaults
    torch.set_num_threads(1)
    build("madgan", inputs_spec, settings, base={}).fit(stack[:2048], progress=False)  # imports everything first

    def fit(inputs, name: str):
        detector = build("madgan", inputs_spec, settings, base={})
        tracemalloc.start()
        detector.fit(inputs, checkpoint_dir=tmp_path / name, progress=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return detector, peak

    lazy, lazy_peak = fit(stack, "lazy")
    eager, eager_peak = fit(np.asarray(stack), "eager")  # gathered before tracing: what fit itself allocates
    assert lazy_peak < gathered_bytes / 3, f"training on the stack traced a peak of {lazy_peak} bytes; the gathered windows are {gathered_bytes}"
    assert eager_peak < lazy_peak + gathered_bytes / 3, f"fit traced {eager_peak} bytes on a gathered array: it copied it"
    for (name, a), (_, b) in zip(lazy.generator.state_dict().items(), eager.generator.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(lazy.score(stack[:200]), eager.score(np.asarray(stack)[:200]))


def test_the_input_check_names_the_bad_window_of_a_stack_or_row_of_an_array_and_passes_an_empty_array():
    detector = build("madgan", InputSpec("window", (5, 2)), {"network": {"hidden_dim": 4, "latent_dim": 2}, "training": {"epochs": 1},
                                                            "search": {"lr_theta": 0.0}}, base={})
    series = np.zeros((20, 2), np.float32)
    series[12, 0] = np.inf
    stack = WindowStack([sliding_windows(series, 5, 5)])  # windows start at 0, 5, 10, 15: the third covers point 12
    with pytest.raises(GadflowError, match="input sample 2 has a NaN or infinite value"):
        detector.check_input(stack)
    with pytest.raises(GadflowError, match="input sample 2 has a NaN or infinite value"):
        detector.check_input(np.asarray(stack))
    detector.check_input(np.zeros((0, 5, 2), np.float32))
