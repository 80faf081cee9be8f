"""Loss functions shared by Gatys, Johnson and AdaIN: gram, content, style, TV, mean/std."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


class _Gram(torch.autograd.Function):
    """F F^T with a one-matmul backward: d/dF = (dG + dG^T) F (autograd's default needs two)."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised as in the PyTorch tutorial: F F^T / (a*b*c*d).

    ``features`` is BxCxHxW; the result is BxCxC (each image's gram divided by B*C*H*W, the
    tutorial's a*b*c*d, so a batch of one matches the tutorial exactly).
    """
    a, b, c, d = features.shape
    flat = features.reshape(a, b, c * d)
    return _Gram.apply(flat) / (a * b * c * d)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (the tutorial's content distance)."""
    return F.mse_loss(features, target.expand_as(features))


class _StyleLoss(torch.autograd.Function):
    """mean((gram(F) - A)^2) in one piece: no C x C temporaries beyond the difference itself.

    Backward by hand: with D = gram(F) - A and n its element count, dL/dF = 4 D F / (n * norm), one
    matrix product (D is symmetric because A is a gram matrix or a blend of grams). The target is a
    constant (it gets no gradient).
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, target: torch.Tensor, norm: float) -> torch.Tensor:  # type: ignore[override]
        diff = torch.bmm(flat, flat.transpose(1, 2)).div_(norm).sub_(target)
        ctx.save_for_backward(flat, diff)
        ctx.norm = norm
        values = diff.reshape(-1)
        return torch.dot(values, values) / values.numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        flat, diff = ctx.saved_tensors
        scale = grad * (4.0 / (diff.numel() * ctx.norm))
        return torch.bmm(diff * scale, flat), None, None


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the gram of ``features`` and a constant, symmetric target gram."""
    a, b, c, d = features.shape
    target = target_gram.detach().expand(a, -1, -1)
    return _StyleLoss.apply(features.reshape(a, b, c * d), target, float(a * b * c * d))


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertical and between horizontal neighbours, summed."""
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


def mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over H*W (unbiased variance + eps, as published AdaIN does).

    Returns tensors of shape BxCx1x1.
    """
    b, c = features.shape[:2]
    flat = features.reshape(b, c, -1)
    mean = flat.mean(dim=2).reshape(b, c, 1, 1)
    std = (flat.var(dim=2) + eps).sqrt().reshape(b, c, 1, 1)
    return mean, std


def mean_std_loss(features: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """AdaIN style loss: sum over layers of MSE(mean) + MSE(std)."""
    total = features[0].new_zeros(())
    for feat, target in zip(features, targets):
        f_mean, f_std = mean_std(feat)
        t_mean, t_std = mean_std(target)
        total = total + F.mse_loss(f_mean, t_mean.expand_as(f_mean)) + F.mse_loss(f_std, t_std.expand_as(f_std))
    return total
