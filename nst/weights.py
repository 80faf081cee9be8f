"""Pretrained weights by registry name: resolve to a local file, verify, and load as a ready module.

The registry (``models/registry.toml``, or the file named by ``NST_REGISTRY``) lists every weight file
with its source: a Hugging Face Hub repo (fetched with ``huggingface_hub.hf_hub_download`` into the Hub
cache) or an https URL (fetched with ``torch.hub.download_url_to_file`` into torch's
``TORCH_HOME/hub/checkpoints``, optionally a member of a zip). A local override always wins: a path set
with :func:`set_override` (the CLI's ``--weights PATH``), then ``NST_WEIGHTS_DIR/<name>.safetensors|.pth|.pt``
or ``NST_WEIGHTS_DIR/<file name>``.

Environment variables are read at call time (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``,
``HF_TOKEN``, ``HF_ENDPOINT``, ``TORCH_HOME``, ``NST_WEIGHTS_DIR``, ``NST_REGISTRY``), never cached at
import. Every failure is a :class:`~nst.errors.WeightsError` whose message names the file, where it was
looked for and how to provide it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import urllib.error
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn
from tqdm import tqdm

from nst.checkpoints import read_state_dict
from nst.errors import WeightsError
from nst.registry import (  # noqa: F401  (re-exported: nst.weights is the entry point)
    DEFAULT_REGISTRY,
    FORMATS,
    KINDS,
    ROOT,
    Source,
    WeightEntry,
    entries,
    entry,
    names,
    registry_path,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
OVERRIDE_SUFFIXES = (".safetensors", ".pth", ".pt")
TORCHVISION_HASH = re.compile(r"-([0-9a-f]{8,})\.")
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
DEFAULT_CACHE_SIZE = 4


# ---------------------------------------------------------------------------------------------
# Environment, read at call time


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in TRUE_VALUES


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: nothing is downloaded, Hub or URL."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hf_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(os.path.expandvars(os.path.expanduser(os.environ.get("HF_HOME") or str(default))))


def hf_cache_dir() -> Path:
    """The Hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub`` (as huggingface_hub computes it)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expanduser(explicit)) if explicit else hf_home() / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_token() -> str | bool:
    """``HF_TOKEN``, else the token ``hf auth login`` saved under ``HF_HOME`` (or ``HF_TOKEN_PATH``); False if none."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token.strip()
    token_file = Path(os.environ.get("HF_TOKEN_PATH") or hf_home() / "token")
    saved = token_file.read_text().strip() if token_file.is_file() else ""
    return saved or False


def torch_checkpoints_dir() -> Path:
    """torchvision's own weight cache: ``TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_page(src: Source) -> str:
    prefix = "" if src.repo_type == "model" else f"{src.repo_type}s/"
    return f"{hub_endpoint()}/{prefix}{src.repo_id}"


# ---------------------------------------------------------------------------------------------
# Local overrides

_OVERRIDES: dict[str, Path] = {}


def set_override(name: str, path: str | Path) -> Path:
    """Use ``path`` instead of the registry's file for ``name`` in this process (the CLI's ``--weights``)."""
    found = entry(name)
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(f"The weights file '{file}' given for '{found.name}' does not exist.")
    _OVERRIDES[found.name] = file.resolve()
    return _OVERRIDES[found.name]


def clear_overrides() -> None:
    _OVERRIDES.clear()


def weights_dir() -> Path | None:
    """``NST_WEIGHTS_DIR`` as a folder (None when unset)."""
    value = os.environ.get("NST_WEIGHTS_DIR")
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"NST_WEIGHTS_DIR is set to '{folder}', which is not a folder.")
    return folder


def local_override(name: str | WeightEntry) -> Path | None:
    """The user's own file for this entry, if any: explicit override, then NST_WEIGHTS_DIR."""
    found = entry(name)
    if found.name in _OVERRIDES:
        return _OVERRIDES[found.name]
    folder = weights_dir()
    if folder is None:
        return None
    candidates = [folder / f"{found.name}{suffix}" for suffix in OVERRIDE_SUFFIXES]
    candidates.append(folder / found.source.file_name)
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------------------------------------
# Error messages


