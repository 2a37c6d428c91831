"""The engine end to end: outputs, determinism, resume, callbacks, failures."""

from __future__ import annotations

import csv
import json
import types

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, Params, hookimpl
from torchtk.core.errors import RunFailed, RunInterrupted, UserInputError
from torchtk.testing import registry_with


def read_history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def test_bundled_rings_example_reaches_95_percent_and_writes_every_output(tmp_path):
    result = torchtk.train("rings", overrides=[f"trainer.output_dir={tmp_path}"])
    assert result.best["val_accuracy"] >= 0.95
    assert result.last["val_accuracy"] >= 0.95
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path and run_dir.name.startswith("rings-")
    for name in ("spec.json", "train.log", "history.csv", "metrics.json", "curves.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert len(read_history(run_dir)) == len(result.history)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best"]["val_accuracy"] == result.best["val_accuracy"]
    assert json.loads((run_dir / "spec.json").read_text())["name"] == "rings"
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_history_has_per_term_losses_metrics_and_lr(small_spec):
    result = torchtk.train(small_spec)
    columns = list(read_history(result.run_dir)[0])
    assert columns == ["epoch", "train_loss", "train_loss/focal", "train_loss/l2_regularization", "val_loss",
                       "val_loss/focal", "val_loss/l2_regularization", "val_accuracy", "lr"]
    row = result.history[0]
    assert row["train_loss"] == pytest.approx(row["train_loss/focal"] + row["train_loss/l2_regularization"])
    # lr is the rate used during each epoch: StepLR(step_size=2, gamma=0.5) decays after epoch 2
    assert [r["lr"] for r in result.history] == [0.01, 0.01, 0.005]


def test_same_spec_and_seed_give_the_same_history_bit_for_bit(small_spec):
    first = torchtk.train(small_spec)
    second = torchtk.train(small_spec)
    assert (first.run_dir / "history.csv").read_bytes() == (second.run_dir / "history.csv").read_bytes()
    small_spec["seed"] = 1
    assert torchtk.train(small_spec).history != first.history


def test_checkpoints_load_with_weights_only(small_spec):
    run_dir = torchtk.train(small_spec).run_dir
    for name in ("last.pt", "best.pt"):
        payload = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert set(payload) >= {"model", "optimizer", "schedulers", "epoch", "rng"}
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3


def one_component_plugin(kind, name, build):
    """A test plugin providing one params-less component ``name`` of ``kind``, built by ``build()``."""
    from torchtk.core.components import KINDS

    class Plugin:
        @hookimpl
        def register_components(self, register):
            register(Component(kind, name, f"Test {kind}.", params=NoParams))

    def make(self, name):
        return build()

    setattr(Plugin, KINDS[kind].hook, hookimpl(make))
    plugin = Plugin()
    plugin.__name__ = f"test_{name}"
    return plugin


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(small_spec):
    small_spec["model"]["params"]["dropout"] = 0.1  # the resumed run must restore the RNG too
    straight = torchtk.train(small_spec, overrides=["trainer.epochs=4"])
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=2"])
    resumed = torchtk.train(small_spec, overrides=["trainer.epochs=4"], resume=partial.run_dir)
    assert resumed.run_dir == partial.run_dir
    assert resumed.history == straight.history
    for key, tensor in final_weights(straight.run_dir).items():
        assert torch.equal(tensor, final_weights(resumed.run_dir)[key]), key


def test_resume_from_a_directory_without_checkpoint_is_user_error(small_spec, tmp_path):
    with pytest.raises(UserInputError, match="no checkpoints/last.pt"):
        torchtk.train(small_spec, resume=tmp_path)


class Recorder:
    """A callback that records which hooks ran, in which order."""

    def __init__(self, label, log):
        self.label, self.log = label, log

    @hookimpl
    def on_fit_start(self, state):
        self.log.append((self.label, "fit_start"))

    @hookimpl
    def on_step(self, state):
        self.log.append((self.label, "step"))
        self.grad_norm = torch.nn.utils.get_total_norm([p.grad for p in state.model.parameters()])

    @hookimpl
    def on_step_end(self, state):
        self.log.append((self.label, "step_end"))

    @hookimpl
    def on_epoch_end(self, state):
        self.log.append((self.label, "epoch_end"))

    @hookimpl
    def on_fit_end(self, state):
        self.log.append((self.label, "fit_end"))


