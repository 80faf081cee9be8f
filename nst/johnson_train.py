"""Train a Johnson fixed-style network with the paper's perceptual loss on VGG-16.

Content loss: MSE of relu2_2 features between the output and the content photo. Style loss: sum
over relu1_2, relu2_2, relu3_3 and relu4_3 of the MSE between Gram matrices (F F^T / CHW per
image) of the output and of the style image; optional total variation. Adam, random square crops
of a folder of photos, batch size, epochs or a step count, checkpoints every N steps with resume,
CSV (and TensorBoard) loss history, a safetensors file with a model card, optional Hub push.
Defaults follow pytorch/examples fast_neural_style (content 1e5, style 1e10, lr 1e-3, batch 4,
256 px, 2 epochs). The same loop trains the multi-style network (``nst.multistyle``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from nst.errors import ConfigError
from nst.features import FeatureNet, get_backbone
from nst.images import load_image, resize_longest, to_tensor
from nst.johnson import PIXEL_SCALE, TransformerNet, to_network
from nst.losses import gram_matrix, total_variation
from nst.progress import CancelToken, ProgressCallback
from nst.runtime import pick_device
from nst.training import (
    TrainOptions,
    ImageFolder,
    LoopSettings,
    TrainResult,
    batches,
    finish_training,
    resume_step,
    save_final,
    training_loop,
)

LOSS_BACKBONE = "vgg16"
CONTENT_LAYER = "relu2_2"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
FORMAT = "autoart"


@dataclass(kw_only=True)
class JohnsonTrainConfig(TrainOptions):
    """A training run; ``styles`` holds one style image (several for the multi-style network)."""

    content_dir: str
    styles: Sequence[str]
    output_dir: str = "runs/johnson"
    epochs: int | None = None
    steps: int | None = None
    content_weight: float = 1e5
    style_weight: float = 1e10
    tv_weight: float = 0.0
    resize: int = 256
    style_size: int = 512
    backbone_weights: str = "pretrained"
    upsample: str = "nearest"
    name: str = "johnson-custom"

    def validate(self) -> None:
        self.raise_first([
            (len(self.styles) >= 1, "at least one style image is needed"),
            (self.epochs is None or self.steps is None, "give either epochs or steps, not both"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be at least 1, not {self.epochs}"),
            (self.steps is None or self.steps >= 1, f"steps must be at least 1, not {self.steps}"),
            *self.common_checks(),
            (self.tv_weight >= 0, "loss weights must be >= 0"),
            (self.crop >= 16 and self.crop % 4 == 0, f"the crop must be a multiple of 4 and >= 16, not {self.crop}"),
            (self.style_size >= 0, f"the style size must be >= 0 (0 keeps the image), not {self.style_size}"),
        ])

    @property
    def random_backbone(self) -> bool:
        return self.backbone_weights == "random"


def image_gram(features: torch.Tensor) -> torch.Tensor:
    """Per-image Gram matrix F F^T / (C H W), the paper's normalisation (B x C x C)."""
    return gram_matrix(features) * features.shape[0]


def loss_network(config: JohnsonTrainConfig, device: torch.device) -> FeatureNet:
    """VGG-16 up to relu4_3 (ImageNet weights, a file, or seeded random weights for smoke runs)."""
    net = get_backbone(LOSS_BACKBONE, config.backbone_weights, seed=config.seed, device=str(device))
    return net.truncated(list(STYLE_LAYERS))


