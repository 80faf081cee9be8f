"""ONNX export and the onnxruntime engine agree with PyTorch; exports are cached per network."""

from __future__ import annotations

import onnx
import pytest
import torch

from conftest import make_image
from nst import johnson as J
from nst import onnx_engine as O
from nst.cli import main


def spread(net: J.TransformerNet) -> J.TransformerNet:
    """Seeded weights whose outputs span 0-255 (so agreement is checked on unclamped pixels)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
        net.deconv3.conv2d.weight.mul_(60)
        net.deconv3.conv2d.bias.fill_(127.5)
    return net.eval()


@pytest.fixture(scope="module")
def nets() -> dict[str, J.TransformerNet]:
    torch.manual_seed(11)
    return {"examples": spread(J.TransformerNet()), "maze": spread(J.TransformerNet("transpose", "bgr"))}


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NST_ONNX_CACHE", str(tmp_path_factory.getbasetemp() / "onnx-cache"))


@pytest.mark.parametrize("layout", ["examples", "maze"])
def test_onnxruntime_matches_pytorch_at_several_sizes(nets, layout):
    net = nets[layout]
    for height, width in [(64, 64), (97, 131), (36, 52)]:
        x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height))
        expected = J.run_network(net, x, fast=False)
        got = O.run_onnx(net, x)
        assert got.shape == (1, 3, height, width)
        assert (got - expected).abs().max() <= 1e-3
        assert 0.05 < float(expected.mean()) < 0.95  # not a clamped blank


def test_export_has_dynamic_height_and_width(nets):
    path = O.exported_model(nets["examples"])  # cached by the first test when run together
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and dims[1].dim_value == 3
    assert dims[2].dim_param and dims[3].dim_param  # symbolic, not fixed
    assert model.graph.input[0].name == "x" and model.graph.output[0].name == "y"


def test_sessions_are_cached_and_follow_weight_changes(nets):
    net = J.TransformerNet()  # a private copy whose weights this test may change
    net.load_state_dict(nets["examples"].state_dict())
    net.eval()
    first = O.session_for(net)
    assert O.session_for(net) is first
    files = list(O.cache_dir().glob("johnson-*.onnx"))
    O.clear_cache()
    assert O.session_for(net) is not first  # rebuilt from the file on disk, no new export
    assert sorted(O.cache_dir().glob("johnson-*.onnx")) == sorted(files)
    with torch.no_grad():
        net.deconv3.conv2d.bias.add_(10.0)
    changed = O.session_for(net)
    assert changed is not first
    x = torch.rand(1, 3, 32, 32)
    assert (O.run_onnx(net, x) - J.run_network(net, x, fast=False)).abs().max() <= 1e-3


def test_stylize_engines_agree(nets):
    content = make_image(45, 38, seed=3)
    torch_result = J.stylize(content, nets["examples"], engine="torch", device="cpu", scorer=None)
    onnx_result = J.stylize(content, nets["examples"], engine="onnx", device="cpu", scorer=None)
    auto_result = J.stylize(content, nets["examples"], device="cpu", scorer=None)
    assert onnx_result.params["engine"] == "onnx" and auto_result.params["engine"] == J.default_engine(
        torch.device("cpu"))
    a = torch.tensor(list(torch_result.image.tobytes()), dtype=torch.int16)
    b = torch.tensor(list(onnx_result.image.tobytes()), dtype=torch.int16)
    assert (a - b).abs().max() <= 1  # 8-bit rounding of values that agree to 1e-3


def test_cli_exports_a_checkpoint(tmp_path, nets):
    from nst.training import save_final

    meta = {"format": "autoart", **nets["maze"].describe()}
    checkpoint = save_final(nets["maze"], tmp_path / "net.safetensors", meta)
    out = tmp_path / "exported.onnx"
    assert main(["johnson-onnx", "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    assert onnx.load(str(out)).graph.output[0].name == "y"
    assert out.read_bytes() == O.exported_model(nets["maze"]).read_bytes()  # the same export, from the cache
