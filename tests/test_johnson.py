"""Johnson networks: both published checkpoint layouts, any input size, stylize, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from conftest import make_image
from nst import johnson as J
from nst.cli import main
from nst.errors import ConfigError, ImageError, WeightsError

# ---------------------------------------------------------------------------------------------
# The published layouts, written out independently of nst.johnson


def examples_layout() -> dict[str, tuple[int, ...]]:
    """Every key of a pytorch/examples fast_neural_style checkpoint with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{name}.conv2d.weight"] = (cout, cin, k, k)
        shapes[f"{name}.conv2d.bias"] = (cout,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c,)
        shapes[f"{name}.bias"] = (c,)

    conv("conv1", 3, 32, 9), norm("in1", 32), conv("conv2", 32, 64, 3), norm("in2", 64)
    conv("conv3", 64, 128, 3), norm("in3", 128)
    for i in range(1, 6):
        conv(f"res{i}.conv1", 128, 128, 3), norm(f"res{i}.in1", 128)
        conv(f"res{i}.conv2", 128, 128, 3), norm(f"res{i}.in2", 128)
    conv("deconv1", 128, 64, 3), norm("in4", 64), conv("deconv2", 64, 32, 3), norm("in5", 32)
    conv("deconv3", 32, 3, 9)
    return shapes


