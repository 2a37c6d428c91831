"""torchtk-swa: the average against one computed by hand with AveragedModel, the lr
against torch's SWALR recipe, the BatchNorm update, resume in the middle of averaging,
and bad params (exit 2)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

import torchtk
import torchtk_swa
from torchtk import Component, NoParams, RunInfo, hookimpl
from torchtk.core import cli
from torchtk.core.errors import RunInterrupted, UserInputError
from torchtk.core.registry import set_registry
from torchtk.core.spec import load_spec
from torchtk.testing import registry_with

RINGS = {
    "name": "rings-swa", "seed": 0,
    "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [16], "out_features": 1}},
    "data": {"name": "rings", "params": {"n_positive": 150, "n_negative": 450}, "batch_size": 50, "val_split": 0.25},
    "loss": "bce_with_logits",
    "optimizer": {"name": "sgd", "params": {"lr": 0.1, "momentum": 0.9}},
    "scheduler": {"name": "swa_lr", "params": {"swa_lr": 0.05, "anneal_epochs": 1, "swa_start": 2}},
    "callbacks": ["swa"],
    "metrics": ["accuracy"],
    "trainer": {"epochs": 4, "device": "cpu"},
}


class Probe:
    """A test plugin: callback ``weights_probe`` records the training weights (and BatchNorm
    buffers) at every epoch's end; model ``bn_mlp`` is an MLP with BatchNorm and dropout."""

    __name__ = "swa_test_probe"

    def __init__(self):
        self.epoch_weights, self.batches = [], None

    @hookimpl
    def register_components(self, register):
        register(Component("callback", "weights_probe", "Record the weights.", params=NoParams))
        register(Component("model", "bn_mlp", "MLP with BatchNorm.", params=NoParams))

    @hookimpl
    def make_model(self, name, params):
        return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))

    @hookimpl
    def make_callback(self, name, params):
        probe = self

        class Recorder:
            @hookimpl
            def on_fit_start(self, state):
                probe.batches = state.train_batches

            @hookimpl
            def on_epoch_end(self, state):
                probe.epoch_weights.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})

        return Recorder()


def spec(tmp_path, **changes):
    data = copy.deepcopy(RINGS)
    data["trainer"]["output_dir"] = str(tmp_path / "runs")
    for key, value in changes.items():
        data[key] = value
    return data


def train(data, *plugins, **options):
    return torchtk.train(data, registry=registry_with(torchtk_swa, *plugins), progress=False, **options)


def hand_average(weights, model, ema_decay=None):
    """AveragedModel fed by hand with the recorded epoch weights."""
    fn = get_ema_multi_avg_fn(ema_decay) if ema_decay is not None else None
    average = AveragedModel(model, multi_avg_fn=fn, use_buffers=False)
    for state in weights:
        model.load_state_dict(state)
        average.update_parameters(model)
    return average


def test_conforms():
    import torchtk.testing as kit

    kit.assert_plugin_ok(torchtk_swa, params={"scheduler:swa_lr": {"swa_lr": 0.01}})  # static and behaviour checks


@pytest.mark.parametrize("average", ["swa", "ema"])
def test_the_final_model_is_the_hand_computed_average(tmp_path, average):
    probe = Probe()
    params = {"average": "ema", "ema_decay": 0.5} if average == "ema" else {}
    result = train(spec(tmp_path, callbacks=["weights_probe", {"name": "swa", "params": params}]), probe)
    plain = train(spec(tmp_path, callbacks=["weights_probe"]), Probe())  # swa never changes the training
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in result.history]
    model = copy.deepcopy(result.model)
    want = hand_average(probe.epoch_weights[1:], model, 0.5 if average == "ema" else None)  # epochs 2..4
    assert int(want.n_averaged) == 3
    got = result.model.state_dict()
    for name, value in want.module.state_dict().items():
        assert torch.equal(got[name], value), name
    final = torch.load(result.run_dir / "checkpoints" / "swa.pt", weights_only=True)
    assert all(torch.equal(final["model"][k], got[k]) for k in got)
    last = torch.load(result.last_checkpoint, weights_only=True)  # the training weights, for --resume
    assert all(torch.equal(last["model"][k], probe.epoch_weights[-1][k]) for k in got)
    assert "swa: the model holds the average of 3 epochs from epoch 2 on" in (result.run_dir / "train.log").read_text()


