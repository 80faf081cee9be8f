"""Shared training utilities: image folders, loss log, checkpoints, the loop and resume."""

import csv

import pytest
import torch

from nst.errors import ConfigError, ImageError
from nst.training import (
    ImageFolder,
    LoopSettings,
    LossLog,
    batches,
    latest_checkpoint,
    load_checkpoint,
    resume_step,
    save_checkpoint,
    training_loop,
)
from tests.conftest import make_image


def test_image_folder_crops_and_skips_broken_files(tmp_path):
    make_image(80, 50, 1).save(tmp_path / "a.png")
    make_image(40, 60, 2).save(tmp_path / "b.jpg")
    (tmp_path / "broken.png").write_bytes(b"nope")
    dataset = ImageFolder(tmp_path, resize=48, crop=32)
    assert len(dataset) == 3
    items = [dataset[i] for i in range(3)]
    assert all(item.shape == (3, 32, 32) and 0 <= item.min() and item.max() <= 1 for item in items)
    assert [p.name for p in dataset.skipped] == ["broken.png"]
    assert next(batches(dataset, 2)).shape == (2, 3, 32, 32)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(ImageError, match="no images"):
        ImageFolder(tmp_path)


def test_loss_log_appends_under_one_header(tmp_path):
    with LossLog(tmp_path / "loss.csv") as log:
        log.log(1, {"total": 2.0})
    with LossLog(tmp_path / "loss.csv") as log:
        log.log(2, {"total": 1.0})
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert rows == [{"step": "1", "total": "2.0"}, {"step": "2", "total": "1.0"}]


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_checkpoint_round_trip_restores_model_and_optimizer(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, 7, model, optimizer, {"note": "x"})
    save_checkpoint(tmp_path, 12, model, optimizer, {"note": "y"})
    assert latest_checkpoint(tmp_path).name == "step_00000012.safetensors"
    other, other_opt = _model_and_optimizer(1)
    step, extra = load_checkpoint(tmp_path, other, other_opt)
    assert (step, extra) == (12, {"note": "y"})
    assert torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_training_loop_checkpoints_logs_and_resumes(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    x = torch.randn(8, 4)

    def train_step(step):
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"total": loss.item()}

    settings = LoopSettings(tmp_path, goal=5, log_every=2, save_every=2)
    first = training_loop(settings, model, optimizer, 0, train_step, lambda s: {"s": s})
    assert first.step == 5 and not first.cancelled
    assert [h["step"] for h in first.history] == [2.0, 4.0, 5.0]
    assert first.checkpoint.name == "step_00000005.safetensors"
    assert first.history[-1]["total"] < first.history[0]["total"]
    with pytest.raises(ConfigError, match="--resume"):
        resume_step(tmp_path, model, optimizer, resume=False)
    again, again_opt = _model_and_optimizer(3)
    assert resume_step(tmp_path, again, again_opt, resume=True) == 5
    assert torch.equal(again.weight, model.weight)
