"""Every tk command, its exit codes, and that bad input never shows a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_list_without_kind_counts_components_per_kind(tk):
    result = tk("list", "--json")
    assert result.exit_code == 0
    counts = result.json()
    assert counts["loss"] >= 3 and counts["optimizer"] >= 3 and set(counts) >= {"loss", "scheduler", "freeze"}


def test_list_losses_shows_summary_and_plugin(tk):
    result = tk("list", "losses")
    assert result.exit_code == 0
    assert "focal" in result.stdout and "losses.classification" in result.stdout
    rows = tk("list", "loss", "--json").json()
    focal = next(r for r in rows if r["name"] == "focal")
    assert focal["plugin"] == "torchtk.plugins.losses.classification" and focal["summary"]


def test_list_filters_by_wildcard(tk):
    rows = tk("list", "losses", "--filter", "l*_regularization", "--json").json()
    assert [r["name"] for r in rows] == ["l1_regularization", "l2_regularization"]


def test_show_lists_every_param(tk):
    result = tk("show", "loss", "focal")
    assert result.exit_code == 0
    for text in ("alpha", "gamma", "from_logits", "minimum 0", "torchtk.plugins.losses.classification"):
        assert text in result.stdout
    assert tk("show", "losses", "focal", "--json").json()["name"] == "focal"


def test_show_unknown_name_suggests_and_exits_2(tk):
    assert_clean_error(tk("show", "loss", "facal"), "Did you mean 'focal'?", "tk list losses")


def test_unknown_kind_exits_2(tk):
    assert_clean_error(tk("list", "lossez"), "Did you mean 'losses'?", "Valid kinds")


def test_plugins_lists_builtins_with_distribution(tk):
    result = tk("plugins", "--json")
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in result.json()["plugins"]}
    losses = plugins["torchtk.plugins.losses.classification"]
    assert losses["builtin"] and losses["distribution"] == "torchtk" and losses["status"] == "ok"
    assert losses["provides"]["loss"] >= 1
    assert "ok" in tk("plugins").stdout


def test_validate_prints_the_resolved_spec(tk, spec_file):
    result = tk("validate", spec_file(), "--set", "trainer.epochs=5")
    assert result.exit_code == 0
    resolved = result.json()
    assert resolved["trainer"]["epochs"] == 5
    assert resolved["loss"][0]["params"]["from_logits"] is True
    assert "valid" in result.stderr


def test_validate_invalid_param_names_path(tk, spec_file, small_spec):
    small_spec["loss"][0]["params"]["gamma"] = -1
    assert_clean_error(tk("validate", spec_file(small_spec)), "loss[0].params.gamma", "greater than or equal to 0")


def test_validate_unknown_key(tk, spec_file, small_spec):
    small_spec["trainer"]["epochz"] = 1
    assert_clean_error(tk("validate", spec_file(small_spec)), "trainer.epochz", "unknown key")


def test_validate_malformed_json(tk, spec_file):
    assert_clean_error(tk("validate", spec_file(text='{"name": }')), "spec.json:1:10: malformed JSON")


def test_validate_missing_file(tk, tmp_path):
    assert_clean_error(tk("validate", tmp_path / "missing.json"), "no such spec file")


def test_validate_bad_set_path_and_type(tk, spec_file):
    path = spec_file()
    assert_clean_error(tk("validate", path, "--set", "trainer.epochz=3"), "--set trainer.epochz=3", "no such setting")
    assert_clean_error(tk("validate", path, "--set", "trainer.epochs=abc"), "--set trainer.epochs=abc",
                       "valid integer")
    assert_clean_error(tk("validate", path, "--set", "trainer.epochs"), "expected key.path=value")


def test_unknown_component_in_spec(tk, spec_file, small_spec):
    small_spec["optimizer"]["name"] = "adma"
    assert_clean_error(tk("validate", spec_file(small_spec)), "optimizer.name", "Did you mean 'adam'")


def test_bad_cli_usage_exits_2(tk):
    result = tk("train")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tk, tmp_path):
    result = tk("--debug", "validate", tmp_path / "missing.json")
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_schema_is_json_schema_with_component_params(tk):
    result = tk("schema")
    assert result.exit_code == 0
    schema = result.json()
    assert schema["type"] == "object" and "loss" in schema["properties"]
    assert "focal" in schema["$defs"]["loss_ref"]["anyOf"][0]["anyOf"][0]["enum"]


def test_examples_lists_rings(tk):
    result = tk("examples", "--json")
    assert result.exit_code == 0 and "rings" in result.json()
    assert "tk train rings" in tk("examples").stdout


def test_train_json_reports_run_dir_and_metrics(tk, spec_file):
    result = tk("train", spec_file(), "--json", "--set", "trainer.epochs=2")
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["epochs_run"] == 2 and "val_accuracy" in summary["best"]


def test_train_plain_output_has_a_line_per_epoch(tk, spec_file):
    result = tk("train", spec_file(), "--set", "trainer.epochs=2")
    assert result.exit_code == 0
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout and "best val_loss" in result.stdout


def test_train_nan_loss_exits_1(tk, spec_file, small_spec):
    small_spec["optimizer"]["params"]["lr"] = 1e30
    small_spec["callbacks"] = []
    result = tk("train", spec_file(small_spec), "--set", "trainer.epochs=3")
    assert result.exit_code == 1
    assert "became nan" in result.stderr.lower() or "became inf" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "losses"], ["plugins"], ["show", "loss", "focal"]])
def test_listing_commands_do_not_import_torch(args):
    code = (
        "import sys\n"
        "from torchtk.core.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'matplotlib') if m in sys.modules)))\n"
    ).replace("import sys", "import sys, json")
    assert json.loads(run_python(code).splitlines()[-1]) == []


def test_python_m_torchtk_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "torchtk", "list", "--json"], capture_output=True, text=True)
    assert result.returncode == 0 and "loss" in json.loads(result.stdout)


def test_sigterm_keeps_the_last_checkpoint_and_the_run_resumes(spec_file, small_spec, tmp_path):
    import os
    import signal
    import time

    import torch

    small_spec["data"]["params"] = {"n_positive": 2000, "n_negative": 6000}
    small_spec["trainer"]["epochs"] = 400
    path = spec_file(small_spec)
    tk_bin = os.path.join(os.path.dirname(sys.executable), "tk")
    process = subprocess.Popen([tk_bin, "train", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs"
    deadline = time.time() + 60
    while time.time() < deadline and not list(runs.glob("*/checkpoints/last.pt")):
        time.sleep(0.1)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    run_dir = next(runs.iterdir())
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert 1 <= checkpoint["epoch"] < 400
    resumed = subprocess.run([tk_bin, "train", str(path), "--resume", str(run_dir), "--json",
                              "--set", f"trainer.epochs={checkpoint['epoch'] + 1}"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_run"] == checkpoint["epoch"] + 1


def test_a_rings_run_does_not_import_torchvision(small_spec, tmp_path):
    code = ("import sys, json, torchtk\n"
            f"torchtk.train(json.loads({json.dumps(json.dumps(small_spec))}))\n"
            "print('torchvision' in sys.modules)")
    assert run_python(code).splitlines()[-1] == "False"


def test_a_broken_plugin_is_one_warning_and_listed_with_its_reason(tk, installed_plugins):
    installed_plugins("torchtk-broken", {"broken": "torchtk_fake_missing_module"})
    result = tk("list", "losses")
    assert result.exit_code == 0 and "focal" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'broken' failed to load" in warnings[0]
    plugins = {p["name"]: p for p in tk("plugins", "--json").json()["plugins"]}
    assert plugins["broken"]["status"].startswith("broken: ModuleNotFoundError")
    assert plugins["broken"]["distribution"] == "torchtk-broken"


# -- found by adversarial testing: each input problem is exit 2 with one clear message --------


@pytest.mark.parametrize("setting, fragments", [
    ("loss=cross_entropy", ["loss[0]: 'cross_entropy' does not fit", "at least 2"]),
    ("model.params.in_features=3", ["model: the forward pass fails"]),
    ("loss=triplet_margin", ["loss[0]: 'triplet_margin' does not fit", "(anchor, positive, negative)"]),
    ("model.params.hidden=[-1]", ["model.params.hidden[0]", "greater than or equal to 1"]),
    ('optimizer={"name": "sgd", "params": {"lr": 0.1, "nesterov": true}}', ["optimizer.params", "nesterov needs"]),
    ("optimizer.params.betas=[1.5, 0.9]", ["optimizer.params.betas[0]", "less than 1"]),
    ('freeze=[{"name": "freeze", "params": {"modules": [""]}}]', ["no trainable parameter"]),
    ('freeze=[{"name": "freeze", "params": {"modules": ["backbone."]}}]', ["freeze[0]: applying 'freeze' failed"]),
    ("trainer.device=mps", ["MPS is not available"]),
    ('scheduler={"name": "lambda", "params": {"lr_lambda": "-1"}}', ["scheduler[0].params.lr_lambda", ">= 0"]),
    ("seed=99999999999999999999", ["seed", "less than"]),
    ("optimizer.params.lr=Infinity", ["optimizer.params.lr", "valid number"]),
])
def test_input_problems_found_before_training_exit_2(tk, spec_file, tmp_path, setting, fragments):
    result = tk("train", spec_file(), "--set", setting)
    assert_clean_error(result, *fragments)
    assert not list((tmp_path / "runs").glob("*")), "nothing is written for a bad input"


def test_output_dir_that_is_a_file_exits_2(tk, spec_file, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_clean_error(tk("train", spec_file(), "--set", f"trainer.output_dir={tmp_path / 'afile'}"),
                       "trainer.output_dir")


def test_invalid_utf8_names_the_file(tk, tmp_path):
    path = tmp_path / "u.json"
    path.write_bytes(b'{"name": "x\xff"}')
    assert_clean_error(tk("validate", path), "u.json:1: not valid UTF-8")


@pytest.mark.parametrize("setting, fragment", [
    ("trainer..epochs=3", "is not a key path"),
    ("loss[-1].weight=2", "is not a key path"),
    ("name.foo=1", "name is a string, not an object"),
])
def test_malformed_set_paths_exit_2(tk, spec_file, setting, fragment):
    assert_clean_error(tk("validate", spec_file(), "--set", setting), fragment)


def test_set_expands_bare_names_in_lists_and_single_components(tk, spec_file, small_spec):
    small_spec.update(loss="bce_with_logits", metrics=["accuracy"])
    result = tk("validate", spec_file(small_spec), "--set", "metrics[0].params.threshold=0.5",
                "--set", "loss[0].weight=2")
    assert result.exit_code == 0, result.stderr
    resolved = result.json()
    assert resolved["metrics"][0]["params"]["threshold"] == 0.5 and resolved["loss"][0]["weight"] == 2


def test_yaml_duplicate_keys_are_errors_and_exponents_are_numbers(tk, spec_file, small_spec):
    import yaml

    text = yaml.safe_dump(small_spec).replace("lr: 0.01", "lr: 1e-3")
    assert tk("validate", spec_file(name="s.yaml", text=text)).json()["optimizer"]["params"]["lr"] == 0.001
    assert_clean_error(tk("validate", spec_file(name="d.yaml", text="name: a\nname: b\n")),
                       "d.yaml:2:1: malformed YAML: the key 'name' appears twice")


def test_json_duplicate_key_has_line_and_column(tk, spec_file):
    assert_clean_error(tk("validate", spec_file(text='{"name": "x",\n "name": "y"}')), "spec.json:2:2:")


def test_scope_by_the_short_plugin_name_tk_list_shows(tk):
    assert tk("show", "loss", "losses.classification::focal", "--json").json()["name"] == "focal"


def test_filter_needs_a_kind(tk):
    assert_clean_error(tk("list", "--filter", "*dice*"), "--filter needs a KIND")


def test_plan_output_that_cannot_be_written_exits_2(tk, tmp_path):
    assert_clean_error(tk("plan", "rings", "-o", str(tmp_path)), "--output")


def test_corrupt_checkpoint_on_resume_is_named_plainly(tk, spec_file, tmp_path):
    path = spec_file()
    assert tk("train", path, "--set", "trainer.epochs=1").exit_code == 0
    run_dir = next((tmp_path / "runs").iterdir())
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"garbage" * 10)
    result = tk("train", path, "--resume", run_dir)
    assert_clean_error(result, "is not a readable torchtk checkpoint")
    assert "weights_only=False" not in result.stderr


def test_ctrl_c_before_training_exits_130(tk, monkeypatch):
    from torchtk.core import spec

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spec, "load_resolved", interrupted)  # Ctrl-C while the spec is read and resolved
    result = tk("validate", "rings")
    assert result.exit_code == 130 and "interrupted" in result.stderr


def test_trace_switch_prints_hook_calls(spec_file, small_spec):
    import os

    small_spec["trainer"]["epochs"] = 1
    env = {**os.environ, "TORCHTK_TRACE_PLUGINS": "1"}
    tk_bin = os.path.join(os.path.dirname(sys.executable), "tk")
    result = subprocess.run([tk_bin, "train", str(spec_file(small_spec))], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert "torchtk trace: make_loss(name='focal') -> torchtk.plugins.losses.classification" in result.stderr
    assert re.search(r"torchtk trace: +on_step", result.stderr)


# -- the listing commands render plain data from torchtk.core.report ------------------------

SHADOW_FOCAL = """
    from torchtk import Component, Params, hookimpl

    class P(Params):
        '''Constant.'''

    @hookimpl
    def register_components(register):
        register(Component("loss", "focal", "Another focal loss.", params=P))
