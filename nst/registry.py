"""The weights registry: ``models/registry.toml`` (or ``NST_REGISTRY``) parsed into entries.

Data, not code: every pretrained file the project uses is one ``[weights.NAME]`` table with its kind,
format, source (Hub repo or URL), optional sha256, license and description. ``nst.weights`` turns an
entry into a local file and a loaded module.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any, Mapping
from urllib.parse import urlparse

from nst.errors import WeightsError

KINDS = ("backbone", "johnson", "adain", "finetuned")
FORMATS = ("torchvision", "timm", "safetensors", "pytorch-examples", "maze", "adain-sequential")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGISTRY = ROOT / "models" / "registry.toml"


@dataclass(frozen=True)
class Source:
    """Where a weight file comes from: a Hub repo file, or a URL (optionally one member of a zip)."""

    url: str = ""
    filename: str = ""
    member: str = ""
    repo_id: str = ""
    repo_type: str = "model"
    revision: str = "main"

    @property
    def is_hub(self) -> bool:
        return bool(self.repo_id)

    @property
    def download_name(self) -> str:
        """Name of the downloaded file: the Hub path, or the URL's file name unless ``filename`` is given."""
        if self.is_hub or self.filename:
            return self.filename
        return PurePosixPath(urlparse(self.url).path).name

    @property
    def file_name(self) -> str:
        """Base name of the weight file itself (the zip member for archive sources)."""
        return PurePosixPath(self.member or self.download_name).name

    def describe(self) -> str:
        if self.is_hub:
            return f"hf://{self.repo_id}/{self.filename}@{self.revision}"
        return f"{self.url} [{self.member}]" if self.member else self.url


@dataclass(frozen=True)
class WeightEntry:
    """One registry entry; also readable like a dict (``entry["kind"]``, ``entry.get("style_image")``)."""

    name: str
    kind: str
    format: str
    source: Source
    license: str = ""
    description: str = ""
    title: str = ""
    arch: str = ""
    sha256: str = ""
    style_image: str = ""
    hint: str = ""

    def __getitem__(self, key: str) -> Any:
        if key not in _ENTRY_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _ENTRY_FIELDS else default

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def style_path(self) -> Path | None:
        """The style image as an absolute path (None when the registry lists none)."""
        if not self.style_image:
            return None
        path = Path(self.style_image)
        return path if path.is_absolute() else ROOT / path


_ENTRY_FIELDS = {f.name for f in fields(WeightEntry)}
_SOURCE_FIELDS = {f.name for f in fields(Source)}


def registry_path() -> Path:
    """The registry file in use: ``NST_REGISTRY`` when set, else ``models/registry.toml``."""
    return Path(os.environ.get("NST_REGISTRY") or DEFAULT_REGISTRY)


def _parse_entry(name: str, table: Mapping[str, Any], where: Path) -> WeightEntry:
    def bad(problem: str) -> WeightsError:
        return WeightsError(f"Registry {where}: entry '{name}' {problem}.")

    unknown = set(table) - _ENTRY_FIELDS
    if unknown:
        raise bad(f"has unknown field(s) {', '.join(sorted(unknown))}")
    source = table.get("source")
    if not isinstance(source, Mapping):
        raise bad("needs a source table, e.g. source = { url = \"https://...\" }")
    if set(source) - _SOURCE_FIELDS:
        raise bad(f"has unknown source field(s) {', '.join(sorted(set(source) - _SOURCE_FIELDS))}")
    src = Source(**{k: str(v) for k, v in source.items()})
    if bool(src.url) == bool(src.repo_id):
        raise bad("needs exactly one of source.url or source.repo_id")
    if src.is_hub and not src.filename:
        raise bad("needs source.filename (the file in the Hub repo)")
    if src.url and not src.url.startswith(("https://", "http://", "file://")):
        raise bad(f"has a source.url that is not a URL: {src.url!r}")
    if src.member and not src.file_name:
        raise bad("has an empty archive member")
    values = {k: str(v) for k, v in table.items() if k != "source"}
    entry = WeightEntry(name=name, source=src, **{"kind": "", "format": "", **values})
    if entry.kind not in KINDS:
        raise bad(f"has kind {entry.kind!r}; use one of {', '.join(KINDS)}")
    if entry.format not in FORMATS:
        raise bad(f"has format {entry.format!r}; use one of {', '.join(FORMATS)}")
    if entry.sha256 and not re.fullmatch(r"[0-9a-f]{64}", entry.sha256.lower()):
        raise bad("has a sha256 that is not 64 hex digits")
    if entry.kind in ("backbone", "finetuned") and not entry.arch:
        raise bad("needs arch (the nst.features backbone name)")
    return entry


@functools.lru_cache(maxsize=8)
def _load_registry(path: str, stamp: int) -> dict[str, WeightEntry]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise WeightsError(f"The weights registry {path} does not exist (set NST_REGISTRY or restore models/).") from None
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"The weights registry {path} is not valid TOML: {exc}.") from None
    tables = data.get("weights")
    if not isinstance(tables, Mapping):
        raise WeightsError(f"The weights registry {path} has no [weights.NAME] tables.")
    return {name: _parse_entry(name, table, Path(path)) for name, table in tables.items()}


def _registry() -> dict[str, WeightEntry]:
    path = registry_path()
    stamp = path.stat().st_mtime_ns if path.is_file() else 0
    return _load_registry(str(path), stamp)


def entries(kind: str | None = None) -> list[WeightEntry]:
    """All registry entries in file order, or only those of one kind."""
    return [e for e in _registry().values() if kind is None or e.kind == kind]


def names(kind: str | None = None) -> list[str]:
    return [e.name for e in entries(kind)]


def entry(name: str | WeightEntry) -> WeightEntry:
    """The registry entry called ``name``; unknown names raise WeightsError listing the known ones."""
    if isinstance(name, WeightEntry):
        return name
    registry = _registry()
    try:
        return registry[name]
    except KeyError:
        raise WeightsError(
            f"'{name}' is not in the weights registry ({registry_path()}). Known names: {', '.join(registry)}."
        ) from None
