"""What one fuzz case may end in, counted: the one definition the fuzz tests share.

A case is **accepted** (a valid spec, a number, a finite scalar loss) or **rejected**
with an input error; anything else, including running past :data:`CASE_SECONDS` or
raising the process's peak memory by more than :data:`CASE_MEGABYTES`, is **other**,
which is counted and then fails the test (hypothesis shrinks it and prints the
smallest input that does it).
"""

from __future__ import annotations

import collections
import os
import resource
import signal
import time
from contextlib import contextmanager
from typing import Iterator

from hypothesis import settings

COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
RATE: dict[str, float] = collections.defaultdict(float)  # seconds spent per suite, for cases per second
CASE_SECONDS = 20  # one case of any suite; a spec is validated in milliseconds
CASE_MEGABYTES = 512  # what one case may add to the peak memory of the process (the alias bomb took 5.8 GB)

# examples per test and profile: ci stays under a minute on two loaded cores; long gives the
# spec tests 100,000+ cases (drawing from tk schema compiles each component's schema once and
# draws slowly, so it gets fewer)
BUDGET = {
    "ci": {"mutated": 40, "schema": 10, "texts": 40, "set": 40, "validate": 20, "lr": 150, "losses": 60},
    "long": {"mutated": 40_000, "schema": 7_500, "texts": 30_000, "set": 20_000, "validate": 7_500,
             "lr": 30_000, "losses": 10_000},
}


def examples(test: str) -> settings:
    """The settings of one fuzz test under the current profile (``ci`` or ``long``);
    ``TORCHTK_FUZZ_SCALE=0.1`` runs a tenth of the examples (``make fuzz`` on a slow machine)."""
    profile = settings.get_current_profile_name()
    scale = float(os.environ.get("TORCHTK_FUZZ_SCALE", "1"))
    return settings(max_examples=max(1, round(BUDGET.get(profile, BUDGET["ci"])[test] * scale)))


class Hang(BaseException):
    """A case ran past its time limit (a BaseException, so no ``except Exception`` in
    the code under test can turn it into an ordinary error)."""


@contextmanager
def case(suite: str, seconds: float = CASE_SECONDS) -> Iterator[dict[str, str]]:
    """Run one case: set ``outcome["result"]`` to ``"accepted"`` or ``"rejected"`` inside;
    an exception escaping the block is counted as ``other`` and re-raised; running past
    ``seconds`` raises :class:`Hang` (SIGALRM: Python code is interrupted, a single C
    call only when it returns, which is why the hostile inputs that once stalled in C
    also have subprocess tests with a hard timeout)."""
    outcome = {"result": "other"}

    def expire(signum, frame):
        raise Hang(f"the case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start, peak = time.perf_counter(), _peak_megabytes()
    try:
        yield outcome
        grown = _peak_megabytes() - peak
        assert grown <= CASE_MEGABYTES, f"the case raised the peak memory by {grown:,.0f} MB"
    except BaseException:
        outcome["result"] = "other"
        raise
    else:
        assert outcome["result"] in ("accepted", "rejected"), "the case set no outcome"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        RATE[suite] += time.perf_counter() - start
        COUNTS[suite][outcome["result"]] += 1


def _peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
