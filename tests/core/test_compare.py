"""tk compare: the spec keys that differ between runs, their results, and compare.png."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import torchtk
from torchtk.core.compare import ABSENT, DPI, PANEL_SIZE, compare_figure, compare_runs, spec_differences
from tests.core.test_cli import assert_clean_error


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def two_lrs(small_spec):
    """Two real runs of one spec that differ only in the learning rate."""
    first = torchtk.train(small_spec).run_dir
    second = torchtk.train(small_spec, overrides=["optimizer.params.lr=0.02"]).run_dir
    return first, second


def test_two_runs_that_differ_in_lr_show_exactly_that_key(tk, two_lrs, tmp_path):
    first, second = two_lrs
    out = tmp_path / "plots" / "lr.png"
    result = tk("compare", first, second, "--json", "--out", out)
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["differences"] == [{"path": "optimizer.params.lr", "values": {first.name: 0.01, second.name: 0.02},
                                    "absent_in": []}]
    # two panels, loss and lr: the monitor, val_loss, is drawn in the loss panel
    assert data["plot"] == str(out) and png_size(out) == (int(PANEL_SIZE[0] * 2 * DPI), int(PANEL_SIZE[1] * DPI))
    for run, run_dir in zip(data["runs"], two_lrs):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        values = run["values"]["val_loss"]  # small_spec monitors val_loss
        assert (values["best"], values["best_epoch"]) == (metrics["best"]["val_loss"], metrics["best"]["epoch"])
        assert (values["last"], values["last_epoch"]) == (metrics["last"]["val_loss"], metrics["last"]["epoch"])
        assert run["values"]["train_loss"]["last"] == metrics["last"]["train_loss"]
        assert run["label"] == run_dir.name and run["status"] == "finished" and run["epochs_run"] == 3


def test_the_table_has_one_row_per_difference_then_the_results(tk, two_lrs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tk("compare", *two_lrs)
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert lines[0] == [run.name for run in two_lrs]
    assert lines[1] == ["optimizer.params.lr", "0.01", "0.02"]
    assert [line[0] for line in lines[2:-1]] == ["status", "epochs", "best", "last", "best", "last"]
    assert lines[-1] == ["wrote", "compare.png"] and png_size(tmp_path / "compare.png")[0] > 0


def test_spec_differences_by_path():
    a = {"name": "r", "loss": [{"name": "focal", "params": {"gamma": 2}}], "optimizer": {"params": {"lr": 0.1}},
         "callbacks": [], "data": {"transforms": {"train": ["flip"]}}}
    b = {"name": "r", "loss": [{"name": "bce", "params": {"gamma": 2}}, {"name": "l2"}], "optimizer": {"params": {}},
         "callbacks": [{"name": "ema", "params": {"decay": 0.9}}], "data": {"transforms": None}, "extra": 1}
    assert spec_differences([a, b]) == [
        ("loss[0].name", ["focal", "bce"]), ("loss[1]", [ABSENT, {"name": "l2"}]),
        ("optimizer.params.lr", [0.1, ABSENT]), ("callbacks[0]", [ABSENT, {"name": "ema", "params": {"decay": 0.9}}]),
        ("data.transforms", [{"train": ["flip"]}, None]), ("extra", [ABSENT, 1])]
    assert spec_differences([a, a, dict(a, name="s")]) == [("name", ["r", "r", "s"])]
    assert spec_differences([{"x": 1}, {"x": 1.0}]) == [("x", [1, 1.0])]  # 1 batch is not all of them
    assert spec_differences([a, json.loads(json.dumps(a))]) == []


def copy_run(run_dir: Path, to: Path, edit=None) -> Path:
    shutil.copytree(run_dir, to)
    if edit is not None:
        spec = json.loads((to / "spec.json").read_text())
        edit(spec)
        (to / "spec.json").write_text(json.dumps(spec))
    return to


def test_a_key_one_run_lacks_is_absent_there(tk, two_lrs, tmp_path):
    first, _ = two_lrs
    older = copy_run(first, tmp_path / "older", lambda s: s["trainer"].pop("keep_dev_run"))
    result = tk("compare", first, older, "--json", "--out", tmp_path / "c.png")
    assert result.json()["differences"] == [{"path": "trainer.keep_dev_run", "values": {first.name: False},
                                             "absent_in": ["older"]}]
    table = tk("compare", first, older, "--out", tmp_path / "c.png").stdout
    assert re.search(r"trainer\.keep_dev_run +false +absent", table), table
    same = tk("compare", first, copy_run(first, tmp_path / "copy"), "--out", tmp_path / "c.png").stdout
    assert re.search(r"\(spec\) +the same +the same", same), same


def test_runs_of_one_name_in_two_folders_are_labelled_by_path(two_lrs, tmp_path):
    first, _ = two_lrs
    twin = copy_run(first, tmp_path / "elsewhere" / first.name)
    comparison = compare_runs([first, twin])
    assert [r.label for r in comparison.runs] == [str(first), str(twin)]


def test_compare_png_overlays_each_runs_curves(two_lrs, small_spec, tmp_path):
    accuracy = torchtk.train(small_spec, overrides=["trainer.monitor=val_accuracy", "trainer.mode=max",
                                                    "trainer.epochs=2"]).run_dir
    comparison = compare_runs([*two_lrs, accuracy])
    figure = compare_figure(comparison.runs)
    loss, metric, lr = figure.axes
    assert [loss.get_title(), metric.get_title(), lr.get_title()] == ["loss", "val_accuracy", "learning rate"]
    labels = [r.label for r in comparison.runs]
    assert sorted(line.get_gid() for line in loss.lines) == sorted(f"{label}:{column}" for label in labels
                                                                    for column in ("train_loss", "val_loss"))
    assert [line.get_gid() for line in metric.lines if line.get_gid()] == [f"{labels[2]}:val_accuracy"]
    assert lr.get_yscale() == "linear"  # 0.005 to 0.02: within a decade
    assert [text.get_text() for text in figure.legends[0].get_texts()] == labels
    colours = {line.get_gid().split(":")[0]: line.get_color() for line in loss.lines}
    assert len(set(colours.values())) == 3
    assert png_size(comparison.write_png(tmp_path / "three.png")) == (int(3 * PANEL_SIZE[0] * DPI),
                                                                       int(PANEL_SIZE[1] * DPI))
    rows = dict(comparison.result_rows())
    assert rows["best monitored"][2].startswith("val_accuracy ") and rows["best monitored"][0].startswith("val_loss ")


def test_bad_input_exits_2(tk, two_lrs, tmp_path):
    first, second = two_lrs
    assert_clean_error(tk("compare", first), "needs two or more run directories, got 1")
    (tmp_path / "notes").mkdir()
    assert_clean_error(tk("compare", first, tmp_path / "notes"), "notes is not a run directory",
                       "no spec.json and train.log")
    assert_clean_error(tk("compare", first, tmp_path / "missing"), "missing does not exist")
    assert_clean_error(tk("compare", first, first), "given twice")
    empty = copy_run(first, tmp_path / "empty")
    (empty / "history.csv").write_text("epoch,train_loss\n")
    assert_clean_error(tk("compare", first, empty), f"{empty}: the run has no epochs in history.csv")
    (empty / "history.csv").unlink()
    assert_clean_error(tk("compare", first, empty), f"{empty}: the run has no epochs")
    broken = copy_run(first, tmp_path / "broken")
    (broken / "history.csv").write_text("epoch,train_loss\n1,lots\n")
    assert_clean_error(tk("compare", first, broken), "history.csv:2: not a history row")
    (tmp_path / "file").write_text("")
    assert_clean_error(tk("compare", first, second, "--out", tmp_path / "file" / "c.png"), "--out", "cannot write")


def test_tk_compare_does_not_import_torch(two_lrs, tmp_path):
    code = ("import sys, json\n"
            "from torchtk.core.cli import main\n"
            f"try:\n    main(['compare', *{[str(p) for p in two_lrs]!r}, '--out', {str(tmp_path / 'c.png')!r}])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "optimizer.params.lr" in out and json.loads(out.strip().splitlines()[-1]) == []


def hand_written_run(folder: Path, lr: float) -> Path:
    """A run directory with two param groups whose lrs halve every epoch (8 epochs)."""
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"name": folder.name, "optimizer": {"params": {"lr": lr}},
                                                  "trainer": {"monitor": "val_f1", "mode": "max"}}))
    (folder / "train.log").write_text("2026-01-01 10:00:00 start: epochs 1..8, device cpu, precision fp32, "
                                      "3 batches per epoch, pid 1 on host h\n2026-01-01 10:00:09 done\n")
    rows = ["epoch,train_loss,val_loss,val_f1,lr/head,lr/default"]
    rows += [f"{e},{1 / e},{1.2 / e},{1 - 1 / (e + 100 * lr)},{lr * 0.5 ** e},{lr * 0.05 * 0.5 ** e}"
             for e in range(1, 9)]
    (folder / "history.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_param_groups_share_a_line_style_and_a_wide_lr_range_gets_a_log_axis(tmp_path):
    comparison = compare_runs([hand_written_run(tmp_path / "a", 0.01), hand_written_run(tmp_path / "b", 0.001)])
    loss, metric, lr = compare_figure(comparison.runs).axes
    assert lr.get_yscale() == "log" and [t.get_text() for t in lr.get_legend().get_texts()] == ["lr/default", "lr/head"]
    styles = {line.get_gid(): line.get_linestyle() for line in lr.lines}
    assert styles == {"a:lr/default": "-", "a:lr/head": "--", "b:lr/default": "-", "b:lr/head": "--"}
    assert metric.get_title() == "val_f1"
    rows = dict(comparison.result_rows())
    assert rows["best val_f1"] == ["0.8889 (epoch 8)", "0.8765 (epoch 8)"]  # 1 - 1/9, 1 - 1/8.1


def test_long_values_are_cut_in_the_table_and_whole_in_json():
    from torchtk.core.compare import SHOWN_CHARS, Comparison

    long_value = {"name": "feature_extract", "params": {"train": ["a" * 50], "bn": "eval"}}
    comparison = Comparison(runs=[], differences=[("freeze[0]", [long_value, "x"])])
    (path, cells), = comparison.difference_rows()
    assert path == "freeze[0]" and len(cells[0]) == SHOWN_CHARS and cells[0].endswith("...") and cells[1] == "x"
