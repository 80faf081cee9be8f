"""Loss functions shared by Gatys, Johnson and AdaIN: gram, content, style, TV, mean/std."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from nst.precision import products


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


def _mean_squares(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A vector with the mean of the squared entries of each tensor (one fused norm call for all)."""
    norms = torch.stack(torch._foreach_norm(list(tensors)))
    return norms.mul_(norms).div_(torch.tensor([float(t.numel()) for t in tensors], device=norms.device))


class _ContentLosses(torch.autograd.Function):
    """mean((F_i - T_i)^2) for several layers in one autograd node; backward 2 (F_i - T_i) / n_i."""

    @staticmethod
    def forward(ctx, targets: tuple, *features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        diffs = [torch.sub(feat, target) for feat, target in zip(features, targets)]
        ctx.save_for_backward(*diffs)
        return _mean_squares(diffs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        diffs = ctx.saved_tensors
        weights = grad.tolist()  # plain numbers: each layer's gradient is then a single scaled copy
        return (None, *(diff * (2.0 * w / diff.numel()) if w else None for diff, w in zip(diffs, weights)))


def content_losses(features: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Content loss of each layer (the tutorial's MSE between feature maps; targets are constants)."""
    expanded = tuple(t.detach().expand_as(f) for f, t in zip(features, targets, strict=True))
    return _ContentLosses.apply(expanded, *features)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (the tutorial's content distance); ``target`` is a constant."""
    return content_losses([features], [target])[0]


class _StyleLosses(torch.autograd.Function):
    """mean((gram(F_i) - A_i)^2) for several layers in one autograd node, one loss per layer.

    Per layer: forward is one matrix product with the normalisation and the target folded in
    (D = F F^T / norm - A); backward by hand is one more, dL/dF = 4 D F / (n * norm) with n the
    element count of D (D is symmetric because A is a gram matrix or a blend of grams). Targets are
    constants. One node for all layers keeps the per-layer Python and autograd cost out of each step.
    """

    @staticmethod
    def forward(ctx, targets: tuple, precision: str, *flats: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        with products(precision, flats[0].device):  # only the products: other ops run slower in that mode
            diffs = [torch.baddbmm(target, flat, flat.transpose(1, 2), beta=-1.0, alpha=1.0 / flat.numel())
                     for flat, target in zip(flats, targets)]
        ctx.save_for_backward(*flats, *diffs)
        ctx.precision = precision
        return _mean_squares(diffs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        flats, diffs = saved[: len(saved) // 2], saved[len(saved) // 2:]
        weights = grad.tolist()  # plain numbers; a layer weighted 0 gets no gradient and costs nothing
        scaled = [diff * (4.0 * w / (diff.numel() * flat.numel())) if w else None
                  for flat, diff, w in zip(flats, diffs, weights)]
        # bmm, not baddbmm with beta=0: under oneDNN's bf16 mode baddbmm(beta=0, alpha=0) returns garbage
        with products(ctx.precision, flats[0].device):
            grads = [torch.bmm(d, flat) if d is not None else None for d, flat in zip(scaled, flats)]
        return (None, None, *grads)


def style_losses(features: Sequence[torch.Tensor], target_grams: Sequence[torch.Tensor],
                 precision: str = "exact") -> torch.Tensor:
    """Style loss of each layer (MSE between gram(features[i]) and the constant, symmetric target_grams[i]).

    Returns a vector with one loss per layer. ``precision`` is ``exact`` or ``fast`` (see
    ``nst.precision``; resolve ``auto`` first).
    """
    flats, targets = [], []
    for feat, target in zip(features, target_grams, strict=True):
        a, b, c, d = feat.shape
        flats.append(feat.reshape(a, b, c * d))
        targets.append(target.detach().expand(a, -1, -1))
    return _StyleLosses.apply(tuple(targets), precision, *flats)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor, precision: str = "exact") -> torch.Tensor:
    """Mean squared error between the gram of ``features`` and a constant, symmetric target gram."""
    return style_losses([features], [target_gram], precision)[0]


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
