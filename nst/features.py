"""The one feature-extraction path: every backbone unrolled into named steps that can be tapped.

A backbone is a flat list of steps (a module to run, or the start/end of a residual skip). Every
step can carry names; ``FeatureNet(x, layers)`` runs the net once, returns exactly the requested
activations and stops after the deepest one. Gatys, Johnson/AdaIN training losses, metrics and
network dissection all go through here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

import torch
import torchvision.models as tvm
from torch import nn

from nst.checkpoints import load_exact, read_state_dict
from nst.errors import ConfigError, ImageError, LayerError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WeightsSpec = Union[str, Path]
"""``"pretrained"`` (alias ``"imagenet"``: the backbone's registry entry), ``"random"`` (seeded init),
another registry name, or a file path."""
PRETRAINED = ("pretrained", "imagenet")

RUN, SAVE, ADD = "run", "save", "add"


@dataclass
class Step:
    """One unit of the unrolled network: run a module, remember the input of a skip, or add it back."""

    op: str
    module: nn.Module | None = None
    names: list[str] = field(default_factory=list)


class FrozenBatchNorm(nn.Module):
    """An eval-mode BatchNorm2d folded into one per-channel multiply-add, ``x * scale + shift``.

    The feature nets are frozen, so the statistics never change; one fused op forward and one multiply
    backward cost about a fifth less than BatchNorm's kernels (MobileNetV2 at 256 px, 2-core CPU) and
    about a tenth less than torchvision's ``FrozenBatchNorm2d``, which recomputes the scale every call.
    """

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean * scale
            if bn.affine:
                scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every BatchNorm2d under ``module`` by its FrozenBatchNorm (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm(child))
        else:
            _freeze_batchnorm(child)


class FeatureNet(nn.Module):
    """A backbone as named steps; call it with layer names to get those activations."""

    def __init__(self, name: str, steps: list[Step], normalize: bool, primary: Sequence[str]):
        super().__init__()
        self.name = name
        self.ops = [step.op for step in steps]
        self.blocks = nn.ModuleList([step.module if step.module is not None else nn.Identity() for step in steps])
        self.step_names = [list(step.names) for step in steps]
        self.primary_names = list(primary)
        self.index: dict[str, int] = {}
        for i, step in enumerate(steps):
            for layer in step.names:
                self.index[layer] = i
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for module in self.modules():
            if hasattr(module, "inplace"):
                module.inplace = False  # taps keep references to intermediate tensors

    @property
    def layer_names(self) -> list[str]:
        """Every accepted name (primary names and aliases), in network order."""
        return sorted(self.index, key=lambda n: (self.index[n], n not in self.primary_names, n))

    def resolve(self, layers: Iterable[str]) -> list[int]:
        """Step index of each layer name; unknown names raise LayerError listing the valid ones."""
        unknown = [layer for layer in layers if layer not in self.index]
        if unknown:
            raise LayerError(
                f"Unknown layer(s) {', '.join(repr(u) for u in unknown)} for backbone '{self.name}'. "
                f"Valid layers: {', '.join(self.layer_names)}."
            )
        return [self.index[layer] for layer in layers]

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        indices = self.resolve(layers)
        wanted: dict[int, list[str]] = {}
        for layer, i in zip(layers, indices):
            wanted.setdefault(i, []).append(layer)
        last = max(indices)
        if self.normalize:
            x = (x - self.mean) / self.std
        if x.device.type == "cpu":  # channels-last: max pooling ~15x faster, a bare VGG-19 pass 23-34% (2-core CPU)
            x = x.contiguous(memory_format=torch.channels_last)
        saved: torch.Tensor | None = None
        out: dict[str, torch.Tensor] = {}
        height, width = x.shape[-2:]
        for i in range(last + 1):
            op = self.ops[i]
            try:
                if op == RUN:
                    x = self.blocks[i](x)
                elif op == SAVE:
                    saved = x
                else:
                    assert saved is not None
                    x = x + saved
            except RuntimeError as exc:
                if "too small" in str(exc) or "greater than" in str(exc):
                    raise ImageError(
                        f"The image ({width}x{height} pixels) is too small for layer "
                        f"'{max(layers, key=lambda n: self.index[n])}' of {self.name}: it shrinks to nothing "
                        "before that layer. Use a larger size or shallower layers."
                    ) from None
                raise
            for layer in wanted.get(i, ()):
                out[layer] = x
        return out

    def inner_taps(self, layers: Sequence[str]) -> list[str]:
        """The requested layers that the network runs further layers on towards the deepest one (all but
        the deepest): their gradient also arrives from those later layers (``nst.tap_losses`` folds into it)."""
        last = max(self.resolve(layers))
        return [layer for layer in layers if self.index[layer] < last]

    def truncated(self, layers: Sequence[str]) -> "FeatureNet":
        """A copy sharing modules but holding only the steps up to the deepest of ``layers``."""
        last = max(self.resolve(layers))
        steps = [
            Step(self.ops[i], self.blocks[i] if self.ops[i] == RUN else None, self.step_names[i])
            for i in range(last + 1)
        ]
        kept = {name for s in steps for name in s.names}
        net = FeatureNet(self.name, steps, self.normalize, [p for p in self.primary_names if p in kept])
        return net.to(self.mean.device)

    def channels(self) -> dict[str, int]:
        """Channel count of every primary layer (one forward pass on a small zero image)."""
        device = self.mean.device
        with torch.no_grad():
            feats = self(torch.zeros(1, 3, 64, 64, device=device), self.primary_names)
        return {name: int(t.shape[1]) for name, t in feats.items()}


# ---------------------------------------------------------------------------------------------
# Unrolling: torchvision models -> named steps


def _vgg_like_steps(features: nn.Sequential, paper_names: bool, alexnet: bool) -> tuple[list[Step], list[str]]:
    """Name every module of a VGG/AlexNet ``features`` with tutorial and paper names."""
    steps: list[Step] = []
    primary: list[str] = []
    conv = 0  # tutorial counter through the whole net
    block, in_block = 1, 0  # paper counters (VGG)
    for module in features:
        if isinstance(module, nn.Conv2d):
            conv += 1
            in_block += 1
            tutorial = f"conv_{conv}"
            paper = f"conv{conv}" if alexnet else f"conv{block}_{in_block}"
        elif isinstance(module, nn.ReLU):
            tutorial = f"relu_{conv}"
            paper = f"relu{conv}" if alexnet else f"relu{block}_{in_block}"
        elif isinstance(module, nn.MaxPool2d):
            tutorial = f"pool_{conv}"
            paper = f"pool{conv}" if alexnet else f"pool{block}"
            block, in_block = block + 1, 0
        else:
            raise ConfigError(f"Unexpected module {module!r} in a VGG-like network.")
        names = [tutorial, paper] if paper_names else [tutorial]
        steps.append(Step(RUN, module, names))
        primary.append(tutorial)
    return steps, primary


def _vgg_steps(model: nn.Module) -> tuple[list[Step], list[str]]:
    return _vgg_like_steps(model.features, paper_names=True, alexnet=False)


def _alexnet_steps(model: nn.Module) -> tuple[list[Step], list[str]]:
    return _vgg_like_steps(model.features, paper_names=True, alexnet=True)


def _resnet_steps(model: nn.Module) -> tuple[list[Step], list[str]]:
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return [Step(RUN, getattr(model, n), [n]) for n in names], names


def _leaf_layers(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, (nn.Conv2d, FrozenBatchNorm, nn.ReLU6, nn.ReLU)):
        return [module]
    return list(module.children())


def _leaf_name(leaf: nn.Module, block: int, index: int) -> str:
    kind = "conv" if isinstance(leaf, nn.Conv2d) else "bn" if isinstance(leaf, FrozenBatchNorm) else "relu"
    return f"{kind}_{block}_{index}"


def _mobilenet_steps(model: nn.Module, keep_skips: bool) -> tuple[list[Step], list[str]]:
    """MobileNetV2 with the AutoArt report's fine-grained names, with or without the skips.

    In block ``b`` the leaves of the sub-module at position ``i`` are named ``conv_b_i``,
    ``bn_b_i``, ``relu_b_i``; for the first and last blocks (plain Conv-BN-ReLU6) ``i`` is the
    leaf's own position (``conv_0_0``, ``bn_0_1``, ``relu_0_2``), exactly as the report printed
    its flattened net. ``layer_b`` is the block's output.
    """
    steps: list[Step] = []
    primary: list[str] = []
    for b, block in enumerate(model.features):
        residual = keep_skips and getattr(block, "use_res_connect", False)
        if residual:
            steps.append(Step(SAVE))
        if hasattr(block, "conv"):
            positioned = [(i, leaf) for i, sub in enumerate(block.conv) for leaf in _leaf_layers(sub)]
        else:
            positioned = [(i, leaf) for i, leaf in enumerate(block)]
        for i, leaf in positioned:
            name = _leaf_name(leaf, b, i)
            steps.append(Step(RUN, leaf, [name]))
            primary.append(name)
        if residual:
            steps.append(Step(ADD, None, [f"layer_{b}"]))
        else:
            steps[-1].names.append(f"layer_{b}")
        primary.append(f"layer_{b}")
    return steps, primary


def adain_vgg_encoder() -> nn.Sequential:
    """The normalised VGG-19 of naoto0804/pytorch-AdaIN (53 modules, keys ``0.weight`` ...)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    plan = [(3, 64, 2), (64, 128, 2), (128, 256, 4), (256, 512, 4), (512, 512, 4)]
    for stage, (cin, cout, convs) in enumerate(plan):
        for j in range(convs):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin if j == 0 else cout, cout, 3), nn.ReLU()]
        if stage < len(plan) - 1:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
    return nn.Sequential(*layers)


