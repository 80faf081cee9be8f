"""Gram precision modes: fast products agree with exact ones; unsupported or unknown modes are refused."""

import pytest
import torch

from nst.errors import ConfigError
from nst.losses import gram_matrix, layer_loss_vector, style_losses
from nst.precision import fast_supported, products, resolve_precision

CPU = torch.device("cpu")


def test_auto_resolves_to_what_the_hardware_has():
    assert resolve_precision("auto", CPU) == ("fast" if fast_supported(CPU) else "exact")
    assert resolve_precision("exact", CPU) == "exact"


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="Choose one of: auto, exact, fast"):
        resolve_precision("half", CPU)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("with_content", [False, True])
def test_fast_losses_match_exact_or_are_refused_where_unsupported(layout, with_content):
    torch.manual_seed(0)
    features = torch.randn(1, 32, 24, 24).contiguous(memory_format=layout).requires_grad_(True)
    target = gram_matrix(torch.randn(1, 32, 24, 24))
    content = torch.randn(1, 32, 24, 24).contiguous(memory_format=layout) if with_content else None
    if not fast_supported(CPU):
        with pytest.raises(ConfigError, match="needs a CPU with bfloat16 units"):
            resolve_precision("fast", CPU)
        return

    def loss(precision: str) -> torch.Tensor:  # the style term alone, or both terms in one product
        return layer_loss_vector([features], [content], [target], precision).sum()

    exact = loss("exact")
    (exact_grad,) = torch.autograd.grad(exact, features)
    fast = loss(resolve_precision("fast", CPU))
    (fast_grad,) = torch.autograd.grad(fast, features)
    assert fast.item() == pytest.approx(exact.item(), rel=1e-3)
    assert torch.allclose(fast_grad, exact_grad, rtol=0, atol=1e-2 * exact_grad.abs().max().item())
    cosine = torch.nn.functional.cosine_similarity(fast_grad.flatten(), exact_grad.flatten(), dim=0)
    assert cosine.item() > 0.9999
    assert fast_grad.is_contiguous(memory_format=layout)


def test_products_restore_the_backend_setting_even_after_an_error():
    before = torch.backends.mkldnn.matmul.fp32_precision
    with pytest.raises(ValueError):
        with products("fast", CPU):
            raise ValueError("inside")
    assert torch.backends.mkldnn.matmul.fp32_precision == before
    with products("exact", CPU):
        assert torch.backends.mkldnn.matmul.fp32_precision == before


def test_a_layer_weighted_zero_gets_a_zero_gradient_in_every_precision():
    torch.manual_seed(1)
    feats = [torch.randn(1, 16, 12, 12, requires_grad=True) for _ in range(2)]
    grams = [gram_matrix(torch.randn(1, 16, 12, 12)) for _ in range(2)]
    precisions = ["exact"] + (["fast"] if fast_supported(CPU) else [])
    for precision in precisions:
        losses = style_losses(feats, grams, precision)
        first, second = torch.autograd.grad(torch.dot(torch.tensor([1e6, 0.0]), losses), feats,
                                            materialize_grads=True)
        assert torch.isfinite(first).all() and first.abs().sum() > 0
        assert torch.equal(second, torch.zeros_like(second))
