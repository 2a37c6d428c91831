"""Fuzzing the restricted lr-expression evaluator (``lambda``'s and ``multiplicative``'s
``lr_lambda``, ``cyclic``'s ``scale_fn``): any text compiles to a function or is refused
with an ``ExpressionError``; a compiled function, at any epoch, returns a finite float
>= 0 or raises an ``ExpressionError``; nothing else, and never longer than
``CASE_SECONDS``. The expressions are grammar-drawn (numbers of every size, ``epoch``,
every operator, function and constant, deep nesting, the forbidden constructs) and raw text.
The same texts through a spec give a valid spec or a ``SpecError`` at
``scheduler[0].params.lr_lambda``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

import torchtk
from torchtk.core.errors import SpecError
from torchtk.plugins.schedulers import CONSTANTS, FUNCTIONS, ExpressionError, compile_expression
from tests.fuzz.outcomes import case, examples
from tests.fuzz.specs import BASES

pytestmark = pytest.mark.fuzz

NUMBERS = st.one_of(st.integers(0, 10**30).map(str), st.floats(0, 1e300).map(repr), st.sampled_from(
    ["0", "9", "0.5", "1e308", "1e-308", "0x" + "f" * 260, "1_000", "2**1024", "1e999", "0b101", "00", "1j", "True"]))
ATOMS = st.one_of(NUMBERS, st.sampled_from(["epoch", "x", *CONSTANTS, "nan", "inf", "__import__", "os"]))
FORBIDDEN = st.sampled_from(["().__class__", "epoch.real", "__import__('os').system('true')", "lambda: 1",
                             "[x for x in (1,)]", "{1: 2}", "epoch if 1 else 2", "1 < 2", "not 1", "~1", "a[0]",
                             "(yield 1)", "f'{1}'", "open('x')", "print(1)", "...", "1; 2", "epoch := 1", "*epoch",
                             "min(*[1, 2])", "exp(x=1)", "1 @ 2", "1 << 2", "1 & 2", "'a' * 3"])


def _expressions(atom):
    return st.recursive(atom, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), inner).map(" ".join),
        st.tuples(st.sampled_from(["-", "+"]), inner).map("".join),
        inner.map(lambda e: f"({e})"),
        st.tuples(st.sampled_from(sorted(FUNCTIONS)), st.lists(inner, min_size=0, max_size=3))
        .map(lambda call: f"{call[0]}({', '.join(call[1])})"),
    ), max_leaves=25)


EXPRESSIONS = st.one_of(_expressions(ATOMS | FORBIDDEN), st.text(max_size=60),
                        st.sampled_from(["floor(9)**floor(9)**floor(9)", "9**9**9", "(" * 200 + "1" + ")" * 200,
                                         "-" * 299 + "1", "1+" * 200 + "1", "epoch" * 100, "x" * 301]))
EPOCHS = st.one_of(st.integers(0, 200), st.sampled_from([10**6, 10**7, 2**31]))


def evaluate(text: str, epochs: list[int]) -> None:
    with case("lr expression") as outcome:
        try:
            function = compile_expression(text)
        except ExpressionError as exc:
            assert str(exc)
            outcome["result"] = "rejected"
            return
        results = []
        for epoch in epochs:
            try:
                value = function(epoch)
            except ExpressionError as exc:
                assert str(exc) and len(str(exc)) < 2_000
                results.append("rejected")
                continue
            assert type(value) is float and math.isfinite(value) and value >= 0, (text, epoch, value)
            results.append("accepted")
        outcome["result"] = "accepted" if "accepted" in results else "rejected"


@examples("lr")
@given(EXPRESSIONS, st.lists(EPOCHS, min_size=1, max_size=4))
def test_an_expression_is_a_number_or_an_expression_error_at_every_epoch(text, epochs):
    evaluate(text, epochs)


@examples("lr")
@given(EXPRESSIONS)
def test_an_expression_in_a_spec_is_valid_or_a_spec_error_at_its_path(text):
    spec = {**BASES["rings"], "scheduler": {"name": "lambda", "params": {"lr_lambda": text}}}
    with case("lr expression in a spec") as outcome:
        try:
            torchtk.load_spec(spec)
            outcome["result"] = "accepted"
        except SpecError as exc:
            assert [path for path, _ in exc.problems] == ["scheduler[0].params.lr_lambda"], exc.problems
            assert len(str(exc)) < 2_000
            outcome["result"] = "rejected"
