"""``python -m nst gatys`` / ``layers``: outputs, history CSV, exit codes and messages."""

import csv

import pytest
from PIL import Image

from nst.cli import main
from tests.conftest import make_image


@pytest.fixture
def images(tmp_path):
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    make_image(64, 48, seed=1).save(content)
    make_image(64, 64, seed=2).save(style)
    return content, style


def test_gatys_writes_image_and_history(images, tmp_path, capsys):
    content, style = images
    out, history = tmp_path / "out.png", tmp_path / "history.csv"
    code = main(["gatys", str(content), str(style), "-o", str(out), "--random-weights", "--size", "64",
                 "--steps", "6", "--optimizer", "adam", "--history", str(history), "--no-reference", "--quiet",
                 "--device", "cpu"])
    assert code == 0
    assert Image.open(out).size == (64, 48)
    rows = list(csv.DictReader(open(history)))
    assert [int(r["step"]) for r in rows] == list(range(7))
    assert set(rows[0]) == {"step", "content", "style", "tv", "total"}
    printed = capsys.readouterr().out
    assert "ssim_content" in printed and "ssim_style" in printed


def test_gatys_with_two_styles_and_options(images, tmp_path):
    content, style = images
    code = main(["gatys", str(content), str(style), str(style), "--style-weights", "1,2", "--random-weights",
                 "--size", "32", "--steps", "2", "--init", "blend", "--noise-ratio", "0.3", "--tv-weight", "1",
                 "--preset", "vgg16", "-o", str(tmp_path / "o.jpg"), "--no-reference", "--quiet",
                 "--gram-precision", "exact"])
    assert code == 0 and (tmp_path / "o.jpg").exists()


def test_unknown_gram_precision_is_a_usage_error(images, capsys):
    content, style = images
    with pytest.raises(SystemExit) as exit_info:
        main(["gatys", str(content), str(style), "--gram-precision", "half", "--random-weights"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err


def test_backbone_without_layers_is_explained(images, capsys):
    content, style = images
    code = main(["gatys", str(content), str(style), "--backbone", "resnet18", "--random-weights", "--quiet"])
    assert code == 2 and "--content-layers" in capsys.readouterr().err


def test_bad_layer_name_exit_code_and_message(images, capsys):
    content, style = images
    code = main(["gatys", str(content), str(style), "--style-layers", "conv_1,relu9_9", "--random-weights",
                 "--size", "32", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "relu9_9" in err and "Valid layers" in err


def test_bad_image_exit_code(images, tmp_path, capsys):
    _, style = images
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["gatys", str(broken), str(style), "--random-weights", "--quiet"]) == 2
    assert "not an image" in capsys.readouterr().err
    assert main(["gatys", str(tmp_path / "nope.png"), str(style), "--random-weights", "--quiet"]) == 2


def test_missing_backbone_weights_file(images, tmp_path, capsys):
    content, style = images
    code = main(["gatys", str(content), str(style), "--backbone-weights", str(tmp_path / "vgg19.pth"), "--quiet"])
    assert code == 3
    assert "vgg19.pth" in capsys.readouterr().err


@pytest.mark.parametrize("backbone, expected", [("vgg19", "relu4_2"), ("mobilenet_v2", "conv_14_2"),
                                                ("resnet18", "layer4")])
def test_layers_lists_names_and_channels(backbone, expected, capsys):
    assert main(["layers", backbone]) == 0
    out = capsys.readouterr().out
    assert expected in out and "channels" in out
