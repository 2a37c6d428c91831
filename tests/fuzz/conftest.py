"""Hypothesis profiles for the fuzz tests, and the count of what they ran.

``ci`` (the default) is the fast profile every ``pytest`` run uses; ``long`` is what
``make fuzz`` selects with ``--hypothesis-profile=long`` (at least 100,000 spec cases
over the spec tests). Neither writes an example database: a failure prints the
falsifying example and a ``@reproduce_failure`` blob instead.

Every case records its outcome (``accepted``, ``rejected`` with an input error, or
``other``: any other exception, which also fails the test); the terminal summary
prints the counts, and ``TORCHTK_FUZZ_REPORT=path.json`` writes them to a file.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.outcomes import COUNTS, RATE

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("ci", **_COMMON)  # examples per test: outcomes.BUDGET
settings.register_profile("long", **_COMMON)
if settings.get_current_profile_name() == "default":
    settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def warm_up():
    """Import torch, torchvision and every plugin before the first case, so that the memory
    a case may add (outcomes.CASE_MEGABYTES) measures the case, not the imports."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import torchtk

    torchtk.load_spec("rings")
    torchtk.load_spec("shapes-dice")


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    terminalreporter.section("fuzz cases")
    for suite, counts in sorted(COUNTS.items()):
        total = sum(counts.values())
        seconds = RATE.get(suite, 0.0)
        parts = ", ".join(f"{key} {value:,}" for key, value in sorted(counts.items()))
        rate = f", {total / seconds:,.0f} per second" if seconds else ""
        terminalreporter.write_line(f"{suite}: {total:,} cases ({parts}){rate}")
    path = os.environ.get("TORCHTK_FUZZ_REPORT")
    if path:
        with open(path, "w") as handle:
            json.dump({"profile": settings.get_current_profile_name(),
                       "suites": {suite: dict(counts) for suite, counts in COUNTS.items()},
                       "seconds": RATE}, handle, indent=2)
