"""AdaIN arbitrary style transfer (Huang & Belongie 2017): encoder, AdaIN, decoder, stylize.

The encoder is the ``vgg19_normalised`` backbone of :mod:`nst.features` read at relu4_1 (the one
feature-extraction path); the decoder mirrors naoto0804/pytorch-AdaIN's ``nn.Sequential`` so its
published ``decoder.pth`` loads key for key. Encoder features of style and content images are kept
in a bounded LRU cache, so changing alpha or the content photo re-runs only what changed.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from nst.checkpoints import load_exact, read_state_dict
from nst.color import match_color
from nst.errors import ConfigError, ImageError, WeightsError
from nst.features import FeatureNet, build_backbone
from nst.images import ImageSource, load_image, resize_longest, resize_to, to_pil, to_tensor
from nst.losses import mean_std
from nst.metrics import ReferenceScorer, compare, report
from nst.result import StyleResult
from nst.runtime import pick_device

ENCODER_BACKBONE = "vgg19_normalised"
ENCODER_REGISTRY_NAME = "adain-vgg-encoder"
DECODER_REGISTRY_NAME = "adain-decoder"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
"""The encoder layers the style loss uses; the last one is where AdaIN happens."""
CONTENT_LAYER = "relu4_1"
SIZE_MULTIPLE = 8
"""The encoder pools three times, so inputs are padded to a multiple of 8 and the output cropped."""
EPS = 1e-5

ModuleSpec = Union[str, Path, nn.Module, None]


# ---------------------------------------------------------------------------------------------
# Networks


def build_decoder() -> nn.Sequential:
    """naoto0804's decoder: relu4_1 (512 ch) back to RGB; keys ``1.weight``, ``5.weight`` ... ``28.bias``."""
    plan: list[tuple[int, int] | str] = [
        (512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up",
        (128, 128), (128, 64), "up", (64, 64), (64, 3),
    ]
    layers: list[nn.Module] = []
    for i, item in enumerate(plan):
        if item == "up":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            continue
        cin, cout = item  # type: ignore[misc]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
        if i < len(plan) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def random_decoder(seed: int = 0) -> nn.Sequential:
    """A decoder with seeded random weights (tests, timing benchmarks); never a user fallback."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = build_decoder()
    return decoder.eval().requires_grad_(False)


def load_decoder(path: str | Path) -> nn.Sequential:
    """Load a decoder state dict (``decoder.pth`` or safetensors) into :func:`build_decoder`, eval mode."""
    decoder = build_decoder()
    load_exact(decoder, read_state_dict(path), "the AdaIN decoder (naoto0804 decoder.pth layout)")
    return decoder.eval().requires_grad_(False)


def load_encoder(weights: str | Path = ENCODER_REGISTRY_NAME, seed: int = 0) -> FeatureNet:
    """The AdaIN encoder (normalised VGG-19 up to relu4_1) as a FeatureNet.

    ``weights``: a path to ``vgg_normalised.pth`` (or safetensors), a registry name
    (default ``adain-vgg-encoder``), or ``"random"`` for a seeded random init (tests only).
    """
    net = build_backbone(ENCODER_BACKBONE, weights=weights, seed=seed)
    return net.truncated([CONTENT_LAYER])


def random_encoder(seed: int = 0) -> FeatureNet:
    """The encoder with seeded variance-preserving (He) random weights: smoke tests and offline trial runs only.

    PyTorch's default init shrinks activations layer by layer (relu4_1 would be ~1e-2), which makes
    losses vanish; He-normal weights keep them at a usable scale.
    """
    net = load_encoder("random", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                module.bias.zero_()
    return net


def _looks_like_path(name: str) -> bool:
    return Path(name).suffix != "" or "/" in name or "\\" in name


def _resolve_registry(name: str, option: str) -> Path:
    """A registry name -> local file; a missing file's error also names the AdaIN command's own option."""
    from nst import weights as registry

    try:
        return registry.resolve(name)
    except WeightsError as exc:
        raise WeightsError(f"{exc} With `python -m nst adain` you can also pass {option}.") from None


def _file_stamp(spec: str | Path) -> float:
    path = Path(spec)
    return path.stat().st_mtime if path.is_file() else 0.0


_models_lock = threading.Lock()
_encoders: "OrderedDict[tuple, FeatureNet]" = OrderedDict()
_decoders: "OrderedDict[tuple, nn.Module]" = OrderedDict()
MODEL_CACHE_SIZE = 2


def _remember(store: OrderedDict, key: tuple, build) -> nn.Module:
    with _models_lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    module = build()
    with _models_lock:
        store[key] = module
        while len(store) > MODEL_CACHE_SIZE:
            store.popitem(last=False)
    return module


def _fast_layout(module: nn.Module) -> nn.Module:
    """Channels-last weights: the 3x3 convolutions run about a quarter faster on CPUs (same results)."""
    return module.to(memory_format=torch.channels_last)


def get_encoder(spec: ModuleSpec = None, device: torch.device | str = "cpu") -> FeatureNet:
    """Resolve ``spec`` (None -> registry, a path, a registry name, or a FeatureNet) to an encoder on ``device``."""
    device = torch.device(device)
    if isinstance(spec, nn.Module):
        if not isinstance(spec, FeatureNet) or CONTENT_LAYER not in spec.index:
            raise ConfigError(
                f"The AdaIN encoder must be a FeatureNet with the layers {', '.join(STYLE_LAYERS)} "
                f"(build it with nst.adain.load_encoder)."
            )
        return _fast_layout(spec.to(device))
    weights = str(spec) if spec is not None else ENCODER_REGISTRY_NAME
    if weights != "random" and not Path(weights).is_file():
        if _looks_like_path(weights):
            raise WeightsError(
                f"The AdaIN encoder file '{weights}' does not exist; pass the path of naoto0804's "
                "vgg_normalised.pth (or a safetensors file with the same keys)."
            )
        weights = str(_resolve_registry(weights, "--encoder PATH (naoto0804's vgg_normalised.pth)"))
    key = (weights, _file_stamp(weights), str(device))
    return _remember(_encoders, key, lambda: _fast_layout(load_encoder(weights).to(device)))  # type: ignore[return-value]


def get_decoder(spec: ModuleSpec = None, device: torch.device | str = "cpu") -> nn.Module:
    """Resolve ``spec`` (None -> registry ``adain-decoder``, a path, a registry name, or a module) to a decoder."""
    device = torch.device(device)
    if isinstance(spec, nn.Module):
        return _fast_layout(spec.to(device))
    name = str(spec) if spec is not None else DECODER_REGISTRY_NAME
    path = Path(name)
    if not path.is_file():
        if _looks_like_path(name):
            raise WeightsError(
                f"The AdaIN decoder file '{name}' does not exist; pass the path of naoto0804's decoder.pth "
                "(or a safetensors file with the same keys)."
            )
        path = _resolve_registry(name, "--decoder PATH (naoto0804's decoder.pth)")
    key = (str(path), _file_stamp(path), str(device))
    return _remember(_decoders, key, lambda: _fast_layout(load_decoder(path).to(device)))


def clear_model_cache() -> None:
    with _models_lock:
        _encoders.clear()
        _decoders.clear()


# ---------------------------------------------------------------------------------------------
# The AdaIN operation and its variants


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Give each channel of ``content_feat`` the mean and std of ``style_feat`` (BxCxHxW each)."""
    same_batch = style_feat.shape[0] in (1, content_feat.shape[0])
    if content_feat.dim() != 4 or style_feat.dim() != 4 or content_feat.shape[1] != style_feat.shape[1] or not same_batch:
        raise ConfigError(
            f"AdaIN needs features with the same batch and channels: {tuple(content_feat.shape)} vs "
            f"{tuple(style_feat.shape)}."
        )
    c_mean, c_std = mean_std(content_feat, eps)
    s_mean, s_std = mean_std(style_feat, eps)
    return (content_feat - c_mean) / c_std * s_std + s_mean


def normalise_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Interpolation weights summing to 1; equal weights when None. Bad weights raise ConfigError."""
    if count < 1:
        raise ConfigError("Give at least one style image.")
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ConfigError(f"There are {count} style image(s) but {len(values)} style weight(s); give one per style.")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ConfigError(f"Style weights must be finite and non-negative, got {values}.")
    total = sum(values)
    if total <= 0:
        raise ConfigError("Style weights must not all be zero.")
    return [w / total for w in values]


def interpolate_styles(
    content_feat: torch.Tensor, style_feats: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """Weighted sum of the AdaIN outputs for each style (the paper's style interpolation)."""
    out = torch.zeros_like(content_feat)
    for feat, weight in zip(style_feats, weights):
        out = out + weight * adain(content_feat, feat)
    return out


def masked_adain(
    content_feat: torch.Tensor, style_feats: Sequence[torch.Tensor], mask: torch.Tensor, eps: float = EPS
) -> torch.Tensor:
    """Spatial control: region where ``mask`` is True gets ``style_feats[0]``, the rest ``style_feats[1]``.

    ``mask`` is HxW (bool) at the feature resolution. Each region is normalised with its own content
    statistics, as in the original AdaIN's ``-mask`` option. With one style the unmasked region keeps
    the content features.
    """
    if content_feat.shape[0] != 1:
        raise ConfigError("Masked AdaIN works on one content image at a time.")
    if bool(mask.all()) or not bool(mask.any()):  # one region: plain AdaIN (or the content)
        index = 0 if bool(mask.all()) else 1
        return adain(content_feat, style_feats[index], eps) if index < len(style_feats) else content_feat
    channels = content_feat.shape[1]
    flat = content_feat.reshape(channels, -1)
    out = flat.clone()
    mask_flat = mask.reshape(-1).to(content_feat.device)
    for region, feat in zip((mask_flat, ~mask_flat), style_feats):
        if int(region.sum()) < 2:
            continue
        part = flat[:, region].reshape(1, channels, -1, 1)
        out[:, region] = adain(part, feat, eps).reshape(channels, -1)
    return out.reshape_as(content_feat)


def target_features(
    content_feat: torch.Tensor,
    style_feats: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    alpha: float = 1.0,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """The decoder input t: AdaIN (interpolated, or per mask region) blended with the content by alpha."""
    if region is not None:
        styled = masked_adain(content_feat, style_feats, region)
    else:
        styled = interpolate_styles(content_feat, style_feats, normalise_weights(weights, len(style_feats)))
    if alpha == 1.0:
        return styled
    return alpha * styled + (1.0 - alpha) * content_feat


# ---------------------------------------------------------------------------------------------
# The encoder-feature cache


def _module_token(module: nn.Module) -> str:
    token = getattr(module, "_adain_cache_token", None)
    if token is None:
        token = uuid.uuid4().hex
        object.__setattr__(module, "_adain_cache_token", token)
    return token


class FeatureCache:
    """Bounded LRUs of encoder features and of AdaIN outputs, keyed by image content.

    Encoder features are keyed by (encoder, image content hash, size, device, padding); AdaIN
    outputs (before the alpha blend) by the keys of their content and styles plus the weights or
    mask. So an alpha change re-runs only the blend and the decoder, a new photo with the same
    style re-encodes only the photo. ``encoder_runs`` and ``adain_runs`` count the real work done;
    ``hits``/``misses`` count encoder-feature lookups.
    """

    def __init__(self, max_entries: int = 16, max_styled: int = 4):
        self.max_entries = max_entries
        self.max_styled = max_styled
        self._store: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self._styled: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self._lock = threading.Lock()
        self.encoder_runs = 0
        self.adain_runs = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(encoder: nn.Module, image: Image.Image, device: torch.device | str, pad: bool) -> tuple:
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
        return (_module_token(encoder), digest, image.size, str(device), pad)

    def encode(
        self, encoder: FeatureNet, image: Image.Image, device: torch.device, pad: bool
    ) -> tuple[tuple, torch.Tensor]:
        """(cache key, relu4_1 features) of ``image`` (padded to a multiple of 8 when ``pad``)."""
        key = self.key(encoder, image, device, pad)
        with self._lock:
            if key in self._store:
                self._store.move_to_end(key)
                self.hits += 1
                return key, self._store[key]
            self.misses += 1
        tensor = to_tensor(image, device)
        if pad:
            tensor = pad_to_multiple(tensor)
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            feat = encoder(tensor, [CONTENT_LAYER])[CONTENT_LAYER]
        with self._lock:
            self.encoder_runs += 1
            _put(self._store, key, feat, self.max_entries)
        return key, feat

    def features(self, encoder: FeatureNet, image: Image.Image, device: torch.device, pad: bool) -> torch.Tensor:
        """relu4_1 features of ``image``, from the cache if present."""
        return self.encode(encoder, image, device, pad)[1]

    def styled(self, key: tuple, compute) -> torch.Tensor:
        """The AdaIN output stored under ``key``, or ``compute()`` stored there."""
        with self._lock:
            if key in self._styled:
                self._styled.move_to_end(key)
                return self._styled[key]
        value = compute()
        with self._lock:
            self.adain_runs += 1
            _put(self._styled, key, value, self.max_styled)
        return value

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Drop all entries and reset the counters."""
        with self._lock:
            self._store.clear()
            self._styled.clear()
            self.encoder_runs = self.adain_runs = self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._store),
            "styled_entries": len(self._styled),
            "encoder_runs": self.encoder_runs,
            "adain_runs": self.adain_runs,
            "hits": self.hits,
            "misses": self.misses,
        }


def _put(store: OrderedDict, key: tuple, value: torch.Tensor, limit: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


_cache = FeatureCache()


def feature_cache() -> FeatureCache:
    """The process-wide cache :func:`stylize` uses by default."""
    return _cache


# ---------------------------------------------------------------------------------------------
# Image helpers


def pad_to_multiple(tensor: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Reflection-pad the right and bottom edges so height and width are multiples of ``multiple``."""
    h, w = tensor.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return tensor
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(tensor, (0, pw, 0, ph), mode=mode)


def _prepare(source: ImageSource, size: int | None, what: str) -> Image.Image:
    image = load_image(source, what=what)
    return resize_longest(image, size) if size else image


def recolor_style(style: Image.Image, content: Image.Image) -> Image.Image:
    """Colour preservation: the style image with the content's RGB mean and covariance (CORAL)."""
    return to_pil(match_color(to_tensor(style), to_tensor(content)))


def mask_to_features(mask: ImageSource, image_size: tuple[int, int], feature_hw: tuple[int, int]) -> torch.Tensor:
    """A mask (white = first style) as an HxW bool tensor at the feature resolution.

    The mask is resized to the content image, padded like it, area-averaged to the feature map
    and thresholded at one half.
    """
    if isinstance(mask, np.ndarray):
        values = mask.astype(np.float64)
        if values.ndim == 3:
            values = values[..., :3].mean(axis=2)
        if values.ndim != 2 or min(values.shape) < 1:
            raise ImageError(f"The mask array has shape {mask.shape}; expected HxW or HxWxC.")
        if mask.dtype != bool and values.max(initial=0) > 1.0:
            values = values / (65535.0 if mask.dtype == np.uint16 else 255.0)
        grid = torch.from_numpy(values.astype(np.float32))
    else:
        gray = load_image(mask, what="mask").convert("L")
        grid = torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)
    grid = grid[None, None]
    width, height = image_size
    grid = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
    grid = pad_to_multiple(grid)
    grid = F.adaptive_avg_pool2d(grid, feature_hw)
    return grid[0, 0] >= 0.5


# ---------------------------------------------------------------------------------------------
# Stylize


def stylize(
    content: ImageSource,
    styles: ImageSource | Sequence[ImageSource],
    weights: Sequence[float] | None = None,
    alpha: float = 1.0,
    preserve_color: bool = False,
    mask: ImageSource | None = None,
    size: int | None = 512,
    device: str | torch.device = "auto",
    encoder: ModuleSpec = None,
    decoder: ModuleSpec = None,
    style_size: int | None = None,
    metrics: bool = True,
    scorer: ReferenceScorer | None | bool = True,
    cache: FeatureCache | None = None,
) -> StyleResult:
    """Stylise ``content`` with one or more ``styles`` in one encoder-AdaIN-decoder pass.

    ``alpha`` in [0, 1] blends AdaIN features with the content features; ``weights`` interpolate
    several styles (normalised to sum 1); ``preserve_color`` recolours each style with the
    content's colour mean/covariance first; ``mask`` (white = ``styles[0]``, black = ``styles[1]``
    or the plain content when one style is given) applies styles to regions. ``size`` bounds the
    longest side of the content (None keeps it); the output has exactly the content's size.
    ``encoder``/``decoder``: None for the registry weights, a file path, or a built module.
    ``metrics=False`` skips SSIM and reference losses; ``scorer`` is passed to nst.metrics.report.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not style_list:
        raise ConfigError("Give at least one style image.")
    alpha = float(alpha)
    if not (0.0 <= alpha <= 1.0) or math.isnan(alpha):
        raise ConfigError(f"alpha must be between 0 and 1, not {alpha}.")
    if mask is not None:
        if weights is not None:
            raise ConfigError("Style weights and a mask cannot be combined: a mask assigns one style per region.")
        if len(style_list) > 2:
            raise ConfigError(
                f"A mask splits the image into two regions, so give one or two styles, not {len(style_list)}."
            )
        norm_weights: list[float] = []
    else:
        norm_weights = normalise_weights(weights, len(style_list))
    style_side = style_size if style_size is not None else size
    for value, label in ((size, "size"), (style_side, "style size")):
        if value is not None and int(value) < 16:
            raise ConfigError(f"The {label} must be at least 16 pixels, not {value}.")
    dev = pick_device(device)
    cache = cache if cache is not None else _cache

    t0 = time.perf_counter()
    content_img = _prepare(content, size, "content image")
    style_imgs = [_prepare(s, style_side, f"style image {i + 1}") for i, s in enumerate(style_list)]
    enc = get_encoder(encoder, dev)
    dec = get_decoder(decoder, dev)
    if preserve_color:
        style_inputs = [recolor_style(s, content_img) for s in style_imgs]
    else:
        style_inputs = style_imgs
    timings["prepare"] = time.perf_counter() - t0

    runs_before = cache.encoder_runs
    t0 = time.perf_counter()
    content_key, fc = cache.encode(enc, content_img, dev, pad=True)
    timings["encode_content"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    encoded = [cache.encode(enc, s, dev, pad=False) for s in style_inputs]
    fs = [feat for _, feat in encoded]
    timings["encode_styles"] = time.perf_counter() - t0
    reused = 1 + len(fs) - (cache.encoder_runs - runs_before)
    if reused:
        notes.append(f"{reused} of {1 + len(fs)} encoder pass(es) came from the feature cache.")

    t0 = time.perf_counter()
    with torch.inference_mode():
        region = None if mask is None else mask_to_features(mask, content_img.size, tuple(fc.shape[-2:]))
        region_key = None if region is None else hashlib.blake2b(region.cpu().numpy().tobytes()).hexdigest()
        styled_key = (content_key, tuple(k for k, _ in encoded), tuple(norm_weights), region_key)
        styled = cache.styled(styled_key, lambda: target_features(fc, fs, norm_weights or None, 1.0, region))
        target = styled if alpha == 1.0 else alpha * styled + (1.0 - alpha) * fc
        timings["adain"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = dec(target.contiguous(memory_format=torch.channels_last))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)  # so the timings measure the work, not the kernel launches
    width, height = content_img.size
    image = to_pil(decoded[..., :height, :width].clamp(0, 1))
    timings["decode"] = time.perf_counter() - t0

    result_metrics: dict[str, float] = {}
    if metrics:
        t0 = time.perf_counter()
        result_metrics = report(
            image, content_img, style_imgs, norm_weights or None, scorer=scorer, notes=notes
        )
        timings["metrics"] = time.perf_counter() - t0
    params = {
        "alpha": alpha,
        "style_weights": norm_weights,
        "preserve_color": bool(preserve_color),
        "mask": mask is not None,
        "size": list(content_img.size),
        "style_count": len(style_list),
        "device": str(dev),
    }
    return StyleResult(
        image=image,
        method="adain",
        metrics=result_metrics,
        params=params,
        seconds=time.perf_counter() - start,
        timings=timings,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# Pseudo ground truth (ablation-resnet18 report)


def adain_reference(
    content: ImageSource,
    style: ImageSource,
    size: int | None = 512,
    alpha: float = 1.0,
    device: str | torch.device = "auto",
    encoder: ModuleSpec = None,
    decoder: ModuleSpec = None,
) -> Image.Image:
    """The AdaIN output of a content/style pair, used as a pseudo ground truth."""
    return stylize(
        content, [style], alpha=alpha, size=size, device=device, encoder=encoder, decoder=decoder, metrics=False
    ).image


def score_against_adain(
    image: ImageSource,
    content: ImageSource,
    style: ImageSource,
    alpha: float = 1.0,
    device: str | torch.device = "auto",
    encoder: ModuleSpec = None,
    decoder: ModuleSpec = None,
    reference: ImageSource | None = None,
) -> dict[str, float]:
    """RMSE, PSNR and SSIM of any method's ``image`` against the AdaIN output of the same pair.

    The AdaIN reference is made at the size of ``image`` (longest side); pass ``reference`` to score
    against a given image instead.
    """
    output = load_image(image, what="image to score")
    if reference is not None:
        ref = load_image(reference, what="reference image")
    else:
        content_img = load_image(content, what="content image")
        ref = adain_reference(content_img, style, max(output.size), alpha, device, encoder, decoder)
    return compare(output, resize_to(ref, output.size))