class LabelParams(Params):
    """Which recorder."""

    label: str = "a"


def recorder_plugin(log, interrupt_at_epoch=None):
    module = types.ModuleType("recorder_plugin")
    interrupted = []  # the interrupt fires once, so the resumed run (same spec) goes on

    @hookimpl
    def register_components(register):
        register(Component("callback", "recorder", "Records hook calls.", params=LabelParams))
        register(Component("callback", "interrupt", "Raises KeyboardInterrupt.", params=NoParams))

    @hookimpl
    def make_callback(name, params):
        if name == "interrupt":
            class Interrupt:
                @hookimpl
                def on_epoch_end(self, state):
                    if state.epoch == interrupt_at_epoch and not interrupted:
                        interrupted.append(state.epoch)
                        raise KeyboardInterrupt
            return Interrupt()
        recorder = Recorder(params.label, log)
        module.recorders.append(recorder)
        return recorder

    @hookimpl
    def on_step(state):  # a module-level hook: never called unless the spec asks for the plugin's callback
        log.append(("module", "step"))

    module.register_components, module.make_callback, module.on_step = register_components, make_callback, on_step
    module.recorders = []
    return module


def test_callbacks_run_in_spec_order_and_only_when_listed(small_spec):
    log = []
    registry = registry_with(recorder_plugin(log))
    small_spec["trainer"]["epochs"] = 1
    torchtk.train(small_spec, registry=registry)
    assert log == []  # installed, not listed: no effect
    small_spec["callbacks"] = [{"name": "recorder", "params": {"label": "b"}},
                               {"name": "recorder", "params": {"label": "a"}}]
    torchtk.train(small_spec, registry=registry)
    assert log[:2] == [("b", "fit_start"), ("a", "fit_start")]
    assert log[2:6] == [("b", "step"), ("a", "step"), ("b", "step_end"), ("a", "step_end")]
    assert log[-4:] == [("b", "epoch_end"), ("a", "epoch_end"), ("b", "fit_end"), ("a", "fit_end")]
    assert ("module", "step") not in log


def test_grad_clip_bounds_the_gradient_norm_seen_by_later_callbacks(small_spec):
    log = []
    plugin = recorder_plugin(log)
    small_spec["optimizer"]["params"]["lr"] = 0.001
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 1e-3}}, "recorder"]
    small_spec["trainer"]["epochs"] = 1
    torchtk.train(small_spec, registry=registry_with(plugin))
    assert plugin.recorders[0].grad_norm <= 1e-3 * 1.0001


def test_interrupted_run_keeps_its_last_checkpoint_and_resumes_identically(small_spec):
    log = []
    registry = registry_with(recorder_plugin(log, interrupt_at_epoch=2))
    straight = torchtk.train(small_spec, registry=registry)
    small_spec["callbacks"].append("interrupt")
    with pytest.raises(RunInterrupted, match="--resume"):
        torchtk.train(small_spec, registry=registry)
    run_dir = sorted((p for p in straight.run_dir.parent.iterdir() if p != straight.run_dir))[-1]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = torchtk.train(small_spec, registry=registry, resume=run_dir)
    assert resumed.history == straight.history


def test_early_stopping_ends_the_run(small_spec):
    small_spec["optimizer"]["params"]["lr"] = 1e-6  # nothing improves
    small_spec["callbacks"] = [{"name": "early_stopping",
                                "params": {"monitor": "val_accuracy", "patience": 2, "mode": "max"}}]
    small_spec["trainer"]["epochs"] = 20
    result = torchtk.train(small_spec)
    assert result.stopped_early and len(result.history) < 20
    assert "early stopping" in (result.run_dir / "train.log").read_text()


