"""The one feature-extraction path: names, channel counts, early stop, MobileNetV2 variants."""

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from nst.errors import LayerError
from nst.features import BACKBONES, build_backbone, get_backbone

# Independent channel facts from the architectures' papers / torchvision definitions.
KNOWN_CHANNELS = {
    "vgg19": {"conv_1": 64, "relu1_1": 64, "conv_4": 128, "relu2_2": 128, "conv_5": 256, "relu4_2": 512,
              "relu5_1": 512, "pool_16": 512},
    "vgg16": {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512, "conv_13": 512},
    "alexnet": {"conv_1": 64, "conv_2": 192, "conv_3": 384, "conv_4": 256, "conv_5": 256, "pool5": 256},
    "resnet18": {"conv1": 64, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512},
    "resnext50_32x4d": {"conv1": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
    "mobilenet_v2": {"conv_0_0": 32, "conv_1_1": 16, "conv_2_2": 24, "conv_4_2": 32, "conv_8_2": 64,
                     "conv_11_2": 96, "conv_14_2": 160, "layer_17": 320, "layer_18": 1280, "relu_2_0": 96},
    "vgg19_normalised": {"preprocess": 3, "relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512},
}
KNOWN_CHANNELS["mobilenet_v2_flat"] = KNOWN_CHANNELS["mobilenet_v2"]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_listed_layer_is_extracted_with_the_right_channels(name):
    net = get_backbone(name, "random")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = net(x, net.layer_names)
    assert set(feats) == set(net.layer_names)
    for layer, tensor in feats.items():
        assert tensor.dim() == 4 and tensor.shape[0] == 1, layer
    for layer, channels in KNOWN_CHANNELS[name].items():
        assert feats[layer].shape[1] == channels, layer


def test_vgg_tutorial_and_paper_names_are_the_same_activation(vgg19_random):
    pairs = [("conv_1", "conv1_1"), ("relu_4", "relu2_2"), ("conv_10", "conv4_2"), ("pool_8", "pool3"),
             ("relu_13", "relu5_1")]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = vgg19_random(x, [n for pair in pairs for n in pair])
    for tutorial, paper in pairs:
        assert torch.equal(feats[tutorial], feats[paper])


def test_vgg_conv_tap_is_not_overwritten_by_inplace_relu(vgg19_random):
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        feats = vgg19_random(x, ["conv_1", "relu_1"])
    assert (feats["conv_1"] < 0).any()
    assert torch.equal(feats["relu_1"], feats["conv_1"].clamp_min(0))


def test_extractor_stops_after_the_deepest_requested_layer(vgg19_random):
    later = vgg19_random.blocks[vgg19_random.index["conv_6"]]
    calls = []
    handle = later.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad():
            vgg19_random(torch.rand(1, 3, 32, 32), ["conv_4", "conv_1"])
        assert calls == []
        with torch.no_grad():
            vgg19_random(torch.rand(1, 3, 32, 32), ["conv_6"])
        assert calls == [1]
    finally:
        handle.remove()


def test_truncated_net_holds_only_the_needed_steps(vgg19_random):
    small = vgg19_random.truncated(["conv_1", "conv_4"])
    assert len(small.blocks) == vgg19_random.index["conv_4"] + 1
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(small(x, ["conv_4"])["conv_4"], vgg19_random(x, ["conv_4"])["conv_4"])


def test_unknown_layer_lists_the_valid_ones(vgg19_random):
    with pytest.raises(LayerError) as info:
        vgg19_random(torch.rand(1, 3, 32, 32), ["conv_99"])
    message = str(info.value)
    assert "conv_99" in message and "relu4_2" in message and "conv_16" in message


def test_mobilenet_variants_expose_the_same_names():
    intact, flat = get_backbone("mobilenet_v2", "random"), get_backbone("mobilenet_v2_flat", "random")
    assert intact.layer_names == flat.layer_names
    for name in ["conv_1_1", "conv_2_2", "conv_4_2", "conv_8_2", "conv_11_2", "conv_14_2", "bn_0_1", "relu_0_2",
                 "bn_1_2", "bn_2_3", "layer_0", "layer_18"]:
        assert name in intact.layer_names


def test_flattened_mobilenet_drops_the_skips_and_intact_blocks_equal_torchvision(tmp_path):
    torch.manual_seed(0)
    reference = tvm.mobilenet_v2().eval()
    # give BN layers non-trivial statistics and affine parameters so residual sums matter
    with torch.no_grad():
        torch.manual_seed(5)
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v2.pth")
    intact = build_backbone("mobilenet_v2", tmp_path / "mobilenet_v2.pth")
    flat = build_backbone("mobilenet_v2_flat", tmp_path / "mobilenet_v2.pth")
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    blocks = [f"layer_{b}" for b in range(19)]
    with torch.no_grad():
        ours = intact(x, blocks)
        flattened = flat(x, blocks)
        h = (x - mean) / std
        for b, block in enumerate(reference.features):
            h = block(h)
            assert torch.allclose(ours[f"layer_{b}"], h, atol=1e-5), b
    # block 3 is the first with a skip: identical before it, different from it on
    assert torch.equal(flattened["layer_2"], ours["layer_2"])
    assert not torch.allclose(flattened["layer_3"], ours["layer_3"])
    assert not torch.allclose(flattened["layer_14"], ours["layer_14"])


def test_frozen_batchnorm_equals_eval_batchnorm():
    from nst.features import FrozenBatchNorm

    torch.manual_seed(3)
    x = torch.randn(2, 6, 5, 7)
    for affine in (True, False):
        bn = nn.BatchNorm2d(6, eps=1e-3, affine=affine).eval()
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.2, 3)
            if affine:
                bn.weight.uniform_(-2, 2)
                bn.bias.uniform_(-1, 1)
            assert torch.allclose(FrozenBatchNorm(bn)(x), bn(x), atol=1e-5)
            cl = x.contiguous(memory_format=torch.channels_last)
            assert FrozenBatchNorm(bn)(cl).is_contiguous(memory_format=torch.channels_last)


def test_feature_maps_are_channels_last_on_cpu_and_backbones_hold_no_batchnorm():
    net = build_backbone("resnet18", "random", seed=0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 32, 32), ["conv1", "layer2"])
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in feats.values())


