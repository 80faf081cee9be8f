"""Train an AdaIN decoder (Huang & Belongie 2017) as naoto0804/pytorch-AdaIN does.

Content loss: MSE between the relu4_1 features of the decoded image and the AdaIN target t.
Style loss: sum over relu1_1..relu4_1 of MSE(mean) + MSE(std). Adam 1e-4 with the reference
inverse-time decay ``lr / (1 + 5e-5 * step)``; 512 resize then 256 random crops of content and
style folders. Checkpoints (resume), CSV/TensorBoard loss history, a safetensors file in the
published decoder layout, a model card and an optional push to the Hugging Face Hub.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
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
from nst.errors import ConfigError
from nst.features import FeatureNet
from nst.losses import mean_std_loss
from nst.progress import CancelToken, Progress, ProgressCallback
from nst.runtime import pick_device
from nst.training import ImageFolder, LossLog, batches, latest_checkpoint, load_checkpoint, save_checkpoint, save_final

DECODER_FORMAT = "naoto0804-adain-decoder"


@dataclass
class AdainTrainConfig:
    """Everything a decoder training run needs; defaults follow the reference implementation."""

    content_dir: str
    style_dir: str
    output_dir: str = "runs/adain"
    steps: int = 160_000
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5
    content_weight: float = 1.0
    style_weight: float = 10.0
    resize: int = 512
    crop: int = 256
    save_every: int = 10_000
    log_every: int = 10
    encoder: str = ENCODER_REGISTRY_NAME
    random_encoder: bool = False
    init_decoder: str | None = None
    seed: int = 0
    device: str = "auto"
    tensorboard: bool = True
    resume: bool = False
    push_repo: str | None = None
    name: str = "adain-decoder-custom"
    license: str = "other"
    token: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be at least 1, not {self.steps}"),
            (self.batch_size >= 1, f"the batch size must be at least 1, not {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"the learning rate must be positive, not {self.lr}"),
            (self.lr_decay >= 0, f"the learning-rate decay must be >= 0, not {self.lr_decay}"),
            (self.content_weight >= 0 and self.style_weight >= 0, "loss weights must be >= 0"),
            (self.crop >= 16, f"the crop must be at least 16 pixels, not {self.crop}"),
            (self.resize >= self.crop, f"resize ({self.resize}) must be at least the crop ({self.crop})"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every and log_every must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message[0].upper() + message[1:] + ".")


@dataclass
class AdainTrainResult:
    """Where a run left its files and how far it got."""

    decoder_path: Path
    card_path: Path
    loss_csv: Path
    checkpoint: Path
    steps: int
    start_step: int
    history: list[dict[str, float]]
    seconds: float
    url: str | None = None
    cancelled: bool = False


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
) -> AdainTrainResult:
    """Train (or resume training) a decoder; returns where the files are. Tiny settings run on a CPU."""
    config.validate()
    start_time = time.perf_counter()
    device = pick_device(config.device)
    out = Path(config.output_dir)
    ckpt_dir = out / "checkpoints"
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

    step = 0
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None and not config.resume:
        raise ConfigError(
            f"'{out}' already holds checkpoints of an earlier run; pass --resume to continue it "
            "or choose another output folder."
        )
    if latest is not None:
        step, _ = load_checkpoint(latest, decoder, optimizer)
    start_step = step
    data = _pairs(
        batches(content_set, config.batch_size, seed=config.seed + step),
        batches(style_set, config.batch_size, seed=config.seed + 7919 + step),
    )
    history: list[dict[str, float]] = []
    log = LossLog(out / "loss.csv", out / "tensorboard" if config.tensorboard else None)
    checkpoint = latest_checkpoint(ckpt_dir)
    cancelled = False
    try:
        while step < config.steps:
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            lr = learning_rate(config.lr, config.lr_decay, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            content, style = next(data)
            loss_c, loss_s = adain_losses(encoder, decoder, content.to(device), style.to(device))
            loss = config.content_weight * loss_c + config.style_weight * loss_s
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            values = {"content": loss_c.item(), "style": loss_s.item(), "total": loss.item(), "lr": lr}
            if step % config.log_every == 0 or step == config.steps:
                log.log(step, values)
                history.append({"step": float(step), **values})
            if step % config.save_every == 0:
                checkpoint = save_checkpoint(ckpt_dir, step, decoder, optimizer, {"config": _metadata(config, step)})
            if progress is not None:
                progress(Progress(step, config.steps, values, time.perf_counter() - start_time))
    finally:
        log.close()
    if checkpoint is None or not checkpoint.name.startswith(f"step_{step:08d}"):
        checkpoint = save_checkpoint(ckpt_dir, step, decoder, optimizer, {"config": _metadata(config, step)})
    decoder.eval()
    decoder_path = save_final(decoder, out / "decoder.safetensors", _metadata(config, step))
    card_path = out / "README.md"
    card_text = _card(config, step, history)
    card_path.write_text(card_text)
    url = None
    if config.push_repo and not cancelled:
        from nst.publish import push

        url = push(config.push_repo, [decoder_path], card_text, token=config.token)
    return AdainTrainResult(
        decoder_path=decoder_path,
        card_path=card_path,
        loss_csv=out / "loss.csv",
        checkpoint=checkpoint,
        steps=step,
        start_step=start_step,
        history=history,
        seconds=time.perf_counter() - start_time,
        url=url,
        cancelled=cancelled,
    )