def test_monitor_that_is_not_logged_is_user_error(small_spec):
    small_spec["data"]["val_split"] = 0
    with pytest.raises(UserInputError, match="trainer.monitor: 'val_loss' is not logged"):
        torchtk.train(small_spec)
    small_spec["trainer"]["monitor"] = "train_loss"
    assert "val_loss" not in torchtk.train(small_spec).last


def test_nan_loss_fails_the_run_with_exit_code_1(small_spec):
    small_spec["optimizer"]["params"]["lr"] = 1e30
    small_spec["callbacks"] = []
    with pytest.raises(RunFailed, match="became") as raised:
        torchtk.train(small_spec)
    assert raised.value.exit_code == 1


def test_gradient_accumulation_counts_optimizer_updates(small_spec):
    log = []
    small_spec["callbacks"] = ["recorder"]
    small_spec["trainer"].update(epochs=1, accumulate_grad_batches=4)
    torchtk.train(small_spec, registry=registry_with(recorder_plugin(log)))
    batches = 12  # 600 training samples / 50
    assert log.count(("a", "step")) == log.count(("a", "step_end")) == batches // 4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(small_spec, precision):
    small_spec["precision"] = precision
    small_spec["trainer"]["epochs"] = 1
    result = torchtk.train(small_spec)
    assert result.last["train_loss"] > 0


def test_hooks_nobody_configured_are_not_called(small_spec, tmp_path):
    from torchtk.core.engine import Run
    from torchtk.core.progress import Reporter
    from torchtk.core.spec import load_spec

    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 1.0}}]
    small_spec["trainer"]["epochs"] = 1
    run = Run(load_spec(small_spec), torchtk.registry, Reporter(), tmp_path / "run")
    run.fit()
    hooks = run.parts.hooks
    assert hooks.on_step is not None and hooks.on_fit_start is not None  # what grad_clip implements
    assert hooks.on_step_end is None and hooks.on_epoch_end is None and hooks.on_fit_end is None


def test_run_hooks_keep_pluggy_semantics_for_wrappers_and_tryfirst():
    from torchtk.core.run_hooks import RunHooks

    log = []

    class Plain:
        @hookimpl
        def on_step(self, state):
            log.append("plain")

    class First:
        @hookimpl(tryfirst=True)
        def on_step(self):  # implementations may take a subset of the arguments
            log.append("first")

    class Wrapper:
        @hookimpl(wrapper=True)
        def on_epoch_end(self, state):
            log.append("before")
            yield
            log.append("after")

        @hookimpl
        def on_fit_end(self, state):
            log.append("end")

    hooks = RunHooks([Plain(), First(), Wrapper()])
    hooks.on_step("state")
    hooks.on_epoch_end("state")
    hooks.on_fit_end("state")
    assert log == ["first", "plain", "before", "after", "end"]


def tuple_plugin(moved):
    """A dataset of (x, (y, y)) samples that is not a TensorDataset, and a loss taking tuple targets."""
    module = types.ModuleType("tuple_plugin")

    class PairedRings(torch.utils.data.Dataset):
        def __init__(self):
            self.inner = torchtk.registry.create("dataset", "rings", n_positive=100, n_negative=300)

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, index):
            x, y = self.inner[index]
            return x, (y, y)

    class PairLoss(torch.nn.Module):
        def to(self, device):
            moved.append(device)
            return super().to(device)

        def forward(self, output, target):
            first, second = target
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            return bce(output, first) + bce(output, second)

    @hookimpl
    def register_components(register):
        register(Component("dataset", "paired_rings", "Rings with a pair of targets.", params=NoParams))
        register(Component("loss", "pair_bce", "BCE against both targets of a pair.", params=NoParams))

    @hookimpl
    def make_dataset(name, params):
        return PairedRings()

    @hookimpl
    def make_loss(name, params):
        return PairLoss()

    module.register_components, module.make_dataset, module.make_loss = register_components, make_dataset, make_loss
    return module


