"""``CompressionReport``: what one encode produced (sizes, counts, settings), with the derived ratios."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MB = float(1 << 20)


@dataclass
class CompressionReport:
    """What one `compress` produced. Sizes are container bytes; MB = 2^20 bytes."""

    size_bytes: int
    num_gaussians: int
    num_input_gaussians: int
    sh_degree: int
    input_sh_degree: int
    ply_bytes: int
    """Size of the uncompressed INRIA 3DGS PLY of the *input* splat (the ratio's reference)."""
    rate: float | None = None
    target_mb: float | None = None
    encode_seconds: float = 0.0
    section_bytes: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MB

    @property
    def compression_ratio(self) -> float:
        return self.ply_bytes / self.size_bytes

    @property
    def bits_per_gaussian(self) -> float:
        return 8.0 * self.size_bytes / max(self.num_gaussians, 1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            size_mb=self.size_mb,
            compression_ratio=self.compression_ratio,
            bits_per_gaussian=self.bits_per_gaussian,
            ply_mb=self.ply_bytes / MB,
        )
        return out

    def summary(self) -> str:
        return (
            f"{self.size_bytes} bytes = {self.size_mb:.4f} MB, {self.num_gaussians}/{self.num_input_gaussians} "
            f"Gaussians, SH degree {self.sh_degree}, {self.compression_ratio:.1f}x smaller than the "
            f"{self.ply_bytes / MB:.2f} MB INRIA PLY, {self.bits_per_gaussian:.1f} bits/Gaussian"
        )

