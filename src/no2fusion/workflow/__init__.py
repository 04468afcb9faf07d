"""The run workflow: every stage into one run directory, reusing what is already done.

Sits at the right end of the flow (after ``report/``): ``run.py`` wires simulate -> build ->
train (three model kinds) -> evaluate -> figures -> report; ``stages.py`` keeps the stage
markers that make a re-run reuse completed stages. ``no2fusion run`` (and ``main.py``) only
parse arguments and call ``run.run_workflow`` or ``run.evaluate_and_report``.
"""
