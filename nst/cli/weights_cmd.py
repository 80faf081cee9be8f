"""``python -m nst weights list|download|verify|push``: the weights registry from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nst import publish, weights
from nst.errors import ConfigError, NSTError, WeightsError


def _size(num: int | None) -> str:
    if num is None:
        return "-"
    return f"{num / 1e6:.1f} MB" if num >= 1e5 else f"{num / 1e3:.1f} kB"


def _list(args: argparse.Namespace) -> int:
    rows = []
    for found in weights.entries(args.kind):
        state = weights.status(found)
        cached = {"override": "override", "cache": "yes"}.get(state.origin, "no")
        rows.append((found.name, found.kind, found.source.describe(), cached, _size(state.size)))
    header = ("name", "kind", "source", "cached", "size")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(widths[i]) if i < 4 else str(cell) for i, cell in enumerate(row)))
    return 0


def _download(args: argparse.Namespace) -> int:
    if args.all == bool(args.names):
        raise ConfigError("Give weight name(s) to download, or --all (see `python -m nst weights list`).")
    targets = [e.name for e in weights.entries(args.kind)] if args.all else args.names
    for name in targets:
        weights.entry(name)  # unknown names fail before anything is downloaded
    failures = []
    for i, name in enumerate(targets, 1):
        print(f"[{i}/{len(targets)}] {name}", file=sys.stderr)
        try:
            path = weights.download(name, progress=not args.quiet, force=args.force)
        except NSTError as exc:
            if len(targets) == 1:
                raise
            failures.append(name)
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"{name}: {path}")
    if failures:
        print(f"{len(failures)} of {len(targets)} failed: {', '.join(failures)}", file=sys.stderr)
        return WeightsError.exit_code
    return 0


def _verify(args: argparse.Namespace) -> int:
    targets = args.names or [e.name for e in weights.entries()]
    results = [weights.verify(name) for name in targets]
    for result in results:
        label = {True: "ok", False: "FAILED", None: "not cached"}[result.ok]
        print(f"{result.name}: {label}" + (f" - {result.message}" if result.ok is not None else ""))
    if all(r.ok is None for r in results):
        print("nothing cached to verify; run `python -m nst weights download NAME` first", file=sys.stderr)
    return WeightsError.exit_code if any(r.ok is False for r in results) else 0


def _params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, got '{item}'.")
        params[key.strip()] = value.strip()
    return params


def _push(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    name = args.name or args.repo.split("/")[-1]
    card = publish.model_card(
        name=name,
        kind=args.kind,
        license=args.license,
        base_model=args.base_model,
        tags=args.tag,
        params=_params(args.param),
        description=args.description,
        files=[p.name for p in paths],
        repo_id=args.repo,
    )
    if args.dry_run:
        print(card)
        return 0
    url = publish.push(args.repo, paths, card, token=args.token, private=args.private)
    print(f"published: {url}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="list, download, verify and publish pretrained weights")
    commands = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    listing = commands.add_parser("list", help="every registry entry: kind, source, cached or not, size")
    listing.add_argument("--kind", choices=weights.KINDS, help="only this kind")
    listing.set_defaults(handler=_list)

    fetch = commands.add_parser("download", help="download weights into the local cache (e.g. at Space build time)")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="registry names (see `weights list`)")
    fetch.add_argument("--all", action="store_true", help="every entry (combine with --kind to narrow)")
    fetch.add_argument("--kind", choices=weights.KINDS, help="with --all: only this kind")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_download)

    check = commands.add_parser("verify", help="re-hash cached files (sha256, or check they load as state dicts)")
    check.add_argument("names", nargs="*", metavar="NAME", help="registry names (default: all)")
    check.set_defaults(handler=_verify)

    push = commands.add_parser("push", help="publish safetensors + a generated model card to the Hugging Face Hub")
    push.add_argument("paths", nargs="+", metavar="PATH", help=".safetensors file(s) to upload")
    push.add_argument("--repo", required=True, help="USER/REPO or ORG/REPO (created if missing)")
    push.add_argument("--name", help="model name in the card (default: the repo name)")
    push.add_argument("--kind", default="finetuned", choices=weights.KINDS, help="default: finetuned")
    push.add_argument("--license", default="mit", help="license id for the card (default: mit)")
    push.add_argument("--base-model", help="Hub model id (ORG/REPO) it was trained from")
    push.add_argument("--description", default="", help="one paragraph for the card")
    push.add_argument("--tag", action="append", default=[], help="extra card tag (repeatable)")
    push.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="training parameter (repeatable)")
    push.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or the saved login)")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--dry-run", action="store_true", help="print the model card and upload nothing")
    push.set_defaults(handler=_push)
