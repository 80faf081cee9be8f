"""Shared fixtures: generated images and seeded random-weight backbones (no network, no pretrained weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def make_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth random colour image (low-frequency pattern plus a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6, size=3)
        channels.append(0.5 + 0.4 * np.sin(2 * np.pi * (fx * x + fy * y) + phase))
    array = np.stack(channels, axis=2) + rng.normal(0, 0.05, size=(height, width, 3))
    return Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture
def content_image() -> Image.Image:
    return make_image(64, 64, seed=1)


@pytest.fixture
def style_image() -> Image.Image:
    return make_image(64, 64, seed=2)


@pytest.fixture(scope="session")
def vgg19_random():
    from nst.features import get_backbone

    return get_backbone("vgg19", "random", seed=0)


@pytest.fixture
def hub():
    """A fake Hugging Face Hub on 127.0.0.1 (tests/fake_hub.py), stopped after the test."""
    from fake_hub import FakeHub

    with FakeHub() as server:
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch, hub):
    """A clean environment: temp HF_HOME / TORCH_HOME, HF_ENDPOINT at the fake Hub, no weight overrides."""
    from nst import weights
    from fake_hub import point_client_at

    point_client_at(hub, monkeypatch, tmp_path)
    weights.clear_overrides()
    weights.clear_cache()
    yield tmp_path
    weights.clear_overrides()
    weights.clear_cache()
    weights.set_cache_size(weights.DEFAULT_CACHE_SIZE)
