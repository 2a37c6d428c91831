"""Fuzzing spec validation: ``torchtk.load_spec`` and ``tk validate`` either accept a
spec or reject it with an input error that says where, never anything else.

The inputs (``tests/fuzz/specs.py``): the bundled examples mutated (wrong types,
missing and extra keys, any unicode, huge, negative, NaN and infinite numbers, deep
nesting, shared subtrees), components drawn from the JSON Schema of ``tk schema``
(hypothesis-jsonschema, every installed component of every kind), the same as JSON or
YAML text (cut, spliced with control characters, duplicate keys, anchors and aliases,
alias bombs, recursive anchors) and ``--set`` options (real, invented, 5000-part and
600-character paths; JSON, plain, non-finite and deeply nested values).

What each case must end in:

- **accepted**: ``load_spec`` returns a ``RunSpec``; ``tk validate`` exits 0 and prints
  strict JSON (no ``NaN``, no ``Infinity``) that validates again to the same spec;
- **rejected**: a ``UserInputError`` (``tk validate``: exit 2, one ``error:`` line block
  on stderr, no traceback) whose message starts with where the problem is (the file,
  ``spec`` for a dict, or the ``--set`` option), is at most 50,000 characters however
  large the input, and, for an invalid spec (``SpecError``), names a spec path for
  every problem (only a problem with a key of the root object has none);
- never another exception, never longer than ``CASE_SECONDS`` (``outcomes.py``).

``pytest`` runs the fast ``ci`` profile; ``make fuzz`` the ``long`` one (conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import uuid

import pytest
from hypothesis import given, strategies as st

import torchtk
from torchtk.core import cli
from torchtk.core.errors import SpecError, UserInputError
from tests.fuzz.outcomes import case, examples
from tests.fuzz.specs import BASES, mutated_specs, schema_specs, set_options, spec_texts

pytestmark = pytest.mark.fuzz

MESSAGE_LIMIT = 50_000


@pytest.fixture(scope="session")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-specs")


def check_input_error(exc: UserInputError, label: str, overrides: list[str] | None = None) -> None:
    """The rules for a rejection (see the module docstring)."""
    message = str(exc)
    assert exc.exit_code == 2
    assert 0 < len(message) <= MESSAGE_LIMIT, f"a {len(message):,}-character message"
    starts = (label, "--set ") if overrides else (label,)
    assert message.startswith(starts), f"the message does not say where: {message[:300]!r}"
    if isinstance(exc, SpecError):
        for path, problem in exc.problems:
            assert path or problem.startswith("the key "), f"a problem without a spec path: {problem[:300]!r}"


def load(source, label: str, overrides: list[str] | None = None) -> None:
    with case("load_spec") as outcome:
        try:
            torchtk.load_spec(source, overrides=overrides)
            outcome["result"] = "accepted"
        except UserInputError as exc:
            check_input_error(exc, label, overrides)
            outcome["result"] = "rejected"


@examples("mutated")
@given(mutated_specs())
def test_mutated_examples_are_accepted_or_rejected_at_a_spec_path(data):
    load(data, "spec")


@examples("schema")
@given(schema_specs())
def test_components_drawn_from_tk_schema_are_accepted_or_rejected_at_a_spec_path(data):
    load(data, "spec")


@examples("texts")
@given(spec_texts())
def test_spec_files_as_json_and_yaml_text_are_accepted_or_rejected_at_a_place(fuzz_dir, file):
    suffix, text = file
    path = fuzz_dir / f"{uuid.uuid4().hex}{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load(path, str(path))
    finally:
        path.unlink()


@examples("set")
@given(st.sampled_from(sorted(BASES)), set_options())
def test_set_options_are_accepted_or_rejected_naming_the_option(name, overrides):
    load(BASES[name], "spec", overrides)


def tk_validate(path, overrides):
    stdout, stderr = io.StringIO(), io.StringIO()
    sets = [part for item in overrides for part in ("--set", item)]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        cli.main(["validate", str(path), *sets])
    return exited.value.code, stdout.getvalue(), stderr.getvalue()


def _strict_constant(name):
    raise AssertionError(f"tk validate printed {name}, which is not JSON")


@examples("validate")
@given(spec_texts(), st.none() | set_options())
def test_tk_validate_exits_0_with_strict_json_or_2_with_one_message(fuzz_dir, file, overrides):
    suffix, text = file
    path = fuzz_dir / f"{uuid.uuid4().hex}{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with case("tk validate") as outcome:
            code, out, err = tk_validate(path, overrides or [])
            assert code in (0, 2), f"exit {code}: {err[-2000:]}"
            if code == 0:
                printed = json.loads(out, parse_constant=_strict_constant)
                assert all(math.isfinite(v) for v in _numbers(printed))
                assert torchtk.load_spec(printed).model_dump(mode="json") == printed  # what it printed is valid
                outcome["result"] = "accepted"
            else:
                assert err.startswith("error: ") and "Traceback" not in err and "--debug" not in err, err[-2000:]
                assert len(err) <= MESSAGE_LIMIT + 100
                outcome["result"] = "rejected"
    finally:
        path.unlink()


def _numbers(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            yield item
