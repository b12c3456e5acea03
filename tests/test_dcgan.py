"""DCGAN networks: output shapes per image geometry, Radford et al. initialisation, geometry validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.dcgan import DCGANConfig, DCGANDetector
from models.dcgan_nets import DCGANNetwork, DCGANShape, Discriminator, Generator
from models.errors import GadflowError
from models.inputs import InputSpec
from models.settings import SettingsError


def dcgan_config(seed: int = 0) -> DCGANConfig:
    return DCGANConfig.from_dict({"device": "cpu", "network": {"latent_dim": 8, "base_channels": 4}, "training": {"seed": seed}})


@pytest.mark.parametrize("channels, size", [(1, 28), (4, 32), (3, 64)])
def test_output_shapes(channels, size):
    torch.manual_seed(0)
    shape = DCGANShape(channels=channels, size=size, latent_dim=8, base_channels=4)
    gen, disc = Generator(shape), Discriminator(shape)
    images = gen(torch.randn(2, 8))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh output
    logits = disc(images)
    assert logits.shape == (2,)
    top = shape.n_scales - 1
    assert disc.features(images).shape == (2, shape.width(top) * shape.start_size**2)


@pytest.mark.parametrize("size, n_scales, start", [(8, 1, 4), (12, 1, 6), (20, 2, 5), (28, 2, 7), (32, 3, 4), (36, 2, 9), (48, 3, 6), (64, 4, 4)])
def test_geometry_of_supported_sizes(size, n_scales, start):
    shape = DCGANShape(channels=1, size=size, latent_dim=4, base_channels=4)
    assert (shape.n_scales, shape.start_size) == (n_scales, start)
    assert start * 2**n_scales == size
    with torch.no_grad():
        gen, disc = Generator(shape).eval(), Discriminator(shape).eval()
        assert gen(torch.randn(1, 4)).shape == (1, 1, size, size)
        assert disc(torch.zeros(1, 1, size, size)).shape == (1,)


@pytest.mark.parametrize("size", [30, 6, 4, 10, 0])
def test_unsupported_sizes_are_refused(size):
    shape = DCGANShape(channels=1, size=size, latent_dim=8, base_channels=4)
    with pytest.raises(GadflowError, match=f"image size {size} not supported"):
        shape.n_scales
    with pytest.raises(GadflowError):
        Generator(shape)
    with pytest.raises(GadflowError):
        Discriminator(shape)
    with pytest.raises(GadflowError):
        DCGANDetector(dcgan_config(), InputSpec("image", (1, size, size)))


def layers(net: nn.Module, kinds) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kinds)]


@pytest.mark.parametrize("net_cls", [Generator, Discriminator])
def test_dcgan_initialisation(net_cls):
    """conv / linear ~ N(0, 0.02), biases 0; BatchNorm gamma ~ N(1, 0.02), beta 0 (PyTorch defaults differ on every count)."""
    torch.manual_seed(0)
    net = net_cls(DCGANShape(channels=1, size=28, latent_dim=16, base_channels=8))
    weighted = layers(net, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    assert len(weighted) >= 3
    big = [m for m in weighted if m.weight.numel() >= 1000]
    assert big, "no layer large enough for a std estimate"
    for m in big:
        std, mean = m.weight.std().item(), m.weight.mean().item()
        assert 0.015 < std < 0.025, f"{m}: weight std {std:.4f}"
        assert abs(mean) < 0.005, f"{m}: weight mean {mean:.4f}"
    pooled = torch.cat([m.weight.reshape(-1) for m in weighted])
    assert 0.018 < pooled.std().item() < 0.022
    biases = [m.bias for m in weighted if m.bias is not None]
    assert biases, "expected at least one conv / linear layer with a bias"
    for b in biases:
        assert torch.count_nonzero(b) == 0

    norms = layers(net, nn.BatchNorm2d)
    assert norms
    gamma = torch.cat([m.weight.detach() for m in norms])
    assert abs(gamma.mean().item() - 1.0) < 0.015
    assert 0.005 < gamma.std().item() < 0.04  # drawn, not the default constant 1
    for m in norms:
        assert torch.count_nonzero(m.bias) == 0


def test_initialisation_depends_on_the_seed_only():
    cfg, inputs = dcgan_config(seed=3), InputSpec("image", (1, 8, 8))
    torch.manual_seed(1)
    a = DCGANDetector(cfg, inputs)
    torch.manual_seed(2)
    b = DCGANDetector(cfg, inputs)
    c = DCGANDetector(dcgan_config(seed=4), inputs)
    assert a.model_id == b.model_id
    assert a.model_id != c.model_id
    for name, net in a.networks().items():
        for key, tensor in net.state_dict().items():
            assert torch.equal(tensor, b.networks()[name].state_dict()[key]), (name, key)


def test_unknown_discriminator_norm_is_refused():
    with pytest.raises(GadflowError, match="discriminator_norm"):
        Discriminator(DCGANShape(channels=1, size=16, latent_dim=4, base_channels=4, discriminator_norm="layer"))
    with pytest.raises(SettingsError, match="discriminator_norm"):  # the config refuses it before any network is built
        DCGANNetwork(discriminator_norm="layer")
