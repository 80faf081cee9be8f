"""Gatys et al. image optimisation over any backbone of ``nst.features``.

Losses are the PyTorch tutorial's (gram F F^T / (a*b*c*d), MSE distances), so numbers are in the
units the reports quote. A step is one loss evaluation; the history has a row per evaluated image,
row 0 being the initial image before any update and row N the final image.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from nst.color import keep_content_colors
from nst.errors import Cancelled, ConfigError
from nst.features import FeatureNet, get_backbone
from nst.images import MIN_SIDE, ImageSource, load_image, resize_longest, to_pil, to_tensor
from nst.losses import gram_matrix, total_variation
from nst.metrics import ReferenceScorer, report
from nst.precision import check_precision, resolve_precision
from nst.progress import CancelToken, Progress, ProgressCallback
from nst.result import StyleResult
from nst.runtime import pick_device
from nst.tap_losses import tap_loss_vector

OPTIMIZERS = ("lbfgs", "adam", "adamw")
INITS = ("content", "noise", "blend")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02, "adamw": 0.02}
LBFGS_ITERATIONS_PER_STEP = 20  # torch's default max_iter, as in the tutorial
MAX_SIZE = 4096


@dataclass
class GatysConfig:
    """Every setting of a Gatys run (the images are passed to ``stylize``)."""

    backbone: str = "vgg19"
    weights: str = "pretrained"
    content_layers: list[str] = field(default_factory=lambda: ["conv_4"])
    style_layers: list[str] = field(default_factory=lambda: ["conv_1", "conv_2", "conv_3", "conv_4", "conv_5"])
    style_layer_weights: Optional[list[float]] = None
    content_weight: float = 1.0
    style_weight: float = 1e6
    tv_weight: float = 0.0
    optimizer: str = "lbfgs"
    lr: Optional[float] = None
    lbfgs_history: int = 100  # curvature pairs L-BFGS keeps (torch's default, as in the tutorial)
    steps: int = 300
    init: str = "content"
    noise_ratio: float = 0.6
    size: int = 512
    style_scale: float = 1.0
    style_weights: Optional[list[float]] = None
    seed: int = 0
    device: str = "auto"
    clamp: bool = True
    preserve_color: bool = False
    progress_every: int = 10
    preview_every: int = 0
    gram_precision: str = "auto"  # nst.precision: exact float32, or fast bf16/TF32 products where supported

    def replace(self, **changes: Any) -> "GatysConfig":
        return dataclasses.replace(self, **changes)


_TUTORIAL_STYLE = ["conv_1", "conv_2", "conv_3", "conv_4", "conv_5"]
_MOBILENET_FINE = ["conv_1_1", "conv_2_2", "conv_4_2", "conv_8_2", "conv_14_2"]
_MOBILENET_BLOCKS = ["layer_1", "layer_2", "layer_4", "layer_8", "layer_14"]

PRESETS: dict[str, dict[str, Any]] = {
    # PyTorch neural-style tutorial (vgg19-tutorial.txt, autoart.txt): L-BFGS, 300 runs.
    "tutorial": dict(backbone="vgg19", content_layers=["conv_4"], style_layers=_TUTORIAL_STYLE,
                     content_weight=1.0, style_weight=1e6, optimizer="lbfgs", steps=300, init="content"),
    # Gatys et al. 2016 layer choice (ablation-resnet18.txt's VGG-19 setting).
    "vgg19-paper": dict(backbone="vgg19", content_layers=["relu4_2"],
                        style_layers=["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
                        content_weight=1.0, style_weight=1e6, optimizer="lbfgs", steps=300),
    # ablation-resnet18.txt: VGG-16 and ResNet-18 settings, L-BFGS, 1000 iterations for ResNet-18.
    "vgg16": dict(backbone="vgg16", content_layers=["relu2_2"],
                  style_layers=["relu1_2", "relu2_2", "relu3_3", "relu4_3"],
                  content_weight=1.0, style_weight=1e6, optimizer="lbfgs", steps=300),
    "resnet18": dict(backbone="resnet18", content_layers=["layer1"], style_layers=["conv1", "layer1", "layer2", "layer3"],
                     content_weight=1.0, style_weight=1e6, optimizer="lbfgs", steps=1000, init="content"),
    # autoart.txt: ResNeXt (content layer2, style layer1..layer4), 300 runs.
    "resnext": dict(backbone="resnext50_32x4d", content_layers=["layer2"],
                    style_layers=["layer1", "layer2", "layer3", "layer4"],
                    content_weight=1.0, style_weight=1e6, optimizer="lbfgs", steps=300),
    # autoart.txt: AlexNet with its reported weights (content 1e7, style 100), 1000 runs.
    "alexnet": dict(backbone="alexnet", content_layers=["conv_4"], style_layers=_TUTORIAL_STYLE,
                    content_weight=1e7, style_weight=100.0, optimizer="lbfgs", steps=1000),
    # autoart.txt: MobileNetV2 at block level (layer_N) and fine-grained taps with skips kept.
    "mobilenet_v2": dict(backbone="mobilenet_v2", content_layers=_MOBILENET_BLOCKS, style_layers=_MOBILENET_BLOCKS,
                         content_weight=1.0, style_weight=1e5, optimizer="lbfgs", steps=500),
    "mobilenet_v2-fine": dict(backbone="mobilenet_v2", content_layers=_MOBILENET_FINE, style_layers=_MOBILENET_FINE,
                              content_weight=1.0, style_weight=1e5, optimizer="lbfgs", steps=500),
    # autoart.txt: the flattened net (skips removed), ImageNet weights and the fine-tuned AutoArt weights.
    "mobilenet_v2-flat": dict(backbone="mobilenet_v2_flat", content_layers=_MOBILENET_FINE,
                              style_layers=_MOBILENET_FINE, content_weight=1.0, style_weight=1e5,
                              optimizer="lbfgs", steps=500),
    "autoart": dict(backbone="mobilenet_v2_flat", weights="autoart-mobilenet-v2", content_layers=_MOBILENET_FINE,
                    style_layers=_MOBILENET_FINE, content_weight=1.0, style_weight=1e5, optimizer="lbfgs", steps=500),
}


def preset(name: str, **overrides: Any) -> GatysConfig:
    """A config from a named preset with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset '{name}'. Choose one of: {', '.join(PRESETS)}.")
    return GatysConfig(**{**PRESETS[name], **overrides})


