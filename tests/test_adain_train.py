"""AdaIN decoder training: paper losses, lr decay, loss goes down, files, resume, push, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from nst import adain as A
from nst import adain_train as T
from nst.cli import main
from nst.errors import ConfigError, ImageError


def _image(seed: int, size: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(x * (5 + seed)), np.cos(y * (3 + seed)), x * y], axis=2) * 0.5 + 0.5
    array = np.clip(base * 0.8 + rng.random((size, size, 3)) * 0.2, 0, 1)
    return Image.fromarray((array * 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain_data")
    for sub, offset in (("content", 0), ("style", 10)):
        (root / sub).mkdir()
        for i in range(2):
            _image(offset + i).save(root / sub / f"{i}.png")
    return root


def _config(folders, out, **overrides) -> T.AdainTrainConfig:
    values = dict(
        content_dir=str(folders / "content"), style_dir=str(folders / "style"), output_dir=str(out),
        steps=4, batch_size=2, resize=32, crop=32, save_every=2, log_every=1,
        random_encoder=True, seed=0, device="cpu", tensorboard=False,
    )
    values.update(overrides)
    return T.AdainTrainConfig(**values)


@pytest.fixture(scope="module")
def encoder():
    return A.random_encoder(0)


def test_learning_rate_is_inverse_time_decay():
    assert T.learning_rate(1e-4, 5e-5, 0) == 1e-4
    assert T.learning_rate(1e-4, 5e-5, 20_000) == pytest.approx(5e-5)
    assert T.learning_rate(1e-4, 0.0, 10**6) == 1e-4


def test_losses_follow_the_paper(encoder):
    torch.manual_seed(0)
    decoder = A.build_decoder()
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    loss_c, loss_s = T.adain_losses(encoder, decoder, content, style)
    # independent re-derivation
    with torch.no_grad():
        s_feats = encoder(style, list(A.STYLE_LAYERS))
        fc = encoder(content, ["relu4_1"])["relu4_1"]
        b, c = fc.shape[:2]
        cf, sf = fc.reshape(b, c, -1), s_feats["relu4_1"].reshape(b, c, -1)
        t = (cf - cf.mean(2, keepdim=True)) / (cf.var(2, keepdim=True) + 1e-5).sqrt()
        t = (t * (sf.var(2, keepdim=True) + 1e-5).sqrt() + sf.mean(2, keepdim=True)).reshape_as(fc)
        out = encoder(decoder(t), list(A.STYLE_LAYERS))
        expected_c = ((out["relu4_1"] - t) ** 2).mean()
        expected_s = 0.0
        for layer in A.STYLE_LAYERS:
            o, s = out[layer].flatten(2), s_feats[layer].flatten(2)
            expected_s += ((o.mean(2) - s.mean(2)) ** 2).mean()
            expected_s += (((o.var(2) + 1e-5).sqrt() - (s.var(2) + 1e-5).sqrt()) ** 2).mean()
    assert loss_c.item() == pytest.approx(expected_c.item(), rel=1e-4)
    assert loss_s.item() == pytest.approx(float(expected_s), rel=1e-4)
    assert loss_c.requires_grad and loss_s.requires_grad


def test_a_few_steps_lower_the_loss_and_write_the_files(folders, tmp_path, encoder):
    config = _config(folders, tmp_path / "run", steps=8, save_every=4)
    result = T.train_decoder(config)
    g = torch.Generator().manual_seed(2)
    content = torch.stack([torch.from_numpy(np.asarray(_image(i).resize((32, 32)), dtype=np.float32) / 255)
                           .permute(2, 0, 1) for i in range(2)])
    style = torch.rand(2, 3, 32, 32, generator=g) * 0.5 + 0.25
    torch.manual_seed(config.seed)
    before = A.build_decoder()
    after = A.load_decoder(result.model_path)  # the published layout: loads with the inference loader

    def total(decoder):
        loss_c, loss_s = T.adain_losses(encoder, decoder, content, style)
        return (loss_c + config.style_weight * loss_s).item()

    assert total(after) < total(before)
    assert result.history[-1]["total"] < result.history[0]["total"]
    assert result.steps == 8 and result.start_step == 0 and not result.cancelled
    with open(result.loss_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert {"content", "style", "total", "lr"} <= set(rows[0])
    card = result.card_path.read_text()
    assert "RANDOM-weight encoder" in card and "decoder.safetensors" in card and "adain" in card
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.safetensors")) == [
        "step_00000004.safetensors", "step_00000008.safetensors"]


def test_resume_continues_from_the_latest_checkpoint(folders, tmp_path):
    out = tmp_path / "run"
    first = T.train_decoder(_config(folders, out, steps=4))
    assert first.steps == 4
    with pytest.raises(ConfigError, match="--resume"):
        T.train_decoder(_config(folders, out, steps=6))
    second = T.train_decoder(_config(folders, out, steps=6, resume=True))
    assert second.start_step == 4 and second.steps == 6
    assert [h["step"] for h in second.history] == [5.0, 6.0]
    assert second.history[0]["lr"] == pytest.approx(T.learning_rate(1e-4, 5e-5, 4))
    with open(second.loss_csv, newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == list(range(1, 7))
    sidecar = torch.load(out / "checkpoints" / "step_00000006.pt", weights_only=True)
    adam_steps = {float(s["step"]) for s in sidecar["optimizer"]["state"].values()}
    assert adam_steps == {6.0}  # Adam's moments were restored, not restarted


def test_push_sends_decoder_and_card(folders, tmp_path, monkeypatch):
    calls = []
    import nst.publish

    monkeypatch.setattr(nst.publish, "push", lambda repo, files, card, token=None: calls.append(
        (repo, [str(f) for f in files], card, token)) or "https://hub.example/commit/1")
    result = T.train_decoder(_config(folders, tmp_path / "run", steps=1, push_repo="me/adain", token="tok"))
    assert result.url == "https://hub.example/commit/1"
    (repo, files, card, token), = calls
    assert repo == "me/adain" and files == [str(result.model_path)] and token == "tok"
    assert 'repo_id = "me/adain"' in card


def test_bad_settings_are_clear_errors(folders, tmp_path):
    with pytest.raises(ConfigError, match="Steps must be at least 1"):
        T.train_decoder(_config(folders, tmp_path / "a", steps=0))
    with pytest.raises(ConfigError, match="(?i)resize"):
        T.train_decoder(_config(folders, tmp_path / "b", resize=16, crop=32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images"):
        T.train_decoder(_config(folders, tmp_path / "c", content_dir=str(tmp_path / "empty")))


def test_cli_train_adain(folders, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train-adain", "--content-dir", str(folders / "content"), "--style-dir", str(folders / "style"),
            "--output-dir", str(out), "--steps", "2", "--batch-size", "1", "--resize", "32", "--crop", "32",
            "--save-every", "1", "--random-encoder", "--no-tensorboard", "--quiet", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "decoder:" in printed and (out / "decoder.safetensors").is_file()
    assert main([*args, "--steps", "3", "--resume"]) == 0
    assert "resumed at step 2" in capsys.readouterr().out