def test_in_block_tap_of_intact_mobilenet_is_before_the_skip_add():
    net = build_backbone("mobilenet_v2", "random", seed=0)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = net(x, ["layer_2", "bn_3_3", "layer_3"])
    assert torch.allclose(feats["layer_3"], feats["bn_3_3"] + feats["layer_2"])


def test_random_weights_are_seeded():
    a = build_backbone("resnet18", "random", seed=3)
    b = build_backbone("resnet18", "random", seed=3)
    c = build_backbone("resnet18", "random", seed=4)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x, ["layer2"])["layer2"], b(x, ["layer2"])["layer2"])
        assert not torch.equal(a(x, ["layer2"])["layer2"], c(x, ["layer2"])["layer2"])


def test_backbone_weights_from_a_torchvision_state_dict_file(tmp_path):
    torch.manual_seed(11)
    reference = tvm.resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = build_backbone("resnet18", path)
    x = torch.rand(1, 3, 48, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        h = (x - mean) / std
        for name in ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]:
            h = getattr(reference, name)(h)
        assert torch.allclose(net(x, ["layer2"])["layer2"], h, atol=1e-5)


def test_checkpoint_without_batchnorm_counters_still_loads(tmp_path):
    torch.manual_seed(12)
    reference = tvm.resnet18().eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    net = build_backbone("resnet18", tmp_path / "old.pth")
    assert torch.equal(net.blocks[net.index["conv1"]].weight, reference.conv1.weight)


def test_too_small_image_for_a_deep_layer_is_explained():
    from nst.errors import ImageError

    net = get_backbone("alexnet", "random")
    with pytest.raises(ImageError, match="too small for layer 'pool_5'"):
        net(torch.rand(1, 3, 20, 20), ["conv_1", "pool_5"])
