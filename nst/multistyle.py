"""One network for several styles: conditional instance normalisation (Dumoulin et al. 2017).

Every normalisation layer holds one scale/shift row per style (``in1.weight`` has shape
``styles x channels``); the convolutions are shared. At inference a style is a weight vector over
the styles: the rows are mixed with it, so ``(1, 0, ...)`` is exactly the first style and
``(0.5, 0.5)`` blends two. Saved as safetensors in the ``"autoart-multistyle"`` format.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nst.errors import ConfigError
from nst.johnson import TransformerNet
from nst.progress import CancelToken, ProgressCallback

if TYPE_CHECKING:
    from nst.johnson_train import JohnsonTrainConfig
    from nst.training import TrainResult


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose scale and shift are a weighted mix of per-style rows.

    ``mix`` (a non-persistent buffer) is the style weight vector (``S``) or one per sample (``B x S``).
    """

    def __init__(self, channels: int, num_styles: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_styles, channels))
        self.bias = nn.Parameter(torch.zeros(num_styles, channels))
        mix = torch.zeros(num_styles)
        mix[0] = 1.0
        self.register_buffer("mix", mix, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.mix @ self.weight
        beta = self.mix @ self.bias
        if gamma.dim() == 1:  # one style vector: exactly InstanceNorm2d(affine=True)'s computation
            return F.instance_norm(x, weight=gamma, bias=beta, eps=self.eps)
        y = F.instance_norm(x, eps=self.eps)
        return y * gamma[:, :, None, None] + beta[:, :, None, None]


class MultiStyleNet(TransformerNet):
    """The Johnson network with conditional instance norm; ``style_names`` label the rows."""

    def __init__(self, num_styles: int, style_names: Sequence[str] | None = None,
                 upsample: str = "nearest", channel_order: str = "rgb"):
        if num_styles < 1:
            raise ConfigError("A multi-style network needs at least one style.")
        super().__init__(upsample, channel_order, functools.partial(ConditionalInstanceNorm2d, num_styles=num_styles))
        names = list(style_names) if style_names else [f"style_{i + 1}" for i in range(num_styles)]
        if len(names) != num_styles:
            raise ConfigError(f"{len(names)} style names given for {num_styles} styles.")
        self.num_styles = num_styles
        self.style_names = names

    def norms(self) -> list[ConditionalInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "styles": "|".join(self.style_names)}


def build_multistyle_net(num_styles: int, names: Sequence[str] | None = None,
                         upsample: str = "nearest", channel_order: str = "rgb") -> MultiStyleNet:
    return MultiStyleNet(num_styles, names, upsample, channel_order)


def style_vector(net: MultiStyleNet, weights: Sequence[float] | int | str) -> torch.Tensor:
    """A style index, a style name or per-style weights -> a normalised weight vector (sums to 1)."""
    if isinstance(weights, str):
        if weights not in net.style_names:
            raise ConfigError(f"Unknown style '{weights}'; this network knows: {', '.join(net.style_names)}.")
        weights = net.style_names.index(weights)
    if isinstance(weights, int):
        if not 0 <= weights < net.num_styles:
            raise ConfigError(f"Style index {weights} is out of range (0..{net.num_styles - 1}).")
        vector = torch.zeros(net.num_styles)
        vector[weights] = 1.0
        return vector
    values = [float(w) for w in weights]
    if len(values) != net.num_styles:
        raise ConfigError(f"{len(values)} style weights given; this network has {net.num_styles} styles.")
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError("Style weights must be non-negative and not all zero.")
    total = sum(values)
    return torch.tensor([v / total for v in values])


def set_style_weights(net: MultiStyleNet, weights: Sequence[float] | int | str | torch.Tensor) -> None:
    """Select a style or a blend for the next passes (a tensor ``B x S`` sets one mix per sample)."""
    if isinstance(weights, torch.Tensor) and weights.dim() == 2:
        vector = weights
    else:
        vector = style_vector(net, weights.tolist() if isinstance(weights, torch.Tensor) else weights)
    for norm in net.norms():
        norm.mix = vector.to(device=norm.weight.device, dtype=norm.weight.dtype)


def extract_style(net: MultiStyleNet, index: int) -> TransformerNet:
    """A single-style network holding row ``index`` of every conditional norm (an "autoart" network)."""
    single = TransformerNet(net.upsample, net.channel_order)
    state = {}
    for key, value in net.state_dict().items():
        state[key] = value[index].clone() if value.dim() == 2 and key.split(".")[-2].startswith("in") else value
    single.load_state_dict(state)
    return single.to(next(net.parameters()).device).eval()


def save_multistyle(net: MultiStyleNet, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the network as safetensors, format ``autoart-multistyle``, with its style names."""
    from nst.training import save_final

    return save_final(net, path, {**(metadata or {}), "format": "autoart-multistyle", **net.describe()})


def style_names_for(paths: Sequence[str]) -> list[str]:
    """Style labels from image file names (``starry_night.jpg`` -> ``starry_night``), made unique."""
    names: list[str] = []
    for path in paths:
        stem = Path(path).stem or "style"
        name, n = stem, 2
        while name in names:
            name, n = f"{stem}_{n}", n + 1
        names.append(name)
    return names


def train_multistyle(
    config: "JohnsonTrainConfig", progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> "TrainResult":
    """Train (or resume) one network for all ``config.styles``; the steps cycle through the styles.

    The result is ``OUTPUT_DIR/multistyle.safetensors`` (format ``autoart-multistyle``).
    """
    from nst.johnson_train import run_training

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = MultiStyleNet(len(config.styles), style_names_for(config.styles), config.upsample, "rgb")

    def choose(step: int) -> int:
        index = step % net.num_styles
        set_style_weights(net, index)
        return index

    def save(model: TransformerNet, path: Path, metadata: dict) -> Path:
        return save_multistyle(model, path, metadata)  # type: ignore[arg-type]

    return run_training(config, net, choose, "multistyle.safetensors", "autoart-multistyle", save, progress, cancel)
