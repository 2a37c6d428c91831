"""Built-in synthetic datasets, small enough to train on a laptop CPU in seconds."""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl


class RingsParams(Params):
    """Two noisy concentric rings in the plane: the inner ring is class 1.

    Targets are float tensors of shape ``(1,)``, ready for ``bce_with_logits`` or
    ``focal``. The classes overlap, so about 0.96 accuracy is the best achievable.
    """

    n_positive: int = Field(1000, ge=1, description="Points on the inner ring (label 1).")
    n_negative: int = Field(6000, ge=1, description="Points on the outer ring (label 0).")
    inner_radius: float = Field(5.0, gt=0, description="Mean radius of the inner ring.")
    outer_radius: float = Field(8.0, gt=0, description="Mean radius of the outer ring.")
    noise: float = Field(1.0, ge=0, description="Standard deviation of the radial noise.")
    seed: int = Field(0, ge=0, description="Seed of the data itself (the run seed only shuffles and splits).")


def rings(params: RingsParams):
    import math

    import torch
    from torch.utils.data import TensorDataset

    generator = torch.Generator().manual_seed(params.seed)

    def ring(count: int, radius: float) -> torch.Tensor:
        r = radius + params.noise * torch.randn(count, generator=generator)
        angle = 2 * math.pi * torch.rand(count, generator=generator)
        return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)

    x = torch.cat([ring(params.n_positive, params.inner_radius), ring(params.n_negative, params.outer_radius)])
    y = torch.cat([torch.ones(params.n_positive, 1), torch.zeros(params.n_negative, 1)])
    return TensorDataset(x, y)


_FACTORIES = {"rings": rings}


@hookimpl
def register_components(register):
    register(Component("dataset", "rings", "Two noisy concentric rings, inner ring positive (binary).",
                       params=RingsParams))


@hookimpl
def make_dataset(name, params):
    return _FACTORIES[name](params)
