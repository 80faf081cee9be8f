"""Image metrics (SSIM, PSNR, RMSE) and losses measured by one fixed reference extractor.

The reference extractor is VGG-19 with the PyTorch tutorial's layers (content ``conv_4``, style
``conv_1``..``conv_5``) and weights (content 1, style 1e6), so every method's output is scored in
the units the reports quote.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from nst.features import FeatureNet
from nst.images import resize_to, to_tensor
from nst.losses import content_losses, gram_matrix, style_losses

REFERENCE_BACKBONE = "vgg19"
REFERENCE_CONTENT_LAYERS = ("conv_4",)
REFERENCE_STYLE_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5")
REFERENCE_CONTENT_WEIGHT = 1.0
REFERENCE_STYLE_WEIGHT = 1e6


def _array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(resize_to(image.convert("RGB"), size), dtype=np.float64) / 255.0


def ssim(image: Image.Image, reference: Image.Image) -> float:
    """SSIM (scikit-image, RGB, data range 1) with ``reference`` resized to ``image``'s size."""
    a, b = _array(image, image.size), _array(reference, image.size)
    win = min(7, min(a.shape[:2]) // 2 * 2 - 1)
    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0, win_size=max(win, 3)))


def psnr(image: Image.Image, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB (data range 1); infinite for identical images."""
    a, b = _array(image, image.size), _array(reference, image.size)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(b, a, data_range=1.0))


def rmse(image: Image.Image, reference: Image.Image) -> float:
    """Root mean squared error of pixel values in [0, 1]."""
    a, b = _array(image, image.size), _array(reference, image.size)
    return float(np.sqrt(mean_squared_error(b, a)))


def compare(image: Image.Image, reference: Image.Image, prefix: str = "") -> dict[str, float]:
    """RMSE, PSNR and SSIM of ``image`` against ``reference`` (e.g. an AdaIN pseudo ground truth)."""
    return {
        f"{prefix}rmse": rmse(image, reference),
        f"{prefix}psnr": psnr(image, reference),
        f"{prefix}ssim": ssim(image, reference),
    }


class ReferenceScorer:
    """Content and style loss of any output, measured by the fixed tutorial VGG-19."""

    def __init__(self, extractor: FeatureNet):
        layers = list(dict.fromkeys(REFERENCE_CONTENT_LAYERS + REFERENCE_STYLE_LAYERS))
        self.extractor = extractor.truncated(layers)
        self.layers = layers

    @torch.no_grad()
    def losses(
        self, output: Image.Image, content: Image.Image, styles: Sequence[Image.Image],
        style_weights: Sequence[float] | None = None,
    ) -> dict[str, float]:
        device = self.extractor.mean.device
        size = output.size
        out = self.extractor(to_tensor(output, device), self.layers)
        ref = self.extractor(to_tensor(resize_to(content, size), device), self.layers)
        c_loss = content_losses([out[n] for n in REFERENCE_CONTENT_LAYERS],
                                [ref[n] for n in REFERENCE_CONTENT_LAYERS]).sum()
        weights = _normalised(style_weights, len(styles))
        s_loss = torch.zeros((), device=device)
        for style, weight in zip(styles, weights):
            feats = self.extractor(to_tensor(resize_to(style, size), device), self.layers)
            grams = [gram_matrix(feats[n]) for n in REFERENCE_STYLE_LAYERS]
            s_loss = s_loss + weight * style_losses([out[n] for n in REFERENCE_STYLE_LAYERS], grams).sum()
        return {
            "reference_content_loss": float(c_loss) * REFERENCE_CONTENT_WEIGHT,
            "reference_style_loss": float(s_loss) * REFERENCE_STYLE_WEIGHT,
        }


def _normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if count == 0:
        return []
    if weights is None:
        return [1.0 / count] * count
    total = float(sum(weights))
    return [float(w) / total for w in weights]


_default_scorer: ReferenceScorer | None = None


def default_scorer() -> ReferenceScorer | None:
    """The scorer with ImageNet VGG-19 weights, or None when those weights are not on this machine.

    Only a local file is used (an override or the cache): scoring a result never starts a download,
    so a missing file costs nothing per result. ``python -m nst weights download vgg19-imagenet``
    (or any Gatys run with the default backbone) puts it in the cache.
    """
    global _default_scorer
    if _default_scorer is None:
        from nst import weights
        from nst.errors import WeightsError
        from nst.features import BACKBONES, get_backbone

        name = BACKBONES[REFERENCE_BACKBONE].registry_name
        try:
            path = weights.local_override(name) or weights.cached_file(name)
            if path is None:
                return None
            _default_scorer = ReferenceScorer(get_backbone(REFERENCE_BACKBONE, path))
        except WeightsError:  # a broken local file must not cost the user the stylised result
            return None
    return _default_scorer


def report(
    output: Image.Image,
    content: Image.Image,
    styles: Sequence[Image.Image],
    style_weights: Sequence[float] | None = None,
    scorer: ReferenceScorer | None | bool = True,
    notes: list[str] | None = None,
) -> dict[str, float]:
    """The shared metrics: SSIM to content and to each style, and reference losses when available.

    ``scorer=True`` uses the default ImageNet VGG-19 scorer if its weights are present; when they
    are not, the reference losses are left out and a sentence is appended to ``notes``.
    """
    metrics = {"ssim_content": ssim(output, content)}
    for i, style in enumerate(styles):
        metrics["ssim_style" if i == 0 else f"ssim_style_{i + 1}"] = ssim(output, style)
    if scorer is True:
        scorer = default_scorer()
        if scorer is None and notes is not None:
            notes.append(
                "Reference content/style losses need the ImageNet VGG-19 weights "
                "(python -m nst weights download vgg19-imagenet); they were not measured."
            )
    if isinstance(scorer, ReferenceScorer):
        metrics.update(scorer.losses(output, content, styles, style_weights))
    return metrics
