"""Shared training utilities: image-folder datasets, loss logs, checkpoints and resume."""

from __future__ import annotations

import csv
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nst.errors import ConfigError, ImageError, NSTError, WeightsError
from nst.images import load_image, to_tensor
from nst.progress import CancelToken, Progress, ProgressCallback

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.safetensors$")


class ImageFolder(Dataset):
    """Images under ``root`` (recursively): shorter side resized to ``resize``, random ``crop`` square.

    Unreadable files are skipped with their names remembered in ``skipped``.
    """

    def __init__(self, root: str | Path, resize: int | None = 512, crop: int = 256, seed: int = 0):
        root = Path(root)
        if not root.is_dir():
            raise ImageError(f"The training folder '{root}' does not exist.")
        self.paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise ImageError(f"The training folder '{root}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        if resize is not None and resize < crop:
            raise NSTError(f"resize ({resize}) must be at least the crop size ({crop}).")
        self.resize = resize
        self.crop = crop
        self.rng = random.Random(seed)
        self.skipped: list[Path] = []

    def __len__(self) -> int:
        return len(self.paths)

    def _prepare(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short = self.resize if self.resize is not None else min(width, height)
        short = max(short, self.crop)
        scale = short / min(width, height)
        if scale != 1.0:
            image = image.resize((max(self.crop, round(width * scale)), max(self.crop, round(height * scale))),
                                 Image.Resampling.BILINEAR)
        width, height = image.size
        left = self.rng.randint(0, width - self.crop)
        top = self.rng.randint(0, height - self.crop)
        return image.crop((left, top, left + self.crop, top + self.crop))

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                image = load_image(path, what="training image")
            except ImageError:
                self.skipped.append(path)
                continue
            return to_tensor(self._prepare(image))[0]
        raise ImageError("None of the training images could be read.")


def batches(dataset: Dataset, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless shuffled batches (a new shuffle every pass, reproducible from ``seed``)."""
    if batch_size < 1:
        raise NSTError("The batch size must be at least 1.")
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=False, generator=generator)
    while True:
        yield from loader


class LossLog:
    """Append loss values to a CSV file (always) and to TensorBoard (when it is installed)."""

    def __init__(self, csv_path: str | Path, tensorboard_dir: str | Path | None = None):
        self.path = Path(csv_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as handle:
                self._fields = next(csv.reader(handle), None)
        self._handle = open(self.path, "a", newline="")
        self._writer: csv.DictWriter | None = None
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = None
            else:
                self._tb = SummaryWriter(str(tensorboard_dir))

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        if self._writer is None:
            if self._fields is None:
                self._fields = list(row)
                self._writer = csv.DictWriter(self._handle, fieldnames=self._fields, extrasaction="ignore")
                self._writer.writeheader()
            else:
                self._writer = csv.DictWriter(self._handle, fieldnames=self._fields, extrasaction="ignore")
        self._writer.writerow(row)
        self._handle.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"loss/{key}", float(value), step)

    def close(self) -> None:
        self._handle.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "LossLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_checkpoint(
    directory: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None, extra: dict | None = None
) -> Path:
    """Write ``step_<N>.safetensors`` (model) and ``step_<N>.pt`` (optimizer state, step, extra JSON)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"step_{step:08d}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "extra": json.dumps(extra or {}),
        },
        directory / f"step_{step:08d}.pt",
    )
    return weights


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The model file of the highest step in ``directory``, or None when there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[int, dict]:
    """Restore model (and optimizer) from a ``step_<N>.safetensors`` file; return (step, extra)."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise WeightsError(f"No checkpoint (step_*.safetensors) found in '{path}'.")
        path = latest
    from nst.checkpoints import load_exact

    load_exact(model, load_file(str(path)), f"the model being resumed from '{path.name}'")
    sidecar = path.with_suffix(".pt")
    if not sidecar.is_file():
        raise WeightsError(f"'{sidecar.name}' (optimizer state and step) is missing next to '{path.name}'.")
    state = torch.load(str(sidecar), map_location="cpu", weights_only=True)
    if optimizer is not None and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), json.loads(state.get("extra") or "{}")


def save_final(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Save the trained weights as safetensors with string metadata (training parameters, format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    return path


CHECKPOINT_DIR = "checkpoints"
LOSS_CSV = "loss.csv"


@dataclass
class TrainResult:
    """Where a training run left its files and how far it got."""

    model_path: Path
    card_path: Path
    loss_csv: Path
    checkpoint: Path
    steps: int
    start_step: int
    history: list[dict[str, float]]
    seconds: float
    url: str | None = None
    cancelled: bool = False


def resume_step(
    output_dir: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, resume: bool
) -> int:
    """0 for a fresh run; the step of the last checkpoint with ``resume`` (model and optimizer restored).

    A folder that already holds checkpoints is refused without ``resume`` rather than overwritten.
    """
    out = Path(output_dir)
    latest = latest_checkpoint(out / CHECKPOINT_DIR)
    if latest is None:
        return 0
    if not resume:
        raise ConfigError(
            f"'{out}' already holds checkpoints of an earlier run; pass --resume to continue it "
            "or choose another output folder."
        )
    step, _ = load_checkpoint(latest, model, optimizer)
    return step


@dataclass
class LoopSettings:
    """How often a training loop logs and checkpoints, and where."""

    output_dir: Path
    goal: int
    log_every: int
    save_every: int
    tensorboard: bool = False


def training_loop(
    settings: LoopSettings,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    start_step: int,
    train_step: Callable[[int], dict[str, float]],
    checkpoint_extra: Callable[[int], dict],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> LoopOutcome:
    """Run ``train_step(step)`` until ``settings.goal`` or a cancel: log, checkpoint, report progress.

    ``checkpoint_extra(step)`` is the JSON-able dict stored with each checkpoint.

    A checkpoint of the last step is always written, so a cancelled or finished run can be resumed.
    """
    out = Path(settings.output_dir)
    ckpt_dir = out / CHECKPOINT_DIR
    started = time.perf_counter()
    step, history, cancelled = start_step, [], False
    checkpoint = latest_checkpoint(ckpt_dir)
    log = LossLog(out / LOSS_CSV, out / "tensorboard" if settings.tensorboard else None)
    try:
        while step < settings.goal:
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            values = train_step(step)
            step += 1
            if step % settings.log_every == 0 or step == settings.goal:
                log.log(step, values)
                history.append({"step": float(step), **values})
            if step % settings.save_every == 0:
                checkpoint = save_checkpoint(ckpt_dir, step, model, optimizer, checkpoint_extra(step))
            if progress is not None:
                progress(Progress(step, settings.goal, values, time.perf_counter() - started))
    finally:
        log.close()
    if checkpoint is None or not checkpoint.name.startswith(f"step_{step:08d}"):
        checkpoint = save_checkpoint(ckpt_dir, step, model, optimizer, checkpoint_extra(step))
    return LoopOutcome(step, history, checkpoint, cancelled)


@dataclass
class LoopOutcome:
    """What ``training_loop`` ended with."""

    step: int
    history: list[dict[str, float]]
    checkpoint: Path
    cancelled: bool


def finish_training(
    options: "TrainOptions", model_path: Path, card_text: str, outcome: LoopOutcome, start_step: int,
    started: float,
) -> TrainResult:
    """Write the model card next to the saved model, push both when asked (not after a cancel), report."""
    out = Path(options.output_dir)
    card_path = out / "README.md"
    card_path.write_text(card_text)
    url = None
    if options.push_repo and not outcome.cancelled:
        from nst.publish import push

        url = push(options.push_repo, [model_path], card_text, token=options.token)
    return TrainResult(
        model_path=model_path,
        card_path=card_path,
        loss_csv=out / LOSS_CSV,
        checkpoint=outcome.checkpoint,
        steps=outcome.step,
        start_step=start_step,
        history=outcome.history,
        seconds=time.perf_counter() - started,
        url=url,
        cancelled=outcome.cancelled,
    )


@dataclass(kw_only=True)
class TrainOptions:
    """Settings every trainer shares; each trainer's config adds its own and overrides defaults."""

    output_dir: str = "runs/train"
    batch_size: int = 4
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 1.0
    resize: int = 512
    crop: int = 256
    save_every: int = 1000
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    tensorboard: bool = True
    resume: bool = False
    push_repo: str | None = None
    name: str = "autoart-custom"
    license: str = "other"
    token: str | None = field(default=None, repr=False)

    def common_checks(self) -> list[tuple[bool, str]]:
        """(condition, message) pairs for the shared settings."""
        return [
            (self.batch_size >= 1, f"the batch size must be at least 1, not {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"the learning rate must be positive, not {self.lr}"),
            (self.content_weight >= 0 and self.style_weight >= 0, "loss weights must be >= 0"),
            (self.resize >= self.crop, f"resize ({self.resize}) must be at least the crop ({self.crop})"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every and log_every must be at least 1"),
        ]

    @staticmethod
    def raise_first(checks: list[tuple[bool, str]]) -> None:
        """Raise ConfigError with the first failed check's message as a sentence."""
        for ok, message in checks:
            if not ok:
                raise ConfigError(message[0].upper() + message[1:] + ".")
