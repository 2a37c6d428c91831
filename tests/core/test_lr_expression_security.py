"""The restricted lr-expression evaluator is the only way a spec's text becomes
arithmetic (``lambda``/``multiplicative``'s ``lr_lambda``, ``cyclic``'s ``scale_fn``):
it parses with ``ast`` and builds closures over a fixed table of operators, functions
and constants, never ``eval``/``exec``. Everything else is a validation error that runs
no code: attribute access, dunders, ``().__class__``, imports, lambdas,
comprehensions, and it cannot hang: huge exponents are float overflows, nesting and
length are bounded. SECURITY.md names these tests.
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
import textwrap

import pytest

import torchtk
from torchtk.core.errors import SpecError
from torchtk.plugins.schedulers import (MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH, ExpressionError,
                                        compile_expression)


def refused(text: str, variable: str = "epoch") -> str:
    with pytest.raises(ExpressionError) as raised:
        compile_expression(text, variable=variable)(0)
    return str(raised.value)


def spec_problems(text: str, small_spec) -> list[tuple[str, str]]:
    small_spec["scheduler"] = {"name": "lambda", "params": {"lr_lambda": text}}
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec)
    return raised.value.problems


ATTRIBUTES = ["epoch.real", "pi.__class__", "(1).__class__", "e.hex()", "epoch.__class__.__mro__"]
DUNDERS = ["__import__", "__builtins__", "__class__", "__name__", "__loader__"]
CLASS_ESCAPES = ["().__class__", "().__class__.__bases__[0].__subclasses__()", "[].__class__", "''.__class__",
                 "(lambda: 0).__globals__"]
IMPORTS = ["__import__('os')", "__import__('os').system('touch {marker}')", "import os", "from os import system",
           "exec('import os')", "eval('1')", "compile('1', 'x', 'eval')", "open('{marker}', 'w')", "globals()",
           "getattr(epoch, 'real')", "breakpoint()"]
LAMBDAS = ["lambda: 1", "(lambda x: x)(1)", "lambda epoch: epoch"]
COMPREHENSIONS = ["[x for x in (1, 2)]", "{x for x in (1,)}", "{x: 1 for x in (1,)}", "sum(x for x in (1,))",
                  "[1, 2][0]", "{1: 2}[1]"]


@pytest.mark.parametrize("text", ATTRIBUTES)
def test_attribute_access_is_refused(text, small_spec):
    assert "is not allowed" in refused(text)
    assert [path for path, _ in spec_problems(text, small_spec)] == ["scheduler[0].params.lr_lambda"]


@pytest.mark.parametrize("text", DUNDERS)
def test_dunder_names_are_refused(text, small_spec):
    assert f"unknown name {text!r}" in refused(text)
    assert [path for path, _ in spec_problems(text, small_spec)] == ["scheduler[0].params.lr_lambda"]


@pytest.mark.parametrize("text", CLASS_ESCAPES)
def test_class_escapes_such_as_the_class_of_a_tuple_are_refused(text, small_spec):
    assert "is not allowed" in refused(text)
    assert [path for path, _ in spec_problems(text, small_spec)] == ["scheduler[0].params.lr_lambda"]


@pytest.mark.parametrize("template", IMPORTS)
def test_imports_and_builtins_are_refused_and_run_nothing(template, tmp_path, small_spec):
    marker = tmp_path / "ran"
    text = template.format(marker=marker)
    message = refused(text)
    assert "not allowed" in message or "not a valid expression" in message or "unknown name" in message
    assert [path for path, _ in spec_problems(text, small_spec)] == ["scheduler[0].params.lr_lambda"]
    assert not marker.exists()


@pytest.mark.parametrize("text", LAMBDAS)
def test_lambdas_are_refused(text):
    assert "is not allowed" in refused(text)


@pytest.mark.parametrize("text", COMPREHENSIONS)
def test_comprehensions_and_subscripts_are_refused(text):
    assert "is not allowed" in refused(text)


def test_the_same_rules_hold_for_cyclic_scale_fn(small_spec):
    for text in ("().__class__", "__import__('os')", "lambda: 1", "9 ** 9 ** 9"):
        with pytest.raises(ExpressionError):
            compile_expression(text, variable="x", what="scale_fn")(1)


def test_evaluation_never_calls_eval_exec_or_compiles_code(monkeypatch):
    """``ast.parse`` calls ``compile`` with ``PyCF_ONLY_AST``, which makes a syntax tree
    and no code object; anything else would be code."""
    real_compile = builtins.compile

    def forbidden(*args, **kwargs):
        raise AssertionError("the evaluator called eval or exec")

    def parse_only(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & ast.PyCF_ONLY_AST, "the evaluator compiled code"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", parse_only)
    function = compile_expression("0.5 * (1 + cos(pi * min(epoch, 10) / 10)) + floor(epoch / 3) ** 2 / 100")
    assert function(0) == 1.0 and function(10) == pytest.approx(0.09)


HUGE_EXPONENTS = ["9**9**9", "floor(9)**floor(9)**floor(9)", "ceil(9.5)**ceil(9.5)**ceil(9.5)", "10**10**10",
                  "2**1024", "exp(1000)", "(epoch + 9) ** 9 ** 9", "floor(epoch / 10) ** floor(9) ** floor(9)"]


def test_huge_exponents_are_errors_not_hangs_even_at_a_later_epoch():
    """In a fresh interpreter with a hard timeout: exact big-integer powers ran in one C
    call that no signal interrupts (``floor(9)**floor(9)**floor(9)`` hung validation;
    ``floor(epoch / 10)**...`` was valid at epoch 0 and stalled training at epoch 20)."""
    script = textwrap.dedent(f"""
        from torchtk.plugins.schedulers import ExpressionError, compile_expression
        for text in {HUGE_EXPONENTS!r}:
            for epoch in (0, 5, 20, 10**6):
                try:
                    value = compile_expression(text)(epoch)
                except ExpressionError as exc:
                    assert "overflows" in str(exc) or "beyond" in str(exc), exc
                else:
                    assert 0 <= value < float("inf"), (text, epoch, value)
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]


