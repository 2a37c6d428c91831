"""Your own code without packaging: plugin files and modules (spec "plugins", -p),
{"import": ...} in every slot, and objects given to torchtk.train."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

import torchtk
from torchtk.core.errors import UserInputError

TINY = {
    "name": "own",
    "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [8], "out_features": 1}},
    "data": {"name": "rings", "params": {"n_positive": 40, "n_negative": 40}, "batch_size": 20},
    "loss": "bce_with_logits",
    "trainer": {"epochs": 2, "device": "cpu"},
}

MY_LOSSES = textwrap.dedent('''
    """A loss of my own, registered by name, and plain factories for {"import": ...}."""
    from pathlib import Path

    from pydantic import Field

    from torchtk import Component, Params, hookimpl

    Path(__file__).with_suffix(".imported").write_text("yes")  # a marker: this file was executed


    class SmoothBCEParams(Params):
        """BCE with label smoothing."""

        smoothing: float = Field(0.1, ge=0, lt=1, description="How far targets move towards 0.5.")


    @hookimpl
    def register_components(register):
        register(Component("loss", "smooth_bce", "BCE with label smoothing.", params=SmoothBCEParams))


    @hookimpl
    def make_loss(name, params):
        import torch.nn.functional as F

        def loss(output, target):
            target = target.float().reshape(output.shape) * (1 - params.smoothing) + 0.5 * params.smoothing
            return F.binary_cross_entropy_with_logits(output, target)

        return loss


    def focal(gamma=2.0):
        import torch.nn.functional as F

        def loss(output, target):
            bce = F.binary_cross_entropy_with_logits(output, target.float().reshape(output.shape), reduction="none")
            return ((1 - (-bce).exp()) ** gamma * bce).mean()

        return loss


    class CountEpochs:
        """A callback by import: a plain class with @hookimpl methods."""

        seen = []

        def __init__(self, tag="x"):
            self.tag = tag

        @hookimpl
        def on_epoch_end(self, state):
            CountEpochs.seen.append((self.tag, state.epoch))
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A spec folder with my_losses.py next to the spec, and a cwd elsewhere."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my_losses.py").write_text(MY_LOSSES)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the plugin's folder is appended for this test only
    yield folder
    for name in ("my_losses", "broken_plugin"):
        sys.modules.pop(name, None)


def write_spec(folder: Path, **changes) -> Path:
    spec = json.loads(json.dumps(TINY))
    spec["trainer"]["output_dir"] = str(folder / "runs")
    spec.update(changes)
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def only_run(folder: Path) -> Path:
    (run,) = sorted((folder / "runs").iterdir())
    return run


def test_a_spec_that_names_my_losses_py_trains_with_tk_train(tk, project):
    path = write_spec(project, plugins=["./my_losses.py"], loss={"name": "smooth_bce", "params": {"smoothing": 0.2}})
    result = tk("train", path)
    assert result.exit_code == 0, result.stderr
    saved = json.loads((only_run(project) / "spec.json").read_text())
    digest = hashlib.sha256((project / "my_losses.py").read_bytes()).hexdigest()
    assert saved["plugins"] == [{"file": str(project / "my_losses.py"), "sha256": digest}]
    assert saved["loss"][0]["name"] == "smooth_bce" and saved["loss"][0]["params"] == {"smoothing": 0.2}
    # the run's spec.json trains again, from anywhere: the plugin is recorded by its absolute path
    again = tk("train", only_run(project) / "spec.json", "--set", f"trainer.output_dir={project / 'again'}")
    assert again.exit_code == 0, again.stderr


def test_the_p_flag_loads_a_plugin_file_for_train_list_show_and_validate(tk, project):
    path = write_spec(project, loss="smooth_bce")
    plugin = str(project / "my_losses.py")
    assert tk("train", path).exit_code == 2  # without the plugin, smooth_bce is unknown
    listed = tk("list", "losses", "-p", plugin, "--json").json()
    assert any(row["name"] == "smooth_bce" and row["plugin"] == "my_losses" for row in listed)
    assert "smoothing" in tk("show", "loss", "smooth_bce", "-p", plugin).stdout
    assert tk("validate", path, "-p", plugin).exit_code == 0
    result = tk("train", path, "--plugin", plugin)
    assert result.exit_code == 0, result.stderr
    saved = json.loads((only_run(project) / "spec.json").read_text())
    assert saved["plugins"][0]["file"] == plugin  # -p plugins are recorded, so spec.json re-runs


@pytest.mark.parametrize("source, expected", [
    ("def broken(:\n", r"SyntaxError: .* \(line 1\)"),
    ("import json\nraise RuntimeError('no licence server')\n", r"RuntimeError: no licence server \(line 2\)"),
    ("import not_installed_anywhere\n", r"ModuleNotFoundError: No module named 'not_installed_anywhere' \(line 1\)"),
    ("import sys\nsys.exit(3)\n", r"it called sys.exit\(3\)"),
])
def test_a_broken_plugin_file_is_exit_2_naming_the_file(tk, project, source, expected):
    (project / "broken_plugin.py").write_text(source)
    path = write_spec(project, plugins=["./broken_plugin.py"])
    for result in (tk("train", path), tk("train", write_spec(project), "-p", project / "broken_plugin.py"),
                   tk("list", "losses", "-p", project / "broken_plugin.py")):
        assert result.exit_code == 2, result.stderr
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert f"plugin file {project / 'broken_plugin.py'} cannot be loaded" in line
        assert re.search(expected, line), line
        assert "Traceback" not in result.stderr


def test_a_missing_plugin_file_or_module_is_exit_2_naming_it(tk, project):
    missing = tk("train", write_spec(project, plugins=["./nope.py"]))
    assert missing.exit_code == 2
    assert f"plugins[0]: plugin file ./nope.py not found (relative to {project})" in missing.stderr
    no_module = tk("validate", write_spec(project, plugins=["no_such_pkg.tricks"]))
    assert no_module.exit_code == 2 and "plugins[0]: no module named 'no_such_pkg.tricks'" in no_module.stderr
    flag = tk("train", write_spec(project), "-p", "./nope.py")
    assert flag.exit_code == 2 and "-p ./nope.py: plugin file ./nope.py not found" in flag.stderr
    assert "relative to the current directory" in flag.stderr


def test_tk_validate_lists_plugin_files_without_importing_them(tk, project):
    path = write_spec(project, plugins=["./my_losses.py", "json.tool"], loss="smooth_bce")
    result = tk("validate", path, "--json")
    assert result.exit_code == 0, result.stderr
    assert not (project / "my_losses.imported").exists() and "my_losses" not in sys.modules
    data = result.json()
    assert data["imports"][0] == {"path": "plugins[0]", "module": "my_losses", "object": str(project / "my_losses.py"),
                                  "plugin": "file", "imported": False}
    assert data["imports"][1]["path"] == "plugins[1]" and data["imports"][1]["module"] == "json.tool"
    assert data["unchecked"] == [{"path": "loss[0]", "name": "smooth_bce", "reason": data["unchecked"][0]["reason"]}]
    assert "spec's plugins were not imported" in data["unchecked"][0]["reason"]
    text = tk("validate", path)
    assert (f"plugins[0]: tk train will import the plugin file {project / 'my_losses.py'} as module my_losses"
            in text.stderr) and "tk validate did not import it" in text.stderr
    assert not (project / "my_losses.imported").exists()
    # a name misspelt in the spec is still an error when every plugin is loaded (-p names it)
    checked = tk("validate", write_spec(project, plugins=["./my_losses.py"], loss="smooth_bc"), "-p",
                 project / "my_losses.py")
    assert checked.exit_code == 2 and "did you mean 'smooth_bce'" in checked.stderr.lower()
    assert (project / "my_losses.imported").exists()  # named on the command line: imported, as pytest -p does


def test_load_spec_imports_no_plugin_file(project):
    path = write_spec(project, plugins=["./my_losses.py"], loss="smooth_bce")
    spec = torchtk.load_spec(path)
    assert spec.plugins[0].file == str(project / "my_losses.py")
    assert not (project / "my_losses.imported").exists()


def test_import_works_for_a_loss_a_scheduler_a_callback_an_optimizer_and_a_metric(tk, project):
    path = write_spec(
        project, plugins=["./my_losses.py"],
        loss={"import": "my_losses:focal", "params": {"gamma": 1.0}},
        optimizer={"import": "torch.optim:SGD", "params": {"lr": 0.05, "momentum": 0.9}},
        scheduler=[{"import": "torch.optim.lr_scheduler:StepLR", "params": {"step_size": 1, "gamma": 0.5}},
                   {"import": "torch.optim.lr_scheduler:ReduceLROnPlateau", "params": {"patience": 5}}],
        callbacks=[{"import": "my_losses:CountEpochs", "params": {"tag": "mine"}}],
        metrics=[{"import": "torchmetrics.classification:BinaryAccuracy"}],
    )
    assert tk("validate", path).exit_code == 0
    result = tk("train", path)
    assert result.exit_code == 0, result.stderr
    assert sys.modules["my_losses"].CountEpochs.seen == [("mine", 1), ("mine", 2)]
    history = (only_run(project) / "history.csv").read_text().splitlines()
    header, first, second = history[0].split(","), history[1].split(","), history[2].split(",")
    assert "val_BinaryAccuracy" in header and "focal" not in header
    lr = header.index("lr")
    assert float(first[lr]) == pytest.approx(0.05) and float(second[lr]) == pytest.approx(0.025)  # StepLR stepped
    saved = json.loads((only_run(project) / "spec.json").read_text())
    assert saved["loss"][0] == {"import": "my_losses:focal", "params": {"gamma": 1.0}, "weight": 1.0}


def test_an_import_that_does_not_fit_is_exit_2_naming_the_spec_path(tk, project):
    bad_params = tk("train", write_spec(project, plugins=["./my_losses.py"],
                                        loss={"import": "my_losses:focal", "params": {"gama": 1.0}}))
    assert bad_params.exit_code == 2
    assert "loss[0].params: my_losses:focal does not accept these params" in bad_params.stderr
    missing = tk("validate", write_spec(project, scheduler={"import": "nowhere_mod:sched"}))
    assert missing.exit_code == 2 and "scheduler[0].import: no module named 'nowhere_mod'" in missing.stderr


def test_torchtk_train_takes_a_model_and_a_loss_object_and_spec_json_records_them(tmp_path):
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

    def my_loss(output, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(output, target.float().reshape(output.shape))

    spec = {key: value for key, value in TINY.items() if key not in ("model", "loss")}
    spec["trainer"] = {**TINY["trainer"], "output_dir": str(tmp_path / "runs")}
    before = [p.detach().clone() for p in net.parameters()]
    result = torchtk.train(spec, model=net, loss=my_loss, optimizer=functools.partial(torch.optim.SGD, lr=0.1),
                           progress=False)
    assert result.model is net and any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    saved = json.loads((result.run_dir / "spec.json").read_text())
    assert saved["model"] == {"object": "<python object: torch.nn.modules.container.Sequential>", "params": {}}
    qualname = my_loss.__qualname__.replace("<", "").replace(">", "")  # test_...<locals>.my_loss
    assert saved["loss"][0]["object"] == f"<python object: {__name__}.{qualname}>"
    assert saved["optimizer"]["object"] == "<python object: functools.partial(torch.optim.sgd.SGD)>"
    assert "cannot be re-run from this spec.json alone" in saved["notes"][0]
    with pytest.raises(UserInputError, match=r"model: <python object: .*Sequential> was an object given from Python"):
        torchtk.train(result.run_dir / "spec.json", progress=False)
    # objects may also sit in the spec dict itself (no "Object of type function is not JSON serializable")
    inline = torchtk.train({**spec, "model": net, "loss": [my_loss, {"name": "l2_regularization"}]}, progress=False)
    assert json.loads((inline.run_dir / "spec.json").read_text())["loss"][1]["name"] == "l2_regularization"
    with pytest.raises(TypeError, match="unexpected keyword argument.*'modle'"):
        torchtk.train(spec, modle=net)


def test_an_edited_plugin_file_is_loaded_again_in_the_same_process(project):
    path = write_spec(project, plugins=["./my_losses.py"], loss="smooth_bce")
    torchtk.train(path, progress=False)
    (project / "my_losses.py").write_text(MY_LOSSES.replace('"smooth_bce"', '"smoother_bce"'))
    path = write_spec(project, plugins=["./my_losses.py"], loss="smoother_bce")
    assert torchtk.train(path, progress=False).last["train_loss"] > 0


def test_a_plugin_file_named_like_an_imported_module_is_refused(tk, project):
    (project / "json.py").write_text("x = 1\n")
    result = tk("train", write_spec(project, plugins=["./json.py"]))
    assert result.exit_code == 2
    assert "would be imported as 'json', but a module of that name is already imported" in result.stderr
    assert "rename the file" in result.stderr


def test_plan_and_summary_take_p_too(tk, project):
    path = write_spec(project, loss="smooth_bce")
    plugin = project / "my_losses.py"
    assert tk("plan", path, "-p", plugin, "-o", project / "lr.png").exit_code == 0
    assert tk("summary", path, "-p", plugin).exit_code == 0
