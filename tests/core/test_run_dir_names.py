"""Where a run writes: its ``name`` is one folder name inside ``trainer.output_dir`` (never
a path out of it), and runs started on the same folder in the same second never share
a run directory (``outputs.new_run_dir`` creates it atomically, with a suffix on collision)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from torchtk.core import outputs
from torchtk.core.errors import SpecError
from torchtk.core.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", "/etc/cron.d/x", "runs/../../x", ".hidden", "-rf",
                                  "a\\b", "x" * 201, "\u00e9" * 101, "", "tab\tname"])
def test_a_name_that_is_not_one_folder_name_is_refused_at_validation(small_spec, name):
    small_spec["name"] = name
    with pytest.raises(SpecError) as raised:
        load_spec(small_spec)
    (path, message), = raised.value.problems
    assert path == "name" and ("one folder name" in message or "at most 200 bytes" in message)


@pytest.mark.parametrize("name", ["rings", "my.run-1", "run_2", "caf\u00e9", "a..b", "x" * 200, "3"])
def test_ordinary_names_are_valid(small_spec, name):
    small_spec["name"] = name
    assert load_spec(small_spec).name == name


def test_a_run_directory_is_always_inside_the_output_dir(small_spec, tmp_path):
    import torchtk

    small_spec["name"] = "a..b"
    small_spec["trainer"]["epochs"] = 1
    result = torchtk.train(small_spec)
    assert result.run_dir.resolve().parent == (tmp_path / "runs").resolve()


def test_threads_starting_in_the_same_second_get_distinct_run_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.time, "strftime", lambda *args: "20260101-000000")  # all in one second
    barrier, made = threading.Barrier(12), []

    def start() -> None:
        barrier.wait()
        made.extend(outputs.new_run_dir(tmp_path / "runs", "race") for _ in range(5))

    threads = [threading.Thread(target=start) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(made) == 60 and len(set(made)) == 60
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(p.name for p in made)
    assert {p.name for p in made} >= {"race-20260101-000000", "race-20260101-000000-2", "race-20260101-000000-60"}


RACER = """
import sys, time
from pathlib import Path
time.strftime = lambda *args: "20260101-000000"
from torchtk.core.outputs import new_run_dir
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
for _ in range(10):
    print(new_run_dir(sys.argv[2], "race"), flush=True)
"""


def test_processes_starting_in_the_same_second_get_distinct_run_directories(tmp_path):
    go, runs = tmp_path / "go", tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(go), str(runs)], stdout=subprocess.PIPE, text=True,
                               env=env) for _ in range(4)]
    time.sleep(0.5)  # let all four reach the starting line
    go.touch()
    made = [line for racer in racers for line in racer.communicate(timeout=120)[0].split()]
    assert all(racer.returncode == 0 for racer in racers)
    assert len(made) == 40 and len(set(made)) == 40 and len(list(runs.iterdir())) == 40
