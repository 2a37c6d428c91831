"""tk runs: every run directory under a folder, with how it ended, read from its own files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.core.errors import RunFailed, RunInterrupted
from torchtk.core.runs import DEFAULT_OUTPUT_DIR, find_runs, read_history, read_run, select_runs, sessions
from torchtk.testing import registry_with


def raising_plugin(error: type[BaseException], at_epoch: int) -> types.ModuleType:
    """A callback ``boom`` whose ``on_epoch_end`` raises ``error`` in epoch ``at_epoch``."""
    module = types.ModuleType("test_boom")

    @hookimpl
    def register_components(register):
        register(Component("callback", "boom", "Raises at an epoch's end.", params=NoParams))

    @hookimpl
    def make_callback(name, params):
        class Boom:
            @hookimpl
            def on_epoch_end(self, state):
                if state.epoch == at_epoch:
                    raise error("boom")
        return Boom()

    module.register_components, module.make_callback = register_components, make_callback
    return module


def write_log(run_dir: Path, *lines: str, spec: dict | None = None, metrics: dict | None = None) -> Path:
    """A run directory written by hand: ``train.log`` from ``lines`` (each ``"<time> <message>"``)."""
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").write_text("".join(line + "\n" for line in lines))
    if spec is not None:
        (run_dir / "spec.json").write_text(json.dumps(spec))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def now(offset_s: float = 0.0) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + offset_s))


def start_line(when: str, pid: int | None, host: str | None = None, epochs: str = "1..3") -> str:
    process = f", pid {pid} on host {host or socket.gethostname()}" if pid is not None else ""
    return f"{when} start: epochs {epochs}, device cpu, precision fp32, 12 batches per epoch{process}"


def gone_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def every_status(small_spec, tmp_path):
    """A folder with one run of each status: four real runs and three written by hand."""
    runs = Path(small_spec["trainer"]["output_dir"])
    small_spec["trainer"]["epochs"] = 2
    finished = torchtk.train(small_spec).run_dir
    stopped = torchtk.train(small_spec, overrides=[
        "optimizer.params.lr=1e-06", "trainer.epochs=20", "name=rings-stopped",  # nothing improves
        'callbacks=[{"name": "early_stopping", "params": {"monitor": "val_accuracy", "patience": 1, "mode": "max"}}]'
    ]).run_dir
    spec = {**small_spec, "name": "rings-failed", "callbacks": ["boom"]}
    with pytest.raises(RunFailed):
        torchtk.train(spec, registry=registry_with(raising_plugin(RuntimeError, 2)))
    spec["name"] = "rings-interrupted"
    with pytest.raises(RunInterrupted):
        torchtk.train(spec, registry=registry_with(raising_plugin(KeyboardInterrupt, 1)))
    written = json.loads((finished / "spec.json").read_text())
    write_log(runs / "rings-running", start_line(now(), os.getpid()), f"{now()} epoch 1 train_loss=0.5",
              spec={**written, "name": "rings-running"})
    write_log(runs / "rings-killed", start_line(now(-60), gone_pid()), f"{now(-50)} epoch 1 train_loss=0.5",
              spec={**written, "name": "rings-killed"})
    write_log(runs / "rings-elsewhere", start_line(now(), 1, host="another-host"), spec={**written, "name": "x"})
    return runs, finished, stopped


@pytest.mark.skipif(os.name == "nt", reason="processes are not looked up on Windows: such runs are 'unknown'")
def test_every_status_of_a_folder_of_runs(tk, every_status):
    runs, finished, stopped = every_status
    result = tk("runs", runs, "--json")
    assert result.exit_code == 0, result.stderr
    listed = {Path(r["run_dir"]).name.split("-2")[0]: r for r in result.json()}
    assert {name: r["status"] for name, r in listed.items()} == {
        "rings-small": "finished", "rings-stopped": "stopped early", "rings-failed": "failed",
        "rings-interrupted": "interrupted", "rings-running": "running", "rings-killed": "killed",
        "rings-elsewhere": "unknown"}
    assert listed["rings-failed"]["message"] == ("failed in epoch 2: callbacks[0] 'boom' (plugin test_boom) raised "
                                                  "RuntimeError in on_epoch_end: boom")
    assert listed["rings-failed"]["epochs_run"] == 1  # epoch 2 raised before it was recorded
    assert listed["rings-interrupted"]["message"].startswith("interrupted. ")
    metrics = json.loads((finished / "metrics.json").read_text())
    small = listed["rings-small"]
    assert small["best"] == metrics["best"]["val_loss"] and small["best_epoch"] == metrics["best"]["epoch"]
    assert (small["monitor"], small["mode"], small["epochs_run"], small["epochs"]) == ("val_loss", "min", 2, 2)
    assert small["pid"] == os.getpid() and small["host"] == socket.gethostname()
    assert listed["rings-stopped"]["epochs_run"] < 20 and listed["rings-stopped"]["epochs"] == 20
    table = tk("runs", runs)
    assert table.exit_code == 0
    for text in ("finished", "stopped early", "failed", "interrupted", "running", "killed", "unknown",
                 "val_loss", "2/2", finished.name):
        assert text in table.stdout, text


def test_json_schema_of_a_run(tk, small_spec):
    result = torchtk.train(small_spec)
    listed = tk("runs", small_spec["trainer"]["output_dir"], "--json").json()
    assert len(listed) == 1
    row = listed[0]
    assert set(row) == {"run_dir", "name", "status", "start", "end", "duration_s", "sessions", "epochs_run", "epochs",
                        "monitor", "mode", "best", "best_epoch", "pid", "host", "message"}
    assert Path(row["run_dir"]) == result.run_dir and row["name"] == "rings-small" and row["sessions"] == 1
    assert row["start"] <= row["end"] and row["duration_s"] >= 0 and row["message"] is None
    assert row["best"] == result.best_value and row["best_epoch"] == result.best["epoch"]


def test_a_resumed_run_counts_both_sessions_and_takes_the_status_of_the_last(small_spec):
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=2"])
    torchtk.train(small_spec, overrides=["trainer.epochs=3"], resume=partial.run_dir)
    record = read_run(partial.run_dir)
    assert record.status == "finished" and len(record.sessions) == 2
    assert (record.epochs_run, record.epochs, record.sessions[1].first_epoch) == (3, 3, 3)
    assert record.duration_s == sum(s.seconds for s in record.sessions)
    assert read_history(partial.run_dir) == torchtk.train(small_spec).history  # history.csv read back exactly


def test_duration_sums_the_sessions_and_a_refused_resume_changes_nothing(tmp_path):
    run = write_log(tmp_path / "runs" / "rings-1",
                    start_line("2026-01-01 10:00:00", 11), "2026-01-01 10:00:20 epoch 1 train_loss=0.5",
                    "2026-01-01 10:00:30 interrupted. checkpoints/last.pt holds epoch 1",
                    start_line("2026-01-01 11:00:00", 12, epochs="2..3"), "2026-01-01 11:00:10 done",
                    "2026-01-01 12:00:00 failed: --resume: this spec differs from the one it was started with")
    record = read_run(run)
    assert record.status == "finished" and record.duration_s == 40.0
    assert record.start.isoformat() == "2026-01-01T10:00:00" and record.to_json()["end"] == "2026-01-01T11:00:10"
    assert [(s.outcome, s.pid) for s in record.sessions] == [("interrupted", 11), ("finished", 12)]


def test_a_failure_of_several_lines_is_one_message():
    text = ("2026-01-01 10:00:00 start: epochs 1..3, device cpu, precision fp32, 3 batches per epoch\n"
            "2026-01-01 10:00:01 failed: spec.json: invalid spec\n  loss[0]: bad\n  loss[1]: worse\n")
    (session,) = sessions(text)
    assert session.outcome == "failed" and session.message == "failed: spec.json: invalid spec\n  loss[0]: bad\n" \
                                                              "  loss[1]: worse"
    assert session.pid is None  # a start line from before it named its process


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="a process's start time is read from /proc")
def test_a_process_id_taken_by_a_newer_process_is_a_killed_run(tmp_path):
    """This test process is alive, but started after the run's last line: the id was reused."""
    run = write_log(tmp_path / "old", start_line("2020-01-01 10:00:00", os.getpid()))
    assert read_run(run).status == "killed"
    legacy = write_log(tmp_path / "legacy", "2020-01-01 10:00:00 start: epochs 1..3, device cpu, precision fp32, "
                                            "3 batches per epoch")
    assert read_run(legacy).status == "unknown"


