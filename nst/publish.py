"""Publish trained weights to the Hugging Face Hub: a generated model card plus safetensors, in one commit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from nst.errors import WeightsError
from nst.weights import hub_endpoint, hub_token, offline

KIND_TAGS = {
    "backbone": ["image-feature-extraction"],
    "finetuned": ["image-classification", "style-transfer"],
    "johnson": ["style-transfer", "image-to-image", "fast-neural-style"],
    "adain": ["style-transfer", "image-to-image", "adain"],
}


def _table(params: Mapping[str, object]) -> str:
    if not params:
        return "_No training parameters were recorded._\n"
    rows = ["| parameter | value |", "|---|---|"]
    rows += [f"| {key} | {str(value).replace('|', '/')} |" for key, value in params.items()]
    return "\n".join(rows) + "\n"


def model_card(
    name: str,
    kind: str,
    license: str,
    base_model: str | None = None,
    tags: Iterable[str] = (),
    params: Mapping[str, object] | None = None,
    description: str = "",
    library: str = "pytorch",
    files: Iterable[str] = (),
    repo_id: str | None = None,
) -> str:
    """README.md text for a Hub model repo: YAML front matter (license, library_name, tags, base_model) and a body."""
    from huggingface_hub import ModelCardData

    all_tags = list(dict.fromkeys(["autoart", "neural-style-transfer", *KIND_TAGS.get(kind, []), *tags]))
    data = ModelCardData(license=license.lower(), library_name=library, tags=all_tags, base_model=base_model)
    files = list(files)
    file_list = "\n".join(f"- `{f}`" for f in files) if files else "- `model.safetensors`"
    first = files[0] if files else "model.safetensors"
    repo = repo_id or "USER/REPO"
    arch = f'arch = "{params.get("arch")}"\n' if params and params.get("arch") else ""
    body = f"""# {name}

{description or f"AutoArt {kind} weights."}

- kind: `{kind}`
- base model: {f"`{base_model}`" if base_model else "none (trained from scratch)"}
- library: {library} (safetensors; loading never executes pickled code)
- license: {license}

## Files

{file_list}

## Training parameters

{_table(params or {})}
## Use with AutoArt

Point an entry of `models/registry.toml` at this repo:

```toml
[weights.{name}]
kind = "{kind}"
{arch}format = "safetensors"
license = "{license}"
source = {{ repo_id = "{repo}", repo_type = "model", filename = "{first}", revision = "main" }}
```

then `python -m nst weights download {name}`, or pass the downloaded file with `--weights PATH`.
Plain Python:

```python
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file

state = load_file(hf_hub_download("{repo}", "{first}"))
```
"""
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def _check_safetensors(path: Path) -> None:
    if not path.is_file():
        raise WeightsError(f"The file to publish '{path}' does not exist.")
    if path.suffix != ".safetensors":
        raise WeightsError(
            f"'{path.name}' is not a .safetensors file. Only safetensors are published (a .pth/.pt pickle can run code "
            "when loaded): convert it first, e.g. `safetensors.torch.save_file(torch.load(path, weights_only=True), "
            "'model.safetensors')`, or save it with nst.training.save_final."
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            list(handle.keys())
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is not publishable
        raise WeightsError(f"'{path.name}' is not a readable safetensors file: {exc}") from None


def _push_error(repo_id: str, exc: BaseException) -> WeightsError:
    from huggingface_hub import errors as hf

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403) or isinstance(exc, hf.RepositoryNotFoundError):
        return WeightsError(
            f"The Hub refused to create or write {repo_id} (HTTP {status}). Set HF_TOKEN to a token with write "
            "access to that namespace (https://huggingface.co/settings/tokens), or pass --token."
        )
    if any(cls.__name__ in ("ConnectError", "ConnectTimeout", "TimeoutException") for cls in type(exc).__mro__):
        return WeightsError(f"Could not reach the Hub at {hub_endpoint()} to publish {repo_id}. Check the network.")
    return WeightsError(f"Publishing to {repo_id} failed: {exc}")


def push(
    repo_id: str,
    files: Iterable[str | Path] | Mapping[str, str | Path],
    card_text: str,
    token: str | None = None,
    private: bool = False,
    repo_type: str = "model",
    commit_message: str = "Upload AutoArt weights",
) -> str:
    """Create ``repo_id`` if needed and upload the safetensors ``files`` plus README.md in one commit.

    ``files``: paths (uploaded under their own names) or a mapping path-in-repo -> local path.
    Returns the commit URL.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    if "/" not in repo_id or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise WeightsError(f"'{repo_id}' is not a Hub repo id; use USER/REPO or ORG/REPO.")
    mapping = dict(files) if isinstance(files, Mapping) else {Path(f).name: f for f in files}
    if not mapping:
        raise WeightsError("Nothing to publish: give at least one .safetensors file.")
    for local in mapping.values():
        _check_safetensors(Path(local))
    if offline():
        raise WeightsError("Offline mode is on (HF_HUB_OFFLINE=1): unset it to publish to the Hub.")
    api = HfApi(endpoint=hub_endpoint(), token=token or os.environ.get("HF_TOKEN") or hub_token() or None)
    operations = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=str(src)) for dest, src in mapping.items()]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card_text.encode("utf-8")))
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type=repo_type)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every client failure becomes one WeightsError sentence
        raise _push_error(repo_id, exc) from None
    return str(info.commit_url)
