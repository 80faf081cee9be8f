"""``python -m nst johnson``, ``johnson-onnx``, ``train-johnson`` and ``train-multistyle``."""

from __future__ import annotations

import argparse
from pathlib import Path

from nst.cli.common import add_output_options, comma_floats, progress_bar, write_result
from nst.errors import ConfigError

FORMAT_CHOICES = ("pytorch-examples", "maze", "autoart", "autoart-multistyle")



def _add_network_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--style", help="registry name of a published style (python -m nst weights list)")
    which.add_argument("--checkpoint", metavar="PATH", help="a local Johnson network file (.pth or .safetensors)")
    parser.add_argument("--weights", metavar="PATH",
                        help="your own file for the --style entry (or, alone, the same as --checkpoint)")
    parser.add_argument("--format", choices=FORMAT_CHOICES, help="checkpoint format (default: detected from the keys)")


def network_spec(args: argparse.Namespace) -> str:
    """The registry name or checkpoint path the options name (``--weights`` overrides a registry file)."""
    if args.style and args.weights:
        from nst import weights

        weights.set_override(args.style, args.weights)
        return args.style
    spec = args.checkpoint or args.style or args.weights
    if not spec:
        raise ConfigError("Name a network: --style NAME (python -m nst weights list) or --checkpoint PATH.")
    return spec


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "johnson",
        help="stylise with a fixed-style feed-forward network (Johnson et al.)",
        description="One-pass style transfer with a pretrained style network.",
    )
    run.add_argument("content", help="content image")
    _add_network_options(run)
    add_output_options(run)
    run.add_argument("--size", type=int, default=512, help="longest side of the output (default 512; 0 keeps)")
    run.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    run.add_argument("--engine", choices=("auto", "torch", "onnx"), default="auto",
                     help="auto (default: onnxruntime on CPU, torch on GPU), torch, or onnx")
    run.add_argument("--style-image", metavar="IMG", help="style picture for the SSIM metric (default: the registry's)")
    run.add_argument("--style-weights", type=comma_floats, help="multi-style networks: blend weights, e.g. 0.7,0.3")
    run.add_argument("--no-reference", action="store_true", help="skip the reference VGG-19 losses in the metrics")
    run.set_defaults(handler=run_johnson)

    export = subparsers.add_parser("johnson-onnx", help="export a Johnson network to ONNX (dynamic height/width)")
    _add_network_options(export)
    export.add_argument("-o", "--output", default="johnson.onnx", help="the .onnx file to write")
    export.set_defaults(handler=run_export)

    for command, multi in (("train-johnson", False), ("train-multistyle", True)):
        train = subparsers.add_parser(
            command,
            help=("train one network for several styles (conditional instance norm)" if multi
                  else "train a Johnson network for one style"),
            description="Paper loss on VGG-16 (content relu2_2; style Gram on relu1_2, relu2_2, relu3_3, relu4_3).",
        )
        _add_train_options(train, multi)
        train.set_defaults(handler=run_train, multistyle=multi)


def _add_train_options(train: argparse.ArgumentParser, multi: bool) -> None:
    train.add_argument("--content-dir", required=True, help="folder of content photos (e.g. COCO)")
    train.add_argument("--style", required=True, nargs="+" if multi else None, metavar="STYLE",
                       help="style images, one per style" if multi else "the style image")
    train.add_argument("--output-dir", default="runs/multistyle" if multi else "runs/johnson",
                       help="where checkpoints, the loss CSV, the model and its card go")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="passes over the photos (default 2)")
    length.add_argument("--steps", type=int, help="number of optimisation steps instead of epochs")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--content-weight", type=float, default=1e5)
    train.add_argument("--style-weight", type=float, default=1e10)
    train.add_argument("--tv-weight", type=float, default=0.0)
    train.add_argument("--resize", type=int, default=256, help="shorter side before cropping (default 256)")
    train.add_argument("--crop", type=int, default=256, help="random square crop size (default 256)")
    train.add_argument("--style-size", type=int, default=512, help="longest side of the style image (0 keeps)")
    train.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps")
    train.add_argument("--log-every", type=int, default=10)
    weights = train.add_mutually_exclusive_group()
    weights.add_argument("--backbone-weights", metavar="PATH",
                         help="VGG-16 state dict for the loss (default: registry vgg16-imagenet)")
    weights.add_argument("--random-weights", action="store_true",
                         help="seeded random VGG-16 (smoke tests only: the network learns nothing useful)")
    train.add_argument("--upsample", choices=("nearest", "transpose"), default="nearest")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--no-tensorboard", action="store_true")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    train.add_argument("--push", metavar="REPO_ID", help="upload the model and its card to this Hub repo when done")
    train.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    train.add_argument("--name", help="model name in the card (default: johnson-<style> / multistyle)")
    train.add_argument("--license", default="other", help="license of the trained weights (default: other)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")


