"""`GaussianSplat`: the one in-memory form of a 3D Gaussian scene shared by PLY I/O and the codec.

Values are stored exactly as splatfacto optimises them (pre-activation): log scales, logit opacities,
unnormalised wxyz quaternions, SH coefficients. Arrays are float32 numpy; `to_gauss_params` gives torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

SH_C0 = 0.28209479177387814  # Y_0^0; maps SH DC <-> RGB as rgb = 0.5 + SH_C0 * dc

GAUSS_PARAM_KEYS = ("means", "scales", "quats", "opacities", "features_dc", "features_rest")


def num_sh_rest(sh_degree: int) -> int:
    """Number of non-DC SH coefficients per colour channel, K = (deg + 1)^2 - 1."""
    return (sh_degree + 1) ** 2 - 1


def sh_degree_from_rest(k: int) -> int:
    """Inverse of `num_sh_rest`; raises ValueError for counts that are not (d+1)^2 - 1."""
    degree = int(round(np.sqrt(k + 1))) - 1
    if degree < 0 or num_sh_rest(degree) != k:
        raise ValueError(f"{k} SH rest coefficients per channel is not (degree+1)^2-1 for any degree")
    return degree


def sh_dc_from_logits(x):
    """SH DC coefficients that render the colour ``sigmoid(x)``: splatfacto at SH degree 0 renders ``sigmoid(
    features_dc)`` instead of ``0.5 + SH_C0 * features_dc`` (numpy array or torch tensor in, same kind out)."""
    return (x / 2).tanh() / (2 * SH_C0) if hasattr(x, "tanh") else np.tanh(x / 2) / (2 * SH_C0)


def logits_from_sh_dc(dc, eps: float = 1e-6):
    """Inverse of `sh_dc_from_logits`; colours outside (0, 1) are clamped to ``eps`` inside it first."""
    y = 2 * SH_C0 * dc  # = 2 * rgb - 1
    if hasattr(y, "clamp"):
        return 2 * y.clamp(-1 + eps, 1 - eps).atanh()
    return 2 * np.arctanh(np.clip(y, -1 + eps, 1 - eps))


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor or nn.Parameter
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


@dataclass
class GaussianSplat:
    """N Gaussians with SH colour of degree `sh_degree` (pre-activation parameters, splatfacto layout)."""

    means: np.ndarray  # [N, 3] world positions
    scales: np.ndarray  # [N, 3] log standard deviations
    quats: np.ndarray  # [N, 4] wxyz, not necessarily normalised
    opacities: np.ndarray  # [N, 1] logits
    features_dc: np.ndarray  # [N, 3] SH DC coefficient per channel
    features_rest: np.ndarray  # [N, K, 3] higher SH bands, K = (sh_degree + 1)^2 - 1
    sh_degree: int

    def __post_init__(self) -> None:
        for name in GAUSS_PARAM_KEYS:
            setattr(self, name, _as_numpy(getattr(self, name)))
        n = self.means.shape[0]
        self.opacities = self.opacities.reshape(n, 1) if self.opacities.size == n else self.opacities
        if self.features_rest.size == 0:
            self.features_rest = self.features_rest.reshape(n, 0, 3)
        self.sh_degree = int(self.sh_degree)
        expected = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n, 1),
            "features_dc": (n, 3),
            "features_rest": (n, num_sh_rest(self.sh_degree), 3),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"GaussianSplat.{name} has shape {got}, expected {shape} (sh_degree={self.sh_degree})")

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def subset(self, index: np.ndarray) -> "GaussianSplat":
        """Gaussians selected (and ordered) by an index or boolean mask."""
        return GaussianSplat(
            self.means[index],
            self.scales[index],
            self.quats[index],
            self.opacities[index],
            self.features_dc[index],
            self.features_rest[index],
            self.sh_degree,
        )

    def with_sh_degree(self, sh_degree: int) -> "GaussianSplat":
        """Drop SH bands above `sh_degree` (never adds bands)."""
        sh_degree = min(int(sh_degree), self.sh_degree)
        rest = self.features_rest[:, : num_sh_rest(sh_degree), :]
        return GaussianSplat(self.means, self.scales, self.quats, self.opacities, self.features_dc, rest, sh_degree)

    def equal(self, other: "GaussianSplat") -> bool:
        """Bit-exact equality of every array and the SH degree."""
        return self.sh_degree == other.sh_degree and all(
            getattr(self, k).shape == getattr(other, k).shape
            and np.array_equal(getattr(self, k).view(np.uint32), getattr(other, k).view(np.uint32))
            for k in GAUSS_PARAM_KEYS
        )

    @classmethod
    def random(cls, num_gaussians: int, sh_degree: int = 3, seed: int = 0) -> "GaussianSplat":
        """Synthetic scene for tests and demos: Gaussians clustered on a few blobs with plausible parameter
        ranges (log-scales around -4, mixed opacities, grey-ish correlated colours). Not a trained model."""
        rng = np.random.default_rng(seed)
        centres = rng.uniform(-2.0, 2.0, size=(8, 3))
        means = centres[rng.integers(0, 8, num_gaussians)] + rng.normal(0.0, 0.3, size=(num_gaussians, 3))
        grey = rng.normal(0.0, 1.0, size=(num_gaussians, 1))
        return cls(
            means=means,
            scales=rng.normal(-4.0, 0.7, size=(num_gaussians, 3)),
            quats=rng.normal(size=(num_gaussians, 4)),
            opacities=rng.normal(0.0, 2.0, size=(num_gaussians, 1)),
            features_dc=grey + rng.normal(0.0, 0.3, size=(num_gaussians, 3)),
            features_rest=rng.normal(0.0, 0.1, size=(num_gaussians, num_sh_rest(sh_degree), 3)),
            sh_degree=sh_degree,
        )

    # splatfacto interop ------------------------------------------------------------------------------------

    @classmethod
    def from_gauss_params(cls, gauss_params: Mapping[str, Any], sh_degree: int | None = None) -> "GaussianSplat":
        """From splatfacto's `model.gauss_params` (ParameterDict or dict of tensors/arrays).

        A model without SH rest coefficients (splatfacto ``sh_degree 0``) renders ``sigmoid(features_dc)``; its
        colours are converted to SH DC here, so the splat renders the same everywhere (PLY viewers, the codec,
        `to_gauss_params` + gsplat). `nifi_ns.nerfstudio.gaussian_swap.splat_to_params` converts back."""
        missing = [k for k in GAUSS_PARAM_KEYS if k not in gauss_params]
        if missing:
            raise ValueError(f"gauss_params lacks {missing}; is this a splatfacto-family model?")
        arrays = {k: _as_numpy(gauss_params[k]) for k in GAUSS_PARAM_KEYS}
        k_rest = arrays["features_rest"].shape[1] if arrays["features_rest"].ndim == 3 else 0
        if k_rest == 0:
            arrays["features_dc"] = sh_dc_from_logits(arrays["features_dc"]).astype(np.float32)
        degree = sh_degree_from_rest(k_rest) if sh_degree is None else sh_degree
        return cls(**arrays, sh_degree=degree)

    def to_gauss_params(self, device: Any = "cpu") -> dict:
        """Dict of float32 torch tensors with splatfacto's keys and shapes."""
        import torch

        return {k: torch.from_numpy(getattr(self, k).copy()).to(device) for k in GAUSS_PARAM_KEYS}

    # convenience activations (used by importance scores and renderers) -----------------------------------------

    def activated_opacities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.opacities[:, 0].astype(np.float64)))

    def rgb(self) -> np.ndarray:
        """View-independent colour (DC band only) in [0, 1]."""
        return np.clip(0.5 + SH_C0 * self.features_dc, 0.0, 1.0)