def test_dataloader_path_with_tuple_targets_and_loss_modules_on_the_run_device(small_spec):
    moved = []
    small_spec.update(data={"name": "paired_rings", "batch_size": 50, "val_split": 0.25}, loss="pair_bce",
                      metrics=[], callbacks=[])
    small_spec["trainer"]["epochs"] = 2
    result = torchtk.train(small_spec, registry=registry_with(tuple_plugin(moved)))
    assert moved == [torch.device("cpu")]
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]


def test_resume_with_a_different_spec_is_user_error_naming_the_differences(small_spec):
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=1"])
    spec_json = (partial.run_dir / "spec.json").read_text()
    small_spec["model"]["params"]["hidden"] = [32]
    small_spec["optimizer"]["params"]["lr"] = 0.5
    with pytest.raises(UserInputError, match=r"at model.params.hidden\[0\], optimizer.params.lr; only trainer"):
        torchtk.train(small_spec, resume=partial.run_dir)
    assert (partial.run_dir / "spec.json").read_text() == spec_json  # nothing the run had is touched


def forget_settings(run_dir, *paths):
    """Rewrite ``last.pt`` as a torchtk from before ``paths`` existed would have written it."""
    path = run_dir / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    for dotted in paths:
        node = payload["spec"]
        *parents, leaf = dotted.replace("[", ".").replace("]", "").split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[leaf]
    torch.save(payload, path)


def test_settings_added_after_a_checkpoint_was_written_resume_at_their_default(small_spec):
    """A param or trainer field that did not exist when the checkpoint was written (the
    scheduler's last_epoch, the focal loss's normalized, a whole data.transforms) is no
    difference while it has its default, and is one when the spec sets another value."""
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=1"])
    forget_settings(partial.run_dir, "scheduler[0].params.last_epoch", "loss[0].params.normalized",
                    "trainer.fast_dev_run", "data.transforms")
    resumed = torchtk.train(small_spec, overrides=["trainer.epochs=2"], resume=partial.run_dir)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    small_spec["loss"][0]["params"]["normalized"] = True
    with pytest.raises(UserInputError, match=r"at loss\[0\].params.normalized; only trainer"):
        torchtk.train(small_spec, overrides=["trainer.epochs=3"], resume=partial.run_dir)


def test_resume_may_change_epochs_and_device(small_spec):
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=1"])
    resumed = torchtk.train(small_spec, overrides=["trainer.epochs=2", "trainer.device=auto"], resume=partial.run_dir)
    assert len(resumed.history) == 2


def test_resuming_a_run_that_stopped_early_trains_nothing_more(small_spec):
    small_spec["optimizer"]["params"]["lr"] = 1e-6
    small_spec["callbacks"] = [{"name": "early_stopping", "params": {"monitor": "val_accuracy", "patience": 1,
                                                                     "mode": "max"}}]
    small_spec["trainer"]["epochs"] = 20
    stopped = torchtk.train(small_spec)
    assert stopped.stopped_early
    last = (stopped.run_dir / "checkpoints" / "last.pt").read_bytes()
    resumed = torchtk.train(small_spec, resume=stopped.run_dir)
    assert resumed.history == stopped.history and resumed.stopped_early
    assert (stopped.run_dir / "checkpoints" / "last.pt").read_bytes() == last


def test_a_callback_monitor_that_is_not_logged_fails_before_training(small_spec):
    small_spec["callbacks"] = [{"name": "early_stopping", "params": {"monitor": "val_acuracy"}}]
    with pytest.raises(UserInputError, match=r"callbacks\[0\].params.monitor: 'val_acuracy' is not logged"):
        torchtk.train(small_spec)


def test_same_name_loss_terms_and_metrics_get_distinct_columns(small_spec):
    small_spec["loss"] = ["bce_with_logits", {"name": "l2_regularization", "params": {"alpha": 1e-4}},
                          {"name": "l2_regularization", "params": {"alpha": 1e-3}}]
    small_spec["metrics"] = ["accuracy", {"name": "accuracy", "params": {"threshold": 1.0}}]
    small_spec["trainer"]["epochs"] = 1
    row = torchtk.train(small_spec).history[0]
    assert row["train_loss/l2_regularization_2"] == pytest.approx(10 * row["train_loss/l2_regularization"])
    assert {"val_accuracy", "val_accuracy_2"} <= set(row)


