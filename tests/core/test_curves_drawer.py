"""``curves.png`` drawn by a helper process in a fresh process (matplotlib's import off the
run's path and out of its memory), in-process where matplotlib is loaded or the helper fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from torchtk.core.curves import CurvesDrawer

HISTORY = [{"epoch": 1, "train_loss": 0.9, "val_loss": 1.0, "val_accuracy": 0.5, "lr": 0.01},
           {"epoch": 2, "train_loss": 0.5, "val_loss": float("nan"), "val_accuracy": 0.7, "lr": 0.01}]


def test_a_fresh_process_has_the_helper_draw_and_never_imports_matplotlib(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from torchtk.core import curves
        from torchtk.core.curves import CurvesDrawer
        curves.HELPER_PROCESS = True  # what the tk console script sets
        drawer = CurvesDrawer.start()
        assert drawer.process is not None
        path = drawer.draw(Path({str(tmp_path / "curves.png")!r}), {HISTORY!r}, "run", "val_accuracy", 2)
        assert drawer.process is None and path.exists()
        assert not [m for m in sys.modules if m.startswith("matplotlib")], "drawn in this process"
    """).replace("nan", "float('nan')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torchtk_train_in_a_long_lived_process_draws_here(tmp_path):
    assert CurvesDrawer.start().process is None  # HELPER_PROCESS is off outside the tk console script


def test_with_matplotlib_loaded_the_curves_are_drawn_here(tmp_path, monkeypatch):
    import matplotlib.figure  # noqa: F401

    from torchtk.core import curves

    monkeypatch.setattr(curves, "HELPER_PROCESS", True)
    drawer = CurvesDrawer.start()
    assert drawer.process is None
    assert drawer.draw(tmp_path / "curves.png", HISTORY, "run").exists()


def test_a_helper_that_fails_leaves_the_drawing_to_this_process(tmp_path):
    failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(1)"],
                               stdin=subprocess.PIPE)
    path = CurvesDrawer(failing).draw(tmp_path / "curves.png", HISTORY, "run")
    assert failing.returncode == 1 and path.exists()


def test_a_closed_drawer_ends_its_helper_without_writing(tmp_path):
    helper = subprocess.Popen([sys.executable, "-m", "torchtk.core.curves"], stdin=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    CurvesDrawer(helper).close()
    assert helper.returncode != 0 and helper.stderr.read() == b""
    assert list(tmp_path.iterdir()) == []


def test_a_helper_whose_run_died_exits_without_writing(tmp_path):
    helper = subprocess.Popen([sys.executable, "-m", "torchtk.core.curves"], stdin=subprocess.PIPE)
    helper.stdin.close()  # what the kernel does when the run's process is killed
    assert helper.wait(timeout=300) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_empty_history_draws_nothing_and_ends_the_helper(tmp_path):
    helper = subprocess.Popen([sys.executable, "-m", "torchtk.core.curves"], stdin=subprocess.PIPE)
    assert CurvesDrawer(helper).draw(tmp_path / "curves.png", []) is None
    assert helper.returncode is not None and not (tmp_path / "curves.png").exists()


def test_tk_train_in_a_fresh_process_ends_with_curves_png(spec_file, small_spec):
    import json

    small_spec["trainer"]["epochs"] = 1
    done = subprocess.run([sys.executable, "-m", "torchtk", "train", str(spec_file(small_spec)), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run_dir = json.loads(done.stdout)["run_dir"]
    with open(f"{run_dir}/curves.png", "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