"""


def test_plugins_json_is_the_library_report(tk, installed_plugins):
    from torchtk.core.registry import get_registry
    from torchtk.core.report import plugin_report

    installed_plugins("torchtk-shadow", {"shadow": "torchtk_fake_shadow", "broken": "torchtk_fake_missing_module"},
                      {"torchtk_fake_shadow": SHADOW_FOCAL})
    result = tk("plugins", "--json")
    assert result.exit_code == 0
    report = plugin_report(get_registry())
    assert result.stdout == json.dumps(report, indent=2, default=str) + "\n"
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["shadow"] == {"name": "shadow", "builtin": False, "distribution": "torchtk-shadow",
                                 "version": "1.2.3", "provides": {"loss": 1},
                                 "hooks": ["register_components"], "status": "ok"}
    assert plugins["broken"]["status"].startswith("broken: ModuleNotFoundError")
    builtin_version = plugins["torchtk.plugins.losses.classification"]["version"]
    assert [c for c in report["conflicts"] if (c["kind"], c["name"]) == ("loss", "focal")] == []
    [clash] = [c for c in report["clashes"] if (c["kind"], c["name"]) == ("loss", "focal")]
    assert clash == {"kind": "loss", "name": "focal",
                     "winner": f"torchtk.plugins.losses.classification (torchtk {builtin_version})",
                     "shadowed": ["shadow (torchtk-shadow 1.2.3)"], "pick": ["shadow::focal"]}
    text = tk("plugins").stdout
    assert "datasets" in text and "broken" in text
    assert "clash: shadow (torchtk-shadow 1.2.3) also provides the loss name focal of" in " ".join(text.split())


def test_list_renders_the_library_rows(tk, installed_plugins, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # installed contrib plugins' long names would wrap the summary column
    from torchtk.core import report
    from torchtk.core.registry import get_registry

    installed_plugins("torchtk-shadow", {"shadow": "torchtk_fake_shadow"}, {"torchtk_fake_shadow": SHADOW_FOCAL})
    result = tk("list", "losses", "--json")
    registry = get_registry()
    assert result.stdout == json.dumps(report.component_list(registry, "losses"), indent=2) + "\n"
    assert tk("list", "--json").json() == report.kind_counts(registry)
    rows = {r["name"]: r for r in report.component_rows(registry, "loss")}
    assert rows["focal"]["provider"] == "losses.classification"  # the built-in keeps its name
    assert rows["focal"]["also"] == ["shadow::focal"]
    assert rows["tversky"]["provider"] == "losses.segmentation"
    assert rows["l2_regularization"]["aliases"] == ["l2_penalty"]
    focal = next(r for r in report.component_list(registry, "loss") if r["name"] == "focal")
    assert focal["conflict"] is False and focal["plugin"] == "torchtk.plugins.losses.classification"
    assert "(also: shadow::focal)" in " ".join(tk("list", "losses").stdout.split())


def test_short_provider_names_builtins_by_module_and_others_by_distribution():
    from torchtk import Component
    from torchtk.core.report import short_provider

    builtin = Component("loss", "x", "X.", plugin="torchtk.plugins.losses.classification", distribution="torchtk",
                        version="0.1.0")
    third = Component("loss", "x", "X.", plugin="mine", distribution="torchtk-mine", version="2.0")
    assert short_provider(builtin) == "losses.classification"
    assert short_provider(third) == "mine (torchtk-mine 2.0)"
