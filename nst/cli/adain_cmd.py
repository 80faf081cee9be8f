"""``python -m nst adain``, ``python -m nst score`` and ``python -m nst train-adain``."""

from __future__ import annotations

import argparse
import json
import math

from nst.cli.common import add_output_options, comma_floats, progress_bar, write_result
from nst.images import load_image, save_image



def _models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", metavar="PATH",
                        help="local vgg_normalised.pth (or safetensors) instead of the registry's adain-vgg-encoder")
    parser.add_argument("--decoder", metavar="PATH",
                        help="local decoder.pth (or safetensors) instead of the registry's adain-decoder")


def register(subparsers: argparse._SubParsersAction) -> None:
    adain = subparsers.add_parser(
        "adain",
        help="arbitrary style transfer in one pass (AdaIN)",
        description="AdaIN style transfer (Huang & Belongie 2017): any style image(s), one network pass.",
    )
    adain.add_argument("content", help="content image")
    adain.add_argument("styles", nargs="+", help="one or more style images")
    add_output_options(adain)
    adain.add_argument("--alpha", type=float, default=1.0, help="style strength 0..1 (default 1)")
    adain.add_argument("--style-weights", type=comma_floats, help="interpolation weights, one per style, e.g. 0.7,0.3")
    adain.add_argument("--preserve-color", action="store_true", help="recolour the style(s) with the content's colours")
    adain.add_argument("--mask", metavar="MASK",
                       help="mask image: first style where white, second style (or the content) where black")
    adain.add_argument("--size", type=int, default=512, help="longest side of the output (default 512; 0 keeps)")
    adain.add_argument("--style-size", type=int, help="longest side of the style image(s) (default: --size)")
    adain.add_argument("--no-reference", action="store_true",
                       help="skip the reference VGG-19 content/style losses in the metrics")
    _models(adain)
    adain.set_defaults(handler=run_adain)

    score = subparsers.add_parser(
        "score",
        help="score any output against the AdaIN output of the same pair (RMSE/PSNR/SSIM)",
        description="Pseudo ground truth: compare OUTPUT with the AdaIN stylisation of CONTENT and STYLE "
        "(or with --reference).",
    )
    score.add_argument("output", help="the image to score (any method's output)")
    score.add_argument("content", help="content image of the pair")
    score.add_argument("style", help="style image of the pair")
    score.add_argument("--reference", metavar="REF", help="compare against this image instead of running AdaIN")
    score.add_argument("--save-reference", metavar="PATH", help="also save the AdaIN reference image here")
    score.add_argument("--alpha", type=float, default=1.0, help="alpha of the AdaIN reference (default 1)")
    score.add_argument("--device", default="auto")
    score.add_argument("--json", action="store_true", help="print the scores as JSON")
    _models(score)
    score.set_defaults(handler=run_score)

    train = subparsers.add_parser(
        "train-adain",
        help="train an AdaIN decoder on content and style folders",
        description="Train the AdaIN decoder (content + style weight x mean/std style loss, Adam with "
        "inverse-time decay). Writes checkpoints, loss.csv, decoder.safetensors and a model card.",
    )
    train.add_argument("--content-dir", required=True, help="folder of content photos (e.g. COCO)")
    train.add_argument("--style-dir", required=True, help="folder of paintings (e.g. WikiArt)")
    train.add_argument("--output-dir", default="runs/adain", help="where checkpoints and results go")
    train.add_argument("--steps", type=int, default=160_000)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--lr-decay", type=float, default=5e-5, help="lr / (1 + decay * step)")
    train.add_argument("--style-weight", type=float, default=10.0)
    train.add_argument("--content-weight", type=float, default=1.0)
    train.add_argument("--resize", type=int, default=512, help="shorter side before cropping")
    train.add_argument("--crop", type=int, default=256, help="random square crop size")
    train.add_argument("--save-every", type=int, default=10_000)
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--encoder", metavar="PATH", help="encoder weights (default: registry adain-vgg-encoder)")
    train.add_argument("--random-encoder", action="store_true",
                       help="seeded random encoder (smoke tests only: the decoder will not stylise)")
    train.add_argument("--init-decoder", metavar="PATH", help="start from this decoder instead of random")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--no-tensorboard", action="store_true")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    train.add_argument("--push", metavar="REPO_ID", help="upload decoder + model card to this Hub repo when done")
    train.add_argument("--token", help="Hugging Face token for --push (default: the logged-in one)")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(handler=run_train)


def run_adain(args: argparse.Namespace) -> int:
    from nst.adain import stylize

    result = stylize(
        args.content,
        args.styles,
        weights=args.style_weights,
        alpha=args.alpha,
        preserve_color=args.preserve_color,
        mask=args.mask,
        size=args.size or None,
        style_size=args.style_size,
        device=args.device,
        encoder=args.encoder,
        decoder=args.decoder,
        scorer=None if args.no_reference else True,
    )
    write_result(result, args.output)
    return 0


def _print_scores(scores: dict[str, float], as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: (v if math.isfinite(v) else str(v)) for k, v in scores.items()}))
        return
    print(f"RMSE: {scores['rmse']:.5f}")
    print(f"PSNR: {scores['psnr']:.3f} dB")
    print(f"SSIM: {scores['ssim']:.4f}")


def run_score(args: argparse.Namespace) -> int:
    from nst.adain import adain_reference
    from nst.metrics import compare

    output = load_image(args.output, what="image to score")
    if args.reference:
        reference = load_image(args.reference, what="reference image")
    else:
        content = load_image(args.content, what="content image")
        reference = adain_reference(
            content, args.style, max(output.size), args.alpha, args.device, args.encoder, args.decoder
        )
    if args.save_reference:
        print(f"reference saved: {save_image(reference, args.save_reference)}")
    _print_scores(compare(output, reference), args.json)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from nst.adain_train import AdainTrainConfig, train_decoder

    config = AdainTrainConfig(
        content_dir=args.content_dir,
        style_dir=args.style_dir,
        output_dir=args.output_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        resize=args.resize,
        crop=args.crop,
        save_every=args.save_every,
        log_every=args.log_every,
        encoder=args.encoder or "adain-vgg-encoder",
        random_encoder=args.random_encoder,
        init_decoder=args.init_decoder,
        seed=args.seed,
        device=args.device,
        tensorboard=not args.no_tensorboard,
        resume=args.resume,
        push_repo=args.push,
        token=args.token,
    )
    with progress_bar(config.steps, "train-adain", args.quiet) as update:
        result = train_decoder(config, progress=update)
    if result.start_step:
        print(f"resumed at step {result.start_step}")
    print(f"steps: {result.steps} in {result.seconds:.1f}s")
    if result.history:
        last = result.history[-1]
        print(f"last losses: content {last['content']:.5g}, style {last['style']:.5g}, total {last['total']:.5g}")
    print(f"decoder: {result.model_path}")
    print(f"model card: {result.card_path}")
    print(f"loss history: {result.loss_csv}")
    if result.url:
        print(f"pushed: {result.url}")
    return 0
