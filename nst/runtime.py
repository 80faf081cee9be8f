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


_allocator_tuned = False


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    Style transfer allocates and frees the same large activation buffers every step; by default
    glibc unmaps blocks over 32 MiB and the next step pays page faults to map them again (VGG-19
    at 512 px on a 2-core CPU: about 40% of a step). Called by the CLI and the benchmarks; set
    ``NST_TUNE_MALLOC=0`` to skip. Returns True when the setting was applied.
    """
    global _allocator_tuned
    import ctypes
    import os
    import sys

    if _allocator_tuned or os.environ.get("NST_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return _allocator_tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): leave the allocator alone
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    applied = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1
    _allocator_tuned = bool(applied)
    return _allocator_tuned