def how_to_provide(found: WeightEntry) -> str:
    """The sentence every 'missing weights' error ends with."""
    extra = f" {found.hint}" if found.hint else ""
    return (
        f"{extra} To fix it: run `python -m nst weights download {found.name}` while online, or pass your own "
        f"file with --weights PATH, or put it in NST_WEIGHTS_DIR as {found.name}.safetensors / "
        f"{found.source.file_name}."
    ).lstrip()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _named(exc: BaseException, *class_names: str) -> bool:
    return any(cls.__name__ in class_names for cls in type(exc).__mro__)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def _disk_full(chain: list[BaseException]) -> bool:
    return any(isinstance(x, OSError) and x.errno == errno.ENOSPC for x in chain)


def _disk_full_error(found: WeightEntry, folder: Path) -> WeightsError:
    return WeightsError(
        f"The disk is full: there is no room for '{found.source.file_name}' ('{found.name}') in {folder}. "
        "Free some space, or point HF_HOME / TORCH_HOME at a bigger disk, then try again; "
        "no partial file was kept."
    )


def _hub_error(found: WeightEntry, exc: BaseException) -> WeightsError:
    """Turn anything hf_hub_download raised into one actionable sentence."""
    from huggingface_hub import errors as hf

    src = found.source
    what = f"'{src.filename}' for '{found.name}' (Hub repo {src.repo_id}, revision {src.revision}, {hub_endpoint()})"
    chain = list(_chain(exc))
    fix = how_to_provide(found)
    statuses = [s for s in (_status(x) for x in chain) if s]
    if _disk_full(chain):
        return _disk_full_error(found, hf_cache_dir())
    if offline() or any(isinstance(x, hf.OfflineModeIsEnabled) for x in chain):
        return WeightsError(f"{what} is not in the local cache ({hf_cache_dir()}) and offline mode is on (HF_HUB_OFFLINE=1). {fix}")
    if any(isinstance(x, hf.GatedRepoError) for x in chain):
        return WeightsError(
            f"{what}: the repo is gated. Accept its conditions at {hub_page(src)} and set HF_TOKEN to an access "
            f"token of that account (https://huggingface.co/settings/tokens). {fix}"
        )
    if any(isinstance(x, hf.RepositoryNotFoundError) for x in chain):
        private = 401 in statuses or 403 in statuses
        reason = "does not exist, or it is private and no valid token was sent" if private else "does not exist"
        return WeightsError(
            f"{what}: the repo {reason}. If it is private, set HF_TOKEN to a token that can read it. {fix}"
        )
    if any(isinstance(x, hf.RevisionNotFoundError) for x in chain):
        return WeightsError(f"{what}: the revision '{src.revision}' does not exist in that repo. {fix}")
    if any(isinstance(x, hf.RemoteEntryNotFoundError) for x in chain):
        return WeightsError(f"{what}: the repo has no file '{src.filename}' at that revision (HTTP 404). {fix}")
    if 401 in statuses or 403 in statuses:
        return WeightsError(
            f"{what}: access denied (HTTP {401 if 401 in statuses else 403}). The repo is private or gated: set "
            f"HF_TOKEN to a token that can read it. {fix}"
        )
    if any(_named(x, "RemoteProtocolError", "ReadError", "IncompleteRead") for x in chain) or any(
        "Consistency check failed" in str(x) for x in chain
    ):
        return WeightsError(f"The download of {what} was interrupted; no partial file was kept. Try again. {fix}")
    if any(_named(x, "ConnectError", "ConnectTimeout", "TimeoutException", "ConnectionError") for x in chain):
        return WeightsError(f"Could not reach the Hub to download {what} and it is not cached. Check the network. {fix}")
    if statuses:
        return WeightsError(
            f"Downloading {what} failed with HTTP {statuses[0]}; no partial file was kept. Try again later. {fix}"
        )
    return WeightsError(f"Could not get {what}: {exc}. {fix}")


def _url_error(found: WeightEntry, exc: BaseException, folder: Path) -> WeightsError:
    """Turn anything torch.hub's URL download raised into one actionable sentence."""
    src = found.source
    what = f"'{src.download_name}' for '{found.name}' from {src.url}"
    chain = list(_chain(exc))
    fix = how_to_provide(found)
    if _disk_full(chain):
        return _disk_full_error(found, folder)
    status = next((s for s in (_status(x) for x in chain) if s), None)
    if status in (401, 403):
        return WeightsError(f"Downloading {what} was refused (HTTP {status}). {fix}")
    if status == 404:
        return WeightsError(f"{what} was not found (HTTP 404): the URL may have moved; update models/registry.toml. {fix}")
    if status:
        return WeightsError(f"Downloading {what} failed with HTTP {status}; no partial file was kept. {fix}")
    if any(_named(x, "IncompleteRead", "ConnectionResetError", "RemoteDisconnected", "TimeoutError") for x in chain):
        return WeightsError(f"The download of {what} was interrupted; no partial file was kept. Try again. {fix}")
    if any(isinstance(x, urllib.error.URLError) for x in chain):
        return WeightsError(f"Could not reach the server for {what} and it is not cached. Check the network. {fix}")
    return WeightsError(f"Could not download {what}: {exc}. {fix}")


