"""Loss maths against hand-computed values and independent re-derivations."""

import pytest
import torch

from nst.losses import (
    _as_map,
    _pixel_major,
    _rows,
    content_loss,
    content_losses,
    gram_matrix,
    layer_losses,
    mean_std,
    mean_std_loss,
    style_loss,
    style_losses,
    total_variation,
)


def test_gram_matches_tutorial_normalisation_by_hand():
    # one image, two channels, 1x2 spatial: F = [[1, 2], [3, 4]]
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / (1 * 2 * 1 * 2)
    assert torch.allclose(gram_matrix(features)[0], expected)


def test_gram_equals_explicit_loop():
    torch.manual_seed(0)
    features = torch.randn(1, 4, 3, 5)
    a, b, c, d = features.shape
    flat = features.view(b, c * d)
    loop = torch.zeros(b, b)
    for i in range(b):
        for j in range(b):
            loop[i, j] = (flat[i] * flat[j]).sum()
    assert torch.allclose(gram_matrix(features)[0], loop / (a * b * c * d), atol=1e-6)


def test_content_loss_is_mse_and_zero_for_identical_features():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = torch.tensor([[[[1.0, 0.0], [3.0, 8.0]]]])
    assert content_loss(x, x).item() == 0.0
    assert abs(content_loss(x, y).item() - (4 + 16) / 4) < 1e-6


def test_style_loss_is_mse_between_grams():
    torch.manual_seed(1)
    x, y = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    expected = ((gram_matrix(x) - gram_matrix(y)) ** 2).mean()
    assert torch.allclose(style_loss(x, gram_matrix(y)), expected)
    # zero up to rounding: the loss subtracts n * target from the unnormalised gram (n: the map's size)
    assert style_loss(x, gram_matrix(x)).item() < 1e-12


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical diffs: 2, 3 -> mean of squares 6.5; horizontal diffs: 1, 2 -> 2.5
    assert abs(total_variation(image).item() - 9.0) < 1e-6
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_mean_std_uses_unbiased_variance_plus_eps():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    mean, std = mean_std(x)
    values = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert torch.allclose(mean.flatten(), values.mean().reshape(1))
    unbiased = ((values - values.mean()) ** 2).sum() / 3
    assert torch.allclose(std.flatten(), (unbiased + 1e-5).sqrt().reshape(1))


def test_mean_std_loss_zero_for_same_statistics_and_positive_otherwise():
    torch.manual_seed(2)
    a, b = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6) * 3 + 1
    assert mean_std_loss([a], [a]).item() == 0.0
    assert mean_std_loss([a], [b]).item() > 0.1


def test_gram_gradient_matches_plain_autograd():
    torch.manual_seed(3)
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (features,))
    weights = torch.randn(2, 3, 3, dtype=torch.float64)
    (gram_matrix(features) * weights).sum().backward()
    ours = features.grad.clone()
    features.grad = None
    flat = features.reshape(2, 3, 20)
    ((torch.bmm(flat, flat.transpose(1, 2)) / (2 * 3 * 4 * 5)) * weights).sum().backward()
    assert torch.allclose(ours, features.grad)


def test_style_loss_value_and_gradient_match_autograd_on_the_plain_formula():
    torch.manual_seed(4)
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    other = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    target = gram_matrix(other)
    assert torch.autograd.gradcheck(lambda f: style_loss(f, target), (features,))
    loss = style_loss(features, target)
    loss.backward()
    ours = features.grad.clone()
    features.grad = None
    flat = features.reshape(2, 3, 20)
    plain = ((torch.bmm(flat, flat.transpose(1, 2)) / (2 * 3 * 4 * 5) - target) ** 2).mean()
    plain.backward()
    assert torch.allclose(loss, plain) and torch.allclose(ours, features.grad)


def test_content_loss_gradient_matches_autograd():
    torch.manual_seed(5)
    features = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: content_loss(f, target), (features,))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_channels_last_maps_get_the_same_values_and_gradients_in_their_own_layout(layout):
    torch.manual_seed(7)
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    target = torch.randn(1, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=layout)
    grams = gram_matrix(torch.randn(1, 3, 4, 5, dtype=torch.float64))

    def both(f: torch.Tensor) -> torch.Tensor:
        content, style = layer_losses([f], [target], [grams])
        return 2.0 * content.sum() + 7.0 * style.sum()

    assert torch.autograd.gradcheck(both, (features,))
    assert torch.autograd.gradcheck(lambda f: (gram_matrix(f) ** 2).sum(), (features,))
    for loss in (both(features), (gram_matrix(features) ** 2).sum(), style_loss(features, grams)):
        (grad,) = torch.autograd.grad(loss, features)
        assert grad.is_contiguous(memory_format=layout)


def test_several_layers_in_one_call_equal_the_layers_one_by_one():
    torch.manual_seed(6)
    feats = [torch.randn(1, 4, 6, 6, requires_grad=True), torch.randn(1, 8, 3, 3, requires_grad=True)]
    others = [torch.randn(1, 4, 6, 6), torch.randn(1, 8, 3, 3)]
    grams = [gram_matrix(o) for o in others]
    together = style_losses(feats, grams)
    assert torch.allclose(together, torch.stack([style_loss(f, g) for f, g in zip(feats, grams)]))
    assert torch.allclose(content_losses(feats, others), torch.stack([content_loss(f, o) for f, o in zip(feats, others)]))
    weights = torch.tensor([0.3, 2.0])
    together_grads = torch.autograd.grad((weights * (together + content_losses(feats, others))).sum(), feats)
    single = sum(w * (style_loss(f, g) + content_loss(f, o)) for w, f, g, o in zip(weights, feats, grams, others))
    for a, b in zip(together_grads, torch.autograd.grad(single, feats)):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(2, 5, 4, 3),  # NCHW
    lambda: torch.randn(2, 5, 4, 3).contiguous(memory_format=torch.channels_last),
    lambda: torch.randn(1, 5, 1, 1).contiguous(memory_format=torch.channels_last),  # both layouts at once
    lambda: torch.randn(2, 5, 4, 6).contiguous(memory_format=torch.channels_last)[:, :, :, ::2],  # not dense
    lambda: torch.randn(1, 5, 4, 3).contiguous(memory_format=torch.channels_last)[:, :, 1:],  # storage offset
])
def test_matrix_views_of_a_map_in_any_layout_read_and_write_back_the_same_entries(make):
    features = make()
    for pixel_major in (False, True):
        rows = _rows(features, pixel_major)
        b, c = features.shape[:2]
        expected = features.reshape(b, c, -1)
        assert torch.equal(rows.mT if pixel_major else rows, expected)
        assert torch.equal(_as_map(rows, features.shape, pixel_major), features)
        assert torch.equal(_as_map(rows.clone(), features.shape, pixel_major), features)
    assert _pixel_major(features) == (not features.is_contiguous()
                                      and features.is_contiguous(memory_format=torch.channels_last))
