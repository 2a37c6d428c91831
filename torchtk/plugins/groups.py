"""Parameter-group policies: per-layer learning rates, no weight decay on biases and
norms, layer-wise lr decay. Each is a ``freeze``-kind policy that freezes nothing and
returns *group rules* (listed by ``tk list freeze``, composed in the spec's order).

How rules combine (the core merges them once, after every policy ran:
:mod:`torchtk.core.param_groups`):

* a parameter takes the options of every rule that holds it, in spec order, and within
  one policy in the order of its entries; where two rules set the same option
  (``lr``, ``lr_scale``, ``weight_decay``), the later one wins, for that option only.
  ``[layer_decay, no_decay]`` gives each parameter its layer's ``lr_scale`` and, for
  biases and norms, ``weight_decay: 0``; ``layer_lr`` listed after ``layer_decay``
  replaces the layer's ``lr_scale`` for what it names;
* its group is named after the rules holding it (``layer3+no_decay``); parameters no
  rule holds form the group ``default``;
* frozen parameters are in no group (the optimizer only gets trainable parameters).

``lr`` is absolute. ``lr_scale`` multiplies the group's lr once the optimizer is built
(its own ``lr`` if a rule gave one, else the optimizer's lr): the core applies it
(:func:`torchtk.core.param_groups.apply_lr_scale`) before any scheduler sees the
optimizer, so schedulers start from the scaled lr. Scales do not multiply each other:
the later rule's ``lr_scale`` wins like any option.

Patterns are those of :mod:`torchtk.plugins.freezing` (module or parameter names,
prefixes, globs, ``re:`` regexes); every one reports what it matched, and one that
matches nothing is an error naming the closest module names.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, model_validator

from torchtk import Component, Params, hookimpl
from torchtk.plugins.freezing import PATTERNS, ModelIndex, PatternError, plural, union


# -- layer_lr ---------------------------------------------------------------------------------------


class LayerLr(Params):
    """One pattern set and the lr (or lr multiplier) of its parameters."""

    modules: list[str] = Field(min_length=1, description=f"The parameters this lr applies to: {PATTERNS}.")
    lr: Optional[float] = Field(None, gt=0, description="Their lr (absolute).")
    lr_scale: Optional[float] = Field(None, gt=0, description="Their lr as a multiple of the optimizer's lr.")
    weight_decay: Optional[float] = Field(None, ge=0, description="Their weight decay; default: the optimizer's.")
    name: Optional[str] = Field(None, min_length=1, description="Group name (history column lr/<name>); default: "
                                                                "the patterns joined by '|'.")

    @model_validator(mode="after")
    def _one_lr(self) -> LayerLr:
        if self.lr is not None and self.lr_scale is not None:
            raise ValueError("give lr or lr_scale, not both")
        if self.lr is None and self.lr_scale is None and self.weight_decay is None:
            raise ValueError("give lr, lr_scale or weight_decay")
        return self


class LayerLrParams(Params):
    """Per-layer learning rates by name pattern.

    The tutorials' recipe, ``conv1`` at 0.01 and the rest at the optimizer's 0.001, is
    ``{"groups": [{"modules": ["conv1"], "lr": 0.01}]}``; ``lr_scale: 10`` instead of
    ``lr`` multiplies the optimizer's lr. Parameters no entry names stay in the group
    ``default`` at the optimizer's lr. Where entries (or other policies) overlap on a
    parameter, the later one wins for each option it sets.
    """

    groups: list[LayerLr] = Field(min_length=1, description="Pattern sets with their lr, in order (later wins).")


class LayerLrPolicy:
    def __init__(self, groups: list[LayerLr]) -> None:
        self.groups = list(groups)
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any) -> list[dict[str, Any]]:
        index = ModelIndex(model)
        rules, lines = [], []
        for entry in self.groups:
            matches = index.select(entry.modules, "layer_lr")
            names = union(matches)
            options = {k: v for k, v in (("lr", entry.lr), ("lr_scale", entry.lr_scale),
                                          ("weight_decay", entry.weight_decay)) if v is not None}
            name = entry.name or "|".join(entry.modules)
            rules.append({"name": name, "params": [index.params[n] for n in names], **options})
            said = ", ".join(f"{k} {v:g}" for k, v in options.items())
            lines += [f"layer_lr {name!r}: {m.describe()} -> {said}{frozen_note(index, m.names)}" for m in matches]
        self.torchtk_report = lines
        return rules


def frozen_note(index: ModelIndex, names: list[str]) -> str:
    frozen = sum(1 for n in names if not index.params[n].requires_grad)
    return f" ({frozen} of them frozen: not in the optimizer)" if frozen else ""


# -- no_decay -------------------------------------------------------------------------------------------


class NoDecayParams(Params):
    """No weight decay on biases and normalisation parameters (and 1-d parameters).

    Puts those parameters in the group ``no_decay`` with ``weight_decay`` (0 by
    default), as timm's ``param_groups_weight_decay`` and most transformer recipes do:
    decaying a bias or a norm's scale towards zero only hurts. Normalisation layers are
    BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm and their subclasses.
    """

    bias: bool = Field(True, description="Every parameter named '*.bias' or 'bias'.")
    norm: bool = Field(True, description="Every parameter of a normalisation layer.")
    one_d: bool = Field(True, description="Every parameter with fewer than two dimensions (biases, norm scales, "
                                          "scalars, layer scales).")
    modules: list[str] = Field(default_factory=list, description=f"More parameters without decay: {PATTERNS} "
                                                                 "(e.g. 'class_token', 'encoder.pos_embedding').")
    weight_decay: float = Field(0.0, ge=0, description="Their weight decay.")


class NoDecay:
    def __init__(self, params: NoDecayParams) -> None:
        self.params = params
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any) -> list[dict[str, Any]]:
        index = ModelIndex(model)
        p = self.params
        chosen: dict[str, str] = {}  # parameter name -> why
        if p.norm:
            for module_name, module in index.modules.items():
                if is_norm(module):
                    chosen.update(dict.fromkeys(index.module_params(module_name, recurse=False), "norm"))
        for name, parameter in index.params.items():
            if name in chosen:
                continue
            if p.bias and (name == "bias" or name.endswith(".bias")):
                chosen[name] = "bias"
            elif p.one_d and parameter.ndim <= 1:
                chosen[name] = "1-d"
        lines = []
        if p.modules:
            matches = index.select(p.modules, "no_decay")
            for name in union(matches):
                chosen.setdefault(name, "pattern")
            lines += [f"no_decay {m.describe()}" for m in matches]
        names = sorted(chosen, key=index.order.__getitem__)
        reasons = {why: sum(1 for n in names if chosen[n] == why) for why in ("bias", "norm", "1-d", "pattern")}
        said = ", ".join(f"{count} {why}" for why, count in reasons.items() if count)
        lines.insert(0, f"no_decay: {plural(len(names), 'tensor')}, {index.numbers(names):,} numbers at weight decay "
                        f"{p.weight_decay:g} ({said or 'none matched'}){frozen_note(index, names)}")
        self.torchtk_report = lines
        if not names:
            return []
        return [{"name": "no_decay", "params": [index.params[n] for n in names], "weight_decay": p.weight_decay}]


def is_norm(module: Any) -> bool:
    from torch import nn
    from torch.nn.modules.batchnorm import _NormBase

    types: tuple[type, ...] = (_NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
    rms = getattr(nn, "RMSNorm", None)
    return isinstance(module, types + ((rms,) if rms is not None else ()))


# -- layer_decay ----------------------------------------------------------------------------------------------


class LayerDecayParams(Params):
    """Layer-wise lr decay for fine-tuning transformers (BEiT, timm's ``param_groups_layer_decay``).

    Layer ``i`` of ``0..L`` trains at ``decay ** (L - i)`` times the lr: the head (layer
    ``L``) at the full lr, each layer below at ``decay`` times the one above, the
    embedding (layer 0) at the least. Layers are numbered from the model's structure,
    or by ``layers``:

    * torchvision ViT: 0 = ``conv_proj``, ``class_token``, ``encoder.pos_embedding``;
      1..N = ``encoder.layers.encoder_layer_<i>``; N+1 = ``encoder.ln`` and ``heads``;
    * Swin, ConvNeXt (a ``features`` sequence): 0 = ``features.0`` (the stem); then one
      layer per block of every stage (``features.1.0``, ``features.1.1``, ...); a
      downsampling step between stages belongs to the block after it; the final norm and
      the head are the top layer;
    * ResNet (``layer1``..``layer4``): 0 = ``conv1``, ``bn1``; one layer per residual
      block; the top layer is ``fc``;
    * any other model: each top-level child that has parameters is one layer, in
      registration order (the root's own parameters join layer 0).

    ``layers`` numbers explicitly: entry ``i`` (patterns) is layer ``i``; parameters no
    entry names are the top layer (full lr); an entry that matches nothing, or two
    entries that name one parameter, is an error. Each layer is a group ``layer<i>``
    with an ``lr_scale``; combine with ``no_decay`` for the weight-decay half of timm's
    recipe.
    """

    decay: float = Field(gt=0, le=1, description="The factor between one layer's lr and the next one's (e.g. 0.75).")
    layers: list[list[str]] = Field(default_factory=list, description=f"Explicit layers, bottom first, each a list "
                                                                      f"of {PATTERNS}; empty: from the model's "
                                                                      "structure.")


class LayerDecay:
    def __init__(self, params: LayerDecayParams) -> None:
        self.decay = params.decay
        self.layers = [list(layer) for layer in params.layers]
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any) -> list[dict[str, Any]]:
        index = ModelIndex(model)
        if self.layers:
            kind, ids = "explicit layers", self._explicit(index)
        else:
            kind, ids = layer_ids(model, index)
        top = max(ids.values())
        members: dict[int, list[str]] = {}
        for name in index.params:
            members.setdefault(ids[name], []).append(name)
        rules, lines = [], [f"layer_decay {self.decay:g} over {top + 1} layers ({kind}): lr x{self.decay ** top:.4g} "
                            f"(layer 0) to x1 (layer {top})"]
        for layer in sorted(members):
            names = members[layer]
            scale = self.decay ** (top - layer)
            rules.append({"name": f"layer{layer}", "params": [index.params[n] for n in names], "lr_scale": scale})
            lines.append(f"layer_decay layer{layer} x{scale:.4g}: {plural(len(names), 'tensor')}, "
                         f"{index.numbers(names):,} numbers, {describe_names(names)}")
        self.torchtk_report = lines
        return rules

    def _explicit(self, index: ModelIndex) -> dict[str, int]:
        ids: dict[str, int] = {}
        for layer, patterns in enumerate(self.layers):
            for name in union(index.select(patterns, f"layer_decay layers[{layer}]")):
                if name in ids:
                    raise PatternError(f"layer_decay: {name!r} is in layers[{ids[name]}] and layers[{layer}]; "
                                       "give each parameter one layer")
                ids[name] = layer
        top = len(self.layers)
        return {name: ids.get(name, top) for name in index.params}


def describe_names(names: list[str], shown: int = 3) -> str:
    """``conv1.weight .. bn1.bias`` style summary: the first names and how many more."""
    tops: dict[str, None] = {}
    for name in names:
        parts = name.split(".")
        tops[".".join(parts[:-1]) or parts[0]] = None
    modules = list(tops)
    more = f" and {len(modules) - shown} more" if len(modules) > shown else ""
    return ", ".join(modules[:shown]) + more


def layer_ids(model: Any, index: ModelIndex) -> tuple[str, dict[str, int]]:
    """``(architecture, parameter name -> layer id)``: see :class:`LayerDecayParams`."""
    children = dict(model.named_children())
    if "conv_proj" in children and hasattr(children.get("encoder"), "layers"):
        blocks = [f"encoder.layers.{name}" for name, _ in model.encoder.layers.named_children()]
        stem = ("conv_proj", "class_token", "encoder.pos_embedding")
        return "vision transformer", _by_blocks(index, blocks, stem)
    features = children.get("features")
    if features is not None and type(model).__name__ in ("SwinTransformer", "ConvNeXt"):
        return type(model).__name__, _by_stages(index, features)
    if all(f"layer{i}" in children for i in (1, 2, 3, 4)) and "fc" in children:
        blocks = [f"layer{i}.{name}" for i in (1, 2, 3, 4) for name, _ in children[f"layer{i}"].named_children()]
        return "resnet", _by_blocks(index, blocks, ("conv1", "bn1"))
    with_params = [name for name, child in children.items() if any(True for _ in child.parameters())]
    if not with_params:
        raise PatternError("layer_decay: the model has no child module with parameters; give `layers` explicitly")
    ids = {}
    for layer, child in enumerate(with_params):
        ids.update(dict.fromkeys(index.module_params(child), layer))
    return "top-level modules", {name: ids.get(name, 0) for name in index.params}


def _owner(name: str, prefixes: list[str]) -> int | None:
    for i, prefix in enumerate(prefixes):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return None


def _by_blocks(index: ModelIndex, blocks: list[str], stem: tuple[str, ...]) -> dict[str, int]:
    """Stem 0, block ``i`` is ``i + 1``, everything else the top layer."""
    top = len(blocks) + 1
    ids = {}
    for name in index.params:
        block = _owner(name, blocks)
        ids[name] = block + 1 if block is not None else 0 if _owner(name, list(stem)) is not None else top
    return ids


def _by_stages(index: ModelIndex, features: Any) -> dict[str, int]:
    """``features.0`` is 0; each block of a stage (a sequence of composite blocks) the next
    id; a downsampling step takes the id of the block after it; the rest the top layer."""
    ids: dict[str, int] = {}
    layer, pending = 0, []
    for position, (name, child) in enumerate(features.named_children()):
        prefix = f"features.{name}"
        if position == 0:
            ids[prefix] = 0
            continue
        blocks = list(child.named_children())
        if isinstance(child, _sequential()) and blocks and all(any(True for _ in b.children()) for _, b in blocks):
            for block_name, _ in blocks:
                layer += 1
                ids[f"{prefix}.{block_name}"] = layer
                for waiting in pending:
                    ids[waiting] = layer
                pending = []
        else:
            pending.append(prefix)
    top = layer + 1
    for waiting in pending:
        ids[waiting] = top
    prefixes = sorted(ids, key=len, reverse=True)  # the longest owning prefix decides
    result = {}
    for name in index.params:
        owner = next((p for p in prefixes if name.startswith(p + ".")), None)
        result[name] = ids[owner] if owner is not None else top
    return result


def _sequential() -> type:
    from torch import nn

    return nn.Sequential


@hookimpl
def register_components(register):
    register(Component("freeze", "layer_lr", "Per-layer learning rates (or lr multipliers) by name pattern.",
                       params=LayerLrParams))
    register(Component("freeze", "no_decay", "No weight decay on biases, norm and 1-d parameters.",
                       params=NoDecayParams))
    register(Component("freeze", "layer_decay", "Layer-wise lr decay (transformer fine-tuning, as timm/BEiT).",
                       params=LayerDecayParams))


@hookimpl
def freeze_policy(name, params):
    if name == "layer_lr":
        return LayerLrPolicy(params.groups)
    if name == "no_decay":
        return NoDecay(params)
    return LayerDecay(params)
