"""The console summary of a run: the seed's "EVALUATION METRICS SUMMARY" block and more.

Sits in ``report/`` beside ``html.py``: ``summary_lines`` turns the typed ``metrics.json``
(``evaluation.results.Metrics``) into the lines ``no2fusion run`` prints after the evaluation.
"""

from __future__ import annotations

from no2fusion.evaluation.results import Metrics

RULE = "=" * 70
RULE_40 = "-" * 40
_STATE = {True: "PASS", False: "FAIL", None: "N/A "}


def summary_lines(metrics: Metrics) -> list[str]:
    """Global scores, the regional breakdown, the headline table and every verdict."""
    g = metrics.global_
    lines = [
        "",
        RULE,
        f"EVALUATION METRICS SUMMARY  (units: {metrics.units}, test split)",
        RULE,
        "",
        "GLOBAL METRICS:",
        RULE_40,
        f"  RMSE: {g.rmse:.4f}  ({g.rmse_molec_cm2:.3e} molec cm-2)",
        f"  MAE:  {g.mae:.4f}",
        f"  R\u00b2:   {g.r2:.4f}",
        f"  Bias: {g.bias:.4f}",
        f"  Spatial Correlation: {g.spatial_correlation:.4f}",
        f"  Skill vs persistence: {g.skill_vs_persistence:.4f}",
        f"  Skill vs climatology: {g.skill_vs_climatology:.4f}",
        f"  Valid cells: {g.n_valid:,}",
        "",
        "REGIONAL BREAKDOWN:",
        RULE_40,
        f"{'Region':<16}{'RMSE':<13}{'MAE':<13}{'R²':<10}{'n valid':>10}",
    ]
    lines += [
        f"{region:<16}{s.rmse:<13.6f}{s.mae:<13.6f}{s.r2:<10.4f}{s.n_valid:>10,}"
        for region, s in metrics.breakdowns.region.items()
        if s.n_valid
    ]
    lines += [
        "",
        "BASELINES (identical test cells):",
        RULE_40,
        f"{'Model':<16}{'RMSE':<13}{'MAE':<13}{'R²':<10}{'corr':<10}",
    ]
    lines += [
        f"{row.name:<16}{row.rmse:<13.6f}{row.mae:<13.6f}{row.r2:<10.4f}"
        f"{row.spatial_correlation:<10.4f}"
        for row in metrics.summary.table
    ]
    if metrics.truth is not None:
        truth = metrics.truth
        lines += [
            "",
            f"AGAINST THE NOISE-FREE TRUTH (observation-noise floor {truth.noise_floor_rmse:.2f}):",
            RULE_40,
            f"{'Model':<16}{'RMSE':<13}{'x floor':<10}{'explained':<10}",
        ]
        lines += [
            f"{row.name:<16}{row.rmse:<13.6f}{row.rmse_over_floor:<10.2f}"
            f"{row.explained_predictable_variance:<10.4f}"
            for row in truth.rows
        ]
        by_region = [
            f"{name} {scores.r2:.2f}"
            for name, scores in truth.truth_by_region.items()
            if scores.n_valid
        ]
        if by_region:
            lines.append("R2 of the truth against the observations: " + ", ".join(by_region))
    lines += ["", "VERDICTS:", RULE_40]
    lines += [
        f"  [{_STATE[v.passed]}] {v.criterion}: {v.statement}" for v in metrics.summary.verdicts
    ]
    return lines
