"""The generated RGB-D boxes-vs-spheres set, and the loaders for user RGB-D frames."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.errors import GadflowError
from tasks.adapters import load_prepared
from tasks.sources.download import DatasetSpec
from tasks.sources.rgbd import FAR, NEAR, GenerateParams, camera_rays, generate_rgbd, hit_box, hit_sphere, read_rgbd_npy, render_set
from tasks.sources.rgbd_png import read_rgbd_png_pairs
from tasks.steps.prepare import PrepareParams, prepare_dataset


def depth_code(z: float) -> float:
    return (z - NEAR) / (FAR - NEAR) * 255


def test_sphere_depth_matches_geometry():
    rays = camera_rays(33)  # odd size: a pixel centre on the optical axis
    t, _ = hit_sphere(rays, np.array([0.0, 0.0, 5.0]), 1.0)
    z = rays[..., 2] * t
    assert z[16, 16] == pytest.approx(4.0)  # nearest point: centre z - radius
    assert np.nanmin(np.where(np.isfinite(z), z, np.nan)) == pytest.approx(4.0, abs=1e-6)
    assert not np.isfinite(t[0, 0])  # corners miss


def test_box_front_face_depth_matches_geometry():
    rays = camera_rays(33)
    t, normal = hit_box(rays, np.array([0.0, 0.0, 5.0]), np.array([1.0, 1.0, 0.5]), np.eye(3))
    z = rays[..., 2] * t
    assert z[16, 16] == pytest.approx(4.5)  # front face at centre z - half depth
    assert np.allclose(normal[16, 16], [0, 0, -1])  # facing the camera
    hit = np.isfinite(t)
    assert np.allclose(z[hit], 4.5)  # a face parallel to the image plane has constant depth


def test_generated_frames_are_seeded_and_have_consistent_depth():
    boxes = render_set("box", 20, 32, seed=0, stream=0)
    assert boxes.shape == (20, 32, 32, 4) and boxes.dtype == np.uint8
    assert np.array_equal(boxes[:5], render_set("box", 5, 32, seed=0, stream=0))  # frame i depends on i only
    assert not np.array_equal(boxes, render_set("box", 20, 32, seed=1, stream=0))
    rgb, depth = boxes[..., :3], boxes[..., 3]
    background = rgb.max(-1) == 0
    assert (depth[background] == 255).all()  # far plane
    assert (depth[~background] < 255).all() and (depth[~background] > 0).all()  # objects lie inside (near, far)
    assert (~background).sum(axis=(1, 2)).min() > 10  # every frame shows its object


def test_generate_and_prepare_give_both_classes(tmp_path):
    params = GenerateParams(size=16, n_train=40, n_test_normal=6, n_test_anomalous=4, seed=3)
    raw = generate_rgbd(params, tmp_path / "raw" / "rgbd")
    data = load_prepared(prepare_dataset("rgbd", PrepareParams(source="rgbd", calibration_fraction=0.25), None, raw, tmp_path / "prepared"))
    assert data.schema["shape"] == [4, 16, 16]
    assert (len(data.train), len(data.calib), len(data.test)) == (30, 10, 10)
    assert data.test_labels.tolist() == [0] * 6 + [1] * 4
    spheres = np.asarray(data.test[6:])
    assert (spheres[:, 3] < 255).any(axis=(1, 2)).all()


# --- user-provided RGB-D frames ------------------------------------------------------------------
def test_npy_loader_checks_shape_and_dtype(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((3, 8, 8, 4), np.uint8))
    assert read_rgbd_npy(good).shape == (3, 4, 8, 8)
    np.save(tmp_path / "three.npy", np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(GadflowError, match=r"three.npy: expected RGB-D frames of shape \(N, H, W, 4\)"):
        read_rgbd_npy(tmp_path / "three.npy")
    np.save(tmp_path / "float.npy", np.zeros((3, 8, 8, 4), np.float32))
    with pytest.raises(GadflowError, match="float.npy: expected uint8"):
        read_rgbd_npy(tmp_path / "float.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GadflowError, match="objects.npy: not a readable"):
        read_rgbd_npy(tmp_path / "objects.npy")  # never unpickled


def write_pair(folder, frame_id, size=(8, 8), depth_size=None, rgb_mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new(rgb_mode, size, 128).save(folder / f"{frame_id}_rgb.png")
    Image.fromarray(np.full((depth_size or size)[::-1], 1500, np.uint16)).save(folder / f"{frame_id}_depth.png")


def test_png_pairs_load_with_declared_depth_range(tmp_path):
    write_pair(tmp_path, "a")
    write_pair(tmp_path, "b")
    frames = read_rgbd_png_pairs(tmp_path, (1000, 2000))
    assert frames.shape == (2, 4, 8, 8)
    assert (frames[:, 3] == 128).all()  # 1500 in [1000, 2000] -> 127.5 -> 128


@pytest.mark.parametrize("case, message", [
    ("depth_size", "a_depth.png: depth is 4×4 but its colour frame is 8×8"),
    ("unpaired", "do not pair up"),
    ("rgba", "a_rgb.png: colour frame must be 8-bit RGB"),
    ("sizes", "b_rgb.png: frame size 6×6 differs"),
])
def test_png_pairs_errors_name_the_file(tmp_path, case, message):
    if case == "depth_size":
        write_pair(tmp_path, "a", depth_size=(4, 4))
    elif case == "unpaired":
        write_pair(tmp_path, "a")
        Image.new("RGB", (8, 8)).save(tmp_path / "b_rgb.png")
    elif case == "rgba":
        write_pair(tmp_path, "a", rgb_mode="RGBA")
    else:
        write_pair(tmp_path, "a")
        write_pair(tmp_path, "b", size=(6, 6))
    with pytest.raises(GadflowError, match=message):
        read_rgbd_png_pairs(tmp_path, (0, 5000))


def test_rgbd_png_needs_a_depth_range():
    files = {"archive": {"file": "f.tar.gz", "sha256": "0" * 64, "urls": ["file:///tmp/f.tar.gz"]}}
    with pytest.raises(Exception, match="depth_range"):
        DatasetSpec(format="rgbd_png", files=files)
    with pytest.raises(Exception, match="min < max"):
        DatasetSpec(format="rgbd_png", files=files, depth_range=(5, 1))