def finished_run(folder: Path, name: str, start: str, seconds: int, monitor: str, mode: str, best: float) -> Path:
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.mktime(time.strptime(start, "%Y-%m-%d %H:%M:%S"))
                                                             + seconds))
    return write_log(folder / f"{name}-{start[:10].replace('-', '')}", start_line(start, 1), f"{end} done",
                     spec={"name": name, "trainer": {"monitor": monitor, "mode": mode}},
                     metrics={"monitor": monitor, "mode": mode, "best": {"epoch": 2, monitor: best}, "epochs_run": 3})


@pytest.fixture
def three_runs(tmp_path):
    folder = tmp_path / "runs"
    finished_run(folder, "rings-a", "2026-01-03 10:00:00", 30, "val_loss", "min", 0.30)
    finished_run(folder / "sweep", "rings-b", "2026-01-01 10:00:00", 90, "val_accuracy", "max", 0.91)
    finished_run(folder, "shapes", "2026-01-02 10:00:00", 60, "val_loss", "min", 0.20)
    finished_run(folder, "rings-c", "2026-01-04 10:00:00", 10, "val_accuracy", "max", 0.95)
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("not a run")
    write_log(folder / ".trash" / "hidden-1", start_line("2026-01-05 10:00:00", 1))
    return folder


