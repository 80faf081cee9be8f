"""Content and style losses of a network's taps in one autograd node, with their gradients folded into the network's.

The values are exactly those of ``nst.losses.content_losses`` and ``style_losses`` (the tutorial's MSE
of feature maps and MSE of grams); only the way the gradient reaches the network differs. A tap that
the network runs further layers on (every tap but the deepest) already receives a gradient from those
layers. Its loss gradient, ``2c (F - T) / n_F + 4s D F / (n_D n_F)`` with ``D = F F^T / n_F - A``, is
added into that arriving gradient by a hook on the tap: in place when autograd hands the hook a
tensor no one else holds, out of place otherwise. Returning it from the losses' node instead, as
``nst.losses`` does, writes a separate map per tap that autograd reads again later to add the two;
on a 2-core CPU at 256-512 px that round trip through memory is 2-5% of a VGG-19 step.
A tap with both a content and a style term gets one fused product (content and style gradients in a
single pass).
"""

from __future__ import annotations

from typing import Collection, Mapping, Optional

import torch

from nst.losses import _mean_squares
from nst.precision import products

# Folding pays where a map does not fit in cache (the saved round trip is through main memory); for
# smaller maps the hook's own cost is larger than what it saves (measured on a 2-core CPU: VGG-19 at
# 256-512 px gains 2-5%; AlexNet's maps of 1M elements at 512 px and MobileNetV2's at 256 px lose 1-3%).
FOLD_MIN_ELEMENTS = 1 << 21

_Terms = tuple[torch.Tensor, Optional[torch.Tensor], float, Optional[torch.Tensor], float]  # flat, diff, c, D, s


def _exclusively_owned(grad: torch.Tensor) -> bool:
    """Whether ``grad`` may be updated in place: not a view, not shared by another autograd buffer or
    tensor (the hook's argument and autograd's buffer are its only holders), and not part of a graph.

    The use counts are torch internals; a torch without them gets ``False`` (out of place: slower, same result).
    """
    if grad._base is not None or grad.requires_grad or not grad.is_contiguous():
        return False
    try:
        return grad._use_count() <= 2 and torch._C._storage_Use_Count(grad.untyped_storage()._cdata) <= 2
    except AttributeError:
        return False


def _loss_gradient(terms: _Terms, precision: str, into: Optional[torch.Tensor] = None,
                   exclusive: bool = False) -> torch.Tensor:
    """``into + c*diff + s*D@flat`` shaped like ``flat`` (BxCxN); ``into`` is updated in place if ``exclusive``."""
    flat, diff, c, gram_diff, s = terms
    diff = diff.view(flat.shape) if diff is not None else None
    with products(precision, flat.device):
        if into is None:
            if c and s:
                return torch.baddbmm(diff, gram_diff, flat, beta=c, alpha=s)
            return torch.bmm(gram_diff * s, flat) if s else diff * c
        into = into.reshape(flat.shape)
        if not exclusive:  # the first term goes out of place, which makes the private copy for the second
            if not c:
                return torch.baddbmm(into, gram_diff, flat, alpha=s)
            into, c = torch.add(into, diff, alpha=c), 0.0
        if c:
            into.add_(diff, alpha=c)
        if s:  # beta 1 and alpha != 0: oneDNN's bf16 mode is only wrong for beta = alpha = 0
            into.baddbmm_(gram_diff, flat, alpha=s)
        return into


class _FoldSlot:
    """A tap's pending loss gradient: set by the losses' backward, added by the tap's gradient hook."""

    __slots__ = ("terms", "precision")

    def __init__(self, precision: str):
        self.terms: Optional[_Terms] = None
        self.precision = precision

    def __call__(self, grad: torch.Tensor) -> Optional[torch.Tensor]:
        terms, self.terms = self.terms, None
        if terms is None:
            return None
        return _loss_gradient(terms, self.precision, grad, _exclusively_owned(grad)).view_as(grad)


class _TapLosses(torch.autograd.Function):
    """Per-tap content and style losses in one node; backward returns each gradient or hands it to its slot.

    ``plan``: per tap its content target or None, style target or None and fold slot or None, then the
    order of the style outputs (tap indices). Outputs: a vector of content losses in tap order and one of style losses in ``style_order``.
    """

    @staticmethod
    def forward(ctx, plan: tuple, precision: str, *features: torch.Tensor):  # type: ignore[override]
        content_targets, style_targets, slots, style_order = plan
        flats = [f.reshape(f.shape[0], f.shape[1], -1) for f in features]
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


def tap_losses(features: Mapping[str, torch.Tensor], content_targets: Mapping[str, torch.Tensor],
               style_targets: Mapping[str, torch.Tensor], precision: str = "exact",
               fold: Collection[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Content losses (one per ``content_targets`` entry, in its order) and style losses (one per
    ``style_targets`` entry) of the tapped ``features``, in one autograd node.

    ``style_targets`` are constant, symmetric grams (``nst.losses.gram_matrix`` or blends of them);
    ``precision`` is ``exact`` or ``fast`` (``nst.precision``). ``fold`` names the taps whose
    gradient is added into the one arriving from the network's later layers: pass only taps the
    network runs further layers on towards an unfolded tap (``FeatureNet.inner_taps``); a tap with
    no such path would get no gradient. Taps smaller than ``FOLD_MIN_ELEMENTS`` are never folded.
    """
    names = list(dict.fromkeys([*content_targets, *style_targets]))
    tapped = [features[n] for n in names]
    hooked = torch.is_grad_enabled() and any(t.requires_grad for t in tapped)
    slots = []
    for name, tensor in zip(names, tapped):
        slot = _FoldSlot(precision) if hooked and name in fold and tensor.numel() >= FOLD_MIN_ELEMENTS else None
        if slot is not None:
            tensor.register_hook(slot)
        slots.append(slot)
    content = tuple(content_targets[n].detach().expand_as(t) if n in content_targets else None
                    for n, t in zip(names, tapped))
    style = tuple(style_targets[n].detach().expand(t.shape[0], -1, -1) if n in style_targets else None
                  for n, t in zip(names, tapped))
    style_order = tuple(names.index(n) for n in style_targets)
    return _TapLosses.apply((content, style, tuple(slots), style_order), precision, *tapped)
