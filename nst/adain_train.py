"""Train an AdaIN decoder (Huang & Belongie 2017) as naoto0804/pytorch-AdaIN does.

Content loss: MSE between the relu4_1 features of the decoded image and the AdaIN target t.
Style loss: sum over relu1_1..relu4_1 of MSE(mean) + MSE(std). Adam 1e-4 with the reference
inverse-time decay ``lr / (1 + 5e-5 * step)``; 512 resize then 256 random crops of content and
style folders. Checkpoints (resume), CSV/TensorBoard loss history, a safetensors file in the
published decoder layout, a model card and an optional push to the Hugging Face Hub.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nst.adain import (
    CONTENT_LAYER,
    ENCODER_REGISTRY_NAME,
    STYLE_LAYERS,
    adain,
    build_decoder,
    get_encoder,
    load_decoder,
    random_encoder,
)
from nst.features import FeatureNet
from nst.losses import mean_std_loss
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

DECODER_FORMAT = "naoto0804-adain-decoder"


@dataclass(kw_only=True)
class AdainTrainConfig(TrainOptions):
    """Everything a decoder training run needs; defaults follow the reference implementation."""

    content_dir: str
    style_dir: str
    output_dir: str = "runs/adain"
    steps: int = 160_000
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5
    style_weight: float = 10.0
    save_every: int = 10_000
    encoder: str = ENCODER_REGISTRY_NAME
    random_encoder: bool = False
    init_decoder: str | None = None
    name: str = "adain-decoder-custom"

    def validate(self) -> None:
        self.raise_first([
            (self.steps >= 1, f"steps must be at least 1, not {self.steps}"),
            *self.common_checks(),
            (self.lr_decay >= 0, f"the learning-rate decay must be >= 0, not {self.lr_decay}"),
            (self.crop >= 16, f"the crop must be at least 16 pixels, not {self.crop}"),
        ])


def learning_rate(base: float, decay: float, step: int) -> float:
    """The reference implementation's inverse-time decay: ``base / (1 + decay * step)``."""
    return base / (1.0 + decay * step)


def adain_losses(
    encoder: FeatureNet, decoder: nn.Module, content: torch.Tensor, style: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(content loss, style loss) of one batch of content/style pairs, as in the paper."""
    with torch.no_grad():
        style_feats = encoder(style, STYLE_LAYERS)
        t = adain(encoder(content, [CONTENT_LAYER])[CONTENT_LAYER], style_feats[CONTENT_LAYER])
    decoded = decoder(t)
    out_feats = encoder(decoded, STYLE_LAYERS)
    loss_c = F.mse_loss(out_feats[CONTENT_LAYER], t)
    loss_s = mean_std_loss([out_feats[n] for n in STYLE_LAYERS], [style_feats[n] for n in STYLE_LAYERS])
    return loss_c, loss_s


def _pairs(content: Iterator[torch.Tensor], style: Iterator[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for c, s in zip(content, style):
        n = min(len(c), len(s))
        yield c[:n], s[:n]


def _encoder(config: AdainTrainConfig, device: torch.device) -> FeatureNet:
    if config.random_encoder:
        return random_encoder(config.seed).to(device)
    return get_encoder(config.encoder, device)


def _metadata(config: AdainTrainConfig, steps: int) -> dict[str, str]:
    public = {k: v for k, v in asdict(config).items() if k != "token"}
    return {
        "format": DECODER_FORMAT,
        "steps": str(steps),
        "encoder": "random (seed %d)" % config.seed if config.random_encoder else str(config.encoder),
        **{k: str(v) for k, v in public.items() if k not in ("encoder",)},
    }


def _card(config: AdainTrainConfig, steps: int, history: list[dict[str, float]]) -> str:
    from nst.publish import model_card

    last = history[-1] if history else {}
    warning = (
        " WARNING: trained against a RANDOM-weight encoder (a smoke test); it does not stylise images usefully."
        if config.random_encoder
        else ""
    )
    params: dict[str, object] = {
        "arch": "adain_decoder",
        "format": DECODER_FORMAT,
        "steps": steps,
        "batch_size": config.batch_size,
        "lr": f"{config.lr} / (1 + {config.lr_decay} * step) (Adam)",
        "content_weight": config.content_weight,
        "style_weight": config.style_weight,
        "resize_then_crop": f"{config.resize} -> {config.crop}",
        "content_dir": Path(config.content_dir).name,
        "style_dir": Path(config.style_dir).name,
        "encoder": f"random (seed {config.seed})" if config.random_encoder else config.encoder,
        "seed": config.seed,
        "init_decoder": Path(config.init_decoder).name if config.init_decoder else "random init",
    }
    params.update({f"final_{k}_loss": round(v, 6) for k, v in last.items() if k in ("content", "style", "total")})
    return model_card(
        name=config.name,
        kind="adain",
        license=config.license,
        base_model=None,
        tags=["arbitrary-style-transfer"],
        params=params,
        description=(
            "Decoder for arbitrary style transfer with adaptive instance normalisation (Huang & Belongie 2017), "
            "in the layout of naoto0804/pytorch-AdaIN's decoder.pth (nn.Sequential keys 1.weight ... 28.bias). "
            "Use it with the normalised VGG-19 encoder (registry name adain-vgg-encoder), read at relu4_1."
            + warning
        ),
        files=["decoder.safetensors"],
        repo_id=config.push_repo,
    )


def train_decoder(
    config: AdainTrainConfig,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train (or resume training) a decoder; returns where the files are. Tiny settings run on a CPU."""
    config.validate()
    start_time = time.perf_counter()
    device = pick_device(config.device)
    out = Path(config.output_dir)
    content_set = ImageFolder(config.content_dir, resize=config.resize, crop=config.crop, seed=config.seed)
    style_set = ImageFolder(config.style_dir, resize=config.resize, crop=config.crop, seed=config.seed + 1)
    encoder = _encoder(config, device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        decoder = build_decoder()
    if config.init_decoder:
        decoder.load_state_dict(load_decoder(config.init_decoder).state_dict())
    decoder = decoder.to(device).train()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)

    step = resume_step(out, decoder, optimizer, config.resume)
    data = _pairs(
        batches(content_set, config.batch_size, seed=config.seed + step),
        batches(style_set, config.batch_size, seed=config.seed + 7919 + step),
    )

    def train_step(step: int) -> dict[str, float]:
        lr = learning_rate(config.lr, config.lr_decay, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        content, style = next(data)
        loss_c, loss_s = adain_losses(encoder, decoder, content.to(device), style.to(device))
        loss = config.content_weight * loss_c + config.style_weight * loss_s
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"content": loss_c.item(), "style": loss_s.item(), "total": loss.item(), "lr": lr}

    settings = LoopSettings(out, config.steps, config.log_every, config.save_every, config.tensorboard)
    outcome = training_loop(
        settings, decoder, optimizer, step, train_step, lambda s: {"config": _metadata(config, s)}, progress, cancel
    )
    decoder.eval()
    decoder_path = save_final(decoder, out / "decoder.safetensors", _metadata(config, outcome.step))
    return finish_training(config, decoder_path, _card(config, outcome.step, outcome.history), outcome, step,
                           start_time)