def names(tk, *args):
    result = tk("runs", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return [r["name"] for r in result.json()]


def test_sort_and_filter(tk, three_runs):
    assert names(tk, three_runs) == ["rings-b", "shapes", "rings-a", "rings-c"]  # by start, oldest first
    assert names(tk, three_runs, "--sort", "name") == ["rings-a", "rings-b", "rings-c", "shapes"]
    assert names(tk, three_runs, "--sort", "duration") == ["rings-c", "rings-a", "shapes", "rings-b"]
    # best first within each monitor (its own mode), the monitors' groups in alphabetical order
    assert names(tk, three_runs, "--sort", "best") == ["rings-c", "rings-b", "shapes", "rings-a"]
    assert names(tk, three_runs, "--sort", "best", "--reverse") == ["rings-a", "shapes", "rings-b", "rings-c"]
    assert names(tk, three_runs, "--filter", "rings*", "--sort", "name") == ["rings-a", "rings-b", "rings-c"]
    assert names(tk, three_runs, "--filter", "*-20260102") == ["shapes"]  # the directory's name
    assert names(tk, three_runs, "-f", "nothing*") == []
    result = tk("runs", three_runs, "-f", "nothing*")
    assert result.exit_code == 0 and "no run under" in result.stderr
    table = tk("runs", three_runs).stdout
    assert "sweep/rings-b-20260101" in table and "0:01:30" in table and "val_accuracy 0.9100 (epoch 2)" in table


def test_a_run_without_a_best_value_sorts_last(tmp_path):
    folder = tmp_path / "runs"
    finished_run(folder, "b", "2026-01-02 10:00:00", 5, "val_loss", "min", 0.5)
    write_log(folder / "a", start_line("2026-01-01 10:00:00", 1), "2026-01-01 10:00:01 failed: boom")
    for reverse in (False, True):
        assert [r.name for r in select_runs(find_runs(folder), sort="best", reverse=reverse)] == ["b", "a"]


def test_bad_input_exits_2(tk, tmp_path):
    from tests.core.test_cli import assert_clean_error

    assert_clean_error(tk("runs", tmp_path / "missing"), "missing does not exist", "trainer.output_dir")
    (tmp_path / "empty").mkdir()
    assert_clean_error(tk("runs", tmp_path / "empty"), "holds no run directory")
    (tmp_path / "file.txt").write_text("x")
    assert_clean_error(tk("runs", tmp_path / "file.txt"), "is not a directory")
    write_log(tmp_path / "runs" / "r", start_line("2026-01-01 10:00:00", 1))
    assert_clean_error(tk("runs", tmp_path / "runs", "--sort", "speed"), "--sort 'speed'", "start, best, name")


def test_the_default_folder_is_the_default_output_dir(tk, small_spec, tmp_path, monkeypatch):
    from torchtk.core.spec import TrainerSpec

    assert TrainerSpec.model_fields["output_dir"].default == DEFAULT_OUTPUT_DIR
    monkeypatch.chdir(tmp_path)  # small_spec writes to tmp_path / "runs"
    torchtk.train(small_spec, overrides=["trainer.epochs=1"])
    assert names(tk) == ["rings-small"]


def test_a_run_directory_itself_lists_that_run(tk, small_spec):
    run_dir = torchtk.train(small_spec, overrides=["trainer.epochs=1"]).run_dir
    assert names(tk, run_dir) == ["rings-small"]


def test_tk_runs_does_not_import_torch(tmp_path):
    finished_run(tmp_path / "runs", "rings", "2026-01-01 10:00:00", 5, "val_loss", "min", 0.5)
    code = ("import sys, json\n"
            "from torchtk.core.cli import main\n"
            f"try:\n    main(['runs', {str(tmp_path / 'runs')!r}])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'matplotlib') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "rings" in out and json.loads(out.strip().splitlines()[-1]) == []
