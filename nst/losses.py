"""Loss functions shared by Gatys, Johnson and AdaIN: gram, content, style, TV, mean/std."""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from nst.precision import products


class _Terms(NamedTuple):
    """One layer's loss gradient ``c*diff + s*D F``, with the map F held as ``rows`` (see ``_rows``)."""

    rows: torch.Tensor
    diff: Optional[torch.Tensor]  # F - T, shaped like rows; None without a content term
    c: float
    gram_diff: Optional[torch.Tensor]  # D (symmetric), or k D with s divided by k; None without a style term
    s: float
    pixel_major: bool
    shape: torch.Size  # the map's own shape


def _pixel_major(features: torch.Tensor) -> bool:
    """Whether a map is stored channels-last (and not also plainly contiguous, as a 1x1 map is)."""
    return features.dim() == 4 and not features.is_contiguous() and features.is_contiguous(
        memory_format=torch.channels_last)


def _rows(features: torch.Tensor, pixel_major: bool) -> torch.Tensor:
    """A BxCxHxW map as a matrix in memory order: BxCx(HW) for NCHW maps, Bx(HW)xC for channels-last ones.

    A channels-last map becomes a contiguous Bx(HW)xC matrix with canonical strides in one view: a
    reshape may give a batch of one an odd batch stride, and then oneDNN's bf16 products copy the
    whole map first (12 ms for VGG-19's first map). Other layouts are permuted (copied if needed).
    """
    b, c = features.shape[:2]
    if not pixel_major:
        return features.reshape(b, c, -1)
    if features.is_contiguous(memory_format=torch.channels_last):
        n = features.numel() // (b * c)
        return features.as_strided((b, n, c), (n * c, c, 1))
    return features.permute(0, 2, 3, 1).reshape(b, -1, c)


def _as_map(rows: torch.Tensor, shape: torch.Size, pixel_major: bool) -> torch.Tensor:
    """``_rows`` undone: the matrix back in the map's shape (channels-last for pixel-major rows)."""
    if not pixel_major:
        return rows.view(shape)
    b, c, h, w = shape
    if rows.is_contiguous():
        return rows.as_strided(shape, (h * w * c, 1, w * c, c))
    return rows.reshape(b, h, w, c).permute(0, 3, 1, 2)


