"""Evaluation of trained models: metrics, baselines, breakdowns, ablation, robustness, attention.

``MetricsCalculator`` (the seed's API) lives in ``metrics.py``; ``evaluate.py`` runs the whole
evaluation of a trained run directory.
"""
