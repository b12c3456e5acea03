"""Generate stage: the RGB-D boxes-vs-spheres set (normal = boxes, anomalies = spheres).

Each frame is a ray-cast render through a pinhole camera at the origin looking along +z:
one object with a random size, pose (position, rotation) and colour, Lambert-shaded by a fixed light,
on a black background. Channels: R, G, B and depth, the camera-space z of the visible surface mapped
linearly from [near, far] to [0, 255] (background = far = 255). Depth and shading come from the same
ray hit, so depth is consistent with the shape by construction.
Output: ``train_normal.npy``, ``test_normal.npy``, ``test_anomalous.npy``, each uint8 (N, H, W, 4): the rgbd_npy format,
which ``read_images`` reads (for these frames and for any declared rgbd_npy dataset).
"""

from __future__ import annotations

import logging
from pathlib import Path

from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from models.errors import GadflowError
from models.storage import staged_dir

from ..adapters.image import ImageSource, check_files
from ..settings import Strict
from .archives import SPLIT_ROLES, folder_source

log = logging.getLogger(__name__)

NEAR, FAR = 1.5, 7.0  # depth range mapped to 0..255 (rendered surfaces measured at about z = 1.9 to 6.2)
FOCAL = 1.6  # focal length in units of half the image width (about 64° field of view)
LIGHT = np.array([-0.45, -0.6, 0.66]) / np.linalg.norm([-0.45, -0.6, 0.66])  # direction the light travels
AMBIENT = 0.25


class GenerateParams(Strict):
    """The generated RGB-D set: boxes (normal) vs spheres (anomalous), ray-cast with depth."""

    kind: Literal["boxes_vs_spheres"] = "boxes_vs_spheres"
    size: Annotated[int, Field(ge=8, le=256, multiple_of=4)] = 32
    n_train: Annotated[int, Field(ge=2, le=1_000_000)] = 3000
    n_test_normal: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    n_test_anomalous: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    seed: int = 0