def style_targets(vgg: FeatureNet, style: str, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Gram matrices of one style image on the style layers (1 x C x C each)."""
    image = load_image(style, what="style image")
    if size:
        image = resize_longest(image, size)
    with torch.no_grad():
        feats = vgg(to_tensor(image, device), list(STYLE_LAYERS))
    return {name: image_gram(feats[name]) for name in STYLE_LAYERS}


def output_rgb(net: TransformerNet, y: torch.Tensor) -> torch.Tensor:
    """The network's raw output as RGB in [0, 1] units (not clamped, so gradients flow)."""
    y = y / PIXEL_SCALE
    return y.flip(1) if net.channel_order == "bgr" else y


def johnson_losses(
    net: TransformerNet, vgg: FeatureNet, content: torch.Tensor, targets: dict[str, torch.Tensor],
    config: JohnsonTrainConfig,
) -> dict[str, torch.Tensor]:
    """Weighted content, style and TV losses and their total for one batch of RGB [0, 1] photos."""
    out = output_rgb(net, net(to_network(content, net.channel_order)))
    with torch.no_grad():
        content_feats = vgg(content, [CONTENT_LAYER])[CONTENT_LAYER]
    feats = vgg(out, list(STYLE_LAYERS))
    loss_c = F.mse_loss(feats[CONTENT_LAYER], content_feats)
    loss_s = sum(
        F.mse_loss(image_gram(feats[n]), targets[n].expand(out.shape[0], -1, -1)) for n in STYLE_LAYERS
    )
    loss_tv = total_variation(out) if config.tv_weight else out.new_zeros(())
    weighted = {
        "content": config.content_weight * loss_c,
        "style": config.style_weight * loss_s,
        "tv": config.tv_weight * loss_tv,
    }
    weighted["total"] = weighted["content"] + weighted["style"] + weighted["tv"]
    return weighted


def total_steps(config: JohnsonTrainConfig, dataset_size: int) -> int:
    """``steps`` if given, else ``epochs`` (default 2) passes over the photos."""
    if config.steps is not None:
        return config.steps
    return (config.epochs or 2) * math.ceil(dataset_size / config.batch_size)


def metadata(config: JohnsonTrainConfig, net: TransformerNet, steps: int, fmt: str = FORMAT) -> dict[str, str]:
    """String metadata stored in checkpoints and the final safetensors file."""
    public = {k: v for k, v in asdict(config).items() if k not in ("token", "styles")}
    return {
        **{k: str(v) for k, v in public.items()},
        **net.describe(),
        "format": fmt,
        "steps": str(steps),
        "style_images": "|".join(Path(s).name for s in config.styles),
        "loss_network": LOSS_BACKBONE + (f" (random, seed {config.seed})" if config.random_backbone
                                         else f" ({config.backbone_weights})"),
    }


def model_card_text(config: JohnsonTrainConfig, net: TransformerNet, steps: int, history: list[dict[str, float]],
                    fmt: str, file_name: str) -> str:
    """Model card for the trained network (nst.publish.model_card)."""
    from nst.publish import model_card

    last = history[-1] if history else {}
    warning = (
        " WARNING: trained against a RANDOM-weight VGG-16 (a smoke test); it does not stylise images usefully."
        if config.random_backbone
        else ""
    )
    params: dict[str, object] = {
        "format": fmt,
        "styles": ", ".join(Path(s).name for s in config.styles),
        "steps": steps,
        "batch_size": config.batch_size,
        "lr": f"{config.lr} (Adam)",
        "content_weight": config.content_weight,
        "style_weight": config.style_weight,
        "tv_weight": config.tv_weight,
        "resize_then_crop": f"{config.resize} -> {config.crop}",
        "style_size": config.style_size or "original",
        "content_dir": Path(config.content_dir).name,
        "loss_network": f"VGG-16 ({'random' if config.random_backbone else config.backbone_weights}); content "
                        f"{CONTENT_LAYER}; style {', '.join(STYLE_LAYERS)}",
        "upsample": net.upsample,
        "seed": config.seed,
    }
    params.update({f"final_{k}_loss": round(v, 6) for k, v in last.items() if k in ("content", "style", "tv", "total")})
    kind = "several styles (conditional instance norm)" if fmt != FORMAT else "one style"
    return model_card(
        name=config.name,
        kind="johnson",
        license=config.license,
        base_model=None,
        tags=["johnson", "perceptual-loss"] + (["multi-style"] if fmt != FORMAT else []),
        params=params,
        description=(
            f"Johnson et al. (2016) feed-forward style network for {kind}, in the module layout of "
            "pytorch/examples fast_neural_style (conv1.conv2d.weight, in1.weight, res1..res5, deconv1..3). "
            "Input RGB scaled to 0-255, output clamped to 0-255; load with nst.johnson.load_johnson "
            f"(format '{fmt}')." + warning
        ),
        files=[file_name],
        repo_id=config.push_repo,
    )


StyleChooser = Callable[[int], int]
"""Which style target (index) a training step uses; it may also reconfigure the network."""


def run_training(
    config: JohnsonTrainConfig,
    net: TransformerNet,
    choose_style: StyleChooser,
    file_name: str,
    fmt: str,
    save: Callable[[TransformerNet, Path, dict], Path],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """The training loop shared by single- and multi-style networks."""
    config.validate()
    start_time = time.perf_counter()
    device = pick_device(config.device)
    out = Path(config.output_dir)
    dataset = ImageFolder(config.content_dir, resize=config.resize, crop=config.crop, seed=config.seed)
    vgg = loss_network(config, device)
    targets = [style_targets(vgg, s, config.style_size, device) for s in config.styles]
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)

    step = resume_step(out, net, optimizer, config.resume)
    goal = total_steps(config, len(dataset))
    data = batches(dataset, config.batch_size, seed=config.seed + step)

    def train_step(step: int) -> dict[str, float]:
        index = choose_style(step)
        losses = johnson_losses(net, vgg, next(data).to(device), targets[index], config)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        if len(targets) > 1:
            values["style_index"] = float(index)
        return values

    settings = LoopSettings(out, goal, config.log_every, config.save_every, config.tensorboard)
    outcome = training_loop(
        settings, net, optimizer, step, train_step, lambda s: {"metadata": metadata(config, net, s, fmt)},
        progress, cancel,
    )
    net.eval()
    model_path = save(net, out / file_name, metadata(config, net, outcome.step, fmt))
    card_text = model_card_text(config, net, outcome.step, outcome.history, fmt, file_name)
    return finish_training(config, model_path, card_text, outcome, step, start_time)


def new_network(config: JohnsonTrainConfig) -> TransformerNet:
    """A freshly initialised single-style network (seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return TransformerNet(config.upsample, "rgb")


def train_johnson(
    config: JohnsonTrainConfig,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train (or resume) a single-style network; the result is ``OUTPUT_DIR/johnson.safetensors``."""
    if len(config.styles) != 1:
        raise ConfigError(
            f"A Johnson network learns one style; {len(config.styles)} were given (use train-multistyle for several)."
        )
    return run_training(config, new_network(config), lambda step: 0, "johnson.safetensors", FORMAT,
                        save_final, progress, cancel)
