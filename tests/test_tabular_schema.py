"""The tabular feature schema: expression parser, relations, schema checks and CSV loading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rampart.errors import RampartError
from rampart.tabular import (
    ExpressionSyntaxError,
    FeatureSchema,
    SchemaDataError,
    SchemaError,
    UnknownFeatureError,
    compile_relation,
    load_csv,
    parse_relation,
)
from rampart.tabular.expressions import compile_expression, render

INDEX = {"a": 0, "b": 1, "c": 2}


def values(text: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tree = parse_relation(text)
    return compile_expression(tree.left, INDEX)(x), compile_expression(tree.right, INDEX)(x)


def test_precedence_and_associativity() -> None:
    tree = parse_relation("a + b * c - -a / 2 >= max(a, abs(b - c), 3)")
    assert render(tree.left) == "((a + (b * c)) - ((-a) / 2))"
    assert render(tree.right) == "max(a, abs((b - c)), 3)"
    assert render(parse_relation("a - b - c == 0").left) == "((a - b) - c)"
    assert render(parse_relation("a / b / c == 0").left) == "((a / b) / c)"
    x = torch.tensor([[2.0, 3.0, 4.0]])
    left, right = values("a + b * c - -a / 2 >= max(a, abs(b - c), 3)", x)
    assert left.item() == pytest.approx(2 + 12 + 1)
    assert right.item() == pytest.approx(3)
    left, _ = values("(a + b) * c <= 0", x)
    assert left.item() == pytest.approx(20)


@pytest.mark.parametrize(("text", "position"), [
    ("a <= ", 5), ("a + * b <= c", 4), ("a <= b <= c", 7), ("foo(a) <= b", 0),
    ("a ? b", 2), ("(a + b <= c", 7), ("a b <= c", 2), ("a + b", 5), ("abs(a, b) <= c", 0),
])
def test_syntax_errors_give_the_position(text: str, position: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_relation(text)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)
    assert isinstance(info.value, RampartError)


def test_unknown_feature_names_suggest_close_ones() -> None:
    with pytest.raises(UnknownFeatureError, match="did you mean amount"):
        compile_relation("amout <= b", {"amount": 0, "b": 1})


@pytest.mark.parametrize("op", ["<=", ">=", "=="])
def test_penalty_and_checker_agree(op: str) -> None:
    relation = compile_relation(f"a + b {op} 2 * c", INDEX, atol=1e-3, rtol=0.0)
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    x[:100, 0] = 2 * x[:100, 2] - x[:100, 1]  # exactly satisfied rows
    penalty = relation.penalty(x)
    ok = relation.satisfied(x)
    assert bool(ok[:100].all())
    assert bool((penalty[ok] <= 1e-3).all())
    assert bool((penalty[~ok] > 0).all())
    # the penalty is differentiable and pushes violated rows towards the relation
    xg = x.clone().requires_grad_(True)
    relation.penalty(xg).sum().backward()
    step = x - 1e-3 * xg.grad
    clear = relation.violation(x) > 0.05  # a small step cannot overshoot these
    assert bool(clear.any())
    assert bool((relation.violation(step)[clear] < relation.violation(x)[clear]).all())


def schema_dict() -> dict:
    return {
        "label": "y",
        "features": {
            "a": {"type": "real", "min": 0, "max": 10},
            "b": {"type": "integer", "min": 0},
            "total": {"type": "real"},
            "age": {"type": "integer", "mutable": False},
            "kind": {"type": "categorical", "columns": ["k0", "k1"]},
        },
        "relations": ["total == a + b"],
    }


def rows() -> torch.Tensor:
    return torch.tensor([[1.0, 2, 3, 40, 1, 0], [5.0, 0, 5, 9, 0, 1]])


def test_schema_from_dict_and_yaml(tmp_path: Path) -> None:
    import yaml

    schema = FeatureSchema.from_dict(schema_dict())
    assert schema.columns == ["a", "b", "total", "age", "k0", "k1"]
    assert schema.groups == [[4, 5]]
    assert schema.mutable.tolist() == [True, True, True, False, True, True]
    schema.check_data(rows())
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema_dict(), sort_keys=False))
    assert FeatureSchema.from_yaml(path).columns == schema.columns


@pytest.mark.parametrize(("change", "message"), [
    ({"relations": ["total == a + bb"]}, "did you mean b"),
    ({"relations": ["total = a"]}, "position 6"),
    ({"relations": ["kind <= 1"]}, "name one of its one-hot columns: k0, k1"),
    ({"features": {"a": {"type": "text"}}}, "features.0.type"),
    ({"features": {"a": {"min": 3, "max": 1}}}, "must not exceed"),
    ({"features": {"c": {"type": "categorical", "columns": ["x"]}}}, "at least two"),
    ({"features": {"a": {"type": "real"}, "b": {"type": "categorical", "columns": ["a", "z"]}}},
     "declared twice"),
    ({"colour": 1}, "unknown setting"),
])
def test_malformed_schemas_are_refused(change: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        FeatureSchema.from_dict({**schema_dict(), **change})


@pytest.mark.parametrize(("row", "col", "message"), [
    (0, 0, "'a' is above the declared max"),
    (1, 1, "'b' is not a whole number"),
    (0, 4, "one-hot group of 'kind'"),
    (1, 2, "already violates the relation 'total == a + b'"),
])
def test_data_that_contradicts_the_schema(row: int, col: int, message: str) -> None:
    schema = FeatureSchema.from_dict(schema_dict())
    x = rows()
    x[row, col] += 11.5 if col == 0 else 0.5
    with pytest.raises(SchemaDataError, match=re.escape(message)) as info:
        schema.check_data(x, first_row=2)
    assert f"row {row + 2}" in str(info.value)


def write_csv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_load_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "k1,k0,age,total,b,a,y",
                     ["0,1,40,3,2,1,no", "1,0,9,5,0,5,yes", "1,0,9,6,1,5,no"])
    data = load_csv(path, schema_dict())
    x, y, schema = data
    assert x[0].tolist() == [1, 2, 3, 40, 1, 0]
    assert y.tolist() == [0, 1, 0] and data.class_names == ["no", "yes"]
    assert schema.scales[0] == pytest.approx(float(x[:, 0].std()))


@pytest.mark.parametrize(("header", "line", "error", "message"), [
    ("a,b,total,age,k0,y", "1,2,3,40,1,0", SchemaDataError, "lacks the schema column"),
    ("a,b,total,age,k0,k1,id,y", "1,2,3,40,1,0,7,0", SchemaDataError, "id that the schema"),
    ("a,b,total,age,k0,k1,y", "1,two,3,40,1,0,0", SchemaDataError, "line 2, column 'b'"),
    ("a,b,total,age,k0,k1,y", "1,2,9,40,1,0,0", SchemaDataError, "total == a \\+ b"),
    ("a,b,total,age,k0,k1,y", "1,2,3,40,1,1,0", SchemaDataError, "not one-hot in row 2"),
    ("a,b,total,age,k0,k1,label", "1,2,3,40,1,0,0", SchemaDataError, "no label column 'y'"),
])
def test_csv_errors(tmp_path: Path, header: str, line: str, error: type, message: str) -> None:
    path = write_csv(tmp_path / "d.csv", header, [line, line.replace(",0\n", ",1")[:-1] + "1"])
    with pytest.raises(error, match=message):
        load_csv(path, schema_dict())


def test_missing_or_unreadable_csv(tmp_path: Path) -> None:
    with pytest.raises(RampartError, match="no CSV file"):
        load_csv(tmp_path / "nope.csv", schema_dict())
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(RampartError, match="UTF-8"):
        load_csv(bad, schema_dict())


def test_load_csv_ignore_and_limit(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "id,a,b,total,age,k0,k1,y",
                     ["7,1,2,3,40,1,0,0", "8,5,0,5,9,0,1,1", "9,5,0,5,9,0,1,1"])
    data = load_csv(path, schema_dict(), ignore=["id"], limit=2)
    assert len(data) == 2 and data.x.shape == (2, 6)


def test_relation_with_its_own_tolerance() -> None:
    data = schema_dict()
    data["relations"] = [{"relation": "total == a + b", "atol": 0.6}, "a <= 10"]
    schema = FeatureSchema.from_dict(data)
    assert [r.atol for r in schema.relations] == [0.6, 1e-4]
    x = rows()
    x[1, 2] += 0.5  # within the relation's own tolerance
    schema.check_data(x)


def test_the_example_schema_compiles() -> None:
    import yaml

    from rampart.tabular.schema import EXAMPLE

    schema = FeatureSchema.from_dict(yaml.safe_load(EXAMPLE))
    assert len(schema.relations) == 2 and schema.groups


def _expressions() -> st.SearchStrategy[str]:
    """Random expression texts, parenthesised only sometimes (to exercise precedence)."""
    leaves = st.one_of(st.sampled_from(list(INDEX)), st.integers(0, 9).map(str))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner, st.booleans()).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})" if t[3] else f"{t[0]} {t[1]} {t[2]}")
        calls = st.tuples(st.sampled_from(["min", "max"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})")
        unary = st.one_of(calls, inner.map(lambda e: f"abs({e})"),
                          inner.map(lambda e: f"-{e}" if e[0] != "-" else f"-({e})"))
        return st.one_of(binary, binary, binary, unary)  # mostly operators

    return st.recursive(leaves, extend, max_leaves=8)


@settings(max_examples=100, deadline=None)
@example(text="a - b * c + -a * b", a=2, b=3, c=4)
@given(text=_expressions(), a=st.integers(-5, 5), b=st.integers(-5, 5), c=st.integers(-5, 5))
def test_parser_matches_python_arithmetic(text: str, a: int, b: int, c: int) -> None:
    """Same precedence and associativity as Python's own arithmetic on the same text (the
    reference; only the test evaluates Python, the parser never does)."""
    expected = eval(text, {"__builtins__": {}, "abs": abs, "min": min, "max": max},  # noqa: S307
                    {"a": a, "b": b, "c": c})
    left, right = values(f"{text} <= 0", torch.tensor([[a, b, c]], dtype=torch.float64))
    assert left.item() == pytest.approx(expected)
    assert right.item() == 0
    # printing the tree and parsing it again gives the same tree
    printed = render(parse_relation(f"{text} <= 0").left)
    assert render(parse_relation(f"{printed} <= 0").left) == printed


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="ab+-*/()<=>, 0.7", min_size=1, max_size=14))
def test_the_parser_never_crashes(text: str) -> None:
    """Any input either parses or raises ExpressionSyntaxError (never another exception)."""
    try:
        parse_relation(text)
    except ExpressionSyntaxError as exc:
        assert 0 <= exc.position <= len(text)