class SkipEveryOtherStep:
    """An on_step guard that skips updates, as a NaN guard would."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def on_step(self, state):
        self.calls += 1
        state.skip_step = self.calls % 2 == 0


def test_skipping_steps_under_fp16_keeps_training(small_spec):
    plugin = one_component_plugin("callback", "skip_every_other", SkipEveryOtherStep)
    small_spec.update(precision="fp16", callbacks=["skip_every_other"])
    small_spec["trainer"]["epochs"] = 2
    result = torchtk.train(small_spec, registry=registry_with(plugin))
    checkpoint = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] <= 12  # at most half of the 24 updates happened


def test_frozen_batchnorm_statistics_stay_fixed(small_spec, tmp_path, monkeypatch):
    (tmp_path / "bn_models.py").write_text(
        "import torch\n\ndef bn_net():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),\n"
        "                               torch.nn.Linear(8, 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    small_spec.update(model={"import": "bn_models:bn_net"}, loss="bce_with_logits",
                      freeze=[{"name": "freeze", "params": {"modules": ["0.", "1."]}}])
    torch.manual_seed(small_spec["seed"])
    import bn_models

    initial = bn_models.bn_net().state_dict()
    weights = torch.load(torchtk.train(small_spec).run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.equal(weights["1.running_mean"], initial["1.running_mean"])  # eval mode every epoch
    assert not torch.equal(weights["3.weight"], initial["3.weight"])


class Sequence:
    """A metric whose value at epoch k is values[k - 1] (NaN included)."""

    def __init__(self, values):
        self.values, self.epoch = values, 0

    def reset(self):
        self.epoch += 1

    def update(self, output, target):
        pass

    def compute(self):
        return self.values[self.epoch - 1]


def test_a_nan_monitor_value_never_becomes_the_best(small_spec):
    small_spec["metrics"] = ["sequence"]
    small_spec["trainer"].update(monitor="val_sequence", mode="max")
    plugin = one_component_plugin("metric", "sequence", lambda: Sequence([float("nan"), 0.5, 0.4]))
    result = torchtk.train(small_spec, registry=registry_with(plugin))
    assert result.best["epoch"] == 2
    assert torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)["epoch"] == 2


class GradientRecorder:
    def __init__(self):
        self.grads = []

    @hookimpl
    def on_step(self, state):
        self.grads.append([p.grad.clone() for p in state.model.parameters()])


def test_accumulation_averages_each_window_over_its_own_batches(small_spec):
    recorder = GradientRecorder()
    plugin = one_component_plugin("callback", "grads", lambda: recorder)
    # 600 training samples in batches of 200: 3 batches, windows of 2 and 1
    small_spec.update(loss="bce_with_logits", callbacks=["grads"], scheduler=[],
                      optimizer={"name": "sgd", "params": {"lr": 0.1}})
    small_spec["data"].update(batch_size=200, shuffle=False)
    small_spec["trainer"].update(epochs=1, accumulate_grad_batches=2)
    result = torchtk.train(small_spec, registry=registry_with(plugin))
    assert len(recorder.grads) == 2
    # the last window's gradient is the plain mean-loss gradient of its one batch
    torch.manual_seed(small_spec["seed"])
    model = torchtk.registry.create("model", "mlp", **small_spec["model"]["params"])
    dataset = torchtk.registry.create("dataset", "rings", **small_spec["data"]["params"])
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(small_spec["seed"]))
    train_index = order[200:]
    x, y = dataset.tensors[0][train_index], dataset.tensors[1][train_index]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for start in (0, 200):
        (loss_fn(model(x[start:start + 200]), y[start:start + 200]) / 2).backward()
    optimizer.step()
    optimizer.zero_grad()
    loss_fn(model(x[400:]), y[400:]).backward()
    for expected, got in zip((p.grad for p in model.parameters()), recorder.grads[1]):
        assert torch.allclose(expected, got, atol=1e-6)
    assert result.history[0]["train_loss"] > 0
