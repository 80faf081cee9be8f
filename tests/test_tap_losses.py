"""nst.tap_losses: the same values and gradients as nst.losses, with gradients folded into the network's."""

import pytest
import torch

import nst.tap_losses
from nst.features import get_backbone
from nst.gatys import preset
from nst.losses import content_losses, gram_matrix, style_losses
from nst.tap_losses import tap_losses


@pytest.fixture
def fold_everything(monkeypatch):
    """Fold taps of any size (tests use small maps, which are never folded by default)."""
    monkeypatch.setattr(nst.tap_losses, "FOLD_MIN_ELEMENTS", 0)


def reference(feats, contents, grams):
    """The same losses from nst.losses (every gradient returned by the loss node)."""
    c = content_losses([feats[n] for n in contents], list(contents.values())) if contents else torch.zeros(0)
    s = style_losses([feats[n] for n in grams], list(grams.values()))
    return c, s


def losses_and_gradient(net, config, size: int, fold: bool, weights: torch.Tensor):
    torch.manual_seed(0)
    layers = list(dict.fromkeys(config.content_layers + config.style_layers))
    truncated = net.truncated(layers)
    with torch.no_grad():
        content = truncated(torch.rand(1, 3, size, size), layers)
        style = truncated(torch.rand(1, 3, size, size), layers)
    contents = {n: content[n] for n in config.content_layers}
    grams = {n: gram_matrix(style[n]) for n in config.style_layers}
    image = torch.rand(1, 3, size, size, requires_grad=True)
    feats = truncated(image, layers)
    if fold:
        c, s = tap_losses(feats, contents, grams, "exact", truncated.inner_taps(layers))
    else:
        c, s = reference(feats, contents, grams)
    (3.0 * c.sum() + (weights * s).sum()).backward()
    return c.detach(), s.detach(), image.grad


@pytest.mark.parametrize("backbone, preset_name", [
    ("vgg19", "tutorial"), ("vgg19", "vgg19-paper"), ("vgg16", "vgg16"), ("alexnet", "alexnet"),
    ("resnet18", "resnet18"), ("mobilenet_v2", "mobilenet_v2"), ("mobilenet_v2", "mobilenet_v2-fine"),
    ("mobilenet_v2_flat", "mobilenet_v2-flat"),
])
def test_folded_gradients_equal_the_returned_ones_on_every_backbone(fold_everything, backbone, preset_name):
    net = get_backbone(backbone, "random", seed=0)
    config = preset(preset_name)
    weights = torch.linspace(1.0, 2e3, len(config.style_layers))
    size = 96
    c_ref, s_ref, g_ref = losses_and_gradient(net, config, size, False, weights)
    c, s, g = losses_and_gradient(net, config, size, True, weights)
    assert torch.allclose(c, c_ref, rtol=1e-5) and torch.allclose(s, s_ref, rtol=1e-5)
    assert (g - g_ref).norm() <= 1e-5 * g_ref.norm()


def chain(x: torch.Tensor, consumer: str) -> tuple[dict, torch.Tensor]:
    """Two taps: ``a`` and a deeper ``b`` computed from ``a`` through ``consumer``."""
    a = torch.tanh(x * 1.5)
    if consumer == "view":  # a's gradient arrives as a view of b's
        b = (a.view(1, 2, 4, 8) * 1.0).sin().view(1, 2, 8, 4)
    elif consumer == "shared":  # an add hands one gradient tensor to both of its inputs
        b = a + torch.cos(x)
    else:
        b = torch.relu(a)
    return {"a": a, "b": b}, b