def test_validation_and_best_pt_use_the_average(tmp_path):
    probe = Probe()
    result = train(spec(tmp_path, callbacks=["weights_probe", "swa"]), probe)
    plain = train(spec(tmp_path, callbacks=["weights_probe"]), Probe())
    assert result.history[0]["val_loss"] == plain.history[0]["val_loss"]  # epoch 1: before swa_start
    assert result.history[-1]["val_loss"] != plain.history[-1]["val_loss"]
    best = torch.load(result.best_checkpoint, weights_only=True)
    epoch = best["epoch"]
    assert epoch >= 2  # an averaged epoch was the best
    want = hand_average(probe.epoch_weights[1:epoch], copy.deepcopy(result.model))
    assert all(torch.equal(best["model"][k], v) for k, v in want.module.state_dict().items())
    load_spec(result.run_dir / "spec.json", registry=registry_with(torchtk_swa, Probe()))  # --resume, tk evaluate


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_lr_follows_torchs_swalr_recipe(tmp_path):
    """swa_lr against the recipe of torch's SWALR docs: another schedule until swa_start,
    then SWALR stepped after each averaged epoch."""
    params = {"swa_lr": 0.02, "anneal_epochs": 3, "anneal_strategy": "linear", "swa_start": 4,
              "before": {"name": "cosine_annealing", "params": {"T_max": 6}}}
    run = RunInfo(epochs=10, steps_per_epoch=1, batches_per_epoch=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = registry_with(torchtk_swa).create("scheduler", "swa_lr", optimizer=opt, run=run, **params)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=6)
    got, want, swalr = [], [], None
    for epoch in range(1, 11):  # the lr each epoch trains at, then the step after it
        got.append(opt.param_groups[0]["lr"])
        want.append(ref_opt.param_groups[0]["lr"])
        scheduler.step()
        if epoch + 1 < 4:
            cosine.step()
        elif swalr is None:
            swalr = SWALR(ref_opt, swa_lr=0.02, anneal_epochs=3, anneal_strategy="linear")
        else:
            swalr.step()
    assert got == want
    assert got[3] == got[2] and got[-1] == pytest.approx(0.02) and got[5] != got[6]


def test_resume_in_the_middle_of_averaging_equals_one_run(tmp_path):
    class StopAfter:
        """``stop_after_3``: Ctrl-C once, as epoch 4 starts (last.pt holds epoch 3)."""

        __name__ = "stop_after_plugin"
        fired = False

        @hookimpl
        def register_components(self, register):
            register(Component("callback", "stop_after_3", "Ctrl-C after epoch 3.", params=NoParams))

        @hookimpl
        def make_callback(self, name, params):
            plugin = self

            class Stop:
                @hookimpl
                def on_epoch_start(self, state):
                    if state.epoch == 4 and not plugin.fired:
                        plugin.fired = True
                        raise KeyboardInterrupt

            return Stop()

    data = spec(tmp_path, model={"name": "bn_mlp"}, callbacks=["swa", "stop_after_3"])
    data["trainer"]["epochs"] = 5
    straight = train({**data, "callbacks": ["swa"]}, Probe(), StopAfter())
    stop = StopAfter()
    with pytest.raises(RunInterrupted):
        train(data, Probe(), stop)
    run_dir = max((p for p in (tmp_path / "runs").iterdir() if p != straight.run_dir), key=lambda p: p.name)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3  # averaged 2 and 3
    resumed = train(data, Probe(), stop, resume=run_dir)
    assert resumed.history == straight.history
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("last.pt", "swa.pt"):
        x = torch.load(straight.run_dir / "checkpoints" / name, weights_only=True)
        y = torch.load(resumed.run_dir / "checkpoints" / name, weights_only=True)
        assert all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def test_update_bn_recomputes_the_statistics_of_the_average(tmp_path):
    probe = Probe()
    result = train(spec(tmp_path, model={"name": "bn_mlp"}, callbacks=["weights_probe", "swa"]), probe)
    plain = train(spec(tmp_path, model={"name": "bn_mlp"}, callbacks=["weights_probe"]), Probe())
    # the BatchNorm passes leave the data order and the dropout draws alone
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in result.history]
    model = copy.deepcopy(result.model)
    average = hand_average(probe.epoch_weights[1:], model)
    model.load_state_dict(probe.epoch_weights[-1])
    with torch.no_grad():
        for own, averaged in zip(model.parameters(), average.module.parameters()):
            own.copy_(averaged)
        update_bn(([x] for x, _ in probe.batches), model)
    bn, trained = result.model[1], probe.epoch_weights[-1]
    torch.testing.assert_close(bn.running_mean, model[1].running_mean)
    torch.testing.assert_close(bn.running_var, model[1].running_var)
    assert not torch.allclose(bn.running_mean, trained["1.running_mean"])  # not the training statistics
    assert "BatchNorm statistics recomputed" in (result.run_dir / "train.log").read_text()


