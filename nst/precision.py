"""Precision of the gram-matrix products: exact float32, or fast hardware modes with float32 accumulation.

``fast`` multiplies with bfloat16 inputs on CPUs that have native bfloat16 units (AMX or
AVX512-BF16, through oneDNN) and with TF32 on CUDA GPUs of compute capability 8.0 or newer; the
sums are accumulated and returned in float32. A gram then differs from the exact one by about
1e-4 of its largest entry, far below what changes a stylised image, and costs 2-4x less on those
machines. ``auto`` picks ``fast`` where the hardware has it and ``exact`` elsewhere. Only the
products inside ``products`` change: convolutions and everything else stay float32.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

from nst.errors import ConfigError

PRECISIONS = ("auto", "exact", "fast")
_switch_lock = threading.Lock()  # the backend flag is process-wide: one product at a time flips it


def _cpu_has_native_bf16() -> bool:
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        native = any(getattr(torch.cpu, name, lambda: False)() for name in probes)
        return native and torch.backends.mkldnn.is_available()
    except RuntimeError:  # a build without the probes' backing library
        return False


def fast_supported(device: torch.device) -> bool:
    """Whether ``device`` has fast reduced-precision matrix units that ``fast`` uses."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    return False


def check_precision(precision: str) -> None:
    """Raise ConfigError unless ``precision`` is one of PRECISIONS (no device needed)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown gram precision '{precision}'. Choose one of: {', '.join(PRECISIONS)}.")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``fast`` or ``exact`` for ``device``; ``fast`` where unsupported is an error."""
    check_precision(precision)
    if precision == "auto":
        return "fast" if fast_supported(device) else "exact"
    if precision == "fast" and not fast_supported(device):
        raise ConfigError(
            f"Gram precision 'fast' needs a CPU with bfloat16 units (AMX or AVX512-BF16) or a CUDA GPU of "
            f"compute capability 8.0 or newer; {device} has neither. Use 'exact' or 'auto'."
        )
    return precision


@contextmanager
def products(precision: str, device: torch.device) -> Iterator[None]:
    """Run the matrix products inside the block at ``precision`` (``exact`` or ``fast``), then restore."""
    if precision != "fast":
        yield
        return
    backend, mode = (
        (torch.backends.cuda.matmul, "tf32") if device.type == "cuda" else (torch.backends.mkldnn.matmul, "bf16")
    )
    with _switch_lock:
        previous = backend.fp32_precision
        backend.fp32_precision = mode
        try:
            yield
        finally:
            backend.fp32_precision = previous