def fill(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded tensors: small conv weights, norm scales near 1, and an output layer that spans 0-255."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3] if "conv_transpose" not in key else shape[0] * 9
            value = torch.randn(shape, generator=g) / fan_in**0.5
        elif key.endswith("weight"):
            value = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            value = 0.1 * torch.randn(shape, generator=g)
        state[key] = value
    return state


def spread_output(state: dict[str, torch.Tensor], weight_key: str, bias_key: str) -> None:
    """Make the last layer map to mid-grey +- a lot, so outputs are not all clamped."""
    state[weight_key] = state[weight_key] * 60
    state[bias_key] = torch.full_like(state[bias_key], 127.5)


class MazeConv(nn.Module):
    """maze/FastStyleTransfer ConvLayer: reflection_pad, conv_layer, norm_layer (optional)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, norm: bool = True):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv_layer = nn.Conv2d(cin, cout, k, stride)
        self.norm_layer = nn.InstanceNorm2d(cout, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_layer(self.reflection_pad(x))
        return self.norm_layer(y) if self.norm_layer is not None else y


class MazeResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = MazeConv(128, 128, 3, 1)
        self.relu = nn.ReLU()
        self.conv2 = MazeConv(128, 128, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MazeDeconv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(cin, cout, 3, 2, 1, 1)
        self.norm_layer = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_layer(self.conv_transpose(x))


class MazeNet(nn.Module):
    """A reference re-implementation of the maze/FastStyleTransfer module tree (BGR 0-255 in and out)."""

    def __init__(self) -> None:
        super().__init__()
        self.ConvBlock = nn.Sequential(
            MazeConv(3, 32, 9, 1), nn.ReLU(), MazeConv(32, 64, 3, 2), nn.ReLU(), MazeConv(64, 128, 3, 2), nn.ReLU()
        )
        self.ResidualBlock = nn.Sequential(*[MazeResidual() for _ in range(5)])
        self.DeconvBlock = nn.Sequential(
            MazeDeconv(128, 64), nn.ReLU(), MazeDeconv(64, 32), nn.ReLU(), MazeConv(32, 3, 9, 1, norm=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.DeconvBlock(self.ResidualBlock(self.ConvBlock(x)))


@pytest.fixture(scope="module")
def examples_state() -> dict[str, torch.Tensor]:
    state = fill(examples_layout(), seed=3)
    spread_output(state, "deconv3.conv2d.weight", "deconv3.conv2d.bias")
    return state


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory, examples_state) -> str:
    """A .pth as older PyTorch saved it: with InstanceNorm running stats the current module lacks."""
    state = dict(examples_state)
    for key in [k for k in state if k.split(".")[-2].startswith("in") and k.endswith(".weight")]:
        prefix = key[: -len("weight")]
        state[prefix + "running_mean"] = torch.zeros_like(state[key])
        state[prefix + "running_var"] = torch.ones_like(state[key])
    path = tmp_path_factory.mktemp("examples") / "candy.pth"
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def maze_reference() -> MazeNet:
    torch.manual_seed(5)
    net = MazeNet().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
        last = net.DeconvBlock[4].conv_layer
        last.weight.mul_(60)
        last.bias.fill_(127.5)
    return net


@pytest.fixture(scope="module")
def maze_file(tmp_path_factory, maze_reference) -> str:
    path = tmp_path_factory.mktemp("maze") / "Mosaic_512.pth"
    torch.save(maze_reference.state_dict(), path)
    return str(path)


# ---------------------------------------------------------------------------------------------
# Layouts and formats


def test_network_keys_and_shapes_match_pytorch_examples():
    net = J.TransformerNet()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == examples_layout()


def test_maze_reference_has_the_published_key_names(maze_reference):
    keys = {k: tuple(v.shape) for k, v in maze_reference.state_dict().items()}
    assert keys["ConvBlock.0.conv_layer.weight"] == (32, 3, 9, 9)
    assert keys["ConvBlock.4.norm_layer.bias"] == (128,)
    assert keys["ResidualBlock.4.conv2.norm_layer.weight"] == (128,)
    assert keys["DeconvBlock.0.conv_transpose.weight"] == (128, 64, 3, 3)
    assert keys["DeconvBlock.2.norm_layer.weight"] == (32,)
    assert keys["DeconvBlock.4.conv_layer.weight"] == (3, 32, 9, 9)
    assert len(keys) == len(examples_layout())


def test_examples_checkpoint_loads_with_running_stats_dropped(examples_file, examples_state):
    net = J.load_johnson(examples_file)
    assert net.format == "pytorch-examples" and not net.training
    assert (net.upsample, net.channel_order) == ("nearest", "rgb")
    direct = J.TransformerNet()
    direct.load_state_dict(examples_state)
    x = torch.rand(1, 3, 32, 48) * 255
    with torch.no_grad():
        assert torch.equal(net(x), direct(x))


def test_maze_checkpoint_through_the_adapter_equals_the_reference(maze_file, maze_reference):
    net = J.load_johnson(maze_file)
    assert net.format == "maze"
    assert (net.upsample, net.channel_order) == ("transpose", "bgr")
    bgr = torch.rand(1, 3, 40, 56) * 255
    with torch.no_grad():
        expected = maze_reference(bgr)
        assert torch.allclose(net(bgr), expected, atol=1e-3)
    # the RGB [0, 1] pipeline flips channels in and out
    rgb = bgr.flip(1) / 255
    out = J.run_network(net, rgb)
    reference = (expected.flip(1) / 255).clamp(0, 1)
    assert torch.allclose(out, reference, atol=1e-5)
    assert 0.05 < out.mean() < 0.95


def test_maze_keys_map_onto_the_examples_plan(maze_reference):
    mapped = J.adapt_maze(maze_reference.state_dict())
    transposed = {k.replace("conv_transpose", "conv2d") for k in mapped}
    assert transposed == set(examples_layout())


def test_format_detection(examples_state, maze_reference):
    assert J.detect_format(examples_state) == "pytorch-examples"
    assert J.detect_format(maze_reference.state_dict()) == "maze"
    assert J.detect_format(examples_state, {"format": "autoart"}) == "autoart"
    multi = dict(examples_state, **{"in1.weight": torch.ones(2, 32)})
    assert J.detect_format(multi) == "autoart-multistyle"


def test_not_a_johnson_file_is_refused(tmp_path):
    path = tmp_path / "decoder.pth"
    torch.save({"0.weight": torch.zeros(3, 3, 1, 1), "0.bias": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="not a Johnson style network"):
        J.load_johnson(path)


def test_missing_key_is_refused_all_or_nothing(tmp_path, examples_state):
    state = {k: v for k, v in examples_state.items() if k != "res3.in2.bias"}
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="res3.in2.bias"):
        J.load_johnson(path)


def test_forced_wrong_format_and_unknown_format(examples_file):
    with pytest.raises(WeightsError, match="does not fit"):
        J.load_johnson(examples_file, format="maze")
    with pytest.raises(ConfigError, match="Unknown checkpoint format"):
        J.load_johnson(examples_file, format="caffe")


def test_project_safetensors_keeps_its_options(tmp_path, maze_file):
    net = J.load_johnson(maze_file)
    path = tmp_path / "converted.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"format": "autoart", **net.describe()})
    again = J.load_johnson(path)
    assert again.format == "autoart"
    assert (again.upsample, again.channel_order) == ("transpose", "bgr")
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(again(x), net(x))


def test_unknown_network_options_are_config_errors():
    with pytest.raises(ConfigError, match="up-sampling"):
        J.TransformerNet(upsample="bilinear")
    with pytest.raises(ConfigError, match="channel order"):
        J.TransformerNet(channel_order="rbg")


# ---------------------------------------------------------------------------------------------
# Sizes and the inference graph


@pytest.mark.parametrize("height,width", [(64, 64), (97, 131), (256, 255)])
@pytest.mark.parametrize("layout", ["examples", "maze"])
def test_output_has_the_input_size(height, width, layout, examples_file, maze_file):
    net = J.load_johnson(examples_file if layout == "examples" else maze_file)
    out = J.run_network(net, torch.rand(1, 3, height, width))
    assert out.shape == (1, 3, height, width)


def test_too_small_input_is_an_image_error(examples_file):
    with pytest.raises(ImageError, match="at least"):
        J.run_network(J.load_johnson(examples_file), torch.rand(1, 3, 6, 40))


def test_padding_reflects_and_crop_restores_the_size():
    x = torch.arange(2 * 3 * 9 * 11, dtype=torch.float32).reshape(2, 3, 9, 11)
    padded, size = J.pad_to_multiple(x)
    assert padded.shape[-2:] == (12, 12) and size == (9, 11)
    assert torch.equal(padded[..., :9, :11], x)
    assert torch.equal(padded[..., 9, :11], x[..., 7, :])  # reflection, not zeros


@pytest.mark.parametrize("layout", ["examples", "maze"])
def test_inference_graph_computes_the_same_function(layout, examples_file, maze_file):
    net = J.load_johnson(examples_file if layout == "examples" else maze_file)
    fast = J.inference_graph(net)
    x = torch.rand(1, 3, 36, 52) * 255
    with torch.no_grad():
        expected = net(x)
        assert torch.allclose(fast(x), expected, atol=1e-3, rtol=1e-5)
    if layout == "examples":
        assert isinstance(fast.deconv1, J.PhaseUpsampleConv)
    assert isinstance(fast.deconv3, J.PhaseStridedConv)


# ---------------------------------------------------------------------------------------------
# stylize


def test_stylize_with_a_checkpoint(examples_file):
    content = make_image(80, 60, seed=1)
    style = make_image(64, 64, seed=2)
    result = J.stylize(content, examples_file, engine="torch", device="cpu", style_image=style, scorer=None)
    assert result.method == "johnson"
    assert result.image.size == (80, 60)
    assert {"ssim_content", "ssim_style"} <= set(result.metrics)
    assert result.params["format"] == "pytorch-examples" and result.params["engine"] == "torch"
    assert result.seconds > 0 and set(result.timings) == {"load", "stylize", "metrics"}


def chroma(image: Image.Image) -> torch.Tensor:
    """Cb and Cr planes as floats."""
    return torch.from_numpy(np.asarray(image.convert("YCbCr"), dtype=np.float32)[:, :, 1:])


def test_stylize_size_and_preserved_colours(examples_file):
    content = make_image(96, 64, seed=4)
    plain = J.stylize(content, examples_file, size=48, engine="torch", device="cpu", scorer=None)
    kept = J.stylize(content, examples_file, size=48, preserve_color=True, engine="torch", device="cpu", scorer=None)
    assert plain.image.size == kept.image.size == (48, 32)
    small = content.resize((48, 32), Image.Resampling.LANCZOS)
    kept_error = (chroma(kept.image) - chroma(small)).abs().mean()
    plain_error = (chroma(plain.image) - chroma(small)).abs().mean()
    assert kept_error < 3 < plain_error


def test_stylize_with_a_module_and_bad_engine(examples_file):
    net = J.load_johnson(examples_file)
    result = J.stylize(make_image(40, 40), net, engine="torch", device="cpu", scorer=None)
    assert result.image.size == (40, 40)
    with pytest.raises(ConfigError, match="engine"):
        J.stylize(make_image(40, 40), net, engine="tensorrt", scorer=None)
    with pytest.raises(ConfigError, match="multi-style"):
        J.stylize(make_image(40, 40), net, engine="torch", style_weights=[1.0], scorer=None)


def test_stylize_missing_checkpoint_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        J.stylize(make_image(40, 40), str(tmp_path / "nope.pth"), scorer=None)


@pytest.fixture
def registry_weights(tmp_path, monkeypatch, examples_file):
    """Registry Johnson entries served from NST_WEIGHTS_DIR (no network)."""
    import shutil

    from nst import weights

    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(examples_file, folder / "udnie.pth")
    shutil.copy(examples_file, folder / "candy.pth")
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights.clear_cache()
    yield folder
    weights.clear_cache()


def test_stylize_by_registry_name_scores_against_the_style_image(registry_weights):
    result = J.stylize(make_image(48, 48), "udnie", engine="torch", device="cpu", scorer=None)
    assert result.params["style"] == "udnie" and result.params["format"] == "pytorch-examples"
    assert "ssim_style" in result.metrics  # examples/style/picabia_udnie.jpg


def test_registry_style_without_free_image_says_so(registry_weights):
    result = J.stylize(make_image(48, 48), "candy", engine="torch", device="cpu", scorer=None)
    assert "ssim_style" not in result.metrics
    assert any("no free style image" in note for note in result.notes)


def test_registry_name_of_another_kind_is_refused(registry_weights):
    with pytest.raises(ConfigError, match="not a Johnson"):
        J.stylize(make_image(48, 48), "vgg16-imagenet", engine="torch", scorer=None)


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_johnson_with_a_checkpoint(tmp_path, examples_file):
    content = tmp_path / "content.png"
    make_image(70, 50, seed=6).save(content)
    out = tmp_path / "out.png"
    code = main(["johnson", str(content), "--checkpoint", examples_file, "-o", str(out), "--size", "0",
                 "--engine", "torch", "--device", "cpu", "--no-reference", "--quiet"])
    assert code == 0
    assert Image.open(out).size == (70, 50)


def test_cli_johnson_missing_checkpoint_exits_with_weights_code(tmp_path, capsys):
    content = tmp_path / "content.png"
    make_image(40, 40).save(content)
    code = main(["johnson", str(content), "--checkpoint", str(tmp_path / "missing.pth"), "-o",
                 str(tmp_path / "o.png"), "--no-reference"])
    assert code == WeightsError.exit_code
    assert "does not exist" in capsys.readouterr().err


def test_cli_style_with_own_weights_file_and_no_network(tmp_path, examples_file, capsys):
    from nst import weights

    content = tmp_path / "content.png"
    make_image(40, 40).save(content)
    out = tmp_path / "out.png"
    try:
        code = main(["johnson", str(content), "--style", "udnie", "--weights", examples_file, "-o", str(out),
                     "--size", "0", "--engine", "torch", "--device", "cpu", "--no-reference", "--quiet"])
    finally:
        weights.clear_overrides()
    assert code == 0 and "ssim_style" in capsys.readouterr().out  # the registry's style image was used
    assert main(["johnson", str(content), "-o", str(out)]) == ConfigError.exit_code
    assert "--style NAME" in capsys.readouterr().err
