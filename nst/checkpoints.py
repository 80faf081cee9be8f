"""Read state dicts without executing pickled code, and load them all-or-nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from nst.errors import WeightsError

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint as a flat ``{key: tensor}`` dict from safetensors or a weights-only torch file.

    Common wrappers (``{"state_dict": ...}``) and DataParallel ``module.`` prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"The weights file '{path}' does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise WeightsError(
            f"'{path.name}' is not a readable checkpoint (safetensors, or a PyTorch state dict saved "
            f"with plain tensors): {exc}"
        ) from None
    if isinstance(state, Mapping):
        for key in WRAPPER_KEYS:
            inner = state.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                state = inner
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"'{path.name}' does not hold a state dict of tensors.")
    out = {str(k): v for k, v in state.items()}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def mismatches(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], limit: int = 5
) -> list[str]:
    """Describe how ``state`` fails to fit ``expected``: missing keys, unexpected keys, wrong shapes."""
    problems: list[str] = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing:
        problems.append(f"missing {len(missing)} key(s), e.g. {', '.join(missing[:limit])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s), e.g. {', '.join(unexpected[:limit])}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es), e.g. {'; '.join(shapes[:limit])}")
    return problems


def load_exact(
    module: nn.Module, state: Mapping[str, torch.Tensor], what: str, ignore_prefixes: tuple[str, ...] = ()
) -> nn.Module:
    """Copy ``state`` into ``module`` only if every key and shape fits; otherwise raise and touch nothing.

    Keys starting with ``ignore_prefixes`` (e.g. a classifier head nobody uses) are left out on both sides.
    """

    def kept(d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in d.items() if not (ignore_prefixes and k.startswith(ignore_prefixes))}

    state = kept(state)
    expected = kept(module.state_dict())
    for key in expected:  # BatchNorm counters only matter for training; old checkpoints lack them
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    problems = mismatches(expected, state)
    if problems:
        raise WeightsError(f"The checkpoint does not fit {what}: " + "; ".join(problems) + ".")
    module.load_state_dict(state, strict=not ignore_prefixes)
    return module
