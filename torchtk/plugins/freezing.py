"""Fine-tuning policies: choose which parameters train.

A policy is applied by calling it on the model; it may return optimizer parameter
groups. Frozen parameters are left out of the optimizer entirely.
"""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl


class FreezeParams(Params):
    """Freeze every parameter whose name starts with one of ``modules``.

    Names are those of ``model.named_parameters()``, e.g. ``"0."`` for the first layer
    of a Sequential, or ``"backbone."``. An empty list freezes nothing.
    """

    modules: list[str] = Field(default_factory=list, description="Parameter-name prefixes to freeze.")
    freeze_norm_stats: bool = Field(True, description="Keep BatchNorm layers whose parameters are all frozen in "
                                                      "eval mode, so their running statistics stay fixed too.")


class Freeze:
    def __init__(self, prefixes: list[str], freeze_norm_stats: bool = True) -> None:
        self.prefixes = tuple(prefixes)
        self.freeze_norm_stats = freeze_norm_stats

    def __call__(self, model):
        matched = [name for name, p in model.named_parameters() if name.startswith(self.prefixes)]
        if self.prefixes and not matched:
            names = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise ValueError(f"freeze: no parameter name starts with {list(self.prefixes)}; top-level modules: {names}")
        for name, parameter in model.named_parameters():
            if name in matched:
                parameter.requires_grad_(False)
        if self.freeze_norm_stats:
            freeze_batchnorm_statistics(model)
        return None


def freeze_batchnorm_statistics(model) -> None:
    """Put BatchNorm layers with no trainable parameter in eval mode (running stats fixed)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    for module in model.modules():
        if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


class FeatureExtractParams(Params):
    """Train only the head: freeze every parameter outside ``train``.

    The classic feature-extraction recipe for a pretrained backbone. By default the
    head is the last top-level child module that has parameters (``fc`` of a ResNet,
    ``classifier`` of a VGG or MobileNet, ``heads`` of a ViT, the last layer of a
    Sequential). Frozen BatchNorm layers are kept in eval mode.
    """

    train: list[str] = Field(default_factory=list, description="Parameter-name prefixes that stay trainable; "
                                                               "empty: the last top-level module with parameters.")


class FeatureExtract:
    def __init__(self, prefixes: list[str]) -> None:
        self.prefixes = tuple(prefixes)

    def __call__(self, model):
        prefixes = self.prefixes or (head_prefix(model),)
        names = [name for name, _ in model.named_parameters()]
        if not any(name.startswith(prefixes) for name in names):
            top = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"feature_extract: no parameter name starts with {list(prefixes)}; top-level modules: {top}")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith(prefixes))
        freeze_batchnorm_statistics(model)
        return None


def head_prefix(model) -> str:
    """``"fc."``: the last top-level child module that owns parameters."""
    with_parameters = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    if not with_parameters:
        raise ValueError("feature_extract: the model has no child module with parameters; give `train` explicitly")
    return with_parameters[-1] + "."


@hookimpl
def register_components(register):
    register(Component("freeze", "freeze", "Freeze parameters by name prefix (e.g. a backbone).", params=FreezeParams))
    register(Component("freeze", "feature_extract", "Train only the head; freeze the rest (pretrained backbone).",
                       params=FeatureExtractParams))


@hookimpl
def freeze_policy(name, params):
    if name == "feature_extract":
        return FeatureExtract(params.train)
    return Freeze(params.modules, params.freeze_norm_stats)