@pytest.mark.parametrize("consumer", ["relu", "view", "shared"])
@pytest.mark.parametrize("with_content", [True, False])
def test_folding_is_right_when_the_arriving_gradient_is_shared_or_a_view(fold_everything, consumer, with_content):
    torch.manual_seed(1)
    x0 = torch.randn(1, 2, 8, 4)
    contents = {"a": torch.randn(1, 2, 8, 4)} if with_content else {}
    grams = {"a": gram_matrix(torch.randn(1, 2, 8, 4)), "b": gram_matrix(torch.randn(1, 2, 8, 4))}
    grads = []
    for fold in (False, True):
        x = x0.clone().requires_grad_(True)
        feats, _ = chain(x, consumer)
        c, s = tap_losses(feats, contents, grams, "exact", ["a"]) if fold else reference(feats, contents, grams)
        (2.0 * c.sum() + 5.0 * s.sum()).backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("consumer", ["relu", "shared"])
def test_folding_into_a_channels_last_gradient_keeps_it_right_and_in_layout(fold_everything, consumer):
    torch.manual_seed(3)
    x0 = torch.randn(1, 3, 6, 5).contiguous(memory_format=torch.channels_last)
    contents = {"a": torch.randn(1, 3, 6, 5)}
    grams = {"a": gram_matrix(torch.randn(1, 3, 6, 5)), "b": gram_matrix(torch.randn(1, 3, 6, 5))}
    grads, arrived = [], []
    for fold in (False, True):
        x = x0.clone().requires_grad_(True)
        feats, _ = chain(x, consumer)
        feats["a"].register_hook(lambda g: arrived.append(g.is_contiguous(memory_format=torch.channels_last)))
        c, s = tap_losses(feats, contents, grams, "exact", ["a"]) if fold else reference(feats, contents, grams)
        (2.0 * c.sum() + 5.0 * s.sum()).backward()
        grads.append(x.grad)
    assert all(arrived) and grads[1].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_a_folded_tap_still_gets_its_gradient_when_the_deepest_weighs_nothing(fold_everything):
    torch.manual_seed(2)
    x0 = torch.randn(1, 2, 8, 4)
    contents = {"a": torch.randn(1, 2, 8, 4)}
    grams = {"a": gram_matrix(torch.randn(1, 2, 8, 4)), "b": gram_matrix(torch.randn(1, 2, 8, 4))}
    grads = []
    for fold in (False, True):
        x = x0.clone().requires_grad_(True)
        feats, _ = chain(x, "relu")
        c, s = tap_losses(feats, contents, grams, "exact", ["a"]) if fold else reference(feats, contents, grams)
        (c.sum() + torch.tensor([1.0, 0.0]) @ s).backward()  # b's style loss weighted 0
        grads.append(x.grad)
    assert grads[1] is not None and grads[1].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_outputs_follow_the_order_of_the_targets_and_equal_nst_losses():
    torch.manual_seed(3)
    feats = {n: torch.randn(1, 3, 5, 5) for n in ("p", "q", "r")}
    contents = {"r": torch.randn(1, 3, 5, 5), "p": torch.randn(1, 3, 5, 5)}
    grams = {"q": gram_matrix(torch.randn(1, 3, 5, 5)), "r": gram_matrix(torch.randn(1, 3, 5, 5)),
             "p": gram_matrix(torch.randn(1, 3, 5, 5))}
    c, s = tap_losses(feats, contents, grams)
    c_ref, s_ref = reference(feats, contents, grams)
    assert c.shape == (2,) and s.shape == (3,)
    assert torch.allclose(c, c_ref) and torch.allclose(s, s_ref)


def test_only_content_or_only_style_and_no_grad_evaluation():
    feats = {"a": torch.randn(1, 3, 4, 4)}
    c, s = tap_losses(feats, {"a": feats["a"].clone()}, {})
    assert c.tolist() == [0.0] and s.numel() == 0
    with torch.no_grad():
        x = torch.randn(1, 3, 4, 4, requires_grad=True)
        c, s = tap_losses({"a": x * 2}, {}, {"a": gram_matrix(x)}, fold=["a"])
    assert c.numel() == 0 and s.shape == (1,) and not s.requires_grad


def test_inner_taps_are_all_but_the_deepest():
    net = get_backbone("vgg19", "random", seed=0)
    assert net.inner_taps(["conv_4", "conv_1", "conv_5", "relu1_1"]) == ["conv_4", "conv_1", "relu1_1"]