def _adain_vgg_steps(model: nn.Sequential) -> tuple[list[Step], list[str]]:
    """Paper names for the normalised VGG-19; ``preprocess`` is its leading 1x1 colour conv."""
    steps = [Step(RUN, model[0], ["preprocess"])]
    primary = ["preprocess"]
    block, in_block = 1, 0
    for module in list(model)[1:]:
        names: list[str] = []
        if isinstance(module, nn.Conv2d):
            in_block += 1
            names = [f"conv{block}_{in_block}"]
        elif isinstance(module, nn.ReLU):
            names = [f"relu{block}_{in_block}"]
        elif isinstance(module, nn.MaxPool2d):
            names = [f"pool{block}"]
            block, in_block = block + 1, 0
        steps.append(Step(RUN, module, names))
        primary.extend(names)
    return steps, primary


@dataclass(frozen=True)
class BackboneSpec:
    """How to build and unroll one backbone."""

    construct: Callable[[], nn.Module]
    unroll: Callable[[nn.Module], tuple[list[Step], list[str]]]
    normalize: bool = True
    registry_name: str = ""
    head_prefixes: tuple[str, ...] = ()
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    "vgg19": BackboneSpec(tvm.vgg19, _vgg_steps, True, "vgg19-imagenet", ("classifier.",), "VGG-19 (Gatys; tutorial)"),
    "vgg16": BackboneSpec(tvm.vgg16, _vgg_steps, True, "vgg16-imagenet", ("classifier.",), "VGG-16 (Johnson loss net)"),
    "alexnet": BackboneSpec(tvm.alexnet, _alexnet_steps, True, "alexnet-imagenet", ("classifier.",), "AlexNet"),
    "resnet18": BackboneSpec(tvm.resnet18, _resnet_steps, True, "resnet18-imagenet", ("fc.",), "ResNet-18"),
    "resnext50_32x4d": BackboneSpec(
        tvm.resnext50_32x4d, _resnet_steps, True, "resnext50_32x4d-imagenet", ("fc.",), "ResNeXt-50 32x4d"
    ),
    "mobilenet_v2": BackboneSpec(
        tvm.mobilenet_v2,
        functools.partial(_mobilenet_steps, keep_skips=True),
        True,
        "mobilenet_v2-imagenet",
        ("classifier.",),
        "MobileNetV2, skips kept; block (layer_N) and in-block (conv_B_I) taps",
    ),
    "mobilenet_v2_flat": BackboneSpec(
        tvm.mobilenet_v2,
        functools.partial(_mobilenet_steps, keep_skips=False),
        True,
        "mobilenet_v2-imagenet",
        ("classifier.",),
        "MobileNetV2 flattened as in the AutoArt report: one plain sequence, skips removed",
    ),
    "vgg19_normalised": BackboneSpec(
        adain_vgg_encoder, _adain_vgg_steps, False, "adain-vgg-encoder", (), "Normalised VGG-19 (AdaIN encoder)"
    ),
}