# ---------------------------------------------------------------------------------------------
# Hashing and integrity checks


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def torchvision_hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix torchvision puts in its file names (``vgg19-dcbb9e9d.pth`` -> ``dcbb9e9d``)."""
    match = TORCHVISION_HASH.search(file_name)
    return match.group(1) if match else None


def check_file(found: WeightEntry, path: Path) -> str:
    """Check a weight file for this entry; return how it was checked, raise WeightsError if it is bad.

    sha256 when the registry has one; else torchvision's hash prefix for torchvision files; else the file
    must load as a state dict of tensors (which a truncated file does not).
    """
    label = found.source.file_name
    if found.sha256:
        actual = sha256_of(path)
        if actual != found.sha256.lower():
            raise WeightsError(
                f"'{label}' for '{found.name}' has sha256 {actual}, but the registry expects {found.sha256}: "
                "the file is corrupt or not the published one."
            )
        return "sha256"
    prefix = torchvision_hash_prefix(found.source.file_name) if found.format == "torchvision" else None
    if prefix:
        actual = sha256_of(path)
        if not actual.startswith(prefix):
            raise WeightsError(
                f"'{label}' for '{found.name}' has sha256 {actual}, which does not start with the "
                f"{prefix} its file name promises: the file is corrupt or incomplete."
            )
        return "sha256 prefix"
    try:
        read_state_dict(path)
    except WeightsError as exc:
        raise WeightsError(f"'{label}' for '{found.name}' is incomplete or corrupt: {exc}") from None
    return "loads as a state dict"


_VERIFIED: set[tuple[str, int, int]] = set()


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _remove_cached(path: Path) -> None:
    """Delete a cached file; for a Hub cache pointer, the blob it points to as well."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path:
        target.unlink(missing_ok=True)


def _verify_once(found: WeightEntry, path: Path) -> None:
    """sha256-check a cached file the first time this process uses it; a bad file is removed."""
    if not found.sha256:
        return
    key = _stamp(path)
    if key in _VERIFIED:
        return
    try:
        check_file(found, path)
    except WeightsError as exc:
        _remove_cached(path)
        raise WeightsError(f"{exc} It was removed from the cache. {how_to_provide(found)}") from None
    _VERIFIED.add(key)


# ---------------------------------------------------------------------------------------------
# Fetching into the caches


