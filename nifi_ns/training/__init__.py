"""NiFi restorer training: TSD-SR-style restoring distribution matching + perceptual matching.

``NiFiTrainer`` (trainer.py) runs the alternating φ⁻ / φ⁺ optimisation; ``losses`` holds the maths; ``data`` reads
the ``<scene>/rate_<λ>/<split>/{clean,degraded}`` pairs; ``config`` mirrors ``configs/default.yaml``.
"""
