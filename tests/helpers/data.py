"""Tiny hand-written datasets for tests: KDD Cup 99 records, IDX image files, PNG-folder archives, sine windows."""

from __future__ import annotations

import gzip
import struct
import tarfile
from pathlib import Path

import numpy as np

from tasks.sources.download import DatasetSpec, FileSpec
from tasks.sources.kdd99 import KDD99_FEATURES

FAKE_SHA = "0" * 64  # prepare never re-hashes: the download stage did

# --- KDD Cup 99 ------------------------------------------------------------------------------
KDD_TRAIN_FILE, KDD_TEST_FILE = "kddcup.data_10_percent.gz", "corrected.gz"


def kdd_fields(i: int, label: str | None = None, **values) -> list[str]:
    """The 42 fields of record ``i``; src_bytes = i identifies the row, the rest varies deterministically."""
    row = {name: "0" for name in KDD99_FEATURES}
    row.update(
        duration=str(i % 7), protocol_type=["tcp", "udp", "icmp"][i % 3], service=["http", "private", "ecr_i", "domain_u"][i % 4],
        flag=["SF", "S0", "REJ"][i % 3], src_bytes=str(i), dst_bytes=str((i * 37) % 1000), logged_in=str(i % 2),
        count=str(i % 50 + 1), srv_count=str((i * 3) % 20), serror_rate=f"{(i % 10) / 10:.2f}", dst_host_count=str(255 - i % 255),
    )
    row.update({k: str(v) for k, v in values.items()})
    label = label if label is not None else ["normal.", "neptune.", "smurf.", "smurf.", "back."][i % 5]
    return [row[name] for name in KDD99_FEATURES] + [label]


def write_kdd(path: Path, lines: list[list[str] | str], gz: bool | None = None) -> Path:
    """Write records (field lists, or raw text lines) as a KDD CSV, gzipped when the name ends in .gz."""
    text = "".join((line if isinstance(line, str) else ",".join(line)) + "\n" for line in lines)
    gz = path.name.endswith(".gz") if gz is None else gz
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def train_records(n: int = 200) -> list[list[str]]:
    return [kdd_fields(i) for i in range(n)]


def corrected_records(n: int = 60, start: int = 1000) -> list[list[str]]:
    return [kdd_fields(i) for i in range(start, start + n)]


def kdd_spec() -> DatasetSpec:
    files = {role: FileSpec(file=f, sha256=FAKE_SHA, urls=[f"https://example.org/{f}"]) for role, f in (("train", KDD_TRAIN_FILE), ("test", KDD_TEST_FILE))}
    return DatasetSpec(format="kdd99", files=files)


# --- IDX images ------------------------------------------------------------------------------
IDX_FILES = {
    "train_images": "tiny-train-images-idx3-ubyte.gz",
    "train_labels": "tiny-train-labels-idx1-ubyte",
    "test_images": "tiny-t10k-images-idx3-ubyte",
    "test_labels": "tiny-t10k-labels-idx1-ubyte.gz",
}


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + np.ascontiguousarray(arr, np.uint8).tobytes()


def idx_spec() -> DatasetSpec:
    return DatasetSpec(
        format="idx",
        files={role: FileSpec(file=name, sha256=FAKE_SHA, urls=[f"file:///nowhere/{name}"]) for role, name in IDX_FILES.items()},
    )


def write_tiny_idx(raw: Path) -> dict[str, np.ndarray]:
    """A 60 / 24 image IDX dataset of 8x8 images, classes 0..3 (two files gzipped), written into ``raw``."""
    rng = np.random.default_rng(0)
    data = {
        "train_images": rng.integers(0, 256, size=(60, 8, 8), dtype=np.uint8),
        "train_labels": np.tile(np.arange(4, dtype=np.uint8), 15),
        "test_images": rng.integers(0, 256, size=(24, 8, 8), dtype=np.uint8),
        "test_labels": np.tile(np.arange(4, dtype=np.uint8), 6),
    }
    raw.mkdir(parents=True, exist_ok=True)
    for role, arr in data.items():
        payload = idx_bytes(arr, 0x00000803 if arr.ndim == 3 else 0x00000801)
        (raw / IDX_FILES[role]).write_bytes(gzip.compress(payload) if IDX_FILES[role].endswith(".gz") else payload)
    return data


# --- PNG-folder archives -------------------------------------------------------------------------
def square_image(rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """RGBA image: a bright square on dark ground (normal)."""
    img = np.zeros((size, size, 4), np.uint8)
    x, y = rng.integers(1, size - 7, 2)
    img[y : y + 6, x : x + 6] = rng.integers(180, 255, 4)
    return img


def noise_image(rng: np.random.Generator, size: int = 16) -> np.ndarray:
    return rng.integers(0, 255, (size, size, 4), dtype=np.uint8)  # anomalous


def write_png_archive(root: Path, counts: tuple[int, int, int] = (120, 20, 20)) -> Path:
    """parts.tar.gz of 4-channel 16×16 PNGs: squares in train/normal and test/normal, noise in test/anomalous."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder, make, n in zip(("train/normal", "test/normal", "test/anomalous"), (square_image, square_image, noise_image), counts):
        (root / "parts" / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(make(rng), "RGBA").save(root / "parts" / folder / f"{i:03d}.png")
    archive = root / "parts.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root / "parts", arcname="parts")
    return archive


# --- windows of a series -------------------------------------------------------------------------
def sine_windows(n: int, seed: int, seq_len: int = 10, channels: int = 4) -> np.ndarray:
    """Phase-shifted sines with a random phase per window: float32 (n, seq_len, channels) in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    t = np.arange(seq_len)[None, :, None] * 0.6 + rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    return (0.5 + 0.4 * np.sin(t + np.arange(channels)[None, None, :]) + rng.normal(0, 0.01, size=(n, seq_len, channels))).astype(np.float32)
