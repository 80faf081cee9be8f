"""Johnson et al. (2016) feed-forward style networks: the network, checkpoint formats and ``stylize``.

The module tree is the one of pytorch/examples ``fast_neural_style`` so its checkpoints load
directly (``conv1.conv2d.weight``, ``in1.weight``, ``res1.conv1.conv2d.weight``, ``deconv1.conv2d.weight``
...). The ``maze/FastStyleTransfer`` checkpoints (``ConvBlock``/``ResidualBlock``/``DeconvBlock``) are
renamed onto the same plan; their network up-samples with transposed convolutions and expects BGR
input, so both are explicit options of :class:`TransformerNet`.

Conventions: ``TransformerNet.forward`` works in the network's own units (0-255, its channel order),
exactly like the published code. :func:`run_network` and the engines take and return RGB in [0, 1]
at any size; inputs are reflection-padded to a multiple of 4 and the output is cropped back, so the
output always has the input's width and height.
"""

from __future__ import annotations

import copy
import functools
import re
import time
import weakref
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from nst.checkpoints import load_exact, read_state_dict
from nst.errors import ConfigError, ImageError, WeightsError
from nst.images import MIN_SIDE, ImageSource, load_image, resize_longest, to_pil, to_tensor
from nst.result import StyleResult

UPSAMPLE_MODES = ("nearest", "transpose")
CHANNEL_ORDERS = ("rgb", "bgr")
FORMATS = ("pytorch-examples", "maze", "autoart", "autoart-multistyle")
FORMAT_ALIASES: dict[str, str | None] = {"auto": None, "safetensors": None}
"""Format names that mean "detect from the file" (a registry entry of a published project file)."""
ENGINES = ("auto", "torch", "onnx")
PIXEL_SCALE = 255.0
SIZE_MULTIPLE = 4
"""Two stride-2 convolutions down and two x2 up-samplings: sides that are multiples of 4 round-trip."""

RUNNING_STAT_KEY = re.compile(
    r"(^|\.)in\d+\.running_(mean|var)$|\.norm_layer\.(running_mean|running_var|num_batches_tracked)$"
)
"""Keys of old InstanceNorm checkpoints that current InstanceNorm2d has no buffers for."""

NormFactory = Callable[[int], nn.Module]


def instance_norm(channels: int) -> nn.Module:
    """The paper's normalisation: InstanceNorm2d with a learned scale and shift."""
    return nn.InstanceNorm2d(channels, affine=True)


