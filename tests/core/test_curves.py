"""curves.png: what the figure shows, read from matplotlib's Figure and Axes (not pixels)."""

from __future__ import annotations

import pytest

from torchtk.core.curves import curves_figure, panels, wants_log_scale, write_curves


def history(lrs, epochs=4, **extra):
    rows = []
    for epoch, lr in zip(range(1, epochs + 1), lrs):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_loss/dice": 0.5 / epoch,
               "train_loss/bce": 0.4 / epoch, "val_loss": 1.1 / epoch, "val_loss/dice": 0.6 / epoch,
               "val_loss/bce": 0.5 / epoch, "val_accuracy": 0.5 + 0.1 * epoch}
        row.update({key: value[epoch - 1] for key, value in extra.items()})
        if isinstance(lr, dict):
            row.update(lr)
        else:
            row["lr"] = lr
        rows.append(row)
    return rows


def axes_by_title(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_title_names_the_run_and_its_best_epoch():
    fig = curves_figure(history([0.1, 0.05, 0.01, 0.005]), name="rings", monitor="val_accuracy", best_epoch=3)
    title = fig._suptitle.get_text()
    assert title.startswith("rings") and "best val_accuracy 0.8 at epoch 3" in title


def test_train_and_val_of_one_quantity_share_a_colour_train_solid_val_dashed():
    fig = curves_figure(history([0.1] * 4), name="r")
    loss = lines_by_label(axes_by_title(fig)["loss"])
    for train, val in (("train_loss", "val_loss"), ("train_loss/dice", "val_loss/dice"),
                       ("train_loss/bce", "val_loss/bce")):
        assert loss[train].get_color() == loss[val].get_color(), (train, val)
        assert loss[train].get_linestyle() == "-" and loss[val].get_linestyle() == "--"
    colours = {loss[key].get_color() for key in ("train_loss", "train_loss/dice", "train_loss/bce")}
    assert len(colours) == 3  # different quantities, different colours


def test_best_epoch_marker_on_every_panel_at_the_best_epoch():
    fig = curves_figure(history([0.1, 0.05, 0.01, 0.005]), name="r", monitor="val_loss", best_epoch=2)
    for ax in fig.axes:
        marker = lines_by_label(ax)["best epoch 2"]
        assert list(marker.get_xdata()) == [2, 2] and marker.get_gid() == "best-epoch"
    no_best = curves_figure(history([0.1] * 4), name="r")
    assert not any("best epoch" in label for ax in no_best.axes for label in lines_by_label(ax))


def test_lr_axis_is_log_when_it_spans_more_than_a_decade():
    fig = curves_figure(history([0.1, 0.05, 0.01, 0.005]), name="r")
    assert axes_by_title(fig)["learning rate"].get_yscale() == "log"
    fig = curves_figure(history([0.1, 0.05, 0.02, 0.011]), name="r")
    assert axes_by_title(fig)["learning rate"].get_yscale() == "linear"
    assert wants_log_scale([0.1, 0.0, 0.009]) and not wants_log_scale([0.1, 0.0, 0.011])  # zeros do not count


def test_a_constant_lr_gets_no_panel_and_the_title_says_it():
    fig = curves_figure(history([0.01] * 4), name="rings")
    assert "learning rate" not in axes_by_title(fig)
    assert "lr 0.01 (constant)" in fig._suptitle.get_text()
    groups = [{"lr/head": 0.003}, {"lr/head": 0.003}, {"lr/head": 0.003, "lr/backbone": 0.001},
              {"lr/head": 0.003, "lr/backbone": 0.001}]
    fig = curves_figure(history(groups), name="ft")
    assert "learning rate" not in axes_by_title(fig)
    assert "lr constant: head 0.003, backbone 0.001 from epoch 3" in fig._suptitle.get_text()


def test_param_groups_are_plotted_by_name_including_one_that_joins_later():
    groups = [{"lr/head": 0.003}, {"lr/head": 0.002}, {"lr/head": 0.001, "lr/fc1": 0.001},
              {"lr/head": 0.0005, "lr/fc1": 0.0005}]
    fig = curves_figure(history(groups), name="ft")
    lines = lines_by_label(axes_by_title(fig)["learning rate"])
    assert {"lr/head", "lr/fc1"} <= set(lines)
    fc1 = list(lines["lr/fc1"].get_ydata())
    assert fc1[2:] == [0.001, 0.0005] and all(value != value for value in fc1[:2])  # NaN before it joined


def test_panels_sort_columns_by_kind():
    keys = ["train_loss", "train_loss/dice", "val_loss", "val_loss/dice", "val_accuracy", "train_accuracy",
            "grad_norm", "lr/head", "lr/default"]
    assert panels(keys) == [("loss", ["train_loss", "train_loss/dice", "val_loss", "val_loss/dice"]),
                            ("metrics", ["val_accuracy", "train_accuracy"]), ("other", ["grad_norm"]),
                            ("learning rate", ["lr/head", "lr/default"])]


def test_write_curves_writes_a_png_and_nothing_for_an_empty_history(tmp_path):
    path = write_curves(tmp_path / "curves.png", history([0.1, 0.01, 0.001, 0.0001]), "r", "val_loss", 4)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert write_curves(tmp_path / "none.png", [], "r") is None and not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("best_epoch", [None, 99])
def test_a_best_epoch_not_in_the_history_draws_no_marker(best_epoch):
    fig = curves_figure(history([0.1] * 4), name="r", monitor="val_loss", best_epoch=best_epoch)
    assert not any(line.get_gid() == "best-epoch" for ax in fig.axes for line in ax.get_lines())


def test_drawing_leaves_pyplot_alone(tmp_path):
    """No pyplot, no backend switch: a notebook's figures and backend are not touched."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from torchtk.core.curves import write_curves; "
            f"write_curves(Path({str(tmp_path / 'c.png')!r}), [{{'epoch': 1, 'train_loss': 1.0, 'lr': 0.1}}], 'r'); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