def validate(config: GatysConfig, style_count: int) -> None:
    """Raise ConfigError with a plain sentence for any out-of-range setting."""
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimiser '{config.optimizer}'. Choose one of: {', '.join(OPTIMIZERS)}.")
    check_precision(config.gram_precision)
    if config.init not in INITS:
        raise ConfigError(f"Unknown init '{config.init}'. Choose one of: {', '.join(INITS)}.")
    if not 0.0 <= config.noise_ratio <= 1.0:
        raise ConfigError(f"noise_ratio must be between 0 and 1, not {config.noise_ratio}.")
    if not 1 <= config.steps <= 100_000:
        raise ConfigError(f"steps must be between 1 and 100000, not {config.steps}.")
    if not MIN_SIDE <= config.size <= MAX_SIZE:
        raise ConfigError(f"The output size must be between {MIN_SIDE} and {MAX_SIZE} pixels, not {config.size}.")
    if config.style_scale <= 0:
        raise ConfigError("style_scale must be positive.")
    if min(config.content_weight, config.style_weight, config.tv_weight) < 0:
        raise ConfigError("Loss weights cannot be negative.")
    if not 1 <= config.lbfgs_history <= 1000:
        raise ConfigError(f"lbfgs_history must be between 1 and 1000, not {config.lbfgs_history}.")
    if config.lr is not None and config.lr <= 0:
        raise ConfigError("The learning rate must be positive.")
    if not config.content_layers and not config.style_layers:
        raise ConfigError("Choose at least one content or style layer.")
    for what, layers in (("content", config.content_layers), ("style", config.style_layers)):
        repeated = sorted({n for n in layers if list(layers).count(n) > 1})
        if repeated:
            raise ConfigError(f"{what.capitalize()} layer(s) listed more than once: {', '.join(repeated)}. "
                              "List each layer once (use style layer weights to weight one more).")
    if style_count < 1:
        raise ConfigError("Give at least one style image.")
    _check_weights(config.style_weights, style_count, "style image")
    _check_weights(config.style_layer_weights, len(config.style_layers), "style layer")


def _check_weights(weights: Optional[Sequence[float]], count: int, what: str) -> None:
    if weights is None:
        return
    if len(weights) != count:
        raise ConfigError(f"Got {len(weights)} {what} weight(s) for {count} {what}(s).")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"{what.capitalize()} weights must be non-negative and not all zero.")


