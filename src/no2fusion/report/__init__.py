"""Figures and the HTML report of a run (the last stage of the flow)."""
