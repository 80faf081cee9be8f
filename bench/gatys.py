"""Milliseconds per Gatys optimisation step for every backbone, and the cost of the loss bookkeeping.

For each backbone's preset layers at each size, it times (a) a full optimisation step of
``nst.gatys`` (features, content/style/TV losses, backward, optimiser update, history; the median
time between consecutive steps) and (b) a bare forward+backward of the same truncated
network (its outputs are the requested activations; backward from all of them). The ratio a/b is
what the losses and their bookkeeping add. Random weights: timings do not depend on the values.

    python bench/gatys.py [--sizes 256 512] [--steps 5] [--device cpu] [--optimizer adam]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst.features import get_backbone  # noqa: E402
from nst.gatys import preset, stylize  # noqa: E402
from nst.losses import content_loss, gram_matrix, style_loss  # noqa: E402
from nst.runtime import pick_device, tune_allocator  # noqa: E402

CASES = [
    ("vgg19", "tutorial"),
    ("vgg16", "vgg16"),
    ("alexnet", "alexnet"),
    ("resnet18", "resnet18"),
    ("resnext50_32x4d", "resnext"),
    ("mobilenet_v2", "mobilenet_v2-fine"),
    ("mobilenet_v2_flat", "mobilenet_v2-flat"),
]


def random_image(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(run: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median wall time of ``run`` over ``repeats`` calls after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        if i:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def bare_step_ms(net, layers: list[str], size: int, device: torch.device, repeats: int) -> float:
    """Median ms of the truncated network's forward to the requested layers and backward from all of them.

    The network's outputs are the tapped activations; the bare backward sends a gradient of ones into
    each, so it pays for the same forward, the same backward and the same gradient accumulation at the
    taps, and nothing else: no losses, no optimiser, no history.
    """
    truncated = net.truncated(layers)
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)

    def run() -> None:
        image.grad = None
        feats = truncated(image, layers)
        torch.autograd.backward(list(feats.values()), [torch.ones_like(f) for f in feats.values()])

    return median_ms(run, device, repeats)


def gatys_step_ms(backbone: str, preset_name: str, size: int, device: torch.device, steps: int, optimizer: str):
    """Median ms between consecutive steps of a real run (after a warm-up run), and the net and config."""
    net = get_backbone(backbone, "random", device=str(device))
    config = preset(preset_name, size=size, steps=steps, device=str(device), optimizer=optimizer,
                    weights="random", progress_every=1)
    content, style = random_image(size, 1), random_image(size, 2)
    stylize(content, [style], config.replace(steps=1), extractor=net, scorer=None)
    stamps: list[float] = []
    stylize(content, [style], config, extractor=net, scorer=None, callback=lambda p: stamps.append(p.elapsed))
    stamps = stamps[:steps]  # the last report is the final evaluation, not a step
    return 1000 * statistics.median(b - a for a, b in zip(stamps, stamps[1:])), net, config


def hand_step_ms(net, config, size: int, device: torch.device, repeats: int) -> float:
    """Median ms of the same losses written out by hand: forward, grams, MSEs, backward; no framework."""
    truncated = net.truncated(config.content_layers + config.style_layers)
    layers = list(dict.fromkeys(config.content_layers + config.style_layers))
    with torch.no_grad():
        target = truncated(torch.rand(1, 3, size, size, device=device), layers)
        grams = {n: gram_matrix(target[n]) for n in config.style_layers}
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)

    def run() -> None:
        image.grad = None
        feats = truncated(image, layers)
        loss = config.content_weight * sum(content_loss(feats[n], target[n]) for n in config.content_layers)
        loss = loss + config.style_weight * sum(style_loss(feats[n], grams[n]) for n in config.style_layers)
        loss.backward()

    return median_ms(run, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam", "adamw"])
    parser.add_argument("--backbones", nargs="+", help="subset of backbones")
    args = parser.parse_args()
    device = pick_device(args.device)
    tuned = tune_allocator()
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"optimizer={args.optimizer} steps={args.steps} malloc_tuned={tuned}")
    print("step: nst.gatys step; bare: network forward+backward only; hand: bare + the same losses written by hand")
    print(f"{'backbone':<18} {'preset':<18} {'size':>5} {'step ms':>9} {'bare ms':>9} {'hand ms':>9} "
          f"{'step/bare':>9} {'step/hand':>9}")
    step_at: dict[tuple[str, int], float] = {}
    for backbone, preset_name in CASES:
        if args.backbones and backbone not in args.backbones:
            continue
        for size in args.sizes:
            ms, net, config = gatys_step_ms(backbone, preset_name, size, device, args.steps, args.optimizer)
            bare = bare_step_ms(net, config.content_layers + config.style_layers, size, device, args.steps)
            hand = hand_step_ms(net, config, size, device, args.steps)
            step_at[(backbone, size)] = ms
            print(f"{backbone:<18} {preset_name:<18} {size:>5} {ms:>9.1f} {bare:>9.1f} {hand:>9.1f} "
                  f"{ms / bare:>9.2f} {ms / hand:>9.2f}", flush=True)
    for size in args.sizes:
        if ("vgg19", size) in step_at:
            for mobile in ("mobilenet_v2", "mobilenet_v2_flat"):
                if (mobile, size) in step_at:
                    ratio = step_at[("vgg19", size)] / step_at[(mobile, size)]
                    print(f"vgg19 / {mobile} step time at {size}px: {ratio:.1f}x")


if __name__ == "__main__":
    main()