class _QuietTqdm(tqdm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _hub_kwargs(src: Source) -> dict[str, Any]:
    return dict(
        repo_type=src.repo_type,
        revision=src.revision,
        cache_dir=str(hf_cache_dir()),
    )


def _fetch_hub(found: WeightEntry, progress: bool, force: bool) -> Path:
    from huggingface_hub import hf_hub_download

    src = found.source
    try:
        path = hf_hub_download(
            src.repo_id,
            src.filename,
            endpoint=hub_endpoint(),
            token=hub_token(),
            local_files_only=offline(),
            force_download=force,
            tqdm_class=None if progress else _QuietTqdm,
            **_hub_kwargs(src),
        )
    except Exception as exc:  # noqa: BLE001 - every client failure becomes one WeightsError sentence
        raise _hub_error(found, exc) from None
    return Path(path)


def archive_path(src: Source) -> Path:
    return torch_checkpoints_dir() / src.download_name


def url_target(src: Source) -> Path:
    """Where a URL source's weight file lives in torch's cache (an archive member in a folder named after it)."""
    if src.member:
        return torch_checkpoints_dir() / Path(src.download_name).stem / src.file_name
    return archive_path(src)


def _temp_beside(dst: Path) -> Path:
    return dst.with_name(f".{dst.stem}.{uuid.uuid4().hex[:8]}.part{dst.suffix}")


def _check_archive(found: WeightEntry, path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise WeightsError(f"'{found.source.download_name}' for '{found.name}' is not a complete zip archive ({exc}).") from None
    if bad is not None:
        raise WeightsError(f"'{found.source.download_name}' for '{found.name}' is corrupt: member {bad} fails its CRC check.")
    if found.source.member not in members:
        raise WeightsError(
            f"The archive {found.source.url} has no member '{found.source.member}' (it has: {', '.join(members[:8])})."
        )
    return "zip CRC"


def _download_url(found: WeightEntry, dst: Path, progress: bool, check: Callable[[WeightEntry, Path], str]) -> None:
    """Download to a temp file beside ``dst``, check it, then rename: an interrupted download leaves nothing."""
    tmp = _temp_beside(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(found.source.url, str(tmp), progress=progress)
        try:
            check(found, tmp)
        except WeightsError as exc:
            raise WeightsError(f"{exc} The download from {found.source.url} was discarded. {how_to_provide(found)}") from None
        os.replace(tmp, dst)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every download failure becomes one WeightsError sentence
        raise _url_error(found, exc, dst.parent) from None
    finally:
        tmp.unlink(missing_ok=True)


def _extract_member(found: WeightEntry, archive: Path, dst: Path) -> None:
    tmp = _temp_beside(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as zf, zf.open(found.source.member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        if found.sha256:
            check_file(found, tmp)
        os.replace(tmp, dst)
    except WeightsError as exc:
        raise WeightsError(f"{exc} {how_to_provide(found)}") from None
    except (zipfile.BadZipFile, KeyError) as exc:
        archive.unlink(missing_ok=True)
        raise WeightsError(
            f"Could not extract '{found.source.member}' for '{found.name}' from {archive} ({exc}); the archive was "
            f"removed. {how_to_provide(found)}"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full_error(found, dst.parent) from None
        raise WeightsError(f"Could not extract '{found.source.member}' for '{found.name}': {exc}.") from None
    finally:
        tmp.unlink(missing_ok=True)


def _offline_error(found: WeightEntry, looked: Path) -> WeightsError:
    return WeightsError(
        f"'{found.source.file_name}' for '{found.name}' ({found.source.describe()}) is not in the local cache "
        f"({looked}) and offline mode is on (HF_HUB_OFFLINE=1). {how_to_provide(found)}"
    )


def _fetch_url(found: WeightEntry, progress: bool, force: bool) -> Path:
    src = found.source
    target = url_target(src)
    if target.is_file() and not force:
        return target
    if offline():
        raise _offline_error(found, target)
    if src.member:
        archive = archive_path(src)
        if force or not archive.is_file():
            _download_url(found, archive, progress, _check_archive)
        _extract_member(found, archive, target)
    else:
        _download_url(found, target, progress, check_file)
    _VERIFIED.add(_stamp(target))
    return target


def fetch(name: str | WeightEntry, progress: bool = True, force: bool = False) -> Path:
    """The registry's own file for ``name`` in the local cache, downloaded first if needed (overrides ignored)."""
    found = entry(name)
    path = _fetch_hub(found, progress, force) if found.source.is_hub else _fetch_url(found, progress, force)
    _verify_once(found, path)
    return path


def cached_file(name: str | WeightEntry) -> Path | None:
    """The registry's file if it is already in the local cache (no network)."""
    found = entry(name)
    src = found.source
    if not src.is_hub:
        target = url_target(src)
        return target if target.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(src.repo_id, src.filename, **_hub_kwargs(src))
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


# ---------------------------------------------------------------------------------------------
# Format adapters owned here (Johnson and AdaIN adapters live in nst.johnson / nst.adain)


def from_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``*.tv_in1k`` -> torchvision keys: feature keys are identical, timm's heads are dropped.

    timm's files may omit BatchNorm's ``num_batches_tracked`` counters, which torchvision modules have;
    they only matter when training with ``momentum=None``, so missing ones are added as 0.
    """
    out = {k: v for k, v in state.items() if not k.startswith(("pre_logits.", "head."))}
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


ADAPTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
    "timm": from_timm,
}


def _prepared(found: WeightEntry, path: Path) -> Path:
    """A file in the layout the project's loader expects: converted once (safetensors) when the format needs it."""
    adapter = ADAPTERS.get(found.format)
    if adapter is None:
        return path
    out = torch_checkpoints_dir() / "nst-converted" / f"{found.name}.safetensors"
    if out.is_file() and out.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return out
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in adapter(read_state_dict(path)).items()}
    tmp = _temp_beside(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp), metadata={"format": "torchvision", "converted_from": found.format})
        os.replace(tmp, out)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full_error(found, out.parent) from None
        raise WeightsError(f"Could not write the converted weights for '{found.name}' to {out}: {exc}.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def resolve(name: str | WeightEntry, progress: bool = True) -> Path:
    """A local file for ``name``: the user's override if any, else the cached (or freshly downloaded) file."""
    found = entry(name)
    path = local_override(found) or fetch(found, progress=progress)
    return _prepared(found, path)


def download(name: str | WeightEntry, progress: bool = True, force: bool = False) -> Path:
    """Put the registry's file for ``name`` into the local cache (``weights download``); overrides are ignored."""
    found = entry(name)
    return _prepared(found, fetch(found, progress=progress, force=force))


# ---------------------------------------------------------------------------------------------
# Status and verification (the CLI's list / verify)


@dataclass(frozen=True)
class WeightStatus:
    entry: WeightEntry
    path: Path | None
    origin: str  # "override", "cache" or "" (not available locally)

    @property
    def size(self) -> int | None:
        return self.path.stat().st_size if self.path is not None else None


def status(name: str | WeightEntry) -> WeightStatus:
    """Whether ``name`` is available without the network, and from where."""
    found = entry(name)
    override = local_override(found)
    if override is not None:
        return WeightStatus(found, override, "override")
    cached = cached_file(found)
    return WeightStatus(found, cached, "cache" if cached else "")


@dataclass(frozen=True)
class VerifyResult:
    name: str
    ok: bool | None  # None: nothing local to check
    message: str


def verify(name: str | WeightEntry) -> VerifyResult:
    """Re-check the local file of ``name`` (sha256 / hash prefix / loads as a state dict); never downloads."""
    state = status(name)
    found = state.entry
    if state.path is None:
        return VerifyResult(found.name, None, "not cached")
    try:
        how = check_file(found, state.path) if state.origin == "cache" else _check_override(state.path)
    except WeightsError as exc:
        return VerifyResult(found.name, False, str(exc))
    return VerifyResult(found.name, True, f"{how}; {state.origin} file {state.path}")


def _check_override(path: Path) -> str:
    read_state_dict(path)
    return "your file loads as a state dict"


# ---------------------------------------------------------------------------------------------
# Loading modules, cached in memory with a bound


def _load_backbone(found: WeightEntry, path: Path) -> nn.Module:
    from nst.features import build_backbone

    return build_backbone(found.arch, weights=path)


def _load_johnson(found: WeightEntry, path: Path) -> nn.Module:
    from nst.johnson import load_johnson

    return load_johnson(path, found.format)


def _load_adain(found: WeightEntry, path: Path) -> nn.Module:
    if found.arch == "adain_decoder":
        from nst.adain import load_decoder

        return load_decoder(path)
    return _load_backbone(found, path)


LOADERS: dict[str, Callable[[WeightEntry, Path], nn.Module]] = {
    "backbone": _load_backbone,
    "finetuned": _load_backbone,
    "johnson": _load_johnson,
    "adain": _load_adain,
}

_MODELS: OrderedDict[tuple, nn.Module] = OrderedDict()
_MODELS_LOCK = threading.RLock()
_cache_size = int(os.environ.get("NST_MODEL_CACHE", DEFAULT_CACHE_SIZE))


def set_cache_size(size: int) -> None:
    """How many loaded modules stay resident (least recently used ones are dropped first)."""
    global _cache_size
    if size < 1:
        raise WeightsError("The model cache must hold at least one module.")
    with _MODELS_LOCK:
        _cache_size = size
        while len(_MODELS) > _cache_size:
            _MODELS.popitem(last=False)


def clear_cache() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()


def resident() -> list[str]:
    """Names of the modules currently held in memory, least recently used first."""
    with _MODELS_LOCK:
        return [key[0] for key in _MODELS]


def load(name: str | WeightEntry, device: str | torch.device = "cpu") -> nn.Module:
    """A ready module for ``name`` (eval mode, frozen), built once per file and device and kept in memory.

    At most ``set_cache_size`` modules (default 4, env ``NST_MODEL_CACHE``) stay resident; the least
    recently used goes first. A changed file (override replaced, new download) is loaded afresh.
    """
    from nst.runtime import pick_device

    found = entry(name)
    device = pick_device(device)
    path = resolve(found)
    stat = path.stat()
    key = (found.name, str(device), str(path), stat.st_mtime_ns, stat.st_size)
    with _MODELS_LOCK:
        module = _MODELS.get(key)
        if module is not None:
            _MODELS.move_to_end(key)
            return module
        module = LOADERS[found.kind](found, path).to(device).eval().requires_grad_(False)
        _MODELS[key] = module
        while len(_MODELS) > _cache_size:
            _MODELS.popitem(last=False)
        return module