@pytest.fixture
def tk(tmp_path, capsys):
    set_registry(registry_with(torchtk_swa))

    def run(data):
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            cli.main(["train", str(path)])
        return exited.value.code, capsys.readouterr().err

    yield run
    set_registry(None)


@pytest.mark.parametrize("where, params, message", [
    ("scheduler", {"swa_lr": 0.05, "swa_start": 1.5}, "scheduler[0].params.swa_start"),
    ("scheduler", {"swa_lr": 0.05, "swa_start": 0}, "scheduler[0].params.swa_start"),
    ("scheduler", {"swa_lr": 0.05, "anneal_strategy": "cosine"}, "'cos' or 'linear'"),
    ("scheduler", {"swa_lr": -1}, "scheduler[0].params.swa_lr"),
    ("scheduler", {"anneal_epochs": 2}, "scheduler[0].params.swa_lr"),
    ("scheduler", {"swa_lr": 0.05, "before": "reduce_on_plateau"}, "needs a metric"),
    ("scheduler", {"swa_lr": 0.05, "swa_start": 9}, "after the last epoch (4)"),
    ("callbacks", {"average": "swa", "ema_decay": 0.9}, "ema_decay needs average: ema"),
    ("callbacks", {"swa_starts": 2}, "swa_starts"),
    ("callbacks", {"swa_start": 3}, "the swa_lr scheduler starts at epoch 2"),
])
def test_bad_params_exit_2(tmp_path, tk, where, params, message):
    data = spec(tmp_path)
    if where == "scheduler":
        data["scheduler"] = {"name": "swa_lr", "params": params}
    else:
        data["callbacks"] = [{"name": "swa", "params": params}]
    code, err = tk(data)
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_a_fraction_starts_at_the_last_part_of_the_run():
    assert torchtk_swa.start_epoch(0.75, 20) == 16 and torchtk_swa.start_epoch(0.5, 3) == 2
    assert torchtk_swa.start_epoch(3, 20) == 3
    with pytest.raises(UserInputError, match="after the last epoch"):
        from torchtk_swa.averaging import Swa

        class State:
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            run = RunInfo(epochs=2, steps_per_epoch=1, batches_per_epoch=1)

        Swa(torchtk_swa.SwaParams(swa_start=5)).first_epoch(State())


def test_batchnorm_a_freeze_policy_keeps_in_eval_keeps_its_statistics(tmp_path):
    data = spec(tmp_path, model={"name": "bn_mlp"}, callbacks=["swa"])
    data["freeze"] = [{"name": "freeze_until", "params": {"module": "1"}}]  # Linear 0 and BatchNorm 1, in eval
    result = train(data, Probe())
    bn = result.model[1]
    assert torch.equal(bn.running_mean, torch.zeros(16)) and torch.equal(bn.running_var, torch.ones(16))
    assert not bn.training


def test_the_readme_example_validates():
    from pathlib import Path

    resolved = load_spec(Path(__file__).parents[1] / "examples" / "rings-swa.json", registry=registry_with(torchtk_swa))
    assert resolved.callbacks[0].name == "swa" and resolved.scheduler[0].name == "swa_lr"
