"""l1_regularization and l2_regularization: values, the bias option, and composing with a
loss as weighted terms that are logged separately."""

import pytest
import torch
from torch import nn

import torchtk
from torchtk import TorchtkError


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))


def test_l2_is_alpha_times_the_sum_of_squared_weights_without_biases():
    net = model()
    penalty = torchtk.registry.create("loss", "l2_regularization", alpha=0.01, model=net)
    expected = 0.01 * (net[0].weight.pow(2).sum() + net[3].weight.pow(2).sum())
    torch.testing.assert_close(penalty(None, None), expected)


def test_l1_with_include_bias_also_penalises_biases_and_norm_scales():
    net = model()
    penalty = torchtk.registry.create("loss", "l1_regularization", alpha=0.5, include_bias=True, model=net)
    expected = 0.5 * sum(p.abs().sum() for p in net.parameters())
    torch.testing.assert_close(penalty(None, None), expected)


def test_frozen_parameters_are_not_penalised_and_the_gradient_is_the_penalty_derivative():
    net = model()
    net[0].weight.requires_grad_(False)
    penalty = torchtk.registry.create("loss", "l2_regularization", alpha=0.1, model=net)
    penalty(None, None).backward()
    torch.testing.assert_close(net[3].weight.grad, 0.2 * net[3].weight.detach())
    assert net[0].weight.grad is None


def test_regularization_needs_the_model():
    with pytest.raises(TorchtkError, match="needs the model"):
        torchtk.registry.create("loss", "l1_regularization")


def test_focal_plus_l1_plus_l2_trains_and_logs_each_term(tmp_path):
    spec = {
        "name": "rings-regularized",
        "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [8], "out_features": 1}},
        "data": {"name": "rings", "params": {"n_positive": 200, "n_negative": 400}, "batch_size": 100},
        "loss": [{"name": "focal", "params": {"alpha": 0.75, "gamma": 2.0}},
                 {"name": "l1_regularization", "params": {"alpha": 0.0001}, "weight": 0.5},
                 {"name": "l2_regularization", "params": {"alpha": 0.0001}}],
        "trainer": {"epochs": 2, "output_dir": str(tmp_path), "progress": False},
    }
    result = torchtk.train(spec)
    row = result.history[-1]
    for term in ("focal", "l1_regularization", "l2_regularization"):
        assert row[f"train_loss/{term}"] > 0 and row[f"val_loss/{term}"] > 0
    expected = row["val_loss/focal"] + 0.5 * row["val_loss/l1_regularization"] + row["val_loss/l2_regularization"]
    assert row["val_loss"] == pytest.approx(expected, rel=1e-5)
    header = (result.run_dir / "history.csv").read_text().splitlines()[0]
    assert "train_loss/l2_regularization" in header
