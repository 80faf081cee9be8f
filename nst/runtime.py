"""Device choice and seeding shared by every method."""

from __future__ import annotations

import torch

from nst.errors import ConfigError


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if isinstance(name, torch.device):
        return name
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Device '{name}' was asked for, but no CUDA GPU is available here; use --device cpu.")
    return device
