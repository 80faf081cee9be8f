"""SSIM/PSNR/RMSE and the fixed reference scorer."""

import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from nst import metrics

from nst.metrics import ReferenceScorer, compare, psnr, report, rmse, ssim
from tests.conftest import make_image


def test_identical_images():
    image = make_image(40, 40)
    assert ssim(image, image) == pytest.approx(1.0)
    assert math.isinf(psnr(image, image))
    assert rmse(image, image) == 0.0


def test_rmse_and_psnr_by_hand():
    black = Image.new("RGB", (20, 20), (0, 0, 0))
    grey = Image.new("RGB", (20, 20), (51, 51, 51))  # 0.2 in [0, 1]
    assert rmse(grey, black) == pytest.approx(0.2)
    assert psnr(grey, black) == pytest.approx(10 * math.log10(1 / 0.04))


def test_ssim_lower_for_different_images_and_reference_is_resized():
    a, b = make_image(48, 48, seed=1), make_image(96, 64, seed=2)
    value = ssim(a, b)
    assert -1.0 <= value < 0.9
    assert ssim(a, a.resize((96, 96))) > 0.9


def test_compare_keys():
    a, b = make_image(32, 32, seed=1), make_image(32, 32, seed=2)
    assert set(compare(a, b, "adain_")) == {"adain_rmse", "adain_psnr", "adain_ssim"}


def test_reference_scorer_zero_for_the_images_themselves(vgg19_random):
    scorer = ReferenceScorer(vgg19_random)
    content, style = make_image(64, 64, seed=1), make_image(64, 64, seed=2)
    on_content = scorer.losses(content, content, [style])
    on_style = scorer.losses(style, content, [style])
    assert on_content["reference_content_loss"] == 0.0 and on_content["reference_style_loss"] > 0
    assert on_style["reference_style_loss"] == pytest.approx(0.0, abs=1e-9)
    assert on_style["reference_content_loss"] > 0


def test_report_with_and_without_scorer(vgg19_random):
    content, style, other = make_image(64, 64, 1), make_image(64, 64, 2), make_image(64, 64, 3)
    plain = report(content, content, [style, other], scorer=None)
    assert set(plain) == {"ssim_content", "ssim_style", "ssim_style_2"}
    assert plain["ssim_content"] == pytest.approx(1.0)
    scored = report(content, content, [style], scorer=ReferenceScorer(vgg19_random))
    assert "reference_style_loss" in scored and np.isfinite(scored["reference_style_loss"])


def test_report_without_style_images(vgg19_random):
    content = make_image(64, 64, 1)
    metrics = report(content, content, [], scorer=ReferenceScorer(vgg19_random))
    assert metrics["reference_style_loss"] == 0.0 and "ssim_style" not in metrics


def test_default_scorer_uses_only_a_local_vgg19_file(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "_default_scorer", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    notes: list[str] = []
    image = make_image(64, 64, 1)
    assert "reference_style_loss" not in report(image, image, [image], notes=notes)
    assert "vgg19-imagenet" in notes[0]
    state = torchvision.models.vgg19().features.state_dict()
    torch.save({f"features.{k}": v for k, v in state.items()}, tmp_path / "mine" / "vgg19-imagenet.pth")
    scored = report(image, image, [image])
    assert scored["reference_content_loss"] == 0.0 and "reference_style_loss" in scored
