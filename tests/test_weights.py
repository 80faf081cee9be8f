"""nst.weights against a local fake Hub (real huggingface_hub client) and local URL downloads; no internet."""

from __future__ import annotations

import errno
import hashlib
import io
import tomllib
import zipfile
from pathlib import Path

import huggingface_hub
import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

from nst import weights
from nst.checkpoints import load_exact, mismatches, read_state_dict
from nst.cli import main
from nst.errors import WeightsError
from nst.features import FeatureNet, build_backbone

# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


def toml_registry(path: Path, **tables: dict) -> Path:
    """Write a test registry: ``name={field: value, "source": {...}}``."""

    def value(v: object) -> str:
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for name, table in tables.items():
        lines.append(f"[weights.{name}]")
        for key, v in table.items():
            if key == "source":
                inner = ", ".join(f"{k} = {value(x)}" for k, x in v.items())
                lines.append(f"source = {{ {inner} }}")
            else:
                lines.append(f"{key} = {value(v)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def small_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"0.weight": torch.randn(4, 3, 1, 1, generator=generator), "0.bias": torch.randn(4, generator=generator)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hub_entry(repo: str, filename: str, **extra: str) -> dict:
    return {"kind": "johnson", "format": "maze", "source": {"repo_id": repo, "filename": filename}, **extra}


def url_entry(url: str, **extra) -> dict:
    source = {"url": url, **extra.pop("source", {})}
    return {"kind": "johnson", "format": "pytorch-examples", "source": source, **extra}


def cache_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` except the client's lock files and markers."""
    return [p for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts and p.name != "CACHEDIR.TAG"]


@pytest.fixture(scope="module")
def resnet18_tv():
    torch.manual_seed(3)
    return tvm.resnet18().eval()


# ---------------------------------------------------------------------------------------------
# The real registry


def test_real_registry_has_every_required_entry_with_exact_sources():
    found = {e.name: e for e in weights.entries()}
    enums = {
        "vgg19": tvm.VGG19_Weights, "vgg16": tvm.VGG16_Weights, "alexnet": tvm.AlexNet_Weights,
        "resnet18": tvm.ResNet18_Weights, "resnext50_32x4d": tvm.ResNeXt50_32X4D_Weights,
        "mobilenet_v2": tvm.MobileNet_V2_Weights,
    }
    for arch, enum in enums.items():
        e = found[f"{arch}-imagenet"]
        assert (e.kind, e.arch, e.format) == ("backbone", arch, "torchvision")
        assert e.source.url == enum.IMAGENET1K_V1.url
        assert weights.url_target(e.source).name == Path(enum.IMAGENET1K_V1.url).name  # torchvision's own cache file
        assert weights.torchvision_hash_prefix(e.source.file_name)
    assert found["adain-vgg-encoder"].arch == "vgg19_normalised"
    assert found["adain-vgg-encoder"].source.url.endswith("/v0.0.0/vgg_normalised.pth")
    assert found["adain-decoder"].source.url.endswith("/v0.0.0/decoder.pth")
    for style in ("candy", "mosaic", "rain_princess", "udnie"):
        e = found[style]
        assert (e.kind, e.format, e.source.member) == ("johnson", "pytorch-examples", f"saved_models/{style}.pth")
    for style in ("Mosaic_512", "Rain_Princess_512", "Scream_512", "Starry_Night_512"):
        e = next(x for x in found.values() if x.source.filename == f"{style}.pth")
        assert (e.kind, e.format, e.source.repo_id) == ("johnson", "maze", "maze/FastStyleTransfer")
    autoart = found["autoart-mobilenet-v2"]
    assert (autoart.kind, autoart.arch, autoart.format) == ("finetuned", "mobilenet_v2", "safetensors")
    assert autoart.source.repo_id == "autoart-nst/autoart-mobilenet-v2" and "not been published" in autoart.hint
    for e in found.values():
        assert e.license and e.description
        assert e.style_path is None or e.style_path.is_file()
    assert found["udnie"].style_path.name == "picabia_udnie.jpg"
    assert found["udnie"]["kind"] == "johnson" and found["candy"].get("style_image") == ""
    for backbone in ("vgg19", "vgg16", "alexnet", "resnet18", "resnext50_32x4d", "mobilenet_v2", "vgg19_normalised"):
        from nst.features import spec_for

        assert spec_for(backbone).registry_name in found


def test_unknown_name_lists_the_known_ones(env):
    toml_registry(env / "registry.toml", one=hub_entry("org/a", "a.pth"))
    with pytest.raises(WeightsError, match="'nope' is not in the weights registry.*Known names: one"):
        weights.entry("nope")


def test_a_bad_registry_entry_is_named(env):
    toml_registry(env / "registry.toml", broken={"kind": "painting", "format": "maze", "source": {"url": "https://x/y.pth"}})
    with pytest.raises(WeightsError, match="entry 'broken' has kind 'painting'"):
        weights.entries()


# ---------------------------------------------------------------------------------------------
# Hub sources


def test_hub_download_then_cache_hit_offline_with_the_server_stopped(env, hub, monkeypatch):
    data = state_bytes(small_state())
    commit = hub.add_file("org/styles", "Mosaic_512.pth", data)
    toml_registry(env / "registry.toml", mosaic=hub_entry("org/styles", "Mosaic_512.pth", sha256=sha(data)))
    path = weights.resolve("mosaic", progress=False)
    assert path.read_bytes() == data
    assert path == env / "hf" / "hub" / "models--org--styles" / "snapshots" / commit / "Mosaic_512.pth"
    assert [r.method for r in hub.seen(prefix="/org/styles/")] == ["HEAD", "GET"]
    assert weights.status("mosaic").origin == "cache"

    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = weights.resolve("mosaic", progress=False)
    assert again == path and again.read_bytes() == data


def test_offline_and_not_cached_says_what_to_do(env, hub, monkeypatch):
    hub.add_file("org/styles", "Scream_512.pth", b"x")
    toml_registry(env / "registry.toml", scream=hub_entry("org/styles", "Scream_512.pth"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        weights.resolve("scream", progress=False)
    message = str(info.value)
    for part in ("Scream_512.pth", "org/styles", "offline", "python -m nst weights download scream", "--weights PATH", "NST_WEIGHTS_DIR"):
        assert part in message
    assert not hub.seen(prefix="/org/")


def test_missing_file_and_missing_repo_are_404_messages(env, hub):
    hub.add_file("org/styles", "present.pth", b"x")
    toml_registry(
        env / "registry.toml",
        nofile=hub_entry("org/styles", "absent.pth"),
        norepo=hub_entry("org/ghost", "absent.pth"),
        norev={**hub_entry("org/styles", "present.pth"), "source": {"repo_id": "org/styles", "filename": "present.pth", "revision": "v9"}},
    )
    with pytest.raises(WeightsError, match=r"has no file 'absent.pth'.*404"):
        weights.resolve("nofile", progress=False)
    with pytest.raises(WeightsError, match=r"org/ghost.*does not exist"):
        weights.resolve("norepo", progress=False)
    with pytest.raises(WeightsError, match="revision 'v9' does not exist"):
        weights.resolve("norev", progress=False)


def test_private_and_gated_repos_need_a_token(env, hub, monkeypatch):
    hub.add_file("org/private", "w.pth", b"private bytes", private=True)
    hub.add_file("org/gated", "w.pth", b"gated bytes", gated=True)
    toml_registry(env / "registry.toml", private=hub_entry("org/private", "w.pth"), gated=hub_entry("org/gated", "w.pth"))
    with pytest.raises(WeightsError, match="private and no valid token.*HF_TOKEN"):
        weights.resolve("private", progress=False)
    with pytest.raises(WeightsError, match="gated.*HF_TOKEN"):
        weights.resolve("gated", progress=False)
    monkeypatch.setenv("HF_TOKEN", "wrong")
    with pytest.raises(WeightsError, match="gated"):
        weights.resolve("gated", progress=False)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert weights.resolve("private", progress=False).read_bytes() == b"private bytes"
    assert weights.resolve("gated", progress=False).read_bytes() == b"gated bytes"


def test_hash_mismatch_errors_and_leaves_nothing_usable(env, hub, monkeypatch):
    hub.add_file("org/styles", "Starry_Night_512.pth", b"the published bytes")
    toml_registry(env / "registry.toml", starry=hub_entry("org/styles", "Starry_Night_512.pth", sha256="0" * 64))
    with pytest.raises(WeightsError, match="sha256.*expects 0000.*removed from the cache"):
        weights.resolve("starry", progress=False)
    assert not [p for p in cache_files(env / "hf" / "hub") if "refs" not in p.parts]
    assert weights.status("starry").path is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="not in the local cache"):
        weights.resolve("starry", progress=False)


def test_hub_download_interrupted_then_server_down_keeps_no_partial_file(env, hub):
    data = state_bytes(small_state(1))
    hub.add_file("org/styles", "cut.pth", data)
    hub.interrupt(hub.resolve_path("org/styles", "cut.pth"), times=1, then_status=503)
    toml_registry(env / "registry.toml", cut=hub_entry("org/styles", "cut.pth"))
    with pytest.raises(WeightsError, match="'cut.pth'.*no partial file was kept"):
        weights.resolve("cut", progress=False)
    assert not [p for p in cache_files(env / "hf" / "hub") if "refs" not in p.parts]


def test_hub_download_interrupted_once_resumes_to_the_exact_file(env, hub):
    data = state_bytes(small_state(2))
    hub.add_file("org/styles", "resume.pth", data)
    hub.interrupt(hub.resolve_path("org/styles", "resume.pth"), times=1)
    toml_registry(env / "registry.toml", resume=hub_entry("org/styles", "resume.pth", sha256=sha(data)))
    assert weights.resolve("resume", progress=False).read_bytes() == data
    assert len(hub.seen("GET", "/org/styles/")) == 2  # cut off, then fetched again (resumed where possible)


def test_disk_full_is_a_clear_error(env, hub, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    hub.add_file("org/styles", "big.pth", b"x")
    toml_registry(env / "registry.toml", big=hub_entry("org/styles", "big.pth"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", full)
    with pytest.raises(WeightsError, match="disk is full.*'big.pth'.*HF_HOME"):
        weights.resolve("big", progress=False)


# ---------------------------------------------------------------------------------------------
# Local overrides


def test_local_override_wins_over_the_hub(env, hub, monkeypatch):
    hub.add_file("org/styles", "Mosaic_512.pth", b"hub bytes")
    toml_registry(env / "registry.toml", mosaic=hub_entry("org/styles", "Mosaic_512.pth", sha256="1" * 64))
    own = env / "mine"
    own.mkdir()
    (own / "Mosaic_512.pth").write_bytes(b"by file name")
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(own))
    assert weights.resolve("mosaic").read_bytes() == b"by file name"
    (own / "mosaic.safetensors").write_bytes(b"by registry name")
    assert weights.resolve("mosaic").read_bytes() == b"by registry name"
    explicit = env / "explicit.pth"
    explicit.write_bytes(b"explicit")
    weights.set_override("mosaic", explicit)
    assert weights.resolve("mosaic").read_bytes() == b"explicit"
    assert weights.status("mosaic").origin == "override"
    assert not hub.seen(prefix="/org/")
    with pytest.raises(WeightsError, match="does not exist"):
        weights.set_override("mosaic", env / "missing.pth")
    weights.clear_overrides()
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(env / "no-such-dir"))
    with pytest.raises(WeightsError, match="NST_WEIGHTS_DIR.*not a folder"):
        weights.local_override("mosaic")


# ---------------------------------------------------------------------------------------------
# URL sources (torch.hub download into TORCH_HOME/hub/checkpoints)


def test_url_source_downloads_into_torch_checkpoints_and_is_reused(env, hub, monkeypatch):
    data = state_bytes(small_state(3))
    url = hub.add_url("decoder.pth", data)
    toml_registry(env / "registry.toml", decoder=url_entry(url, sha256=sha(data)))
    path = weights.resolve("decoder", progress=False)
    assert path == env / "torch" / "hub" / "checkpoints" / "decoder.pth" and path.read_bytes() == data
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.resolve("decoder", progress=False) == path
    assert len(hub.seen("GET", "/files/")) == 1


def test_url_zip_member_is_extracted(env, hub):
    member = state_bytes(small_state(4))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("saved_models/candy.pth", member)
        archive.writestr("saved_models/udnie.pth", b"other")
    url = hub.add_url("saved_models.zip?dl=1", buffer.getvalue())
    toml_registry(env / "registry.toml", candy=url_entry(url, source={"filename": "fns.zip", "member": "saved_models/candy.pth"}))
    path = weights.resolve("candy", progress=False)
    assert path == env / "torch" / "hub" / "checkpoints" / "fns" / "candy.pth" and path.read_bytes() == member
    assert weights.verify("candy").ok is True


def test_torchvision_file_name_hash_prefix_is_checked(env, hub):
    data = state_bytes(small_state(5))
    good = hub.add_url(f"net-{sha(data)[:8]}.pth", data)
    bad = hub.add_url("other-deadbeef.pth", data)
    toml_registry(
        env / "registry.toml",
        good={"kind": "backbone", "arch": "alexnet", "format": "torchvision", "source": {"url": good}},
        bad={"kind": "backbone", "arch": "alexnet", "format": "torchvision", "source": {"url": bad}},
    )
    assert weights.download("good", progress=False).read_bytes() == data
    with pytest.raises(WeightsError, match="does not start with the deadbeef"):
        weights.download("bad", progress=False)
    assert not (env / "torch" / "hub" / "checkpoints" / "other-deadbeef.pth").exists()


def test_interrupted_url_download_leaves_no_corrupt_file(env, hub):
    data = state_bytes(small_state(6))
    url = hub.add_url("vgg_normalised.pth", data)
    hub.interrupt("/files/vgg_normalised.pth", times=5)
    toml_registry(env / "registry.toml", encoder=url_entry(url))
    with pytest.raises(WeightsError, match="incomplete or corrupt.*discarded"):
        weights.resolve("encoder", progress=False)
    assert cache_files(env / "torch") == []


def test_url_404_and_disk_full(env, hub, monkeypatch):
    toml_registry(env / "registry.toml", gone=url_entry(f"{hub.endpoint}/files/gone.pth"))
    with pytest.raises(WeightsError, match="not found \\(HTTP 404\\)"):
        weights.resolve("gone", progress=False)

    def partial_then_full(url, dst, hash_prefix=None, progress=True):
        Path(dst).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.hub, "download_url_to_file", partial_then_full)
    with pytest.raises(WeightsError, match="disk is full.*no partial file"):
        weights.resolve("gone", progress=False)
    assert cache_files(env / "torch") == []


# ---------------------------------------------------------------------------------------------
# Loading and the format adapters owned here


def test_load_gives_an_eval_module_cached_with_a_bound(env, monkeypatch):
    torch.manual_seed(0)
    state = tvm.mobilenet_v2().state_dict()
    own = env / "mine"
    own.mkdir()
    torch.save(state, own / "mobilenet_v2.pth")
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(own))
    entry = {"kind": "backbone", "arch": "mobilenet_v2", "format": "torchvision", "source": {"url": "https://x/mobilenet_v2.pth"}}
    toml_registry(env / "registry.toml", a=entry, b=entry, c=entry)

    first = weights.load("a")
    assert isinstance(first, FeatureNet) and not first.training
    assert not any(p.requires_grad for p in first.parameters())
    assert weights.load("a") is first
    torch.testing.assert_close(first.blocks[0].weight, state["features.0.0.weight"])

    weights.set_cache_size(2)
    second, third = weights.load("b"), weights.load("c")
    assert weights.resident() == ["b", "c"]
    assert weights.load("c") is third and weights.load("b") is second
    assert weights.load("a") is not first  # evicted, rebuilt
    assert weights.resident() == ["b", "a"]


def test_torchvision_backbone_matches_running_torchvision_directly(env, monkeypatch, resnet18_tv):
    own = env / "mine"
    own.mkdir()
    torch.save(resnet18_tv.state_dict(), own / "resnet18-imagenet.pth")
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(own))
    toml_registry(env / "registry.toml", **{"resnet18-imagenet": {
        "kind": "backbone", "arch": "resnet18", "format": "torchvision",
        "source": {"url": "https://download.pytorch.org/models/resnet18-f37072fd.pth"},
    }})
    net = weights.load("resnet18-imagenet")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = net(x, ["layer2"])["layer2"]
        m = resnet18_tv
        y = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        expected = m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(y))))))
    torch.testing.assert_close(ours, expected)
    # the same through the "pretrained" path of build_backbone, which asks this module for the registry file
    pretrained = build_backbone("resnet18", "pretrained")
    torch.testing.assert_close(pretrained(x, ["layer2"])["layer2"], expected)


def test_a_wrong_shape_fails_naming_the_key_and_touches_nothing(env, monkeypatch, resnet18_tv):
    state = dict(resnet18_tv.state_dict())
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    own = env / "mine"
    own.mkdir()
    torch.save(state, own / "r18.pth")
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(own))
    toml_registry(env / "registry.toml", r18={"kind": "backbone", "arch": "resnet18", "format": "torchvision", "source": {"url": "https://x/y.pth"}})
    with pytest.raises(WeightsError, match=r"layer1\.0\.conv1\.weight: checkpoint \(64, 64, 1, 1\)"):
        weights.load("r18")
    assert weights.resident() == []
    target = tvm.resnet18()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError, match=r"layer1\.0\.conv1\.weight"):
        load_exact(target, read_state_dict(own / "r18.pth"), "resnet18", ("fc.",))
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_timm_vgg_keys_reduce_to_torchvision_features():
    with torch.device("meta"):
        vgg = tvm.vgg19()
    renames = {"classifier.0": "pre_logits.fc1", "classifier.3": "pre_logits.fc2", "classifier.6": "head.fc"}
    timm_state = {}
    for key, value in vgg.state_dict().items():
        for old, new in renames.items():
            key = key.replace(old, new)
        timm_state[key] = value
    adapted = weights.from_timm(timm_state)
    expected = {k: v for k, v in vgg.state_dict().items() if not k.startswith("classifier.")}
    assert mismatches(expected, adapted) == []


def test_timm_safetensors_from_the_hub_load_as_the_torchvision_backbone(env, hub, resnet18_tv):
    timm_file = env / "model.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18_tv.state_dict().items() if not k.endswith("num_batches_tracked")}, str(timm_file))
    hub.add_file("timm/resnet18.tv_in1k", "model.safetensors", timm_file.read_bytes())
    toml_registry(env / "registry.toml", **{"resnet18-timm": {
        "kind": "backbone", "arch": "resnet18", "format": "timm",
        "source": {"repo_id": "timm/resnet18.tv_in1k", "filename": "model.safetensors"},
    }})
    converted = weights.resolve("resnet18-timm", progress=False)
    assert converted.suffix == ".safetensors" and "nst-converted" in converted.parts
    net = build_backbone("resnet18", "resnet18-timm")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        m = resnet18_tv
        y = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        expected = m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(y)))))
    torch.testing.assert_close(net(x, ["layer1"])["layer1"], expected)


def test_load_dispatches_johnson_and_adain_decoder_to_their_modules(env, monkeypatch):
    from nst.adain import build_decoder
    from nst.johnson import TransformerNet

    torch.manual_seed(0)
    johnson_state = TransformerNet().state_dict()
    decoder_state = build_decoder().state_dict()
    own = env / "mine"
    own.mkdir()
    torch.save(johnson_state, own / "candy.pth")
    torch.save(decoder_state, own / "adain-decoder.pth")
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(own))
    toml_registry(
        env / "registry.toml",
        candy={"kind": "johnson", "format": "pytorch-examples", "source": {"url": "https://x/z.zip", "member": "saved_models/candy.pth"}},
        **{"adain-decoder": {"kind": "adain", "arch": "adain_decoder", "format": "adain-sequential", "source": {"url": "https://x/decoder.pth"}}},
    )
    johnson = weights.load("candy")
    decoder = weights.load("adain-decoder")
    assert isinstance(johnson, TransformerNet) and not johnson.training
    assert isinstance(decoder, torch.nn.Sequential) and not decoder.training
    torch.testing.assert_close(johnson.state_dict()["conv1.conv2d.weight"], johnson_state["conv1.conv2d.weight"])
    torch.testing.assert_close(decoder.state_dict()["1.weight"], decoder_state["1.weight"])
    assert set(weights.LOADERS) == set(weights.KINDS)


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_list_download_verify(env, hub, capsys):
    good, other = state_bytes(small_state(7)), state_bytes(small_state(8))
    hub.add_file("org/styles", "good.pth", good)
    hub.add_file("org/styles", "other.pth", other)
    toml_registry(
        env / "registry.toml",
        good=hub_entry("org/styles", "good.pth", sha256=sha(good)),
        other=hub_entry("org/styles", "other.pth"),
        broken=hub_entry("org/styles", "absent.pth"),
    )
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "hf://org/styles/good.pth@main" in out and " no " in out

    assert main(["weights", "download", "good", "--quiet"]) == 0
    assert main(["weights", "download", "--all", "--quiet"]) == 3  # 'broken' fails, the others are cached
    captured = capsys.readouterr()
    assert "1 of 3 failed: broken" in captured.err and "absent.pth" in captured.err
    assert main(["weights", "download", "nope"]) == 3
    assert "not in the weights registry" in capsys.readouterr().err

    assert main(["weights", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " yes " in rows["good"] and " no " in rows["broken"] and "kB" in rows["good"]

    assert main(["weights", "verify"]) == 0
    out = capsys.readouterr().out
    assert "good: ok - sha256" in out and "other: ok - loads as a state dict" in out and "broken: not cached" in out

    weights.cached_file("good").resolve().write_bytes(b"tampered")
    assert main(["weights", "verify", "good"]) == 3
    assert "good: FAILED" in capsys.readouterr().out


def test_registry_file_is_plain_toml():
    with open(weights.DEFAULT_REGISTRY, "rb") as handle:
        data = tomllib.load(handle)
    assert set(data) == {"schema", "weights"} and len(data["weights"]) == len(weights.entries())
