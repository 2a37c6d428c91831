"""A component that fails mid-run: exit 1, one message naming its spec path, name, plugin
and distribution (and the hook), the last checkpoint kept, ``on_exception`` called. A
``SystemExit`` from user code is such a failure too, never a clean exit."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.faults

PLUGIN = "(plugin faults, torchtk-faults 1.2.3)"


def failing_spec(small_spec, tmp_path, callback_params):
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 20}},
                               {"name": "explode", "params": callback_params},
                               {"name": "record_exception", "params": {"path": str(tmp_path / "on_exception.txt")}}]
    return small_spec


def assert_failed_keeping_epoch_1(result, tmp_path, exception):
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert f"Last good checkpoint: {run / 'checkpoints' / 'last.pt'}" in result.stderr
    assert (tmp_path / "on_exception.txt").read_text() == exception
    return run


@pytest.mark.parametrize("hook", ["on_epoch_start", "on_step", "on_validation_end", "on_epoch_end",
                                  "on_save_checkpoint"])
def test_an_exception_in_a_plugins_hook_names_the_component_its_path_and_plugin(tk, spec_file, small_spec, tmp_path,
                                                                                 faults_plugin, hook):
    spec = failing_spec(small_spec, tmp_path, {"hook": hook, "epoch": 2})
    result = tk("train", spec_file(spec))
    run = assert_failed_keeping_epoch_1(result, tmp_path, "ValueError")
    assert result.stderr.startswith(f"error: the run failed in epoch 2: callbacks[1] 'explode' {PLUGIN} raised "
                                    f"ValueError in {hook}: boom in {hook}. "), result.stderr
    assert f"failed in epoch 2: callbacks[1] 'explode' {PLUGIN} raised ValueError in {hook}" in (
        run / "train.log").read_text()


def test_sys_exit_in_a_plugins_hook_fails_the_run_instead_of_ending_it_cleanly(tk, spec_file, small_spec, tmp_path,
                                                                               faults_plugin):
    """Found: a hook raising SystemExit(0) ended tk train with exit 0 after 1 of 5 epochs."""
    small_spec["trainer"]["epochs"] = 5
    spec = failing_spec(small_spec, tmp_path, {"hook": "on_epoch_end", "epoch": 2, "exit": True})
    result = tk("train", spec_file(spec))
    assert_failed_keeping_epoch_1(result, tmp_path, "SystemExit")
    assert (f"callbacks[1] 'explode' {PLUGIN} called sys.exit(0) in on_epoch_end; a component may not end the run"
            in result.stderr)


def test_a_model_that_fails_while_training_is_named_by_its_import_path(tk, spec_file, small_spec, tmp_path,
                                                                       faults_plugin):
    small_spec["model"] = {"import": "torchtk_fake_faults:flaky_model", "params": {"fail_after": 20}}
    small_spec["loss"] = [small_spec["loss"][0]]
    small_spec["callbacks"] = [{"name": "record_exception", "params": {"path": str(tmp_path / "on_exception.txt")}}]
    result = tk("train", spec_file(small_spec))
    assert_failed_keeping_epoch_1(result, tmp_path, "RuntimeError")
    assert ("the run failed in epoch 2: model 'torchtk_fake_faults:flaky_model' (imported) raised RuntimeError: "
            "flaky forward" in result.stderr)


def test_a_plugins_loss_that_fails_while_training_is_named_with_its_plugin_and_distribution(tk, spec_file, small_spec,
                                                                                             tmp_path, faults_plugin):
    small_spec["loss"] = [{"name": "flaky_loss", "params": {"fail_after": 20}}]
    small_spec["callbacks"] = [{"name": "record_exception", "params": {"path": str(tmp_path / "on_exception.txt")}}]
    result = tk("train", spec_file(small_spec))
    assert_failed_keeping_epoch_1(result, tmp_path, "ArithmeticError")
    assert (f"the run failed in epoch 2: loss[0] 'flaky_loss' {PLUGIN} raised ArithmeticError: flaky loss"
            in result.stderr), result.stderr


def test_a_built_in_component_is_named_with_its_plugin_and_distribution(small_spec, monkeypatch):
    """Not only plugins' hooks: whatever raises while training (here the optimizer's step) is named."""
    import torchtk
    from torchtk.core.errors import RunFailed

    def step(self, closure=None):
        raise ArithmeticError("no step today")

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(RunFailed) as failed:
        torchtk.train(small_spec)
    assert str(failed.value).startswith("the run failed in epoch 1: optimizer 'adam' (plugin torchtk.plugins.optimizers, "
                                        "torchtk "), failed.value
    assert "raised ArithmeticError: no step today. No checkpoint was written yet." in str(failed.value)


def test_a_model_factory_that_calls_sys_exit_is_an_input_error_not_a_clean_exit(tk, spec_file, small_spec, tmp_path):
    """Found: {"import": "sys:exit"} as the model ended tk train with exit 0 and no message.
    Like any other failure while building, it is an input error naming the spec path."""
    small_spec["model"] = {"import": "sys:exit"}
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == "error: model: building model 'sys:exit' failed: it called sys.exit(None)"
    assert not (tmp_path / "runs").exists()


def test_a_plugin_that_calls_sys_exit_when_imported_is_a_broken_plugin(tk, installed_plugins):
    installed_plugins("torchtk-quitter", {"quitter": "torchtk_fake_quitter"},
                      {"torchtk_fake_quitter": "import sys\nsys.exit(0)\n"})
    result = tk("list", "losses")
    assert result.exit_code == 0 and "focal" in result.stdout
    assert "'quitter' failed to load and is skipped: SystemExit" in result.stderr
