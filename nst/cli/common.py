"""Pieces every sub-command shares: device/size options, a tqdm progress bar, writing results."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from nst.images import save_image
from nst.progress import Progress, ProgressCallback
from nst.result import StyleResult


def comma_names(text: str) -> list[str]:
    """argparse type: ``"a, b,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def comma_floats(text: str) -> list[float]:
    """argparse type: ``"0.7,0.3"`` -> ``[0.7, 0.3]``."""
    try:
        return [float(part) for part in comma_names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="output.png", help="output image (.png or .jpg)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@contextmanager
def progress_bar(total: int, description: str, quiet: bool = False) -> Iterator[ProgressCallback]:
    """Yield a progress callback that drives a tqdm bar showing the current loss terms.

    The bar opens at the first report, so errors raised while loading inputs print cleanly.
    """
    bars: list[tqdm] = []

    def update(progress: Progress) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc=description, unit="step", disable=quiet, file=sys.stderr,
                             dynamic_ncols=True))
        bar = bars[0]
        bar.n = progress.step
        if progress.losses:
            bar.set_postfix({k: f"{v:.4g}" for k, v in progress.losses.items()}, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


def write_result(result: StyleResult, output: str | Path, history: str | Path | None = None) -> None:
    """Save the image (and the loss history CSV when asked) and print the metrics summary."""
    path = save_image(result.image, output)
    if history:
        result.write_history_csv(history)
    print(result.summary())
    print(f"saved: {path}")