def initial_image(content: torch.Tensor, init: str, noise_ratio: float, seed: int) -> torch.Tensor:
    """``content``: a copy; ``noise``: uniform white noise; ``blend``: (1-r)*content + r*noise."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(content.shape, generator=generator).to(content.device)
    if init == "content":
        return content.clone()
    if init == "noise":
        return noise
    return (1.0 - noise_ratio) * content + noise_ratio * noise


class _Objective:
    """Content, style and TV terms for one extractor and fixed targets."""

    def __init__(self, extractor: FeatureNet, config: GatysConfig, content: torch.Tensor, styles: list[torch.Tensor],
                 precision: str = "exact"):
        self.extractor = extractor
        self.config = config
        self.precision = precision
        self.content_layers = list(config.content_layers)
        self.style_layers = list(config.style_layers)
        self.layers = list(dict.fromkeys(self.content_layers + self.style_layers))
        self.folded = extractor.inner_taps(self.layers)  # their loss gradients join the network's own
        layer_weights = config.style_layer_weights or [1.0] * len(self.style_layers)
        # the loss vector is (content losses..., style losses...): one dot gives the total, one product
        # with ``recorder`` the record (content, style, tv, total), instead of a tensor operation per term
        content_w = [float(config.content_weight)] * len(self.content_layers)
        style_w = [float(config.style_weight) * float(w) for w in layer_weights]
        zeros_c, zeros_s = [0.0] * len(content_w), [0.0] * len(style_w)
        self.recorder = torch.tensor([content_w + zeros_s, zeros_c + style_w, zeros_c + zeros_s, content_w + style_w],
                                     device=content.device)
        self.weights = self.recorder[3]
        self.tv_row = torch.tensor([0.0, 0.0, 1.0, 1.0], device=content.device)
        image_weights = _normalise(config.style_weights, len(styles))
        with torch.no_grad():
            feats = extractor(content, self.content_layers) if self.content_layers else {}
            self.content_targets = {n: feats[n].detach() for n in self.content_layers}
            self.style_targets: dict[str, torch.Tensor] = {}
            for style, weight in zip(styles, image_weights):
                if weight == 0 or not self.style_layers:
                    continue
                style_feats = extractor(style, self.style_layers)
                for n in self.style_layers:
                    gram = weight * gram_matrix(style_feats[n]).detach()
                    self.style_targets[n] = self.style_targets[n] + gram if n in self.style_targets else gram

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted total loss (to differentiate) and a detached 4-vector (content, style, tv, total)."""
        feats = self.extractor(image, self.layers)
        losses = tap_loss_vector(feats, self.content_targets, self.style_targets, self.precision, self.folded)
        total = torch.dot(self.weights, losses)
        record = torch.mv(self.recorder, losses.detach())
        if self.config.tv_weight:
            tv = total_variation(image) * self.config.tv_weight
            total = total + tv
            record = record + self.tv_row * tv.detach()
        return total, record


