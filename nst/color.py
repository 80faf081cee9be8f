"""Colour preservation: luminance-only transfer and mean/covariance colour matching (CORAL)."""

from __future__ import annotations

import torch
from PIL import Image

from nst.images import resize_to


def keep_content_colors(content: Image.Image, stylized: Image.Image) -> Image.Image:
    """Luminance-only transfer: the stylised image's Y channel with the content's Cb and Cr."""
    content = resize_to(content.convert("RGB"), stylized.size)
    luma, _, _ = stylized.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (luma, cb, cr)).convert("RGB")


def _matrix_power(cov: torch.Tensor, power: float, eps: float = 1e-5) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(eps).pow(power)
    return vectors @ torch.diag(values) @ vectors.T


def match_color(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Recolour ``source`` (1x3xHxW or 3xHxW, [0,1]) so its RGB mean and covariance equal ``target``'s.

    This is CORAL colour transfer: whiten the source pixels with its own covariance, colour them with
    the target covariance and move them to the target mean.
    """
    squeeze = source.dim() == 4
    src = source[0] if squeeze else source
    tgt = target[0] if target.dim() == 4 else target
    src_flat = src.reshape(3, -1).double()
    tgt_flat = tgt.reshape(3, -1).double()
    src_mean = src_flat.mean(dim=1, keepdim=True)
    tgt_mean = tgt_flat.mean(dim=1, keepdim=True)
    src_centered = src_flat - src_mean
    tgt_centered = tgt_flat - tgt_mean
    eye = torch.eye(3, dtype=torch.float64, device=src.device)
    src_cov = src_centered @ src_centered.T / max(src_flat.shape[1] - 1, 1) + eps * eye
    tgt_cov = tgt_centered @ tgt_centered.T / max(tgt_flat.shape[1] - 1, 1) + eps * eye
    transform = _matrix_power(tgt_cov, 0.5) @ _matrix_power(src_cov, -0.5)
    matched = (transform @ src_centered + tgt_mean).reshape(src.shape).to(source.dtype).clamp(0, 1)
    return matched.unsqueeze(0) if squeeze else matched
