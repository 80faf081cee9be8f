"""Loss functions shared by Gatys, Johnson and AdaIN: gram, content, style, TV, mean/std."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from nst.precision import products

_Terms = tuple[torch.Tensor, Optional[torch.Tensor], float, Optional[torch.Tensor], float]  # flat, diff, c, D, s


class _Gram(torch.autograd.Function):
    """F F^T with a one-matmul backward: d/dF = (dG + dG^T) F (autograd's default needs two)."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (flat,) = ctx.saved_tensors
        return _loss_gradient((flat, None, 0.0, grad + grad.transpose(1, 2), 1.0), "exact")


def _channels_last(flat: torch.Tensor) -> bool:
    """Whether a BxCxN view of a map is the transpose of a contiguous BxNxC matrix (a channels-last map)."""
    return flat.shape[-1] > 1 and flat.stride(-1) != 1


def _matrix_view(features: torch.Tensor) -> torch.Tensor:
    """BxCxHxW -> a BxCx(HW) view. A channels-last map gives the transpose of a contiguous Bx(HW)xC
    matrix with canonical strides: a plain reshape may give a batch of one an odd batch stride, for
    which oneDNN's bf16 products copy the whole map first (12 ms for VGG-19's first map)."""
    b, c = features.shape[:2]
    channels_last = features.dim() == 4 and features.is_contiguous(memory_format=torch.channels_last)
    if channels_last and not features.is_contiguous():
        return features.permute(0, 2, 3, 1).reshape(b, -1, c).mT
    return features.reshape(b, c, -1)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised as in the PyTorch tutorial: F F^T / (a*b*c*d).

    ``features`` is BxCxHxW; the result is BxCxC (each image's gram divided by B*C*H*W, the
    tutorial's a*b*c*d, so a batch of one matches the tutorial exactly).
    """
    a, b, c, d = features.shape
    return _Gram.apply(_matrix_view(features)) / (a * b * c * d)


def _mean_squares(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A vector with the mean of the squared entries of each tensor (one fused norm call for all)."""
    norms = torch.stack(torch._foreach_norm(list(tensors)))
    return norms.mul_(norms).div_(torch.tensor([float(t.numel()) for t in tensors], device=norms.device))


def _loss_gradient(terms: _Terms, precision: str, into: Optional[torch.Tensor] = None,
                   exclusive: bool = False) -> torch.Tensor:
    """``into + c*diff + s*D@flat`` shaped like ``flat`` (BxCxN); ``into`` is updated in place if ``exclusive``.

    For a channels-last map everything is computed transposed (``c*diff^T + s*flat^T@D``, D symmetric),
    so the gradient comes out in the map's own layout and the products read contiguous memory.
    """
    flat, diff, c, gram_diff, s = terms
    transposed = _channels_last(flat)
    orient = (lambda t: t.mT) if transposed else (lambda t: t)

    def operands(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (flat.mT, d) if transposed else (d, flat)

    diff = orient(_matrix_view(diff)) if diff is not None else None
    with products(precision, flat.device):
        if into is None:
            if c and s:
                return orient(torch.baddbmm(diff, *operands(gram_diff), beta=c, alpha=s))
            return orient(torch.bmm(*operands(gram_diff * s)) if s else diff * c)
        into = orient(_matrix_view(into))
        if not exclusive:  # the first term goes out of place, which makes the private copy for the second
            if not c:
                return orient(torch.baddbmm(into, *operands(gram_diff), alpha=s))
            into, c = torch.add(into, diff, alpha=c), 0.0
        if c:
            into.add_(diff, alpha=c)
        if s:  # beta 1 and alpha != 0: oneDNN's bf16 mode is only wrong for beta = alpha = 0
            into.baddbmm_(*operands(gram_diff), alpha=s)
        return orient(into)


class _LayerLosses(torch.autograd.Function):
    """Content losses mean((F_i - T_i)^2) and style losses mean((gram(F_i) - A_i)^2) of several layers in one node.

    ``plan``: per layer its content target or None, its style target or None, and a slot or None,
    then the order of the style outputs (layer indices). Outputs: a vector of content losses in layer
    order and one of style losses in ``style_order``. Forward: one matrix product per style layer,
    with the normalisation and the target folded in (D = F F^T / n_F - A). Backward by hand: per
    layer one product for both terms, dL/dF = 2c (F - T) / n_F + 4s D F / (n_D n_F) (D is symmetric
    because A is a gram matrix or a blend of grams). A layer weighted 0 gets no gradient and costs
    nothing. A layer with a slot gets None here and its terms go to the slot, whose hook on the
    feature adds them to the gradient arriving from later layers (``nst.tap_losses``). One node for
    all layers keeps the per-layer Python and autograd cost out of each step.
    """

    @staticmethod
    def forward(ctx, plan: tuple, precision: str, *features: torch.Tensor):  # type: ignore[override]
        content_targets, style_targets, slots, style_order = plan
        flats = [_matrix_view(f) for f in features]
        diffs = [torch.sub(f, t) if t is not None else None for f, t in zip(features, content_targets)]
        with products(precision, features[0].device):  # only the products: other ops run slower in that mode
            gram_diffs = [torch.baddbmm(a, flat, flat.transpose(1, 2), beta=-1.0, alpha=1.0 / flat.numel())
                          if a is not None else None for flat, a in zip(flats, style_targets)]
        ctx.save_for_backward(*flats, *diffs, *gram_diffs)
        ctx.precision, ctx.slots, ctx.shapes, ctx.style_order = precision, slots, [f.shape for f in features], style_order
        contents, styles = [d for d in diffs if d is not None], [gram_diffs[i] for i in style_order]
        empty = features[0].new_zeros(0)
        return (_mean_squares(contents) if contents else empty), (_mean_squares(styles) if styles else empty.clone())

    @staticmethod
    def backward(ctx, content_grad: torch.Tensor, style_grad: torch.Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        count = len(ctx.slots)
        flats, diffs, gram_diffs = saved[:count], saved[count:2 * count], saved[2 * count:]
        weights = iter(content_grad.tolist())  # plain numbers, in the order of the forward's outputs
        content_w = [next(weights) if d is not None else 0.0 for d in diffs]
        style_w = [0.0] * count
        for i, w in zip(ctx.style_order, style_grad.tolist()):
            style_w[i] = w
        grads: list[Optional[torch.Tensor]] = []
        for flat, diff, gram_diff, wc, ws, slot, shape in zip(flats, diffs, gram_diffs, content_w, style_w,
                                                             ctx.slots, ctx.shapes):
            c = 2.0 * wc / flat.numel() if wc else 0.0
            s = 4.0 * ws / (gram_diff.numel() * flat.numel()) if ws else 0.0
            terms = (flat, diff, c, gram_diff, s) if (c or s) else None
            if slot is not None:
                slot.terms = terms
                grads.append(None)
            else:
                grads.append(_loss_gradient(terms, ctx.precision).view(shape) if terms is not None else None)
        if any(slot is not None and slot.terms is not None for slot in ctx.slots):
            # a folded tap's hook fires only if some gradient flows down through the network to it
            grads = [torch.zeros(shape, dtype=flat.dtype, device=flat.device) if g is None and slot is None else g
                     for g, slot, flat, shape in zip(grads, ctx.slots, flats, ctx.shapes)]
        return (None, None, *grads)


def layer_losses(features: Sequence[torch.Tensor], content_targets: Sequence[Optional[torch.Tensor]],
                 style_targets: Sequence[Optional[torch.Tensor]], precision: str = "exact",
                 style_order: Optional[Sequence[int]] = None,
                 slots: Optional[Sequence[object]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Content and style losses of BxCxHxW ``features`` (targets constant, None where a layer has no
    such term), in one autograd node: a vector of content losses in layer order and one of style
    losses in ``style_order`` (default: layer order). ``precision`` is ``exact`` or ``fast``
    (``nst.precision``; resolve ``auto`` first)."""
    content = tuple(t.detach().expand_as(f) if t is not None else None
                    for f, t in zip(features, content_targets, strict=True))
    style = tuple(a.detach().expand(f.shape[0], -1, -1) if a is not None else None
                  for f, a in zip(features, style_targets, strict=True))
    if style_order is None:
        style_order = [i for i, a in enumerate(style) if a is not None]
    slots = tuple(slots) if slots is not None else (None,) * len(features)
    return _LayerLosses.apply((content, style, slots, tuple(style_order)), precision, *features)


def content_losses(features: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Content loss of each layer (the tutorial's MSE between feature maps; targets are constants)."""
    return layer_losses(features, targets, [None] * len(features))[0]


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (the tutorial's content distance); ``target`` is a constant."""
    return content_losses([features], [target])[0]


def style_losses(features: Sequence[torch.Tensor], target_grams: Sequence[torch.Tensor],
                 precision: str = "exact") -> torch.Tensor:
    """Style loss of each layer (MSE between gram(features[i]) and the constant, symmetric target_grams[i]).

    Returns a vector with one loss per layer. ``precision`` is ``exact`` or ``fast`` (see
    ``nst.precision``; resolve ``auto`` first).
    """
    return layer_losses(features, [None] * len(features), target_grams, precision)[1]


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
