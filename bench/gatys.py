"""Milliseconds per Gatys optimisation step for every backbone, and what the losses add over the bare network.

For each backbone's preset layers at each size it times, in ``--rounds`` rounds (medians printed):

- step: a full optimisation step of ``nst.gatys`` (features, content/style/TV losses, backward,
  history, progress, optimiser update; the median time between consecutive steps of a real run);
- optim: the part of a step spent in the optimiser's own update (``optimiser_ms_per_step``, a mean;
  for L-BFGS it grows with the stored history, up to 100 pairs, so it is small in a short run);
- eval: the rest of a step, one loss evaluation (features, losses, backward, history, progress):
  the median over the run's evaluations (``evaluation_ms_median``);
- bare: a forward+backward of the same truncated network alone (its outputs are the requested
  activations; backward from all of them);
- hand: bare plus the same loss functions called directly, with no objective or optimiser.

losses/bare = eval / bare is what the losses and their bookkeeping add to the network's own work;
the target is at most 1.15. (Earlier tables used (step - optim) / bare, a median minus a mean: the
same quantity, measured with more noise.) The lowest and highest round's value are printed beside the
median, so the machine's noise is visible. Random weights: timings do not depend on the values.

    python bench/gatys.py [--sizes 256 512] [--steps 8] [--rounds 3] [--device cpu] [--optimizer adam]
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
from nst.losses import gram_matrix  # noqa: E402
from nst.precision import resolve_precision  # noqa: E402
from nst.runtime import pick_device, tune_allocator  # noqa: E402
from nst.tap_losses import tap_losses  # noqa: E402

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

    The network's outputs are the tapped activations; the bare backward sends a gradient of ones
    (made once, outside the timing) into each, so it pays for the same forward, the same backward and
    the same gradient accumulation at the taps, and nothing else: no losses, no optimiser, no history.
    """
    truncated = net.truncated(layers)
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    with torch.no_grad():
        seeds = [torch.ones_like(f) for f in truncated(image, layers).values()]  # made once, outside the timing

    def run() -> None:
        image.grad = None
        feats = truncated(image, layers)
        torch.autograd.backward(list(feats.values()), seeds)

    return median_ms(run, device, repeats)


def gatys_step_ms(backbone: str, preset_name: str, size: int, device: torch.device, steps: int, optimizer: str):
    """Median ms between consecutive steps of a real run (after a warm-up run), the mean ms per step
    spent in the optimiser's own update, the median ms of one loss evaluation, and the net and config."""
    net = get_backbone(backbone, "random", device=str(device))
    config = preset(preset_name, size=size, steps=steps, device=str(device), optimizer=optimizer,
                    weights="random", progress_every=1)
    content, style = random_image(size, 1), random_image(size, 2)
    stylize(content, [style], config.replace(steps=1), extractor=net, scorer=None)
    stamps: list[float] = []
    result = stylize(content, [style], config, extractor=net, scorer=None, callback=lambda p: stamps.append(p.elapsed))
    stamps = stamps[:steps]  # the last report is the final evaluation, not a step
    step = 1000 * statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
    return step, result.timings["optimiser_ms_per_step"], result.timings["evaluation_ms_median"], net, config


def hand_step_ms(net, config, size: int, device: torch.device, repeats: int) -> float:
    """Median ms of the same loss functions called by hand: forward, losses, backward; no objective, no optimiser."""
    truncated = net.truncated(config.content_layers + config.style_layers)
    layers = list(dict.fromkeys(config.content_layers + config.style_layers))
    precision = resolve_precision(config.gram_precision, device)
    folded = truncated.inner_taps(layers)
    with torch.no_grad():
        target = truncated(torch.rand(1, 3, size, size, device=device), layers)
        contents = {n: target[n] for n in config.content_layers}
        grams = {n: gram_matrix(target[n]) for n in config.style_layers}
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)

    def run() -> None:
        image.grad = None
        feats = truncated(image, layers)
        content, style = tap_losses(feats, contents, grams, precision, folded)
        (config.content_weight * content.sum() + config.style_weight * style.sum()).backward()

    return median_ms(run, device, repeats)


