"""AdaIN speed on the CPU: a cold stylize call against calls that reuse cached encoder features.

    python bench/adain_bench.py                      # 512x512, seeded random weights (timing only)
    python bench/adain_bench.py --rounds 7 --threads 2
    python bench/adain_bench.py --encoder vgg_normalised.pth --decoder decoder.pth

Paths are timed in interleaved rounds (bench/feedforward.py's ``time_paths``) so background load
hits all of them alike. ``adain_section(args)`` is also a section of ``bench/feedforward.py``.
Target: an alpha change with cached content and style features at least 2.5x faster than a cold
call (median of the rounds). Speed does not depend on the weights' values, so random weights are
fine for timing; the table says which weights were used.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.feedforward import Row, print_table, time_paths  # noqa: E402
from nst import adain as A  # noqa: E402

TARGET_SPEEDUP = 2.5


def _photo(size: int, seed: int) -> Image.Image:
    """A deterministic photo-like test image (smooth gradients plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(x * (3 + seed)), np.cos(y * 4), x * y], axis=2) * 0.4 + 0.5
    array = np.clip(base + rng.normal(0, 0.08, (size, size, 3)), 0, 1)
    return Image.fromarray((array * 255).astype(np.uint8), "RGB")


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max()) / 255


def adain_section(args: argparse.Namespace) -> tuple[str, list[Row]]:
    """Cold call vs alpha change vs new photo with a cached style, at ``args.size`` on the CPU."""
    size, rounds = args.size, args.rounds
    encoder_path = getattr(args, "adain_encoder", None)
    decoder_path = getattr(args, "adain_decoder", None)
    if encoder_path and decoder_path:
        encoder, decoder = A.load_encoder(encoder_path), A.load_decoder(decoder_path)
        weights = "published weights"
    else:
        encoder, decoder = A.random_encoder(0), A.random_decoder(0)
        weights = "seeded random weights (timing only)"
    content, style = _photo(size, 1), _photo(size, 2)
    photos = itertools.cycle([_photo(size, 10 + i) for i in range(4)])
    alphas = itertools.cycle([0.4, 0.7, 1.0])
    # style_cache holds two entries: the style (used last in every call) and the previous photo, which
    # the next, different photo evicts, so every "new photo" call encodes exactly one image.
    cold_cache, warm_cache, style_cache = A.FeatureCache(), A.FeatureCache(), A.FeatureCache(max_entries=2)

    def call(image: Image.Image, cache: A.FeatureCache, alpha: float = 1.0, metrics: bool = False) -> Image.Image:
        return A.stylize(image, [style], alpha=alpha, size=size, device="cpu", encoder=encoder, decoder=decoder,
                         metrics=metrics, scorer=None, cache=cache).image

    def cold() -> Image.Image:
        cold_cache.clear()
        return call(content, cold_cache)

    paths = {
        "cold: empty cache (encode content + style, AdaIN, decode)": cold,
        "alpha change: content + style features cached": lambda: call(content, warm_cache, next(alphas)),
        "new photo, same style: style features cached": lambda: call(next(photos), style_cache),
        "alpha change + SSIM metrics (no reference VGG)": lambda: call(content, warm_cache, next(alphas), True),
    }
    with torch.inference_mode():
        baseline = cold()
        cached_same = call(content, warm_cache)  # fills the warm cache; alpha 1 must equal the cold output
        photo = next(photos)
        call(_photo(size, 99), style_cache)  # caches the style only
        photo_cached = call(photo, style_cache)
        cold_cache.clear()
        photo_cold = call(photo, cold_cache)
        times = time_paths(paths, rounds)
    diffs = [None, _diff(baseline, cached_same), _diff(photo_cold, photo_cached), None]
    notes = [
        f"{cold_cache.encoder_runs} encoder runs per call",
        "0 encoder runs; alpha cycles 0.4/0.7/1.0; diff: alpha 1 vs cold",
        "1 encoder run (content); diff: same photo cold vs cached",
        "SSIM to content and style",
    ]
    rows = [Row(name, times[name], diff, note) for (name, diff, note) in zip(paths, diffs, notes)]
    title = f"AdaIN, {size}x{size}, CPU, {torch.get_num_threads()} threads, {weights}"
    return title, rows


def speedup(rows: list[Row]) -> float:
    """Median cold time over median alpha-change time."""
    return statistics.median(rows[0].times_ms) / statistics.median(rows[1].times_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels (default 512)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per path (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--encoder", dest="adain_encoder", help="time the published vgg_normalised.pth")
    parser.add_argument("--decoder", dest="adain_decoder", help="time the published decoder.pth")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    title, rows = adain_section(args)
    print_table(title, rows)
    ratio = speedup(rows)
    verdict = "meets" if ratio >= TARGET_SPEEDUP else "MISSES"
    print(f"\nalpha change vs cold (medians): {ratio:.2f}x faster; {verdict} the >= {TARGET_SPEEDUP}x target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
