"""Gatys' content and style losses of a network's taps, with the gradients of large taps folded into the network's.

The losses are ``nst.losses.layer_losses`` (the tutorial's MSE of feature maps and MSE of grams, one
autograd node for all taps); only the way the gradient reaches the network differs. A tap that the
network runs further layers on (every tap but the deepest) already receives a gradient from those
layers. Its loss gradient is added into that arriving gradient by a hook on the tap: in place when
autograd hands the hook a tensor no one else holds, out of place otherwise. Returning it from the
losses' node instead writes a separate map per tap that autograd reads again later to add the two;
on a 2-core CPU at 256-512 px that round trip through memory is 2-5% of a VGG-19 step.
"""

from __future__ import annotations

from typing import Collection, Mapping, Optional

import torch

from nst.losses import _loss_gradient, _Terms, layer_loss_vector
from nst.precision import products

# Folding pays where a map does not fit in cache (the saved round trip is through main memory); for
# smaller maps the hook's own cost is larger than what it saves (measured on a 2-core CPU: VGG-19 at
# 256-512 px gains 2-5%; AlexNet's maps of 1M elements at 512 px and MobileNetV2's at 256 px lose 1-3%).
FOLD_MIN_ELEMENTS = 1 << 21


def _exclusively_owned(grad: torch.Tensor) -> bool:
    """Whether ``grad`` may be updated in place: dense (contiguous or channels-last), not a view, not shared
    by another autograd buffer or tensor (the hook's argument and autograd's buffer are its only holders),
    and not part of a graph.

    The use counts are torch internals; a torch without them gets ``False`` (out of place: slower, same result).
    """
    dense = grad.is_contiguous() or (grad.dim() == 4 and grad.is_contiguous(memory_format=torch.channels_last))
    if grad._base is not None or grad.requires_grad or not dense:
        return False
    try:
        return grad._use_count() <= 2 and torch._C._storage_Use_Count(grad.untyped_storage()._cdata) <= 2
    except AttributeError:
        return False


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
        with products(self.precision, grad.device):
            return _loss_gradient(terms, grad, _exclusively_owned(grad))


def tap_loss_vector(features: Mapping[str, torch.Tensor], content_targets: Mapping[str, torch.Tensor],
                    style_targets: Mapping[str, torch.Tensor], precision: str = "exact",
                    fold: Collection[str] = ()) -> torch.Tensor:
    """Content losses (one per ``content_targets`` entry, in its order) then style losses (one per
    ``style_targets`` entry) of the tapped ``features``, in one autograd node and one vector.

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
    return layer_loss_vector(tapped, [content_targets.get(n) for n in names],
                             [style_targets.get(n) for n in names], precision,
                             [names.index(n) for n in style_targets], slots)


def tap_losses(features: Mapping[str, torch.Tensor], content_targets: Mapping[str, torch.Tensor],
               style_targets: Mapping[str, torch.Tensor], precision: str = "exact",
               fold: Collection[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """``tap_loss_vector`` split in two: the vector of content losses and the vector of style losses."""
    losses = tap_loss_vector(features, content_targets, style_targets, precision, fold)
    return losses[:len(content_targets)], losses[len(content_targets):]