def _normalise(weights: Optional[Sequence[float]], count: int) -> list[float]:
    weights = list(weights) if weights is not None else [1.0] * count
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def stylize(
    content: ImageSource,
    styles: Sequence[ImageSource] | ImageSource,
    config: GatysConfig | None = None,
    callback: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    scorer: ReferenceScorer | None | bool = True,
    extractor: FeatureNet | None = None,
) -> StyleResult:
    """Optimise an image so its features match ``content`` and its grams match ``styles``.

    ``extractor`` overrides the backbone built from the config (tests, dissection experiments) and
    the run happens on its device;
    ``scorer`` is passed to ``nst.metrics.report``. A cancelled run returns its current image with
    ``cancelled=True``.
    """
    config = config or GatysConfig()
    style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    validate(config, len(style_list))
    started = time.perf_counter()
    device = extractor.mean.device if extractor is not None else pick_device(config.device)
    precision = resolve_precision(config.gram_precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size for the whole run: let cuDNN pick kernels
    content_image = resize_longest(load_image(content, what="content image"), config.size)
    style_side = max(MIN_SIDE, round(config.size * config.style_scale))
    style_images = [resize_longest(load_image(s, what="style image"), style_side) for s in style_list]

    net = extractor if extractor is not None else get_backbone(config.backbone, config.weights, config.seed, str(device))
    layers = list(dict.fromkeys(list(config.content_layers) + list(config.style_layers)))
    truncated = net.truncated(layers)  # shares the (cached) backbone's modules: never moved here
    content_tensor = to_tensor(content_image, device)
    objective = _Objective(truncated, config, content_tensor, [to_tensor(s, device) for s in style_images], precision)
    prepared = time.perf_counter()

    image = initial_image(content_tensor, config.init, config.noise_ratio, config.seed).requires_grad_(True)
    runner = _Runner(objective, image, config, callback, cancel, started)
    cancelled = False
    try:
        runner.optimise()
    except Cancelled:
        cancelled = True
    looped = time.perf_counter()
    final = runner.finish()
    optimised = time.perf_counter()

    output = to_pil(final)
    if config.preserve_color:
        output = keep_content_colors(content_image, output)
    notes: list[str] = []
    metrics = report(output, content_image, style_images, config.style_weights, scorer=scorer, notes=notes)
    finished = time.perf_counter()
    return StyleResult(
        image=output,
        method="gatys",
        history=runner.history(),
        metrics=metrics,
        params={**dataclasses.asdict(config), "content_size": list(content_image.size),
                "style_sizes": [list(s.size) for s in style_images], "device": str(device),
                "gram_precision_used": precision},
        seconds=finished - started,
        timings={"prepare": prepared - started, "optimise": optimised - prepared, "metrics": finished - optimised,
                 "ms_per_step": 1000 * (looped - prepared) / max(1, runner.evaluations),
                 "optimiser_ms_per_step": 1000 * (looped - prepared - sum(runner.evaluation_seconds))
                 / max(1, runner.evaluations),
                 "evaluation_ms_median": 1000 * statistics.median(runner.evaluation_seconds or [0.0])},
        notes=notes,
        cancelled=cancelled,
    )


class _Runner:
    """The optimisation loop: counts evaluations, records losses, reports progress, honours cancel."""

    def __init__(self, objective: _Objective, image: torch.Tensor, config: GatysConfig,
                 callback: ProgressCallback | None, cancel: CancelToken | None, started: float):
        self.objective = objective
        self.image = image
        self.config = config
        self.callback = callback
        self.cancel = cancel
        self.started = started
        self.records: list[torch.Tensor] = []
        self.evaluations = 0
        self.evaluation_seconds: list[float] = []  # each loss evaluation's; the rest of the loop is the optimiser's
        lr = config.lr if config.lr is not None else DEFAULT_LR[config.optimizer]
        if config.optimizer == "lbfgs":
            self.optimizer: torch.optim.Optimizer = torch.optim.LBFGS([image], lr=lr,
                                                                      history_size=config.lbfgs_history)
        elif config.optimizer == "adam":
            self.optimizer = torch.optim.Adam([image], lr=lr)
        else:
            self.optimizer = torch.optim.AdamW([image], lr=lr)

    def _clamp(self) -> None:
        if self.config.clamp:
            with torch.no_grad():
                self.image.clamp_(0, 1)

    def _record(self, terms: torch.Tensor) -> None:
        step = len(self.records)
        self.records.append(terms)
        every = self.config.progress_every
        if self.callback is not None and (step == 0 or step == self.config.steps or (every and step % every == 0)):
            preview = None
            if self.config.preview_every and step % self.config.preview_every == 0:
                preview = to_pil(self.image.detach().clamp(0, 1))
            values = terms.tolist()
            losses = dict(zip(("content", "style", "tv", "total"), values))
            self.callback(Progress(step, self.config.steps, losses, time.perf_counter() - self.started, preview))

    def _evaluate_with_grad(self) -> torch.Tensor:
        entered = time.perf_counter()
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self.optimizer.zero_grad(set_to_none=True)
        total, terms = self.objective(self.image)
        total.backward()
        self.evaluations += 1
        self._record(terms)
        self.evaluation_seconds.append(time.perf_counter() - entered)
        return total

    def optimise(self) -> None:
        steps = self.config.steps
        if self.config.optimizer == "lbfgs":
            group = self.optimizer.param_groups[0]
            while self.evaluations < steps:
                chunk = min(LBFGS_ITERATIONS_PER_STEP, steps - self.evaluations)
                # max_eval above max_iter: the chunk ends on its update, not on a repeated evaluation
                group["max_iter"], group["max_eval"] = chunk, chunk * 5 // 4 + 1
                before = self.evaluations

                def closure() -> torch.Tensor:
                    self._clamp()  # the tutorial clamps the image at every evaluation
                    return self._evaluate_with_grad()

                self.optimizer.step(closure)
                if self.evaluations == before:
                    break
        else:
            for _ in range(steps):
                self._evaluate_with_grad()
                self.optimizer.step()
                self._clamp()

    def finish(self) -> torch.Tensor:
        """Clamp, evaluate the final image (last history row) and return it."""
        with torch.no_grad():
            self.image.clamp_(0, 1)
            _, terms = self.objective(self.image)
        self._record(terms)
        return self.image.detach()

    def history(self) -> list[dict[str, float]]:
        if not self.records:
            return []
        table = torch.stack(self.records).cpu().tolist()
        return [
            {"step": i, "content": c, "style": s, "tv": tv, "total": total}
            for i, (c, s, tv, total) in enumerate(table)
        ]
