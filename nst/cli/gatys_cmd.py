"""``python -m nst gatys`` and ``python -m nst layers``."""

from __future__ import annotations

import argparse
from typing import Any

from nst.cli.common import add_output_options, comma_floats, comma_names, progress_bar, write_result
from nst.errors import ConfigError
from nst.features import BACKBONES, build_backbone
from nst.gatys import INITS, OPTIMIZERS, PRESETS, GatysConfig, preset, stylize
from nst.precision import PRECISIONS




def register(subparsers: argparse._SubParsersAction) -> None:
    gatys = subparsers.add_parser(
        "gatys",
        help="optimise an image (Gatys et al.) over any backbone",
        description="Gatys style transfer. Options left out come from --preset (default: tutorial).",
    )
    gatys.add_argument("content", help="content image")
    gatys.add_argument("styles", nargs="+", help="one or more style images")
    add_output_options(gatys)
    gatys.add_argument("--preset", default="tutorial", choices=sorted(PRESETS))
    gatys.add_argument("--backbone", choices=sorted(BACKBONES))
    gatys.add_argument("--content-layers", type=comma_names, help="comma-separated, e.g. conv_4 or relu4_2")
    gatys.add_argument("--style-layers", type=comma_names, help="comma-separated, e.g. conv_1,conv_2,conv_3")
    gatys.add_argument("--style-layer-weights", type=comma_floats, help="one weight per style layer")
    gatys.add_argument("--style-weights", type=comma_floats, help="one weight per style image (blend)")
    gatys.add_argument("--content-weight", type=float)
    gatys.add_argument("--style-weight", type=float)
    gatys.add_argument("--tv-weight", type=float)
    gatys.add_argument("--optimizer", choices=OPTIMIZERS)
    gatys.add_argument("--lr", type=float, help="learning rate (defaults: lbfgs 1, adam/adamw 0.02)")
    gatys.add_argument("--steps", type=int, help="loss evaluations ('runs', as the tutorial counts them)")
    gatys.add_argument("--lbfgs-history", type=int,
                       help="curvature pairs L-BFGS keeps (default 100, as the tutorial); fewer make each "
                            "update cheaper, which matters on light backbones")
    gatys.add_argument("--init", choices=INITS)
    gatys.add_argument("--noise-ratio", type=float, help="0..1, for --init blend")
    gatys.add_argument("--size", type=int, help="longest side of the output in pixels (default 512)")
    gatys.add_argument("--style-scale", type=float, help="style image size relative to the output")
    gatys.add_argument("--seed", type=int)
    gatys.add_argument("--preserve-color", action="store_true", default=None, help="keep the content's colours")
    gatys.add_argument("--gram-precision", choices=PRECISIONS,
                       help="gram products: exact float32, or fast bf16/TF32 with float32 sums (default auto: "
                            "fast where the CPU or GPU has the units)")
    weights = gatys.add_mutually_exclusive_group()
    weights.add_argument("--backbone-weights", "--weights", metavar="PATH",
                         help="torchvision-format state dict (or registry name) instead of the download")
    weights.add_argument("--random-weights", action="store_true",
                         help="seeded random backbone weights (testing only: the result is not a painting)")
    gatys.add_argument("--history", metavar="CSV", help="write the per-step losses to this CSV file")
    gatys.add_argument("--no-reference", action="store_true",
                       help="skip the reference VGG-19 content/style losses in the metrics")
    gatys.set_defaults(handler=run_gatys)

    layers = subparsers.add_parser("layers", help="list the layer names a backbone accepts")
    layers.add_argument("backbone", choices=sorted(BACKBONES))
    layers.set_defaults(handler=run_layers)


FIELDS = ("backbone", "content_layers", "style_layers", "style_layer_weights", "style_weights", "content_weight",
          "style_weight", "tv_weight", "optimizer", "lr", "steps", "init", "noise_ratio", "size", "style_scale",
          "seed", "device", "preserve_color", "gram_precision", "lbfgs_history")


def config_from_args(args: argparse.Namespace) -> GatysConfig:
    """The preset with every option the user gave applied on top."""
    overrides: dict[str, Any] = {f: getattr(args, f) for f in FIELDS if getattr(args, f, None) is not None}
    if args.random_weights:
        overrides["weights"] = "random"
    elif args.backbone_weights:
        overrides["weights"] = args.backbone_weights
    if "backbone" in overrides and overrides["backbone"] != PRESETS[args.preset]["backbone"]:
        missing = [f for f in ("content_layers", "style_layers") if f not in overrides]
        if missing:
            raise ConfigError(
                f"--backbone {overrides['backbone']} differs from the preset's; give --content-layers and "
                f"--style-layers too (see: python -m nst layers {overrides['backbone']})."
            )
    return preset(args.preset, **overrides)


def run_gatys(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    with progress_bar(config.steps, f"gatys {config.backbone}", args.quiet) as callback:
        result = stylize(args.content, args.styles, config.replace(progress_every=1), callback=callback,
                         scorer=None if args.no_reference else True)
    write_result(result, args.output, args.history)
    return 0


def run_layers(args: argparse.Namespace) -> int:
    net = build_backbone(args.backbone, "random")
    channels = net.channels()
    aliases: dict[int, list[str]] = {}
    for name in net.layer_names:
        aliases.setdefault(net.index[name], []).append(name)
    print(f"{'layer':<12} {'also':<12} channels")
    for name in net.primary_names:
        others = [a for a in aliases[net.index[name]] if a != name and a not in net.primary_names]
        print(f"{name:<12} {','.join(others):<12} {channels[name]}")
    return 0
