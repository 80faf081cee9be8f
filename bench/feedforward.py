"""Feed-forward stylisation speed on the CPU: milliseconds per image for each execution path.

    python bench/feedforward.py                 # 512x512, every Johnson path, a table per section
    python bench/feedforward.py --size 256 --rounds 5 --compile

Each section is a function ``(args) -> (title, rows[, summary lines...])`` named in ``SECTIONS``
as ``"module:function"``; adding a method's benchmark is one more line there. Paths are timed in
interleaved rounds (each round runs every path once) so background load hits all of them alike;
the table shows the best and the median round. Weights are seeded random (speed does not depend on their values) unless
``--checkpoint`` names a real network.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import subprocess
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst.runtime import tune_allocator  # noqa: E402

SECTIONS = [
    "bench.feedforward:johnson_section",
    "bench.adain_bench:adain_section",
]
"""Benchmark sections run in order; each entry is ``"module:function"``."""

TARGET_SPEEDUP = 1.5
"""The Johnson default CPU engine must beat plain eager PyTorch by this factor."""


@dataclass
class Row:
    """One execution path: its timings (ms) and its largest difference from the section's baseline."""

    name: str
    times_ms: list[float]
    max_diff: float | None = None
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.times_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


def time_paths(
    paths: dict[str, Callable[[], torch.Tensor]], rounds: int, warmup: int = 1, pause_s: float = 0.05
) -> dict[str, list[float]]:
    """Run every path ``warmup`` times, then ``rounds`` interleaved timed rounds; ms per call.

    Each timed call follows a short idle pause, so thread pools that keep spinning after a call
    (OpenMP, onnxruntime) do not slow down the next path.
    """
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            time.sleep(pause_s)
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def johnson_section(args: argparse.Namespace) -> tuple[str, list[Row], str]:
    """Johnson TransformerNet: eager PyTorch variants, torch.compile (opt-in) and onnxruntime."""
    from nst.johnson import default_engine, inference_graph, run_network
    from nst.onnx_engine import export_onnx, make_session, run_onnx

    net = _benchmark_net(args.checkpoint)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    fast = inference_graph(net)
    fast_cl = inference_graph(net).to(memory_format=torch.channels_last)
    x01 = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    x = x01 * 255
    x_cl = x.contiguous(memory_format=torch.channels_last)

    workdir = Path(args.workdir)
    plain_session = make_session(_export_plain(net, workdir / "johnson_plain.onnx"), args.threads)
    fast_session = make_session(export_onnx(net, workdir / "johnson_fast.onnx"), args.threads)
    x_np = x.numpy()

    def ort(session) -> Callable[[], torch.Tensor]:  # type: ignore[no-untyped-def]
        return lambda: torch.from_numpy(session.run(["y"], {"x": x_np})[0])

    auto = default_engine(torch.device("cpu"))
    stock = stock_eager_times(args)
    paths: dict[str, Callable[[], torch.Tensor]] = {
        "eager PyTorch, inference_mode, allocator tuned": lambda: net(x),
        "eager, channels_last": lambda: net_cl(x_cl),
        "eager, inference graph": lambda: fast(x),
        "eager, inference graph, channels_last": lambda: fast_cl(x_cl),
        "onnxruntime, plain graph": ort(plain_session),
        "onnxruntime, inference graph": ort(fast_session),
        f"engine torch{' (auto)' if auto == 'torch' else ''}: run_network": lambda: run_network(net, x01) * 255,
        f"engine onnx{' (auto)' if auto == 'onnx' else ''}: run_onnx": lambda: run_onnx(net, x01) * 255,
    }
    notes = {name: "RGB [0,1] in/out, pad/crop/clamp included" for name in paths if name.startswith("engine")}
    if args.compile:
        compiled = torch.compile(net)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(x)
            notes["torch.compile (inductor)"] = f"first call (compiling) {time.perf_counter() - start:.0f} s"
        paths["torch.compile (inductor)"] = lambda: compiled(x)

    with torch.inference_mode():
        reference = net(x).clamp(0, 255)
        diffs = {name: float((fn().clamp(0, 255) - reference).abs().max()) / 255 for name, fn in paths.items()}
        times = time_paths(paths, args.rounds)
    rows = [Row(STOCK_ROW, stock, None, "separate process with the stock glibc allocator (NST_TUNE_MALLOC=0)")]
    rows += [Row(name, times[name], diffs[name], notes.get(name, "")) for name in paths]
    weights = "weights from " + Path(args.checkpoint).name if args.checkpoint else "seeded random weights"
    title = f"Johnson TransformerNet, {args.size}x{args.size}, CPU, {torch.get_num_threads()} threads, {weights}"
    auto_row = next(row for row in rows if "(auto)" in row.name)
    ratio = rows[0].median / auto_row.median
    tuned_ratio = rows[1].median / auto_row.median
    verdict = "meets" if ratio >= TARGET_SPEEDUP else "MISSES"
    summary = (f"Johnson default CPU engine '{auto}': {ratio:.2f}x faster than plain eager PyTorch in a stock process "
               f"(medians; {verdict} the >= {TARGET_SPEEDUP}x target); {tuned_ratio:.2f}x faster than eager PyTorch "
               f"with the allocator tuning the CLI applies")
    return title, rows, summary


