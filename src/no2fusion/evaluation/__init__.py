"""Evaluation of trained models: metrics, baselines, breakdowns, ablation, robustness, attention.

``inference.TiledPredictor`` makes every prediction (evaluation and ``no2fusion predict``);
``baselines``, ``ablation``, ``robustness`` and ``attention`` are the runners, ``scoring`` the
scores, ``results`` the typed ``metrics.json``, and ``evaluate.evaluate_run`` composes them.
The seed's ``MetricsCalculator`` is in ``no2fusion.seed_api``.
"""