def camera_rays(size: int) -> np.ndarray:
    """Unit ray directions through pixel centres: (size, size, 3), row = image y (down), col = x."""
    coords = (np.arange(size) + 0.5) / size * 2 - 1  # (-1, 1)
    x, y = np.meshgrid(coords, coords)
    d = np.stack([x / FOCAL, y / FOCAL, np.ones_like(x)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3×3 rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def hit_box(rays: np.ndarray, centre: np.ndarray, half: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test in the box frame -> (t (H, W), inf = miss; surface normal (H, W, 3) in camera space)."""
    o = -centre @ rot  # camera origin in box frame (rot columns = box axes)
    d = rays @ rot  # (H, W, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    t_near_axes = np.minimum(t1, t2)
    t_near = t_near_axes.max(-1)
    t_far = np.maximum(t1, t2).min(-1)
    hit = (t_near <= t_far) & (t_near > 0)
    axis = t_near_axes.argmax(-1)  # the face the ray enters through
    normal_box = np.zeros_like(d)
    np.put_along_axis(normal_box, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
    return np.where(hit, t_near, np.inf), normal_box @ rot.T


def hit_sphere(rays: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """|t·d − c|² = r² -> (t (H, W), inf = miss; outward normal (H, W, 3))."""
    b = rays @ centre
    disc = b**2 - (centre @ centre - radius**2)
    t = np.where(disc >= 0, b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t = np.where(t > 0, t, np.inf)
    normal = (rays * np.where(np.isfinite(t), t, 0)[..., None] - centre) / radius
    return t, normal


def shade(rays: np.ndarray, t: np.ndarray, normal: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """-> uint8 (H, W, 4): Lambert-shaded RGB and linear depth; background black and far."""
    hit = np.isfinite(t)
    lambert = np.clip(normal @ -LIGHT, 0, 1)
    rgb = colour[None, None, :] * (AMBIENT + (1 - AMBIENT) * lambert)[..., None]
    depth = np.where(hit, rays[..., 2] * np.where(hit, t, 0), FAR)  # camera-space z
    frame = np.zeros(t.shape + (4,))
    frame[..., :3] = np.where(hit[..., None], rgb * 255, 0)
    frame[..., 3] = (np.clip(depth, NEAR, FAR) - NEAR) / (FAR - NEAR) * 255
    return np.rint(frame).astype(np.uint8)


def render(kind: str, rng: np.random.Generator, rays: np.ndarray) -> np.ndarray:
    """One frame of a random box or sphere, uint8 (H, W, 4).

    Both classes draw the same random half-extents h. A sphere gets the radius whose silhouette area
    π r² equals the box's mean silhouette area over orientations (Cauchy: surface / 4 = 2(h₁h₂ + h₂h₃ + h₁h₃)),
    so the two classes differ in shape and shading, not in size: a detector cannot tell them apart
    by how many pixels they cover.
    """
    centre = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.7), rng.uniform(3.5, 5.0)])
    colour = rng.uniform(0.35, 1.0, 3)
    half = rng.uniform(0.45, 1.1, 3)
    rotation = random_rotation(rng)  # drawn for spheres too, so both classes consume the same random stream
    if kind == "box":
        t, normal = hit_box(rays, centre, half, rotation)
    else:
        radius = np.sqrt(2 * (half[0] * half[1] + half[1] * half[2] + half[0] * half[2]) / np.pi)
        t, normal = hit_sphere(rays, centre, radius)
    return shade(rays, t, normal, colour)


def render_set(kind: str, n: int, size: int, seed: int, stream: int) -> np.ndarray:
    """n frames, uint8 (n, H, W, 4); frame i depends on (seed, stream, i) only."""
    rays = camera_rays(size)
    out = np.empty((n, size, size, 4), np.uint8)
    for i in tqdm(range(n), desc=f"render {kind}s", unit="frame", leave=False, disable=None):
        out[i] = render(kind, np.random.default_rng([seed, stream, i]), rays)
    return out


def read_rgbd_npy(path: Path) -> np.ndarray:
    """N×H×W×4 uint8 .npy (R, G, B, depth) -> uint8 (N, 4, H, W). Never unpickles."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GadflowError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 4 or arr.shape[-1] != 4:
        raise GadflowError(f"{path}: expected RGB-D frames of shape (N, H, W, 4), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise GadflowError(f"{path}: expected uint8 values, got {arr.dtype} (scale depth to 0..255 first)")
    return np.ascontiguousarray(np.asarray(arr).transpose(0, 3, 1, 2))


def read_images(files: dict[str, Path], spec) -> ImageSource:
    """The roles train_normal, test_normal, test_anomalous (the rendered frames, or an rgbd_npy dataset's files)
    -> images (N, 4, H, W), class 0 normal, 1 anomalous."""
    check_files(files)
    return folder_source({folder: read_rgbd_npy(files[role]) for folder, role in SPLIT_ROLES.items()})


def generated_files(raw: Path) -> dict[str, Path]:
    """The files the generate stage writes into ``raw``, by role."""
    return {role: raw / f"{role}.npy" for role in SPLIT_ROLES.values()}


def generate_rgbd(params: GenerateParams, out_dir: Path) -> Path:
    """Render the boxes-vs-spheres splits into ``out_dir`` (one .npy per split, (N, H, W, 4) uint8)."""
    splits = {
        "train_normal": render_set("box", params.n_train, params.size, params.seed, 0),
        "test_normal": render_set("box", params.n_test_normal, params.size, params.seed, 1),
        "test_anomalous": render_set("sphere", params.n_test_anomalous, params.size, params.seed, 2),
    }
    with staged_dir(out_dir) as staging:
        for role, path in generated_files(staging).items():
            np.save(path, splits[role])
    log.info("rgbd: %s frames of %d×%d×4 in %s", {k: len(v) for k, v in splits.items()}, params.size, params.size, out_dir)
    return out_dir
