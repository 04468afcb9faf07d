"""metrics.json is written and read through typed dataclasses: a round trip loses nothing, a
missing key or another schema version is one clear error, and every attribute the report
template, the console summary and the figures use exists in the schema."""

from __future__ import annotations

import dataclasses
import json
import math
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import jinja2
import pytest
from jinja2 import nodes

from no2fusion.errors import InputFileError
from no2fusion.evaluation.evaluate import EvaluationResult
from no2fusion.evaluation.results import SCHEMA_VERSION, Metrics
from no2fusion.report.console import summary_lines
from no2fusion.report.html import TEMPLATES, fmt, render_report, template_environment


def test_round_trip_is_lossless_and_strict_json(
    tmp_path: Path, fake_result: EvaluationResult
) -> None:
    undefined = dataclasses.replace(fake_result.metrics.global_, r2=math.nan)
    metrics = dataclasses.replace(fake_result.metrics, global_=undefined)
    path = metrics.write(tmp_path / "metrics.json")
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["global"]["r2"] is None  # strict JSON
    again = Metrics.read(path)
    assert math.isnan(again.global_.r2)  # null reads back as an undefined score
    assert again.to_json() == metrics.to_json()
    assert again.summary.verdicts == metrics.summary.verdicts
    assert again.robustness.tests == metrics.robustness.tests
    assert set(json.loads(text)) == {
        f.name.rstrip("_") for f in dataclasses.fields(Metrics)
    }  # every field is written, "global" under its JSON name


def test_missing_key_and_other_schema_version_are_one_line_errors(
    fake_result: EvaluationResult,
) -> None:
    data = fake_result.metrics.to_json()
    del data["summary"]["table"][0]["rmse"]
    with pytest.raises(InputFileError, match=r"summary\.table\.0\.rmse") as error:
        Metrics.from_json(data)
    assert "\n" not in str(error.value)
    data = fake_result.metrics.to_json()
    data["schema_version"] = SCHEMA_VERSION - 1
    with pytest.raises(InputFileError, match="schema_version"):
        Metrics.from_json(data)


def test_report_and_console_render_from_the_file_alone(fake_result: EvaluationResult) -> None:
    metrics = Metrics.from_json(json.loads(json.dumps(fake_result.metrics.to_json())))
    html = render_report(metrics, {}, "seed: 1\n")
    assert fmt(metrics.global_.rmse, 2) in html and 'id="table-robustness"' in html
    lines = summary_lines(metrics)
    assert "EVALUATION METRICS SUMMARY  (units: umol m-2, test split)" in lines
    assert any(line.startswith("  [FAIL] beats concatenation") for line in lines)


# ----------------------------------------------------------------- what the template reads
def _strip_optional(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        kept = [arg for arg in get_args(hint) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else hint
    return hint


def _resolve(hint: Any, attrs: list[str], where: str) -> Any:
    """The type reached by ``attrs`` from ``hint``; fails when a dataclass lacks one."""
    for attr in attrs:
        hint = _strip_optional(hint)
        if dataclasses.is_dataclass(hint):
            fields = get_type_hints(hint)
            assert attr in fields, f"{where}: {hint.__name__} has no field {attr!r}"
            hint = fields[attr]
        elif get_origin(hint) is dict:
            assert hasattr(dict, attr), f"{where}: dict has no method {attr!r}"
            return get_origin(hint)
        else:
            return None
    return _strip_optional(hint)


def _chain(node: nodes.Node) -> tuple[str, list[str]] | None:
    """('name', ['a', 'b']) for ``name.a.b``; None for anything else."""
    attrs: list[str] = []
    while isinstance(node, nodes.Getattr):
        attrs.insert(0, node.attr)
        node = node.node
    return (node.name, attrs) if isinstance(node, nodes.Name) else None


def _element(hint: Any, target: nodes.Node, iterator: nodes.Node) -> dict[str, Any]:
    """Loop variable -> type for ``for target in iterator`` (sequences and dict.items())."""
    origin, args = get_origin(hint), get_args(hint)
    if isinstance(iterator, nodes.Call) and origin is dict and isinstance(target, nodes.Tuple):
        return {target.items[1].name: args[1]}  # type: ignore[attr-defined]
    if origin in (tuple, list) and isinstance(target, nodes.Name):
        return {target.name: args[0]}
    return {}


def _check(node: nodes.Node, scope: dict[str, Any], seen: set[str]) -> None:
    """Resolve every attribute chain under ``node`` whose root is a known name; loops bind
    their variables to the element type for their body only."""
    if isinstance(node, nodes.For):
        _check(node.iter, scope, seen)
        iterator = node.iter.node if isinstance(node.iter, nodes.Call) else node.iter
        chain, inner = _chain(iterator), dict(scope)
        if chain is not None and chain[0] in scope:
            attrs = chain[1][:-1] if isinstance(node.iter, nodes.Call) else chain[1]
            hint = _resolve(scope[chain[0]], attrs, f"for ... in {chain[0]}.{chain[1]}")
            inner.update(_element(hint, node.target, node.iter))
        for child in node.body:
            _check(child, inner, seen)
        return
    if isinstance(node, nodes.Getattr):
        chain = _chain(node)
        if chain is not None and chain[0] in scope:
            _resolve(scope[chain[0]], chain[1], f"{chain[0]}.{'.'.join(chain[1])}")
            seen.add(f"{chain[0]}.{'.'.join(chain[1])}")
            return
    for child in node.iter_child_nodes():
        _check(child, scope, seen)


def test_every_attribute_the_template_reads_is_in_the_schema() -> None:
    source = (TEMPLATES / "report.html.j2").read_text()
    seen: set[str] = set()
    _check(template_environment().parse(source), {"m": Metrics}, seen)
    # the loops over rows, verdicts, breakdown scores and robustness tests were followed
    assert {"row.rmse", "v.statement", "s.rmse_change", "r.better_than_climatology"} <= seen
    assert len(seen) > 40


def test_the_schema_check_catches_a_missing_field() -> None:
    tree = jinja2.Environment().parse("{{ m.global_.rmse_of_nothing }}")
    (node,) = [n for n in tree.find_all(nodes.Getattr) if n.attr == "rmse_of_nothing"]
    chain = _chain(node)
    assert chain is not None
    with pytest.raises(AssertionError, match="rmse_of_nothing"):
        _resolve(Metrics, chain[1], "test")
