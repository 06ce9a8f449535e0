"""``build_fixer(config)``: the fixer a :class:`~difix_ns.fixers.config.FixerConfig` asks for."""
from __future__ import annotations

from typing import Any, Optional

from difix_ns.fixer import DifixFixerConfig
from difix_ns.fixers.frames import WorldFrame


def build_fixer(config: Optional[DifixFixerConfig] = None, student_frame: Optional[WorldFrame] = None) -> Any:
    """Build the fixer of ``config`` (a plain ``DifixFixerConfig`` means Difix).

    ``student_frame``: world frame of the cameras the teacher fixers will be given (the run being fixed).
    """
    kind = getattr(config, "kind", "difix")
    if kind == "difix":
        from difix_ns.fixer import DifixFixer

        return DifixFixer(config if config is not None else DifixFixerConfig())
    if kind == "identity":
        from difix_ns.fixers.identity import IdentityFixer

        return IdentityFixer()
    if kind in ("teacher", "degraded-teacher"):
        teacher = getattr(config, "teacher_config", None)
        if teacher is None:
            raise ValueError(f"fixer kind {kind!r} needs --pipeline.fixer.teacher-config (a trained run's config.yml)")
        from difix_ns.fixers.teacher import DegradedTeacherFixer, TeacherFixer

        if kind == "teacher":
            return TeacherFixer(teacher, student_frame=student_frame)
        return DegradedTeacherFixer(teacher, config.degrade, student_frame=student_frame)
    raise ValueError(f"unknown fixer kind {kind!r}; choose one of difix, identity, teacher, degraded-teacher")
