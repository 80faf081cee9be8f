"""nst.publish: the generated model card, and pushing safetensors to a local fake Hub with the real client."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from nst import publish, weights
from nst.cli import main
from nst.errors import WeightsError


def front_matter(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    generator = torch.Generator().manual_seed(0)
    save_file({"classifier.1.weight": torch.randn(2, 8, generator=generator), "classifier.1.bias": torch.zeros(2)}, str(path))
    return path


def test_model_card_has_the_metadata_and_the_training_parameters():
    card = publish.model_card(
        name="autoart-mobilenet-v2",
        kind="finetuned",
        license="MIT",
        base_model="timm/mobilenetv2_100.ra_in1k",
        tags=("impressionism",),
        params={"epochs": 5, "lr": 1e-4, "arch": "mobilenet_v2"},
        description="MobileNetV2 fine-tuned on impressionist paintings.",
        files=["model.safetensors"],
        repo_id="me/autoart",
    )
    meta, body = front_matter(card)
    assert meta["license"] == "mit" and meta["library_name"] == "pytorch"
    assert meta["base_model"] == "timm/mobilenetv2_100.ra_in1k"
    assert {"autoart", "neural-style-transfer", "image-classification", "impressionism"} <= set(meta["tags"])
    assert "| epochs | 5 |" in body and "| lr | 0.0001 |" in body
    assert "MobileNetV2 fine-tuned on impressionist paintings." in body
    assert 'repo_id = "me/autoart"' in body and 'arch = "mobilenet_v2"' in body
    bare, _ = front_matter(publish.model_card("x", "johnson", "bsd-3-clause"))
    assert "base_model" not in bare and "No training parameters" in publish.model_card("x", "johnson", "mit")


def test_push_creates_the_repo_and_uploads_files_and_card_in_one_commit(env, hub, model_file):
    card = publish.model_card("autoart", "finetuned", "mit", params={"lr": 0.001})
    url = publish.push("me/autoart", [model_file], card, token=hub.token, private=True)
    assert url.startswith(f"{hub.endpoint}/me/autoart/commit/")
    (created,) = hub.created
    assert (created["organization"], created["name"], created["type"]) == ("me", "autoart", "model")
    assert created.get("visibility") == "private" or created.get("private") is True
    assert hub.repos["me/autoart"].private
    (commit,) = hub.commits
    assert set(commit.files) == {"model.safetensors", "README.md"}
    assert commit.files["model.safetensors"] == model_file.read_bytes()
    assert commit.files["README.md"].decode() == card
    assert commit.revision == "main" and commit.summary
    auth = {r.headers.get("authorization") for r in hub.seen("POST", "/api/")}
    assert auth == {f"Bearer {hub.token}"}


def test_push_to_an_existing_repo_then_download_it_back(env, hub, model_file, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    publish.push("me/autoart", {"weights/model.safetensors": model_file}, "---\nlicense: mit\n---\n# v1\n")
    publish.push("me/autoart", {"weights/model.safetensors": model_file}, "---\nlicense: mit\n---\n# v2\n")
    assert len(hub.created) == 2 and len(hub.commits) == 2  # the second create answered 409 and was accepted
    (env / "registry.toml").write_text(
        '[weights.autoart]\nkind = "finetuned"\narch = "mobilenet_v2"\nformat = "safetensors"\n'
        'source = { repo_id = "me/autoart", filename = "weights/model.safetensors" }\n'
    )
    path = weights.resolve("autoart", progress=False)
    torch.testing.assert_close(load_file(str(path)), load_file(str(model_file)))


def test_push_refuses_pickles_and_files_that_are_not_safetensors(env, hub, tmp_path, model_file):
    pickle = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1)}, pickle)
    with pytest.raises(WeightsError, match="'model.pth' is not a .safetensors file.*convert"):
        publish.push("me/autoart", [pickle], "card", token=hub.token)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not really")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        publish.push("me/autoart", [fake], "card", token=hub.token)
    with pytest.raises(WeightsError, match="not a Hub repo id"):
        publish.push("autoart", [model_file], "card", token=hub.token)
    assert hub.requests == []


def test_push_without_a_valid_token_says_how_to_get_one(env, hub, model_file, monkeypatch):
    with pytest.raises(WeightsError, match="refused.*me/autoart.*HF_TOKEN"):
        publish.push("me/autoart", [model_file], "---\nlicense: mit\n---\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="Offline mode"):
        publish.push("me/autoart", [model_file], "card", token=hub.token)
    assert hub.commits == []


def test_cli_push_and_dry_run(env, hub, model_file, monkeypatch, capsys):
    args = [
        "weights", "push", "--repo", "me/autoart", str(model_file), "--license", "mit",
        "--base-model", "torchvision/mobilenet_v2", "--param", "lr=0.0001", "--param", "epochs=3", "--tag", "impressionism",
    ]
    assert main([*args, "--dry-run"]) == 0
    meta, body = front_matter(capsys.readouterr().out)
    assert meta["base_model"] == "torchvision/mobilenet_v2" and "impressionism" in meta["tags"]
    assert "| epochs | 3 |" in body and hub.requests == []

    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert main(args) == 0
    assert "published: " in capsys.readouterr().out
    readme = hub.commits[-1].files["README.md"].decode()
    assert "| lr | 0.0001 |" in readme and "# autoart" in readme
    assert main([*args[:-2], "--param", "no-equals-sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
