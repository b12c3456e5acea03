"""The latent-search engine against its oracle (models/latent_search_reference.py), and its guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.dcgan_nets import DCGANShape, Discriminator, Generator
from models.errors import GadflowError
from models.inputs import InputSpec
from models.latent_gans import ADGANConfig, ADGANDetector, AnoGANConfig, AnoGANDetector, mse_loss
from models.latent_search import LatentSearch, LatentSearchConfig, initial_latents, sample_keys
from models.latent_search_reference import reference_search
from models.settings import SettingsError
from tests.helpers.detectors import merged

SHAPE = DCGANShape(channels=2, size=8, latent_dim=4, base_channels=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(SHAPE).eval()


@pytest.fixture(scope="module")
def targets() -> torch.Tensor:
    return torch.rand(5, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1


def anogan_style_loss(discriminator: Discriminator, lam: float = 0.1):
    n = 2 * 8 * 8

    def loss(generated, target):
        return (1 - lam) * (generated.flatten(1) - target[:, :n]).abs().sum(1) + lam * (discriminator.features(generated) - target[:, n:]).abs().sum(1)

    return loss


@pytest.mark.parametrize("lr_theta", [0.0, 1e-3, 6e-9])
def test_batched_engine_equals_reference(generator, targets, lr_theta):
    cfg = LatentSearchConfig(n_seeds=3, steps=7, lr_z=5e-2, lr_theta=lr_theta)
    z0 = initial_latents(range(len(targets)), 3, SHAPE.latent_dim, seed=0)
    batched = LatentSearch(generator, SHAPE.latent_dim, mse_loss, cfg).search(targets, z0).double()
    oracle = reference_search(generator, mse_loss, targets, z0, cfg)
    rel = ((batched - oracle).abs() / oracle.abs()).max().item()
    assert rel <= 1e-5, rel


def test_theta_updates_change_the_result(generator, targets):
    z0 = initial_latents(range(len(targets)), 3, SHAPE.latent_dim, seed=0)
    frozen = LatentSearch(generator, SHAPE.latent_dim, mse_loss, LatentSearchConfig(steps=7, lr_theta=0.0)).search(targets, z0)
    tuned = LatentSearch(generator, SHAPE.latent_dim, mse_loss, LatentSearchConfig(steps=7, lr_theta=1e-2)).search(targets, z0)
    assert (tuned < frozen).float().mean() > 0.5  # fine-tuning θ per sample fits the targets better


def test_anogan_loss_equals_reference(generator, targets):
    torch.manual_seed(2)
    disc = Discriminator(SHAPE).eval()
    for p in disc.parameters():
        p.requires_grad_(False)
    loss = anogan_style_loss(disc)
    full_targets = torch.cat([targets.flatten(1), disc.features(targets)], 1)
    cfg = LatentSearchConfig(n_seeds=2, steps=5, lr_theta=0.0)
    z0 = initial_latents(range(len(targets)), 2, SHAPE.latent_dim, seed=3)
    batched = LatentSearch(generator, SHAPE.latent_dim, loss, cfg).search(full_targets, z0).double()
    oracle = reference_search(generator, loss, full_targets, z0, cfg)
    assert ((batched - oracle).abs() / oracle.abs()).max().item() <= 1e-5


@pytest.mark.parametrize("lr_theta", [0.0, 1e-3])
def test_shared_generator_is_never_modified(generator, targets, lr_theta):
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    flags = [p.requires_grad for p in generator.parameters()]
    generator.train()
    LatentSearch(generator, SHAPE.latent_dim, mse_loss, LatentSearchConfig(steps=3, lr_theta=lr_theta)).search(targets, initial_latents(range(5), 3, 4, 0))
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert [p.requires_grad for p in generator.parameters()] == flags
    assert generator.training  # mode restored
    assert all(p.grad is None for p in generator.parameters())
    generator.eval()


def test_channels_last_mode_is_close_to_the_reference_and_leaves_the_generator_alone(generator, targets):
    """The optional fast mode trades bit-comparability for speed: close to the oracle, never exact by promise."""
    cfg = LatentSearchConfig(n_seeds=3, steps=7, lr_theta=0.0, channels_last=True)
    z0 = initial_latents(range(len(targets)), 3, SHAPE.latent_dim, seed=0)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    fast = LatentSearch(generator, SHAPE.latent_dim, mse_loss, cfg).search(targets, z0).double()
    oracle = reference_search(generator, mse_loss, targets, z0, LatentSearchConfig(n_seeds=3, steps=7, lr_theta=0.0))
    assert ((fast - oracle).abs() / oracle.abs()).max().item() <= 1e-3
    assert all(torch.equal(before[k], v) and v.is_contiguous() for k, v in generator.state_dict().items())


def test_starts_depend_on_sample_content_only():
    images = np.random.default_rng(0).integers(0, 255, (6, 2, 8, 8), dtype=np.uint8)
    keys = sample_keys(images)
    assert len(set(keys.tolist())) == 6
    assert sample_keys(images[::-1])[::-1].tolist() == keys.tolist()
    a = initial_latents(keys, 3, 4, seed=0)
    b = initial_latents(keys[[2, 0]], 3, 4, seed=0)
    assert torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])
    assert not torch.equal(a, initial_latents(keys, 3, 4, seed=1))


def test_chunk_size_follows_memory_budget_and_caps(generator):
    def pairs(**kw):
        return LatentSearch(generator, 4, mse_loss, LatentSearchConfig(**kw)).pairs_per_chunk(torch.device("cpu"))

    small, medium = pairs(memory_budget_mb=0.5, lr_theta=0.0), pairs(memory_budget_mb=2, lr_theta=0.0)
    assert 1 <= small < medium < 768  # memory-bound
    no_cap = dict(max_pairs_per_chunk=10_000_000, max_pairs_per_chunk_theta=10_000_000)  # the largest caps a config allows
    assert pairs(memory_budget_mb=2, lr_theta=1e-3, **no_cap) < pairs(memory_budget_mb=2, lr_theta=0.0, **no_cap)  # θ copies cost memory
    assert pairs(memory_budget_mb=10_000, lr_theta=0.0, max_pairs_per_chunk=100) == 100
    assert pairs(memory_budget_mb=10_000, lr_theta=1e-3, max_pairs_per_chunk_theta=7) == 7


# --- detectors ---------------------------------------------------------------------------------
def squares(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 1, 8, 8): a bright 3×3 square on black, at random places (the normal class)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, 8, 8), np.uint8)
    for img, (r, c) in zip(out, rng.integers(0, 6, (n, 2))):
        img[0, r : r + 3, c : c + 3] = 255
    return out


SMALL = {"device": "cpu", "network": {"latent_dim": 4, "base_channels": 8}, "training": {"epochs": 30, "batch_size": 32, "lr_g": 2e-3, "lr_d": 2e-3},
         "search": {"n_seeds": 2, "steps": 10, "lr_z": 0.1, "lr_theta": 0.0, "memory_budget_mb": 4}}
SQUARES = InputSpec("image", (1, 8, 8))


def small_config(changes: dict | None = None, config_cls=ADGANConfig):
    return config_cls.from_dict(merged(SMALL, changes or {}))


@pytest.fixture(scope="module")
def adgan() -> ADGANDetector:
    detector = ADGANDetector(small_config(), SQUARES)
    detector.fit(squares(128), progress=False)
    return detector


def test_adgan_scores_off_manifold_input_higher(adgan):
    normal = adgan.score(squares(16, seed=5))
    noise = adgan.score(np.random.default_rng(0).integers(0, 255, (16, 1, 8, 8), dtype=np.uint8))
    assert np.median(noise) > np.quantile(normal, 0.9)


def test_scores_are_deterministic_and_independent_of_chunking(adgan):
    images = squares(24, seed=7)
    first = adgan.score(images)
    assert np.array_equal(first, adgan.score(images))
    tiny_chunks = ADGANDetector(small_config({"search": {"memory_budget_mb": 0.01}}), SQUARES)
    tiny_chunks.generator.load_state_dict(adgan.generator.state_dict())
    tiny_chunks.discriminator.load_state_dict(adgan.discriminator.state_dict())
    assert tiny_chunks.scorer().engine().samples_per_chunk(torch.device("cpu")) < len(images)
    np.testing.assert_allclose(tiny_chunks.score(images), first, rtol=1e-5)
    np.testing.assert_allclose(adgan.score(images[::-1])[::-1], first, rtol=1e-5)  # order does not matter


def test_anogan_refuses_theta_updates():
    with pytest.raises(SettingsError, match=r"search: anogan keeps the generator frozen, so lr_theta must be 0 \(got 0.001\)"):
        small_config({"search": {"lr_theta": 1e-3}}, AnoGANConfig)
    assert issubclass(SettingsError, GadflowError)
    assert small_config({"search": {"lr_theta": 1e-3}}).search.lr_theta == 1e-3  # ADGAN tunes θ


def test_anogan_scores_off_manifold_input_higher(adgan):
    anogan = AnoGANDetector(small_config(config_cls=AnoGANConfig), SQUARES)
    anogan.generator.load_state_dict(adgan.generator.state_dict())
    anogan.discriminator.load_state_dict(adgan.discriminator.state_dict())
    normal = anogan.score(squares(16, seed=5))
    noise = anogan.score(np.random.default_rng(0).integers(0, 255, (16, 1, 8, 8), dtype=np.uint8))
    assert np.median(noise) > np.quantile(normal, 0.9)


def test_search_trajectory_frames_and_figure(adgan, tmp_path):
    from tasks.reports.plots import search_trajectory

    image = np.random.default_rng(3).integers(0, 255, (1, 1, 8, 8), dtype=np.uint8)
    low = adgan.search_trajectory(image, lr_theta=0.0)
    high = adgan.search_trajectory(image, lr_theta=5e-2)
    assert low.shape == high.shape == (adgan.config.search.steps + 1, 1, 8, 8) and low.dtype == np.uint8
    assert np.array_equal(low[0], high[0])  # same start z0, same θ before the first update
    assert not np.array_equal(low[-1], high[-1])  # θ updates change what the search produces
    path = search_trajectory(image, {"low": low, "high": high}, tmp_path / "trajectory.png", "test")
    assert path.stat().st_size > 1000


# --- encoder warm start ----------------------------------------------------------------------------------
def warm_detector(warm: bool, kind=ADGANDetector) -> ADGANDetector:
    """A GAN trained long enough that its samples vary with z (bright squares at varying places)."""
    cfg = kind.config_cls.from_dict({"device": "cpu", "network": {"latent_dim": 4, "base_channels": 8},
                                     "training": {"epochs": 8, "batch_size": 16, "n_fixed_samples": 4},
                                     "search": {"n_seeds": 2, "steps": 4, "lr_z": 0.05, "lr_theta": 0.0},
                                     "warm_start": {"steps": 300} if warm else None})
    det = kind(cfg, InputSpec("image", (1, 16, 16)))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, size=(128, 1, 16, 16)).astype(np.uint8)
    for img, (r, c) in zip(images, rng.integers(2, 11, size=(128, 2))):
        img[0, r : r + 4, c : c + 4] = 230
    det.fit(images, progress=False)
    return det


@pytest.mark.parametrize("kind", [ADGANDetector, AnoGANDetector])
def test_warm_start_puts_restart_zero_at_the_encoding_and_leaves_the_others(kind):
    cold, warm = warm_detector(False, kind), warm_detector(True, kind)
    assert "encoder" in warm.networks() and "encoder" not in cold.networks()
    images = warm.sample(6, seed=3)
    _, z0_warm = warm.scorer().search_inputs(images, n_seeds=2)
    _, z0_cold = cold.scorer().search_inputs(images, n_seeds=2)
    with torch.no_grad():
        encoded = warm.encoder(warm.to_model_space(images))
    torch.testing.assert_close(z0_warm[:, 0], encoded)
    torch.testing.assert_close(z0_warm[:, 1], z0_cold[:, 1])  # the other restarts are the seeded random draws
    assert torch.equal(warm.generator.state_dict()["project.0.weight"], cold.generator.state_dict()["project.0.weight"])  # same GAN


def test_warm_start_inverts_the_generator_better_than_a_random_start():
    """On G's own samples x = G(z*), E(x) should land nearer z* than a random draw, so the searches starting
    there end with a lower loss (a label-free property: no real or test data)."""
    cold, warm = warm_detector(False), warm_detector(True)
    images = warm.sample(64, seed=5)
    warm_losses, cold_losses = warm.search_losses(images), cold.search_losses(images)
    assert warm_losses[:, 0].mean() < 0.1 * cold_losses[:, 0].mean()
    np.testing.assert_array_equal(warm_losses[:, 1], cold_losses[:, 1])


def test_warm_start_model_round_trip(tmp_path):
    from models.registry import load_detector

    det = warm_detector(True)
    det.save(tmp_path)
    images = det.sample(5, seed=1)
    np.testing.assert_array_equal(load_detector(tmp_path, device="cpu").score(images), det.score(images))