class ConvLayer(nn.Module):
    """Reflection padding then a convolution (pytorch/examples ``ConvLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(ConvLayer):
    """Nearest x2 up-sampling, then reflection padding and a stride-1 convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransposeConvLayer(nn.Module):
    """x2 up-sampling by ConvTranspose2d(k3, s2, p1, output_padding 1) (the maze network's ``DeconvLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2, output_padding=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_transpose(x)


class ResidualBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus the identity."""

    def __init__(self, channels: int, norm: NormFactory = instance_norm):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = norm(channels)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = norm(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class TransformerNet(nn.Module):
    """The image transformation network: 9x9 conv, two stride-2 convs, 5 residual blocks, two x2
    up-samplings, 9x9 conv; instance norm and ReLU between; no output activation.

    ``upsample``: ``"nearest"`` (nearest x2 + conv, pytorch/examples) or ``"transpose"``
    (ConvTranspose2d, maze/FastStyleTransfer). ``channel_order``: the order the network was
    trained on (``"rgb"``, or ``"bgr"`` for OpenCV-fed networks). ``norm`` builds every
    normalisation layer (conditional instance norm for the multi-style network).
    """

    def __init__(self, upsample: str = "nearest", channel_order: str = "rgb", norm: NormFactory = instance_norm):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"Unknown up-sampling '{upsample}'; choose one of: {', '.join(UPSAMPLE_MODES)}.")
        if channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"Unknown channel order '{channel_order}'; choose one of: {', '.join(CHANNEL_ORDERS)}.")
        self.upsample = upsample
        self.channel_order = channel_order
        self.conv1 = ConvLayer(3, 32, 9, 1)
        self.in1 = norm(32)
        self.conv2 = ConvLayer(32, 64, 3, 2)
        self.in2 = norm(64)
        self.conv3 = ConvLayer(64, 128, 3, 2)
        self.in3 = norm(128)
        self.res1 = ResidualBlock(128, norm)
        self.res2 = ResidualBlock(128, norm)
        self.res3 = ResidualBlock(128, norm)
        self.res4 = ResidualBlock(128, norm)
        self.res5 = ResidualBlock(128, norm)
        up: Callable[[int, int], nn.Module] = (
            functools.partial(UpsampleConvLayer, kernel_size=3) if upsample == "nearest" else TransposeConvLayer
        )
        self.deconv1 = up(128, 64)
        self.in4 = norm(64)
        self.deconv2 = up(64, 32)
        self.in5 = norm(32)
        self.deconv3 = ConvLayer(32, 3, 9, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pass in the network's units: Bx3xHxW in 0-255 (its channel order) -> same units."""
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

    def describe(self) -> dict[str, str]:
        """The options needed to rebuild this network (stored in checkpoint metadata)."""
        return {"upsample": self.upsample, "channel_order": self.channel_order}


# ---------------------------------------------------------------------------------------------
# Inference graph: the same function, computed with fewer operations


PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
"""For output phase a (row 2i+a), which of the 3 kernel rows fall on low-resolution rows (i-1+a, i+a)."""


class PhaseUpsampleConv(nn.Module):
    """``UpsampleConvLayer`` (nearest x2, reflection pad 1, 3x3 conv) computed at the low resolution.

    After nearest x2 up-sampling, the 3x3 window of output pixel (2i+a, 2j+b) covers only 2x2
    input pixels, so each of the four output phases is a 2x2 convolution of the input with summed
    kernel taps: 16 instead of 36 multiply-adds per input pixel and no up-sampled copy. Reflection
    padding of the up-sampled image equals edge replication of the input. One convolution computes
    the four phases as channel groups; they are interleaved into the 2H x 2W output.
    """

    def __init__(self, layer: UpsampleConvLayer):
        super().__init__()
        weight = layer.conv2d.weight.detach()
        taps = PHASE_TAPS.to(weight)
        kernels = [torch.einsum("uk,oikl,vl->oiuv", taps[a], weight, taps[b]) for a in (0, 1) for b in (0, 1)]
        out_channels, in_channels = weight.shape[:2]
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, 4 * out_channels, 2)
        self.conv.weight = nn.Parameter(torch.cat(kernels), requires_grad=False)
        self.conv.bias = nn.Parameter(layer.conv2d.bias.detach().repeat(4), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        c = self.out_channels
        out = self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))
        top = torch.stack([out[:, :c, :h, :w], out[:, c : 2 * c, :h, 1:]], dim=-1)
        bottom = torch.stack([out[:, 2 * c : 3 * c, 1:, :w], out[:, 3 * c :, 1:, 1:]], dim=-1)
        return torch.stack([top, bottom], dim=3).reshape(b, c, 2 * h, 2 * w)


class PhaseStridedConv(nn.Module):
    """A stride-1 ``ConvLayer`` with few output channels, computed as four output phases at once.

    Output pixel (2i+a, 2j+b) is a stride-2 convolution of the padded input with the kernel shifted
    by (a, b) inside a (k+1)x(k+1) window; stacking the four shifted kernels gives one stride-2
    convolution with 4x the output channels, and depth-to-space interleaves them. For the final
    32->3 9x9 layer this keeps the matrix kernels busy (12 outputs instead of 3) for 23% more
    multiply-adds. Needs even height and width.
    """

    def __init__(self, layer: ConvLayer):
        super().__init__()
        weight = layer.conv2d.weight.detach()
        out_channels, in_channels, k, _ = weight.shape
        shifted = weight.new_zeros(out_channels, 2, 2, in_channels, k + 1, k + 1)
        for a in (0, 1):
            for b in (0, 1):
                shifted[:, a, b, :, a : a + k, b : b + k] = weight
        self.reflection_pad = layer.reflection_pad
        self.conv = nn.Conv2d(in_channels, 4 * out_channels, k + 1, stride=2)
        shifted = shifted.reshape(4 * out_channels, in_channels, k + 1, k + 1)
        self.conv.weight = nn.Parameter(shifted, requires_grad=False)
        self.conv.bias = nn.Parameter(layer.conv2d.bias.detach().repeat_interleave(4), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(self.reflection_pad(x)), 2)


def inference_graph(net: TransformerNet) -> TransformerNet:
    """A copy of ``net`` computing the same function with fewer, better-shaped operations.

    Nearest up-sampling convolutions run at the low resolution (:class:`PhaseUpsampleConv`) and
    the final 9x9 convolution as four phases (:class:`PhaseStridedConv`); outputs equal the
    original's up to float rounding. Inputs must have sides that are multiples of 4 (as
    :func:`pad_to_multiple` makes them).
    """
    fast = copy.deepcopy(net).eval().requires_grad_(False)
    for name in ("deconv1", "deconv2"):
        layer = getattr(fast, name)
        if isinstance(layer, UpsampleConvLayer):
            setattr(fast, name, PhaseUpsampleConv(layer))
    fast.deconv3 = PhaseStridedConv(fast.deconv3)
    return fast


