"""ONNX export of Johnson networks and the onnxruntime CPU engine.

The exported graph is the raw network (0-255, its channel order) with dynamic height and width
(multiples of 4); padding, scaling, channel order and cropping are the same torch code the eager
engine uses, so both engines agree to float rounding. Exports are cached on disk by a digest of the
weights (``NST_ONNX_CACHE``, default ``~/.cache/nst/onnx``) and sessions in memory per network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import threading
import weakref
from pathlib import Path

import torch
from torch import nn

from nst.errors import ConfigError
from nst.johnson import TransformerNet, fingerprint, from_network, inference_graph, pad_to_multiple, to_network

EXPORT_VERSION = "2"
"""Bump when the exported graph changes, so stale cached files are not reused."""

_sessions: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, object]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where exported models are kept between runs."""
    return Path(os.environ.get("NST_ONNX_CACHE", Path.home() / ".cache" / "nst" / "onnx"))


def weights_digest(net: TransformerNet) -> str:
    """sha256 over the network's options, tensors (names, shapes, values) and the export version."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}|{torch.__version__}|{sorted(net.describe().items())}".encode())
    tensors = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(value.shape)}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def export_onnx(net: TransformerNet, path: str | Path) -> Path:
    """Export the network (with the inference-graph rewrites) to ``path`` with dynamic H and W."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        from torch.export import Dim
    except ImportError:
        raise ConfigError(
            "Exporting to ONNX needs onnxscript: pip install onnxscript (or use --engine torch)."
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = inference_graph(net).cpu().eval()
    example = torch.rand(1, 3, 64, 64) * 255
    dynamic = {"x": {2: 4 * Dim("h4", min=2), 3: 4 * Dim("w4", min=2)}}
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            graph, (example,), dynamo=True, dynamic_shapes=dynamic, input_names=["x"], output_names=["y"]
        )
    if program is None:
        raise ConfigError("torch.onnx.export returned no program.")
    handle, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def exported_model(net: TransformerNet) -> Path:
    """The cached ONNX file for this network, exported on first use.

    When the cache folder cannot be written (a read-only home), the export goes to the system's
    temporary folder instead; only where the file is kept differs.
    """
    name = f"johnson-{weights_digest(net)[:32]}.onnx"
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / "nst-onnx"):
        path = folder / name
        if path.is_file():
            return path
        try:
            return export_onnx(net, path)
        except OSError:
            continue
    raise ConfigError("Could not write the ONNX export of the network; set NST_ONNX_CACHE to a writable folder.")


def make_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session with every graph optimisation on and no thread spinning."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "The onnx engine needs onnxruntime: pip install onnxruntime (or use --engine torch)."
        ) from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting after a run: spinning worker threads slowed the PyTorch work that followed
    # (2-3x on a 2-core CPU) and bought onnxruntime itself nothing measurable
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_for(net: TransformerNet):
    """The onnxruntime session of ``net``, re-exported only when its weights change."""
    key = fingerprint(net)
    with _lock:
        cached = _sessions.get(net)
        if cached is not None and cached[0] == key:
            return cached[1]
        session = make_session(exported_model(net))
        _sessions[net] = (key, session)
        return session


def run_onnx(net: TransformerNet, x: torch.Tensor) -> torch.Tensor:
    """Stylise a Bx3xHxW RGB [0, 1] tensor of any size with onnxruntime on the CPU."""
    session = session_for(net)
    with torch.inference_mode():
        padded, size = pad_to_multiple(x.detach().cpu().float())
        inp = to_network(padded, net.channel_order).contiguous().numpy()
        out = torch.from_numpy(session.run(["y"], {"x": inp})[0])
        return from_network(out, net.channel_order, size).contiguous()


def clear_cache() -> None:
    """Forget the in-memory sessions (the files on disk stay)."""
    with _lock:
        _sessions.clear()
