"""AdaIN: the operation, published checkpoint layouts, stylize options, the feature cache, scoring, CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from nst import adain as A
from nst.cli import main
from nst.errors import ConfigError, ImageError, WeightsError
from nst.features import adain_vgg_encoder
from nst.images import to_pil, to_tensor

# The published layouts (naoto0804/pytorch-AdaIN v0.0.0), written out by hand from WEIGHTS.md.
ENCODER_CONVS = {
    0: (3, 3, 1), 2: (64, 3, 3), 5: (64, 64, 3), 9: (128, 64, 3), 12: (128, 128, 3),
    16: (256, 128, 3), 19: (256, 256, 3), 22: (256, 256, 3), 25: (256, 256, 3), 29: (512, 256, 3),
    32: (512, 512, 3), 35: (512, 512, 3), 38: (512, 512, 3), 42: (512, 512, 3), 45: (512, 512, 3),
    48: (512, 512, 3), 51: (512, 512, 3),
}
DECODER_CONVS = {
    1: (256, 512), 5: (256, 256), 8: (256, 256), 11: (256, 256), 14: (128, 256),
    18: (128, 128), 21: (64, 128), 25: (64, 64), 28: (3, 64),
}


def published_encoder_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, (cout, cin, k) in ENCODER_CONVS.items():
        state[f"{index}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        state[f"{index}.bias"] = torch.randn(cout, generator=g) * 0.01
    return state


def published_decoder_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Kaiming-scaled random decoder whose output sits well inside [0, 1] (so images are not clamped)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    last = max(DECODER_CONVS)
    for index, (cout, cin) in DECODER_CONVS.items():
        weight = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (cin * 9)) ** 0.5
        state[f"{index}.weight"] = weight * (50.0 if index == last else 1.0)
        state[f"{index}.bias"] = torch.full((cout,), 0.5) if index == last else torch.zeros(cout)
    return state


def pattern(width: int, height: int, seed: int, kind: str = "noise") -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    if kind == "stripes":
        base = np.stack([np.sin(x * 40) > 0, np.cos(y * 25) > 0, (x + y) > 1], axis=2).astype(np.float64)
        array = 0.15 + 0.7 * base
    else:
        array = np.stack([x, y, 1 - x], axis=2) * 0.6 + rng.random((height, width, 3)) * 0.4
    return Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain_weights")
    encoder_path = root / "vgg_normalised.pth"
    decoder_path = root / "decoder.pth"
    torch.save(published_encoder_state(), encoder_path)
    torch.save(published_decoder_state(), decoder_path)
    return {"encoder": encoder_path, "decoder": decoder_path, "root": root}


@pytest.fixture(scope="module")
def encoder(files):
    return A.load_encoder(files["encoder"])


@pytest.fixture(scope="module")
def decoder(files):
    return A.load_decoder(files["decoder"])


@pytest.fixture()
def run(encoder, decoder):
    """stylize with the test networks, a private cache, CPU and no reference scorer."""

    def call(content, styles, **kwargs):
        kwargs.setdefault("size", None)
        kwargs.setdefault("scorer", None)
        kwargs.setdefault("cache", A.FeatureCache())
        return A.stylize(content, styles, device="cpu", encoder=encoder, decoder=decoder, **kwargs)

    return call


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ---------------------------------------------------------------------------------------------
# The AdaIN operation


def test_adain_output_has_style_statistics_per_channel():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 8, 6, 5, generator=g) * 3 + 1
    style = torch.randn(2, 8, 7, 4, generator=g) * torch.linspace(0.5, 4, 8).view(1, 8, 1, 1) - 2
    out = A.adain(content, style)
    # independent re-derivation: per-channel mean and unbiased std over H*W
    out_flat, style_flat = out.reshape(2, 8, -1), style.reshape(2, 8, -1)
    assert torch.allclose(out_flat.mean(2), style_flat.mean(2), atol=1e-4)
    assert torch.allclose(out_flat.std(2), style_flat.std(2), atol=1e-3)
    # the published formula: (x - mean_c) / sqrt(var_c + 1e-5) * sqrt(var_s + 1e-5) + mean_s
    c_flat = content.reshape(2, 8, -1)
    expected = (c_flat - c_flat.mean(2, keepdim=True)) / (c_flat.var(2, keepdim=True) + 1e-5).sqrt()
    expected = expected * (style_flat.var(2, keepdim=True) + 1e-5).sqrt() + style_flat.mean(2, keepdim=True)
    assert torch.allclose(out_flat, expected, atol=1e-5)


def test_adain_rejects_mismatched_channels():
    with pytest.raises(ConfigError, match="same batch and channels"):
        A.adain(torch.zeros(1, 8, 4, 4), torch.zeros(1, 4, 4, 4))


def test_interpolation_weights_are_normalised_and_validated():
    assert A.normalise_weights([2, 6], 2) == [0.25, 0.75]
    assert A.normalise_weights(None, 4) == [0.25] * 4
    with pytest.raises(ConfigError, match="one per style"):
        A.normalise_weights([1.0], 2)
    with pytest.raises(ConfigError, match="non-negative"):
        A.normalise_weights([1.0, -0.5], 2)
    with pytest.raises(ConfigError, match="non-negative"):
        A.normalise_weights([1.0, float("nan")], 2)
    with pytest.raises(ConfigError, match="all be zero"):
        A.normalise_weights([0, 0], 2)


def test_interpolation_is_weighted_sum_of_adain_outputs():
    g = torch.Generator().manual_seed(1)
    fc, s1, s2 = (torch.randn(1, 4, 5, 5, generator=g) * k for k in (1, 2, 5))
    mixed = A.target_features(fc, [s1, s2], [3, 1])
    assert torch.allclose(mixed, 0.75 * A.adain(fc, s1) + 0.25 * A.adain(fc, s2), atol=1e-6)
    assert torch.equal(A.target_features(fc, [s1, s2], [1, 0]), A.target_features(fc, [s1], None))


def test_alpha_blends_adain_with_content_features():
    g = torch.Generator().manual_seed(2)
    fc, fs = torch.randn(1, 4, 5, 5, generator=g), torch.randn(1, 4, 5, 5, generator=g) * 3 + 2
    assert torch.equal(A.target_features(fc, [fs], alpha=0.0), fc)
    assert torch.allclose(A.target_features(fc, [fs], alpha=0.3), 0.3 * A.adain(fc, fs) + 0.7 * fc)


def test_masked_adain_gives_each_region_its_style():
    g = torch.Generator().manual_seed(3)
    fc = torch.randn(1, 6, 8, 8, generator=g)
    s_fg = torch.randn(1, 6, 5, 5, generator=g) * 4 + 3
    s_bg = torch.randn(1, 6, 5, 5, generator=g) * 0.5 - 2
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:, :3] = True
    out = A.masked_adain(fc, [s_fg, s_bg], region).reshape(6, -1)
    flat = region.reshape(-1)
    for part, style in ((out[:, flat], s_fg), (out[:, ~flat], s_bg)):
        ref = style.reshape(6, -1)
        assert torch.allclose(part.mean(1), ref.mean(1), atol=1e-4)
        assert torch.allclose(part.std(1), ref.std(1), atol=1e-3)
    # one style: the unmasked region keeps the content features
    single = A.masked_adain(fc, [s_fg], region).reshape(6, -1)
    assert torch.equal(single[:, ~flat], fc.reshape(6, -1)[:, ~flat])


def test_mask_is_resized_to_the_feature_map():
    mask = np.zeros((40, 64), dtype=bool)
    mask[:, :32] = True
    region = A.mask_to_features(mask, (64, 40), (5, 8))
    assert region.shape == (5, 8)
    assert region[:, :4].all() and not region[:, 4:].any()
    grey = Image.fromarray((mask * 255).astype(np.uint8), "L")
    assert torch.equal(A.mask_to_features(grey, (64, 40), (5, 8)), region)


# ---------------------------------------------------------------------------------------------
# Published checkpoint layouts


def test_decoder_has_the_published_keys_and_shapes():
    state = A.build_decoder().state_dict()
    expected = {}
    for index, (cout, cin) in DECODER_CONVS.items():
        expected[f"{index}.weight"] = (cout, cin, 3, 3)
        expected[f"{index}.bias"] = (cout,)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    modules = list(A.build_decoder())
    assert len(modules) == 29
    assert sum(isinstance(m, nn.Upsample) for m in modules) == 3
    assert not isinstance(modules[-1], nn.ReLU)
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    assert all(isinstance(modules[i - 1], nn.ReflectionPad2d) for i in convs)


def test_encoder_loads_published_state_and_taps_the_published_slices(files, encoder):
    state = published_encoder_state()
    reference = adain_vgg_encoder()
    assert len(reference) == 53
    reference.load_state_dict(state)
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(4))
    feats = encoder(x, list(A.STYLE_LAYERS))
    with torch.no_grad():
        h = x
        for layer, (start, stop) in zip(A.STYLE_LAYERS, [(0, 4), (4, 11), (11, 18), (18, 31)]):
            h = reference[start:stop](h)
            assert torch.allclose(feats[layer], h, atol=1e-5), layer
    assert feats["relu4_1"].shape == (1, 512, 5, 6)


def test_decoder_loads_published_state_from_pth_and_safetensors(files, decoder, tmp_path):
    state = published_decoder_state()
    assert all(torch.equal(decoder.state_dict()[k], v) for k, v in state.items())
    assert not decoder.training
    path = tmp_path / "decoder.safetensors"
    save_file(state, str(path))
    again = A.load_decoder(path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())


def test_wrong_shape_names_the_key(tmp_path):
    state = published_decoder_state()
    state["5.weight"] = torch.zeros(256, 128, 3, 3)
    path = tmp_path / "bad_decoder.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"5\.weight"):
        A.load_decoder(path)
    enc_state = published_encoder_state()
    del enc_state["29.weight"]
    enc_path = tmp_path / "bad_encoder.pth"
    torch.save(enc_state, enc_path)
    with pytest.raises(WeightsError, match=r"29\.weight"):
        A.load_encoder(enc_path)


def test_missing_files_raise_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        A.get_decoder(tmp_path / "nope" / "decoder.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        A.get_encoder(str(tmp_path / "vgg_normalised.pth"))


# ---------------------------------------------------------------------------------------------
# stylize


def test_alpha_zero_is_decoder_of_encoded_content(run, encoder, decoder):
    content = pattern(40, 32, 5)
    result = run(content, [pattern(32, 32, 6, "stripes")], alpha=0.0, metrics=False)
    with torch.no_grad():
        manual = decoder(encoder(to_tensor(content), ["relu4_1"])["relu4_1"])
    assert result.image.size == (40, 32)
    assert np.abs(pixels(result.image) - pixels(to_pil(manual))).max() <= 1
    assert result.method == "adain" and result.params["alpha"] == 0.0


def test_stylize_result_has_metrics_and_timings(run):
    result = run(pattern(32, 32, 7), [pattern(32, 32, 8, "stripes")])
    assert set(result.metrics) == {"ssim_content", "ssim_style"}
    assert {"encode_content", "encode_styles", "adain", "decode", "metrics"} <= set(result.timings)
    assert result.seconds > 0


def test_style_weights_are_normalised_and_honoured(run):
    content = pattern(32, 32, 9)
    s1, s2 = pattern(32, 32, 10, "stripes"), pattern(48, 40, 11)
    a = run(content, [s1, s2], weights=[2, 6])
    b = run(content, [s1, s2], weights=[0.25, 0.75])
    assert a.params["style_weights"] == [0.25, 0.75]
    assert np.array_equal(pixels(a.image), pixels(b.image))
    only_first = run(content, [s1, s2], weights=[1, 0])
    single = run(content, [s1])
    assert np.array_equal(pixels(only_first.image), pixels(single.image))
    with pytest.raises(ConfigError, match="one per style"):
        run(content, [s1, s2], weights=[1.0])


def test_mask_regions_receive_the_right_style(run, encoder, decoder):
    content = pattern(48, 32, 12)
    s1, s2 = pattern(32, 32, 13, "stripes"), pattern(32, 32, 14)
    white = np.ones((32, 48), dtype=bool)
    all_first = run(content, [s1, s2], mask=white)
    assert np.array_equal(pixels(all_first.image), pixels(run(content, [s1]).image))
    all_second = run(content, [s1, s2], mask=~white)
    assert np.array_equal(pixels(all_second.image), pixels(run(content, [s2]).image))
    half = white.copy()
    half[:, 24:] = False
    result = run(content, [s1, s2], mask=half)
    with torch.no_grad():
        fc = encoder(to_tensor(content), ["relu4_1"])["relu4_1"]
        fs = [encoder(to_tensor(s), ["relu4_1"])["relu4_1"] for s in (s1, s2)]
        region = A.mask_to_features(half, (48, 32), (4, 6))
        assert region[:, :3].all() and not region[:, 3:].any()
        manual = to_pil(decoder(A.masked_adain(fc, fs, region)))
    assert np.abs(pixels(result.image) - pixels(manual)).max() <= 1
    assert result.params["mask"] is True


def test_mask_option_errors(run):
    content, s = pattern(32, 32, 15), pattern(32, 32, 16)
    mask = np.ones((32, 32), dtype=bool)
    with pytest.raises(ConfigError, match="cannot be combined"):
        run(content, [s, s], weights=[1, 1], mask=mask)
    with pytest.raises(ConfigError, match="one or two styles"):
        run(content, [s, s, s], mask=mask)
    with pytest.raises(ImageError, match="mask"):
        run(content, [s], mask=np.zeros((2, 2, 2, 2)))


def test_colour_preservation_moves_style_colours_onto_content(run):
    content = pattern(40, 40, 17)
    style = pattern(32, 32, 18, "stripes")
    recoloured = A.recolor_style(style, content)
    c = np.asarray(content, dtype=np.float64).reshape(-1, 3) / 255
    r = np.asarray(recoloured, dtype=np.float64).reshape(-1, 3) / 255
    s = np.asarray(style, dtype=np.float64).reshape(-1, 3) / 255
    assert np.abs(r.mean(0) - c.mean(0)).max() < 0.01
    assert np.abs(np.cov(r.T) - np.cov(c.T)).max() < 0.005
    assert np.abs(s.mean(0) - c.mean(0)).max() > 0.05  # the check above is not trivially true
    preserved = run(content, [style], preserve_color=True)
    manual = run(content, [recoloured])
    assert np.array_equal(pixels(preserved.image), pixels(manual.image))
    assert preserved.params["preserve_color"] is True


@pytest.mark.parametrize("width,height,size", [(37, 29, None), (45, 33, None), (50, 37, 41)])
def test_odd_sizes_round_trip(run, width, height, size):
    result = run(pattern(width, height, 19), [pattern(32, 32, 20)], size=size, metrics=False)
    expected = (width, height) if size is None else (41, round(height * 41 / width))
    assert result.image.size == expected


def test_bad_alpha_and_empty_styles(run):
    content = pattern(32, 32, 21)
    with pytest.raises(ConfigError, match="alpha"):
        run(content, [content], alpha=1.5)
    with pytest.raises(ConfigError, match="at least one style"):
        run(content, [])


# ---------------------------------------------------------------------------------------------
# Feature cache


def test_same_style_is_not_encoded_again(run):
    cache = A.FeatureCache()
    style = pattern(32, 32, 22, "stripes")
    first, second = pattern(32, 32, 23), pattern(40, 32, 24)
    run(first, [style], cache=cache)
    assert cache.encoder_runs == 2
    run(second, [style], cache=cache)  # new photo, same style: only the content is encoded
    assert cache.encoder_runs == 3
    adain_runs = cache.adain_runs
    result = run(second, [style], alpha=0.4, cache=cache)  # alpha slider: nothing is encoded
    assert cache.encoder_runs == 3
    assert cache.adain_runs == adain_runs  # ... and AdaIN is not recomputed, only blended and decoded
    assert np.array_equal(pixels(result.image), pixels(run(second, [style], alpha=0.4).image))  # fresh cache
    assert "2 of 2 encoder pass(es)" in result.notes[0]
    run(second, [style], size=36, cache=cache)  # a new size is a new key
    assert cache.encoder_runs == 5
    assert cache.stats()["hits"] == 3  # the style is resized with --size too, so it is a new key as well


def test_cache_is_bounded_and_keyed_by_encoder(run, files):
    cache = A.FeatureCache(max_entries=2)
    images = [pattern(32, 32, 30 + i) for i in range(3)]
    for image in images:
        run(image, [images[0]], cache=cache, metrics=False)
    assert len(cache) == 2
    other = A.load_encoder(files["encoder"])  # same weights, different module: separate entries
    A.stylize(images[2], [images[0]], size=None, device="cpu", encoder=other, decoder=A.random_decoder(),
              metrics=False, cache=cache)
    assert cache.misses == cache.encoder_runs
    cache.clear()
    assert len(cache) == 0 and cache.encoder_runs == 0


# ---------------------------------------------------------------------------------------------
# Pseudo ground truth and CLI


def test_score_against_adain(files, encoder, decoder):
    content, style = pattern(40, 32, 40), pattern(32, 32, 41, "stripes")
    reference = A.adain_reference(content, style, size=40, device="cpu", encoder=encoder, decoder=decoder)
    perfect = A.score_against_adain(reference, content, style, device="cpu", encoder=encoder, decoder=decoder)
    assert perfect["rmse"] == 0.0 and perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1.0)
    other = pattern(40, 32, 42)
    scores = A.score_against_adain(other, content, style, device="cpu", encoder=encoder, decoder=decoder)
    assert scores["rmse"] > 0.01 and scores["ssim"] < 0.99 and np.isfinite(scores["psnr"])
    given = A.score_against_adain(other, content, style, reference=reference)
    assert given == pytest.approx(scores)


def test_cli_adain_and_score(files, tmp_path, capsys):
    content, style, style2 = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "s2.png"
    pattern(45, 33, 50).save(content)
    pattern(32, 32, 51, "stripes").save(style)
    pattern(32, 32, 52).save(style2)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile((np.arange(45) < 20).astype(np.uint8) * 255, (33, 1)), "L").save(mask)
    out = tmp_path / "out.png"
    models = ["--encoder", str(files["encoder"]), "--decoder", str(files["decoder"]), "--device", "cpu"]
    code = main(["adain", str(content), str(style), str(style2), "--style-weights", "1,3", "--alpha", "0.8",
                 "--preserve-color", "--size", "0", "--no-reference", "-o", str(out), *models])
    assert code == 0
    assert Image.open(out).size == (45, 33)
    assert "ssim_content" in capsys.readouterr().out
    code = main(["adain", str(content), str(style), str(style2), "--mask", str(mask), "--size", "40",
                 "--no-reference", "-o", str(out), *models])
    assert code == 0 and Image.open(out).size == (40, 29)
    ref = tmp_path / "ref.png"
    code = main(["score", str(out), str(content), str(style), "--save-reference", str(ref), *models])
    printed = capsys.readouterr().out
    assert code == 0 and "RMSE:" in printed and "PSNR:" in printed and "SSIM:" in printed
    assert Image.open(ref).size == (40, 29)
    code = main(["score", str(ref), str(content), str(style), "--reference", str(ref), "--json"])
    assert code == 0 and '"ssim": 1.0' in capsys.readouterr().out


def test_cli_errors_are_messages(files, tmp_path, capsys):
    content = tmp_path / "c.png"
    pattern(32, 32, 60).save(content)
    code = main(["adain", str(content), str(content), "--alpha", "2", "--encoder", str(files["encoder"]),
                 "--decoder", str(files["decoder"]), "--device", "cpu", "-o", str(tmp_path / "o.png")])
    assert code == 2 and "alpha must be between 0 and 1" in capsys.readouterr().err
    code = main(["adain", str(content), str(content), "--decoder", str(tmp_path / "missing.pth"),
                 "--encoder", str(files["encoder"]), "--device", "cpu"])
    assert code == 3 and "decoder.pth" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Registry weights (no network: NST_WEIGHTS_DIR overrides, offline mode)


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def test_registry_weights_are_used_when_no_paths_are_given(files, weights_dir, run):
    shutil.copy(files["encoder"], weights_dir / "adain-vgg-encoder.pth")
    shutil.copy(files["decoder"], weights_dir / "adain-decoder.pth")
    content, style = pattern(32, 32, 70), pattern(32, 32, 71, "stripes")
    result = A.stylize(content, [style], size=None, device="cpu", scorer=None, cache=A.FeatureCache())
    assert np.array_equal(pixels(result.image), pixels(run(content, [style]).image))


def test_missing_registry_weights_is_a_clear_error(files, weights_dir):
    content = pattern(32, 32, 72)
    with pytest.raises(WeightsError, match="adain-vgg-encoder"):
        A.stylize(content, [content], device="cpu", scorer=None)
    shutil.copy(files["encoder"], weights_dir / "adain-vgg-encoder.pth")
    with pytest.raises(WeightsError, match="adain-decoder"):
        A.stylize(content, [content], device="cpu", scorer=None)