# ---------------------------------------------------------------------------------------------
# Pixel conventions: RGB [0, 1] at any size  <->  the network's units at a multiple of 4


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflection-pad the bottom/right so both sides are multiples of ``multiple``; return (x, (h, w))."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if min(h, w) < MIN_SIDE // 2:
        raise ImageError(f"The image is {w}x{h} pixels; the Johnson network needs at least {MIN_SIDE // 2} per side.")
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return x, (h, w)


def to_network(x: torch.Tensor, channel_order: str) -> torch.Tensor:
    """RGB [0, 1] -> the network's 0-255 units in its channel order."""
    x = x * PIXEL_SCALE
    return x.flip(1) if channel_order == "bgr" else x


def from_network(y: torch.Tensor, channel_order: str, size: tuple[int, int]) -> torch.Tensor:
    """The network's output -> RGB [0, 1], cropped to ``size`` (h, w) and clamped."""
    y = y[..., : size[0], : size[1]]
    if channel_order == "bgr":
        y = y.flip(1)
    return (y / PIXEL_SCALE).clamp(0, 1)


def fingerprint(net: nn.Module) -> tuple:
    """Identity of a network's current weights: storage and in-place version of every tensor."""
    return tuple((t.data_ptr(), t._version) for t in [*net.parameters(), *net.buffers()])


_graphs: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, TransformerNet]]" = weakref.WeakKeyDictionary()


def cached_inference_graph(net: TransformerNet) -> TransformerNet:
    """``inference_graph(net)``, rebuilt only when the network's weights change."""
    key = fingerprint(net)
    hit = _graphs.get(net)
    if hit is not None and hit[0] == key:
        return hit[1]
    graph = inference_graph(net)
    _graphs[net] = (key, graph)
    return graph