def lbfgs_update_ms(size: int, history: int, repeats: int = 15) -> float:
    """Median ms of torch.optim.LBFGS's own update with ``history`` stored pairs, for a size x size image.

    A convex, badly conditioned quadratic keeps every curvature pair (y.s > 0) and does not converge
    within the run, so the history fills up as in a long style-transfer run. The closure's own time
    (a few element-wise passes) is measured separately and subtracted.
    """
    n = 3 * size * size
    generator = torch.Generator().manual_seed(0)
    curvature = torch.logspace(-6, 0, n)[torch.randperm(n, generator=generator)]
    x = torch.zeros(n, requires_grad=True)
    optimizer = torch.optim.LBFGS([x], max_iter=1, history_size=history)

    def closure() -> torch.Tensor:
        with torch.no_grad():
            x.grad = curvature * (x - 1.0)
            return 0.5 * (x.grad * (x - 1.0)).sum()

    for _ in range(history + 2):
        optimizer.step(closure)
    step = median_ms(lambda: optimizer.step(closure), torch.device("cpu"), repeats)
    return step - median_ms(closure, torch.device("cpu"), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="repeat each measurement; medians are printed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam", "adamw"])
    parser.add_argument("--backbones", nargs="+", help="subset of backbones")
    args = parser.parse_args()
    device = pick_device(args.device)
    tuned = tune_allocator()
    precision = resolve_precision("auto", device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"optimizer={args.optimizer} steps={args.steps} rounds={args.rounds} gram_precision={precision} malloc_tuned={tuned}")
    print("step: one nst.gatys step; optim: the optimiser's own update within it (L-BFGS: grows with its "
          "history, up to 100 pairs);\nbare: network forward+backward only; hand: bare + the same loss functions "
          "called directly;\neval: one loss evaluation within a step (step - optim, as a median); losses/bare: eval / bare, "
          "what the losses and their bookkeeping add (target <= 1.15); lo-hi: its lowest and highest round")
    print(f"{'backbone':<18} {'preset':<18} {'size':>5} {'step ms':>8} {'optim ms':>8} {'eval ms':>8} {'bare ms':>8} "
          f"{'hand ms':>8} {'losses/bare':>11} {'lo-hi':>11} {'step/bare':>9} {'eval/hand':>9}")
    step_at: dict[tuple[str, int], float] = {}
    for backbone, preset_name in CASES:
        if args.backbones and backbone not in args.backbones:
            continue
        for size in args.sizes:
            rounds = []
            for _ in range(args.rounds):  # rounds and medians: a shared machine's noise moves single timings
                ms, optim, evaluation, net, config = gatys_step_ms(backbone, preset_name, size, device, args.steps,
                                                                   args.optimizer)
                bare = bare_step_ms(net, config.content_layers + config.style_layers, size, device, args.steps)
                hand = hand_step_ms(net, config, size, device, args.steps)
                rounds.append((ms, optim, evaluation, bare, hand))
            ms, optim, evaluation, bare, hand = (statistics.median(column) for column in zip(*rounds))
            per_round = list(zip(*[(e / b, m / b, e / h) for m, o, e, b, h in rounds]))
            ratios = [statistics.median(r) for r in per_round]
            spread = f"{min(per_round[0]):.3f}-{max(per_round[0]):.3f}"  # the machine's noise, round to round
            step_at[(backbone, size)] = ms
            print(f"{backbone:<18} {preset_name:<18} {size:>5} {ms:>8.1f} {optim:>8.1f} {evaluation:>8.1f} {bare:>8.1f} "
                  f"{hand:>8.1f} "
                  f"{ratios[0]:>11.3f} {spread:>11} {ratios[1]:>9.2f} {ratios[2]:>9.2f}", flush=True)
    for size in args.sizes:
        if ("vgg19", size) in step_at:
            for mobile in ("mobilenet_v2", "mobilenet_v2_flat"):
                if (mobile, size) in step_at:
                    ratio = step_at[("vgg19", size)] / step_at[(mobile, size)]
                    print(f"vgg19 / {mobile} step time at {size}px: {ratio:.1f}x")
    if args.optimizer == "lbfgs":
        print("L-BFGS update alone (torch.optim.LBFGS, CPU) by stored history; a run stores a pair per step, "
              "up to 100:")
        for size in args.sizes:
            costs = ", ".join(f"{h} pairs {lbfgs_update_ms(size, h):.1f} ms" for h in (8, 100))
            print(f"  {size}px: {costs}")


if __name__ == "__main__":
    main()