STOCK_ROW = "plain eager PyTorch, inference_mode, stock process (baseline)"


def _benchmark_net(checkpoint: str | None) -> torch.nn.Module:
    from nst.johnson import TransformerNet, load_johnson

    if checkpoint:
        return load_johnson(checkpoint)
    torch.manual_seed(0)
    net = TransformerNet().eval().requires_grad_(False)
    with torch.no_grad():  # outputs spread over 0-255 (not all clamped), so the diff column means something
        net.deconv3.conv2d.weight.mul_(60)
        net.deconv3.conv2d.bias.fill_(127.5)
    return net


def stock_eager_times(args: argparse.Namespace) -> list[float]:
    """Time plain eager PyTorch in a fresh process that leaves glibc's allocator as it is.

    This is what a user running the published network in eager mode gets; the CLI and the app
    tune the allocator (``nst.runtime.tune_allocator``), which is part of AutoArt's CPU path.
    """
    command = [sys.executable, __file__, "--stock-eager", "--size", str(args.size), "--rounds", str(args.rounds)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    env = {**os.environ, "NST_TUNE_MALLOC": "0"}
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _stock_eager_main(args: argparse.Namespace) -> int:
    net = _benchmark_net(args.checkpoint)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        times = time_paths({"eager": lambda: net(x)}, args.rounds)["eager"]
    print(json.dumps(times))
    return 0


def _export_plain(net: torch.nn.Module, path: Path) -> Path:
    """Export the network as is (no inference-graph rewrites), for comparison."""
    import contextlib
    import io

    from torch.export import Dim

    dynamic = {"x": {2: 4 * Dim("h4", min=2), 3: 4 * Dim("w4", min=2)}}
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(net, (torch.rand(1, 3, 64, 64) * 255,), dynamo=True,
                                    dynamic_shapes=dynamic, input_names=["x"], output_names=["y"])
    program.save(str(path), external_data=False)
    return path


def print_table(title: str, rows: list[Row]) -> None:
    """Markdown table: path, best and median ms, speed-up of the best time over the first row."""
    baseline = rows[0].best
    print(f"\n### {title}\n")
    print("| path | best ms | median ms | speed-up vs baseline | max abs diff (0-1 scale) | note |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        diff = "" if row.max_diff is None else f"{row.max_diff:.1e}"
        print(f"| {row.name} | {row.best:.0f} | {row.median:.0f} | {baseline / row.best:.2f}x | {diff} | {row.note} |")


def load_section(spec: str) -> Callable[[argparse.Namespace], tuple]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels (default 512)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per path (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: all cores)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow first call)")
    parser.add_argument("--checkpoint", default=None, help="time a real Johnson checkpoint instead of random weights")
    parser.add_argument("--workdir", default=os.environ.get("TMPDIR", "/tmp"), help="where exported models go")
    parser.add_argument("--stock-eager", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stock_eager:
        return _stock_eager_main(args)
    tuned = tune_allocator()  # as the CLI does
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"malloc tuned: {tuned}")
    for spec in SECTIONS:
        title, rows, *summary = load_section(spec)(args)
        print_table(title, rows)
        for line in summary:
            print(f"\n{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
