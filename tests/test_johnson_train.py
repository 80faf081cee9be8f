"""Johnson training (single and multi-style): loss goes down, checkpoints, resume, files, CLI, blending."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

from conftest import make_image
from nst import johnson as J
from nst import johnson_train as T
from nst import multistyle as M
from nst.cli import main
from nst.errors import ConfigError
from nst.features import get_backbone
from nst.training import load_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("johnson-data")
    photos = root / "photos"
    photos.mkdir()
    for i in range(8):
        make_image(48 + 4 * i, 40, seed=100 + i).save(photos / f"photo_{i}.png")
    styles = []
    for i in range(2):
        path = root / f"style_{i}.png"
        make_image(48, 48, seed=200 + i).save(path)
        styles.append(str(path))
    return {"photos": str(photos), "styles": styles, "root": root}


@pytest.fixture(scope="module")
def vgg16():
    return get_backbone("vgg16", "random", seed=0, device="cpu")  # the same cached net the trainer uses


def config_for(data, out, **changes) -> T.JohnsonTrainConfig:
    base = T.JohnsonTrainConfig(
        content_dir=data["photos"], styles=data["styles"][:1], output_dir=str(out), steps=4, batch_size=2,
        resize=40, crop=32, style_size=48, save_every=2, log_every=1, backbone_weights="random", device="cpu",
        tensorboard=False,
    )
    return replace(base, **changes)


def fixed_batch(data) -> torch.Tensor:
    from nst.images import load_image, to_tensor

    images = [load_image(f"{data['photos']}/photo_{i}.png").crop((0, 0, 32, 32)) for i in range(4)]
    return torch.cat([to_tensor(im) for im in images])


def test_training_lowers_the_loss(data, tmp_path, vgg16):
    config = config_for(data, tmp_path / "run", steps=15, lr=3e-3, save_every=100)
    batch = fixed_batch(data)
    targets = T.style_targets(vgg16.truncated(list(T.STYLE_LAYERS)), config.styles[0], config.style_size, "cpu")

    def loss_of(net: J.TransformerNet) -> float:
        with torch.no_grad():
            return float(T.johnson_losses(net.eval(), vgg16, batch, targets, config)["total"])

    before = loss_of(T.new_network(config))
    result = T.train_johnson(config)
    after = loss_of(J.load_johnson(result.model_path))
    assert result.steps == 15 and not result.cancelled
    assert after < 0.8 * before


def test_checkpoint_round_trip_is_exact(data, tmp_path):
    result = T.train_johnson(config_for(data, tmp_path / "run", steps=3, save_every=3))
    assert result.checkpoint.name == "step_00000003.safetensors"
    trained = J.load_johnson(result.model_path)
    restored = J.TransformerNet()
    optimizer = torch.optim.Adam(restored.parameters())
    step, extra = load_checkpoint(result.checkpoint, restored, optimizer)
    assert step == 3 and extra["metadata"]["format"] == "autoart"
    for key, value in trained.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    state = optimizer.state_dict()["state"]
    assert len(state) == len(list(restored.parameters())) and all(int(s["step"]) == 3 for s in state.values())


def test_resume_continues_the_step_count(data, tmp_path):
    out = tmp_path / "run"
    first = T.train_johnson(config_for(data, out, steps=4))
    assert (first.start_step, first.steps) == (0, 4)
    with pytest.raises(ConfigError, match="--resume"):
        T.train_johnson(config_for(data, out, steps=6))
    second = T.train_johnson(config_for(data, out, steps=6, resume=True))
    assert (second.start_step, second.steps) == (4, 6)
    assert [h["step"] for h in second.history] == [5.0, 6.0]
    with open(out / "loss.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"content", "style", "tv", "total"} <= set(rows[0])


def test_final_file_metadata_card_and_epochs(data, tmp_path):
    result = T.train_johnson(config_for(data, tmp_path / "run", steps=None, epochs=1, batch_size=4, tv_weight=1.0))
    assert result.steps == 2  # 8 photos, batch 4, one epoch
    with safe_open(str(result.model_path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == "autoart" and meta["upsample"] == "nearest" and meta["style_images"] == "style_0.png"
    assert J.load_johnson(result.model_path).format == "autoart"
    card = result.card_path.read_text()
    assert "RANDOM-weight VGG-16" in card and "johnson" in card
    assert all(h["tv"] > 0 for h in result.history)


def test_bad_training_configs(data, tmp_path):
    with pytest.raises(ConfigError, match="either epochs or steps"):
        T.train_johnson(config_for(data, tmp_path, epochs=1, steps=2))
    with pytest.raises(ConfigError, match="one style"):
        T.train_johnson(config_for(data, tmp_path, styles=data["styles"]))
    with pytest.raises(ConfigError, match="multiple of 4"):
        T.train_johnson(config_for(data, tmp_path, crop=30))


def test_cli_train_johnson(data, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train-johnson", "--content-dir", data["photos"], "--style", data["styles"][0], "--output-dir",
                 str(out), "--steps", "2", "--batch-size", "2", "--resize", "40", "--crop", "32", "--style-size", "48",
                 "--random-weights", "--device", "cpu", "--no-tensorboard", "--quiet"])
    assert code == 0
    assert (out / "johnson.safetensors").is_file() and (out / "README.md").is_file()
    assert "random-weight VGG-16" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Multi-style


@pytest.fixture(scope="module")
def multi() -> M.MultiStyleNet:
    torch.manual_seed(21)
    net = M.MultiStyleNet(2, ["a", "b"])
    with torch.no_grad():
        for norm in net.norms():
            norm.weight.normal_(1, 0.3)
            norm.bias.normal_(0, 0.3)
        net.deconv3.conv2d.weight.mul_(60)
        net.deconv3.conv2d.bias.fill_(127.5)
    return net.eval()


def test_blend_one_zero_equals_the_first_style_alone(multi):
    x = torch.rand(1, 3, 32, 40) * 255
    first, second = M.extract_style(multi, 0), M.extract_style(multi, 1)
    with torch.no_grad():
        M.set_style_weights(multi, [1.0, 0.0])
        assert torch.equal(multi(x), first(x))
        M.set_style_weights(multi, "b")
        assert torch.equal(multi(x), second(x))
        M.set_style_weights(multi, [1.0, 1.0])  # normalised to 0.5/0.5: the mean of the norm parameters
        mixed = J.TransformerNet()
        mixed.load_state_dict({k: (v.mean(0) if v.dim() == 2 else v) for k, v in multi.state_dict().items()})
        blended = multi(x)
        assert torch.allclose(blended, mixed.eval()(x), atol=1e-3)
        assert not torch.allclose(blended, first(x), atol=1.0)


def test_per_sample_styles_in_a_batch(multi):
    x = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        M.set_style_weights(multi, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        both = multi(x)
        M.set_style_weights(multi, 0)
        assert torch.allclose(both[:1], multi(x[:1]), atol=1e-4)
        M.set_style_weights(multi, 1)
        assert torch.allclose(both[1:], multi(x[1:]), atol=1e-4)


def test_bad_style_weights(multi):
    with pytest.raises(ConfigError, match="2 styles"):
        M.set_style_weights(multi, [1.0])
    with pytest.raises(ConfigError, match="not all zero"):
        M.set_style_weights(multi, [0.0, 0.0])
    with pytest.raises(ConfigError, match="Unknown style"):
        M.set_style_weights(multi, "c")


def test_multistyle_save_load_and_stylize(multi, tmp_path):
    path = M.save_multistyle(multi, tmp_path / "multi.safetensors")
    net = J.load_johnson(path)
    assert isinstance(net, M.MultiStyleNet) and net.format == "autoart-multistyle"
    assert net.style_names == ["a", "b"]
    content = make_image(40, 36, seed=8)
    result = J.stylize(content, str(path), style_weights=[0.0, 1.0], device="cpu", scorer=None)
    single = J.stylize(content, M.extract_style(multi, 1), engine="torch", device="cpu", scorer=None)
    assert result.params["engine"] == "torch" and result.params["style_weights"] == {"a": 0.0, "b": 1.0}
    assert result.image.tobytes() == single.image.tobytes()


def test_cli_train_multistyle_then_stylize_a_blend(data, tmp_path):
    out = tmp_path / "multi"
    code = main(["train-multistyle", "--content-dir", data["photos"], "--style", *data["styles"], "--output-dir",
                 str(out), "--steps", "2", "--batch-size", "2", "--resize", "40", "--crop", "32", "--style-size", "48",
                 "--random-weights", "--device", "cpu", "--no-tensorboard", "--quiet"])
    assert code == 0
    model = out / "multistyle.safetensors"
    assert J.load_johnson(model).style_names == ["style_0", "style_1"]
    content = tmp_path / "content.png"
    make_image(40, 40, seed=9).save(content)
    code = main(["johnson", str(content), "--checkpoint", str(model), "--style-weights", "0.3,0.7", "--size", "0",
                 "-o", str(tmp_path / "blend.png"), "--device", "cpu", "--no-reference", "--quiet"])
    assert code == 0 and (tmp_path / "blend.png").is_file()