def test_huge_exponents_in_a_spec_are_spec_errors(small_spec):
    for text in HUGE_EXPONENTS[:5]:
        [(path, message)] = spec_problems(text, small_spec)
        assert path == "scheduler[0].params.lr_lambda" and "overflows" in message


@pytest.mark.parametrize("text", ["-" * 200 + "1", "2**" * 99 + "2", "1+" * 140 + "1",
                                  "abs(" * 55 + "1" + ")" * 55, "-(" * 55 + "1" + ")" * 55])
def test_deep_nesting_is_refused(text):
    message = refused(text)
    assert f"nested deeper than {MAX_EXPRESSION_DEPTH} levels" in message or "not a valid expression" in message


@pytest.mark.parametrize("length", [MAX_EXPRESSION_LENGTH + 1, 10_000, 10_000_000])
def test_very_long_input_is_refused_before_parsing(length, small_spec):
    text = "1+" * (length // 2) + "1" * (length % 2 or 1)
    assert f"longer than {MAX_EXPRESSION_LENGTH} characters" in refused(text[:length])
    [(path, message)] = spec_problems(text[:length], small_spec)
    assert path == "scheduler[0].params.lr_lambda" and len(message) < 1_000  # the echo is cut, not the whole text


@pytest.mark.parametrize("text,expected", [("min(1)", "min() takes at least 2 arguments, got 1"),
                                           ("exp(1, 2)", "exp() takes 1 argument, got 2"),
                                           ("log(1, 2, 3)", "log() takes 1 or 2 arguments, got 3"),
                                           ("(-1) ** 0.5", "outside its domain"),
                                           ("0x" + "f" * 260, "beyond the range of a float"),
                                           ("1 / (epoch - epoch)", "division by zero")])
def test_wrong_calls_and_values_are_expression_errors_not_python_errors(text, expected, small_spec):
    assert expected in refused(text)
    [(path, message)] = spec_problems(text, small_spec)
    assert path == "scheduler[0].params.lr_lambda" and expected in message


def test_every_value_is_a_float_so_floor_and_ceil_cannot_build_big_integers():
    assert compile_expression("floor(epoch / 3)")(7) == 2.0
    assert type(compile_expression("ceil(epoch) ** 2")(3)) is float
    assert compile_expression("log(8, 2)")(0) == pytest.approx(3.0)