def _gram_product(rows: torch.Tensor, pixel_major: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The operands of F F^T for ``rows`` of either orientation."""
    return (rows.mT, rows) if pixel_major else (rows, rows.mT)


class _Gram(torch.autograd.Function):
    """F F^T of a map with a one-matmul backward: d/dF = (dG + dG^T) F (autograd's default needs two)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pixel_major = _pixel_major(features)
        rows = _rows(features, pixel_major)
        ctx.save_for_backward(rows)
        ctx.pixel_major, ctx.shape = pixel_major, features.shape
        return torch.bmm(*_gram_product(rows, pixel_major))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (rows,) = ctx.saved_tensors
        return _loss_gradient(_Terms(rows, None, 0.0, grad + grad.mT, 1.0, ctx.pixel_major, ctx.shape))


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised as in the PyTorch tutorial: F F^T / (a*b*c*d).

    ``features`` is BxCxHxW; the result is BxCxC (each image's gram divided by B*C*H*W, the
    tutorial's a*b*c*d, so a batch of one matches the tutorial exactly).
    """
    a, b, c, d = features.shape
    return _Gram.apply(features) / (a * b * c * d)


@functools.lru_cache(maxsize=64)
def _reciprocals(sizes: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """1/size for each size, as a constant vector on ``device`` (made once per set of layer sizes)."""
    return torch.tensor([1.0 / n for n in sizes], device=device)


def _mean_squares(tensors: Sequence[torch.Tensor], sizes: Sequence[float]) -> torch.Tensor:
    """A vector with each tensor's sum of squares divided by its size (one fused norm call for all)."""
    norms = torch.stack(torch._foreach_norm(list(tensors)))
    return norms.mul_(norms).mul_(_reciprocals(tuple(sizes), norms.device))


def _loss_gradient(terms: _Terms, into: Optional[torch.Tensor] = None, exclusive: bool = False) -> torch.Tensor:
    """``into + c*diff + s*D F`` shaped like the map; ``into`` is updated in place if ``exclusive``.

    Computed in the map's memory order (``c*diff^T + s*F^T D`` for a channels-last map, D symmetric),
    so the gradient comes out in the map's own layout and the products read contiguous memory. The
    caller sets the products' precision (``nst.precision.products``).
    """
    rows, diff, c, gram_diff, s, pixel_major, shape = terms
    operands = (rows, gram_diff) if pixel_major else (gram_diff, rows)
    if into is None:
        if s:  # beta 0 ignores the first argument; alpha != 0: oneDNN's bf16 mode is only wrong for both 0
            out = torch.baddbmm(diff if c else rows, *operands, beta=c, alpha=s)
        else:
            out = diff * c
        return _as_map(out, shape, pixel_major)
    into = _rows(into, pixel_major)
    if not exclusive:  # the first term goes out of place, which makes the private copy for the second
        if not c:
            return _as_map(torch.baddbmm(into, *operands, alpha=s), shape, pixel_major)
        into, c = torch.add(into, diff, alpha=c), 0.0
    if c:
        into.add_(diff, alpha=c)
    if s:
        into.baddbmm_(*operands, alpha=s)
    return _as_map(into, shape, pixel_major)


class _LayerLosses(torch.autograd.Function):
    """Content losses mean((F_i - T_i)^2) and style losses mean((gram(F_i) - A_i)^2) of several layers in one node.

    ``plan``: per layer its content target or None, its style target or None, and a slot or None,
    then the order of the style losses (layer indices). Output: one vector, the content losses in layer
    order, then the style losses in ``style_order``. Forward: one matrix product and one subtraction
    per style layer, kept unnormalised (n_F D = F F^T - n_F A, with D = gram(F) - A). Backward by
    hand: per layer one product for both terms, dL/dF = 2c (F - T) / n_F + 4s D F / (n_D n_F) (D is
    symmetric because A is a gram matrix or a blend of grams). A layer weighted 0 gets no gradient and costs
    nothing. A layer with a slot gets None here and its terms go to the slot, whose hook on the
    feature adds them to the gradient arriving from later layers (``nst.tap_losses``). One node for
    all layers, and as few tensor operations as the sums allow: on a CPU each operation right after
    the network's pass costs tens of microseconds (its code and data are out of cache), and a small
    network such as AlexNet takes ~22 ms per step.
    """

    @staticmethod
    def forward(ctx, plan: tuple, precision: str, *features: torch.Tensor):  # type: ignore[override]
        content_targets, style_targets, slots, style_order = plan
        layouts = [_pixel_major(f) for f in features]
        rows = [_rows(f, p) for f, p in zip(features, layouts)]
        diffs = [_rows(torch.sub(f, t), p) if t is not None else None
                 for f, t, p in zip(features, content_targets, layouts)]
        with products(precision, features[0].device):  # only the products: other ops run slower in that mode
            grams = [torch.bmm(*_gram_product(r, p)) if a is not None else None
                     for r, p, a in zip(rows, layouts, style_targets)]
        # n D = F F^T - n A (n: the map's size): a product and a subtraction cost less than one baddbmm
        gram_diffs = [g.sub_(a, alpha=r.numel()) if a is not None else None
                      for g, r, a in zip(grams, rows, style_targets)]
        ctx.save_for_backward(*rows, *diffs, *gram_diffs)
        ctx.precision, ctx.slots, ctx.style_order = precision, slots, style_order
        ctx.layouts, ctx.shapes = layouts, [f.shape for f in features]
        contents = [d for d in diffs if d is not None]
        squares = contents + [gram_diffs[i] for i in style_order]
        sizes = [d.numel() for d in contents] + [gram_diffs[i].numel() * rows[i].numel() ** 2 for i in style_order]
        return _mean_squares(squares, sizes) if squares else features[0].new_zeros(0)

    @staticmethod
    def backward(ctx, loss_grad: torch.Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        count = len(ctx.slots)
        rows, diffs, gram_diffs = saved[:count], saved[count:2 * count], saved[2 * count:]
        weights = iter(loss_grad.tolist())  # plain numbers, in the order of the forward's output
        content_w = [next(weights) if d is not None else 0.0 for d in diffs]
        style_w = [0.0] * count
        for i, w in zip(ctx.style_order, weights):
            style_w[i] = w
        grads: list[Optional[torch.Tensor]] = []
        with products(ctx.precision, rows[0].device):
            for r, diff, gram_diff, wc, ws, slot, pixel_major, shape in zip(
                    rows, diffs, gram_diffs, content_w, style_w, ctx.slots, ctx.layouts, ctx.shapes):
                c = 2.0 * wc / r.numel() if wc else 0.0
                s = 4.0 * ws / (gram_diff.numel() * r.numel() ** 2) if ws else 0.0  # gram_diff is n D
                terms = _Terms(r, diff, c, gram_diff, s, pixel_major, shape) if (c or s) else None
                if slot is not None:
                    slot.terms = terms
                    grads.append(None)
                else:
                    grads.append(_loss_gradient(terms) if terms is not None else None)
        if any(slot is not None and slot.terms is not None for slot in ctx.slots):
            # a folded tap's hook fires only if some gradient flows down through the network to it
            grads = [torch.zeros(shape, dtype=r.dtype, device=r.device) if g is None and slot is None else g
                     for g, slot, r, shape in zip(grads, ctx.slots, rows, ctx.shapes)]
        return (None, None, *grads)


def _constant(target: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return target.detach() if target is not None and target.requires_grad else target


def layer_loss_vector(features: Sequence[torch.Tensor], content_targets: Sequence[Optional[torch.Tensor]],
                      style_targets: Sequence[Optional[torch.Tensor]], precision: str = "exact",
                      style_order: Optional[Sequence[int]] = None,
                      slots: Optional[Sequence[object]] = None) -> torch.Tensor:
    """Content and style losses of BxCxHxW ``features`` (targets constant, None where a layer has no
    such term), in one autograd node and one vector: the content losses in layer order, then the
    style losses in ``style_order`` (default: layer order). ``precision`` is ``exact`` or ``fast``
    (``nst.precision``; resolve ``auto`` first). ``slots``: see ``nst.tap_losses``."""
    content = tuple(_constant(t) for t in content_targets)  # the subtractions broadcast a batch of one
    style = tuple(_constant(a) for a in style_targets)
    if len(content) != len(features) or len(style) != len(features):
        raise ValueError("layer_loss_vector needs one content and one style target (or None) per feature map")
    if style_order is None:
        style_order = [i for i, a in enumerate(style) if a is not None]
    slots = tuple(slots) if slots is not None else (None,) * len(features)
    return _LayerLosses.apply((content, style, slots, tuple(style_order)), precision, *features)


def layer_losses(features: Sequence[torch.Tensor], content_targets: Sequence[Optional[torch.Tensor]],
                 style_targets: Sequence[Optional[torch.Tensor]], precision: str = "exact",
                 style_order: Optional[Sequence[int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer_loss_vector`` split in two: the vector of content losses and the vector of style losses."""
    losses = layer_loss_vector(features, content_targets, style_targets, precision, style_order)
    count = sum(t is not None for t in content_targets)
    return losses[:count], losses[count:]


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