def run_network(net: TransformerNet, x: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
    """Stylise a Bx3xHxW RGB [0, 1] tensor of any size with eager PyTorch (inference mode).

    ``fast`` runs the equivalent :func:`inference_graph` (default: on the CPU, where it measured
    faster; see bench/feedforward.py).
    """
    device = next(net.parameters()).device
    use_graph = device.type == "cpu" if fast is None else fast
    model = cached_inference_graph(net) if use_graph else net
    with torch.inference_mode():
        padded, size = pad_to_multiple(x.to(device))
        y = model(to_network(padded, net.channel_order))
        return from_network(y, net.channel_order, size).contiguous()


# ---------------------------------------------------------------------------------------------
# Checkpoint formats


def _maze_key(key: str) -> str | None:
    """maze/FastStyleTransfer key -> the pytorch/examples plan (None for keys that do not map)."""
    match = re.match(r"^ConvBlock\.(\d)\.(conv_layer|norm_layer)\.(weight|bias)$", key)
    if match:
        index = {"0": 1, "2": 2, "4": 3}.get(match.group(1))
        if index is None:
            return None
        part = "conv2d" if match.group(2) == "conv_layer" else ""
        return f"conv{index}.conv2d.{match.group(3)}" if part else f"in{index}.{match.group(3)}"
    match = re.match(r"^ResidualBlock\.(\d)\.(conv1|conv2)\.(conv_layer|norm_layer)\.(weight|bias)$", key)
    if match:
        block, conv = int(match.group(1)) + 1, match.group(2)
        if match.group(3) == "conv_layer":
            return f"res{block}.{conv}.conv2d.{match.group(4)}"
        return f"res{block}.in{conv[-1]}.{match.group(4)}"
    match = re.match(r"^DeconvBlock\.(\d)\.(conv_transpose|norm_layer|conv_layer)\.(weight|bias)$", key)
    if match:
        position, kind, leaf = match.group(1), match.group(2), match.group(3)
        if position in ("0", "2") and kind == "conv_transpose":
            return f"deconv{1 if position == '0' else 2}.conv_transpose.{leaf}"
        if position in ("0", "2") and kind == "norm_layer":
            return f"in{4 if position == '0' else 5}.{leaf}"
        if position == "4" and kind == "conv_layer":
            return f"deconv3.conv2d.{leaf}"
    return None


def adapt_maze(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a maze/FastStyleTransfer state dict onto :class:`TransformerNet` (transpose up-sampling).

    Keys that do not map are kept under their own name so ``load_exact`` reports them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        out[_maze_key(key) or key] = value
    return out


def drop_running_stats(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``in<N>.running_mean/var`` (and maze ``norm_layer`` running stats) that old files carry."""
    return {k: v for k, v in state.items() if not RUNNING_STAT_KEY.search(k)}


def detect_format(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> str:
    """Name the checkpoint format from its metadata (project files) or its key names."""
    declared = (metadata or {}).get("format")
    if declared in FORMATS:
        return declared
    keys = list(state)
    if any(k.startswith(("ConvBlock.", "ResidualBlock.", "DeconvBlock.")) for k in keys):
        return "maze"
    if "conv1.conv2d.weight" in state:
        weight = state.get("in1.weight")
        if weight is not None and weight.dim() == 2:
            return "autoart-multistyle"
        if "deconv1.conv_transpose.weight" in state:
            return "autoart"  # the project's layout with transposed-convolution up-sampling
        return "pytorch-examples"
    sample = ", ".join(keys[:4]) or "no keys"
    raise WeightsError(
        f"This file is not a Johnson style network (its keys start {sample}); expected the pytorch/examples "
        "fast_neural_style layout (conv1.conv2d.weight, ...) or maze/FastStyleTransfer (ConvBlock.0...)."
    )


def read_metadata(path: str | Path) -> dict[str, str]:
    """String metadata of a safetensors file ({} for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - a broken header means an unusable file
        raise WeightsError(f"'{path.name}' is not a readable safetensors file: {exc}") from None


def build_for_format(fmt: str, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> TransformerNet:
    """An untrained network shaped for ``fmt`` (and, for project files, the options in ``metadata``)."""
    if fmt == "pytorch-examples":
        return TransformerNet("nearest", "rgb")
    if fmt == "maze":
        return TransformerNet("transpose", "bgr")
    upsample = metadata.get("upsample", "transpose" if "deconv1.conv_transpose.weight" in state else "nearest")
    channel_order = metadata.get("channel_order", "rgb")
    if fmt == "autoart":
        return TransformerNet(upsample, channel_order)
    from nst.multistyle import build_multistyle_net

    weight = state.get("in1.weight")
    if weight is None or weight.dim() != 2:
        raise WeightsError("This file is not a multi-style network: 'in1.weight' must hold one row per style.")
    names = [n for n in metadata.get("styles", "").split("|") if n] or None
    return build_multistyle_net(int(weight.shape[0]), names, upsample, channel_order)


def load_johnson(path: str | Path, format: str | None = None) -> TransformerNet:
    """Load a Johnson checkpoint of any supported format (detected from its keys unless given); eval mode.

    The file is read without executing pickled code and loaded all-or-nothing.
    """
    format = FORMAT_ALIASES.get(format, format) if format is not None else None
    if format is not None and format not in FORMATS:
        raise ConfigError(f"Unknown checkpoint format '{format}'; choose one of: {', '.join(FORMATS)}.")
    path = Path(path)
    state = read_state_dict(path)
    metadata = read_metadata(path)
    fmt = format or detect_format(state, metadata)
    state = drop_running_stats(state)
    if fmt == "maze":
        state = adapt_maze(state)
    net = build_for_format(fmt, state, metadata)
    load_exact(net, state, f"the Johnson network ({fmt} format) from '{path.name}'")
    net.format = fmt  # type: ignore[attr-defined]
    net.metadata = dict(metadata)  # type: ignore[attr-defined]
    return net.eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def _cached_network(path: str, stamp: float, fmt: str | None, device: str) -> TransformerNet:
    return load_johnson(path, fmt).to(device)


def cached_network(path: str | Path, format: str | None = None, device: str | torch.device = "cpu") -> TransformerNet:
    """``load_johnson`` with a small in-process cache keyed by path, modification time, format and device."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"The Johnson checkpoint '{path}' does not exist.")
    return _cached_network(str(path.resolve()), path.stat().st_mtime, format, str(device))


# ---------------------------------------------------------------------------------------------
# stylize


StyleSpec = Union[str, Path, TransformerNet]


def _resolve_style(style: StyleSpec, device: torch.device, fmt: str | None) -> tuple[TransformerNet, dict]:
    """Turn a registry name, a checkpoint path or a module into a network plus describing params."""
    if isinstance(style, nn.Module):
        if not isinstance(style, TransformerNet):
            raise ConfigError("The style module must be a Johnson TransformerNet.")
        return style.to(device).eval(), {"style": "module"}
    path = Path(style)
    if path.is_file():
        net = cached_network(path, fmt, device)
        return net, {"style": path.stem, "checkpoint": str(path), "format": net.format}
    if path.suffix in (".pth", ".pt", ".safetensors", ".model") or "/" in str(style) or "\\" in str(style):
        raise WeightsError(f"The Johnson checkpoint '{style}' does not exist.")
    from nst import weights

    entry = weights.entry(str(style))
    if entry.kind != "johnson":
        raise ConfigError(f"'{style}' is a {entry.kind} model in the registry, not a Johnson style network.")
    net = weights.load(entry.name, device) if fmt is None else cached_network(weights.resolve(entry.name), fmt, device)
    params = {"style": entry.name, "checkpoint": str(weights.resolve(entry.name)), "format": net.format}
    return net, params  # type: ignore[return-value]


def registry_style_image(name: str) -> Image.Image | None:
    """The style image the registry lists for a Johnson entry (None when it lists no free image)."""
    from nst import weights

    path = weights.entry(name).style_path
    return None if path is None else load_image(path, what="style image")


def default_engine(device: torch.device) -> str:
    """The engine ``"auto"`` picks: onnxruntime on CPU (fastest there, see bench/feedforward.py), torch on GPU."""
    return "onnx" if device.type == "cpu" else "torch"


def stylize(
    content: ImageSource,
    style: StyleSpec,
    size: int | None = None,
    preserve_color: bool = False,
    device: str | torch.device = "auto",
    engine: str = "auto",
    style_image: ImageSource | None = None,
    format: str | None = None,
    style_weights: Sequence[float] | None = None,
    scorer: object = True,
) -> StyleResult:
    """Stylise ``content`` with a fixed-style network in one pass.

    ``style``: a registry name (e.g. ``"candy"``), a checkpoint path (any supported format; ``format``
    forces one) or a loaded network. ``size``: longest side of the output (None keeps the content's).
    ``preserve_color``: keep the content's colours (luminance-only transfer). ``engine``: ``"torch"``,
    ``"onnx"`` (onnxruntime, CPU) or ``"auto"``. ``style_image``: the style picture used for the SSIM
    metric (defaults to the registry's one). ``style_weights``: the blend for a multi-style network.
    ``scorer``: passed to :func:`nst.metrics.report` (None in tests).
    """
    from nst.metrics import report
    from nst.runtime import pick_device

    if engine not in ENGINES:
        raise ConfigError(f"Unknown engine '{engine}'; choose one of: {', '.join(ENGINES)}.")
    start = time.perf_counter()
    dev = pick_device(device)
    chosen = default_engine(dev) if engine == "auto" else engine
    if chosen == "onnx" and dev.type != "cpu":
        raise ConfigError("The onnx engine runs on the CPU; use --engine torch for a GPU, or --device cpu.")
    image = load_image(content, what="content image")
    if size is not None:
        image = resize_longest(image, size)
    net, params = _resolve_style(style, dev, format)
    notes: list[str] = []
    from nst.multistyle import MultiStyleNet, set_style_weights

    if isinstance(net, MultiStyleNet):
        if style_weights is None:
            style_weights = [1.0] + [0.0] * (net.num_styles - 1)
            notes.append(f"Multi-style network: no style weights given, using its first style '{net.style_names[0]}'.")
        set_style_weights(net, style_weights)
        params["style_weights"] = dict(zip(net.style_names, (float(w) for w in style_weights)))
        if engine == "auto":
            chosen = "torch"  # a blend change would mean a new ONNX export
    elif style_weights is not None:
        raise ConfigError("Style weights only apply to a multi-style network.")
    loaded = time.perf_counter()
    x = to_tensor(image, dev)
    if chosen == "onnx":
        from nst.onnx_engine import run_onnx

        y = run_onnx(net, x)
    else:
        y = run_network(net, x)
    output = to_pil(y)
    if preserve_color:
        from nst.color import keep_content_colors

        output = keep_content_colors(image, output)
    stylized = time.perf_counter()
    styles: list[Image.Image] = []
    if style_image is not None:
        styles = [load_image(style_image, what="style image")]
    elif isinstance(style, str) and not Path(style).is_file():
        reference = registry_style_image(style)
        if reference is not None:
            styles = [reference]
        else:
            notes.append("The registry lists no free style image for this network; SSIM to the style is not measured.")
    # the reference scorer needs at least one style image
    metrics = report(output, image, styles, scorer=scorer if styles else None, notes=notes)  # type: ignore[arg-type]
    end = time.perf_counter()
    params.update(
        {"size": list(image.size), "preserve_color": preserve_color, "engine": chosen, "device": str(dev)}
    )
    return StyleResult(
        image=output,
        method="johnson",
        metrics=metrics,
        params=params,
        seconds=stylized - start,
        timings={"load": loaded - start, "stylize": stylized - loaded, "metrics": end - stylized},
        notes=notes,
    )