def backbone_names() -> list[str]:
    return list(BACKBONES)


def spec_for(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"Unknown backbone '{name}'. Choose one of: {', '.join(BACKBONES)}.") from None


def build_backbone(name: str, weights: WeightsSpec = "pretrained", seed: int = 0) -> FeatureNet:
    """Build a FeatureNet in eval mode with frozen parameters.

    ``weights``: ``"random"`` for a seeded random init (tests, CI), ``"pretrained"``/``"imagenet"``
    for the backbone's registry entry (downloaded and cached by ``nst.weights``), another registry name
    (e.g. the fine-tuned AutoArt MobileNetV2), or a path to a torchvision-format state dict.
    """
    spec = spec_for(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.construct()
    if str(weights) != "random":
        path = Path(weights)
        if not path.is_file() and (path.suffix in (".pth", ".pt", ".safetensors", ".bin") or len(path.parts) > 1):
            raise WeightsError(f"The weights file '{path}' does not exist.")
        if not path.is_file():
            from nst import weights as registry

            path = registry.resolve(spec.registry_name if str(weights) in PRETRAINED else str(weights))
        load_exact(model, read_state_dict(path), f"the {name} backbone", spec.head_prefixes)
    _freeze_batchnorm(model)
    steps, primary = spec.unroll(model)
    net = FeatureNet(name, steps, spec.normalize, primary)
    net.eval()
    net.requires_grad_(False)
    return net


@functools.lru_cache(maxsize=4)
def _cached(name: str, weights: str, seed: int, device: str, stamp: float) -> FeatureNet:
    net = build_backbone(name, weights, seed).to(device)
    if net.mean.device.type == "cpu":  # FeatureNet's CPU maps are channels-last: without matching weights every
        net.to(memory_format=torch.channels_last)  # convolution copies its weight twice a step (AlexNet: 9% of it)
    return net


def get_backbone(name: str, weights: WeightsSpec = "pretrained", seed: int = 0, device: str = "cpu") -> FeatureNet:
    """``build_backbone`` with a per-process cache (at most 4 resident), keyed by file stamp for paths."""
    path = Path(weights)
    stamp = path.stat().st_mtime if path.is_file() else 0.0
    return _cached(name, str(weights), seed, str(device), stamp)


def clear_cache() -> None:
    _cached.cache_clear()