def run_johnson(args: argparse.Namespace) -> int:
    from nst.johnson import stylize

    if args.size is not None and args.size < 0:
        raise ConfigError(f"--size must be 0 (keep) or a positive number of pixels, not {args.size}.")
    result = stylize(
        args.content,
        network_spec(args),
        size=args.size or None,
        preserve_color=args.preserve_color,
        device=args.device,
        engine=args.engine,
        style_image=args.style_image,
        format=args.format,
        style_weights=args.style_weights,
        scorer=None if args.no_reference else True,
    )
    write_result(result, args.output)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from nst.johnson import cached_network
    import shutil

    from nst.onnx_engine import exported_model

    spec = network_spec(args)
    if Path(spec).is_file():
        net = cached_network(spec, args.format)
    else:
        from nst import weights

        entry = weights.entry(spec)
        if entry.kind != "johnson":
            raise ConfigError(f"'{spec}' is not a Johnson style network in the registry.")
        net = cached_network(weights.resolve(spec), args.format or entry.format)
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported_model(net), path)
    order = net.channel_order.upper()
    print(f"saved: {path}")
    print(f"input 'x': 1x3xHxW float32, {order} 0-255, H and W multiples of 4; output 'y' in the same units")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from nst.johnson_train import JohnsonTrainConfig, total_steps, train_johnson
    from nst.training import ImageFolder

    styles = list(args.style) if args.multistyle else [args.style]
    default_name = "multistyle" if args.multistyle else f"johnson-{Path(styles[0]).stem}"
    config = JohnsonTrainConfig(
        content_dir=args.content_dir,
        styles=styles,
        output_dir=args.output_dir,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        resize=args.resize,
        crop=args.crop,
        style_size=args.style_size,
        save_every=args.save_every,
        log_every=args.log_every,
        backbone_weights="random" if args.random_weights else (args.backbone_weights or "pretrained"),
        upsample=args.upsample,
        seed=args.seed,
        device=args.device,
        tensorboard=not args.no_tensorboard,
        resume=args.resume,
        push_repo=args.push,
        name=args.name or default_name,
        license=args.license,
        token=args.token,
    )
    config.validate()
    if args.multistyle:
        from nst.multistyle import train_multistyle as train
    else:
        train = train_johnson
    photos = ImageFolder(config.content_dir, resize=config.resize, crop=config.crop)
    with progress_bar(total_steps(config, len(photos)), args.output_dir, args.quiet) as bar:
        result = train(config, progress=bar)
    print(f"steps: {result.start_step} -> {result.steps} in {result.seconds:.1f} s")
    if result.history:
        last = result.history[-1]
        print("final losses: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step"))
    print(f"model: {result.model_path}")
    print(f"model card: {result.card_path}")
    print(f"loss history: {result.loss_csv}")
    print(f"last checkpoint: {result.checkpoint}")
    if result.url:
        print(f"published: {result.url}")
    if config.random_backbone:
        print("note: trained against a random-weight VGG-16 (smoke test); the network does not stylise usefully")
    return 0

