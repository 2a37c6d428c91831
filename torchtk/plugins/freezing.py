"""Fine-tuning policies: choose which parameters train, and what frozen BatchNorm does.

A policy is applied by calling it on the model (the spec's ``freeze`` list, in order);
it sets ``requires_grad`` and may return optimizer group rules (see
:mod:`torchtk.plugins.groups`). Frozen parameters are left out of the optimizer.

``feature_extract``
    Train only the head (found by :func:`torchtk.plugins._heads.find_head`: ``fc``,
    ``classifier.6``, ``heads.head``, ...), or the modules ``train`` names. It decides
    every parameter: what it names trains, everything else is frozen, so it comes first
    when combined with other policies.
``freeze``
    Freeze what the patterns ``modules`` name; nothing else changes.
``freeze_until``
    Freeze everything up to and including one module, in ``model.named_modules()``
    order (registration order; a module's own parameters count at its position, so
    the root's own parameters, such as a ViT's ``class_token``, come first).
``unfreeze_at``
    Gradual unfreezing (Lightning's ``BackboneFinetuning``): freeze the stages' modules
    when the run is built; at the start of each stage's epoch its parameters become
    trainable and join the optimizer as a new param group (``unfreeze_epoch<N>`` unless
    named) at ``lr_factor`` times the lr of the group ``default`` (or a base ``lr``),
    following the schedulers. See :class:`UnfreezeAt` for the schedulers and resume.

Patterns (every policy, and the group policies of :mod:`torchtk.plugins.groups`) are
matched against the names of ``model.named_modules()`` and ``model.named_parameters()``:

* a plain name is a module (all its parameters, ``"layer1"``) or a parameter
  (``"fc.weight"``); a plain string that names neither is a prefix of parameter names,
  as in the first release (``"0."``, ``"backbone."``; ``""`` is everything);
* a glob, any pattern with ``*``, ``?`` or ``[``: ``"layer1.*"``, ``"*.bn?"``, matched with
  :func:`fnmatch.fnmatchcase` (``*`` crosses dots) against whole names;
* a regex after ``re:``: ``"re:layer[34]\\..*"``, which must match a whole module or
  parameter name (:func:`re.fullmatch`; no search for a substring anywhere).

Every pattern reports how many tensors and numbers it matched (the run writes the lines
to ``train.log``; ``tk summary`` prints them), and a pattern that matches nothing is an
input error naming the closest module names. Substring keys that silently match
nothing (mmengine's ``custom_keys``) are what this replaces.

BatchNorm of the frozen part (every BatchNorm whose parameters the policy froze):
``bn: eval`` (the default) keeps it in eval mode for the whole run, so it normalises
with its running statistics and they never move; ``frozen`` replaces each
``BatchNorm2d`` by ``torchvision.ops.FrozenBatchNorm2d`` (timm's ``freeze_batch_norm_2d``;
weight and bias become buffers, other BatchNorm types fall back to ``eval``);
``train`` leaves the layer in training mode: it normalises with the batch's statistics
and keeps updating its running statistics, although its weight and bias are frozen.

Why ``eval`` is the default: a frozen backbone should compute exactly what it computed
before fine-tuning. Lightning's ``BaseFinetuning.freeze(train_bn=False)`` at first left
frozen BatchNorm in training mode, so its running statistics drifted (Lightning issue
15062); the fix set ``track_running_stats=False``, which stops the drift but makes the
layer normalise with batch statistics in training and with the stored statistics in
evaluation, a mismatch users then asked to turn off (finetuning-scheduler issue 13).
Eval mode has neither problem: the same statistics in training and evaluation, epoch
after epoch, and the pretrained ones. ``train`` is there for a domain shift large
enough that the statistics should adapt.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from torchtk import Component, Params, TorchtkError, hookimpl

BnMode = Literal["eval", "frozen", "train"]
BN_DESCRIPTION = ("BatchNorm of the frozen part: 'eval' keeps its running statistics fixed (the default), 'frozen' "
                  "replaces BatchNorm2d by torchvision's FrozenBatchNorm2d, 'train' lets the statistics keep updating.")
PATTERNS = ("module or parameter names ('layer1', 'fc.weight'), parameter-name prefixes ('backbone.'), "
            "globs ('layer1.*') or regexes after 're:' ('re:layer[34]\\..*')")
GLOB_CHARS = "*?["


class PatternError(TorchtkError, ValueError):
    """A pattern that matches nothing, or is not a valid regex (an input error at build)."""


# -- patterns --------------------------------------------------------------------------------


@dataclass
class Match:
    """What one pattern selected: parameter names in model order."""

    pattern: str
    kind: str  # "module", "parameter", "prefix", "glob", "regex"
    names: list[str]
    numbers: int

    def describe(self) -> str:
        return f"{self.pattern!r} ({self.kind}): {plural(len(self.names), 'tensor')}, {self.numbers:,} numbers"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class ModelIndex:
    """The names of a model's modules and parameters, for matching patterns."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.params = dict(model.named_parameters())
        self.order = {name: i for i, name in enumerate(self.params)}
        self.by_id = {id(p): name for name, p in self.params.items()}
        self.modules = dict(model.named_modules())

    def module_params(self, name: str, recurse: bool = True) -> list[str]:
        """The model's names of the parameters of module ``name``, in model order."""
        found = {self.by_id[id(p)] for p in self.modules[name].parameters(recurse=recurse) if id(p) in self.by_id}
        return sorted(found, key=self.order.__getitem__)

    def numbers(self, names: list[str]) -> int:
        return sum(self.params[n].numel() for n in names)

    def match(self, pattern: str) -> Match:
        """The parameters ``pattern`` selects (possibly none)."""
        if pattern.startswith("re:"):
            try:
                regex = re.compile(pattern[3:])
            except re.error as exc:
                raise PatternError(f"{pattern!r} is not a valid regex: {exc}") from None
            return self._matching("regex", pattern, regex.fullmatch)
        if any(c in pattern for c in GLOB_CHARS):
            return self._matching("glob", pattern, lambda name: fnmatch.fnmatchcase(name, pattern))
        if pattern in self.modules and pattern:
            return self._made("module", pattern, self.module_params(pattern))
        if pattern in self.params:
            return self._made("parameter", pattern, [pattern])
        return self._made("prefix", pattern, [n for n in self.params if n.startswith(pattern)])

    def _matching(self, kind: str, pattern: str, test: Any) -> Match:
        found: set[str] = {n for n in self.params if test(n)}
        for name in self.modules:
            if name and test(name):
                found.update(self.module_params(name))
        return self._made(kind, pattern, sorted(found, key=self.order.__getitem__))

    def _made(self, kind: str, pattern: str, names: list[str]) -> Match:
        return Match(pattern, kind, names, self.numbers(names))

    def closest(self, pattern: str) -> str:
        """``" (closest module names: layer1, layer2)"``: module names (else parameter
        names) that look like ``pattern`` (:mod:`difflib`), or ``""``."""
        key = pattern[3:] if pattern.startswith("re:") else pattern
        key = re.sub(r"[*?\[\]^$\\]+", "", key).strip(".")
        modules = difflib.get_close_matches(key, [name for name in self.modules if name], n=5, cutoff=0.6)
        if modules:
            return f" (closest module names: {', '.join(modules)})"
        params = difflib.get_close_matches(key, list(self.params), n=5, cutoff=0.6)
        return f" (closest parameter names: {', '.join(params)})" if params else ""

    def top_level(self) -> list[str]:
        return sorted({name.split(".")[0] for name in self.params})

    def select(self, patterns: list[str], where: str) -> list[Match]:
        """One match per pattern; patterns that match nothing are one error naming close names."""
        matches = [self.match(p) for p in patterns]
        empty = [m.pattern for m in matches if not m.names]
        if empty:
            hints = [f"{pattern!r}{self.closest(pattern)}" for pattern in empty]
            raise PatternError(f"{where}: {'; '.join(hints)} {'matches' if len(empty) == 1 else 'match'} no module or "
                               f"parameter name; top-level modules: {self.top_level()}")
        return matches


def union(matches: list[Match]) -> list[str]:
    names: dict[str, None] = {}
    for m in matches:
        names.update(dict.fromkeys(m.names))
    return list(names)


# -- BatchNorm of the frozen part ----------------------------------------------------------------


def batchnorm_in(index: ModelIndex, names: set[str]) -> list[str]:
    """Names of the BatchNorm modules all of whose parameters are in ``names`` (one without
    parameters, ``affine=False``, when all its parent's parameters are)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    found = []
    for name, module in index.modules.items():
        if not isinstance(module, _BatchNorm):
            continue
        own = index.module_params(name)
        if not own:
            parent = name.rpartition(".")[0]
            own = index.module_params(parent) if parent in index.modules else []
        if own and all(n in names for n in own):
            found.append(name)
    return found


def apply_bn_mode(model: Any, index: ModelIndex, bn_names: list[str], mode: str) -> list[str]:
    """Put the BatchNorm modules ``bn_names`` in ``mode``; returns report lines."""
    if not bn_names:
        return []
    if mode == "train":
        for name in bn_names:
            index.modules[name].train()
        return [f"bn train: {plural(len(bn_names), 'BatchNorm layer')} of the frozen part keep updating their "
                f"running statistics"]
    replaced = frozen_batchnorm(model, index, bn_names) if mode == "frozen" else []
    kept = [name for name in bn_names if name not in replaced]
    for name in kept:
        index.modules[name].eval()
    lines = []
    if replaced:
        lines.append(f"bn frozen: {plural(len(replaced), 'BatchNorm2d layer')} replaced by FrozenBatchNorm2d")
    if kept:
        other = " (not BatchNorm2d: eval instead)" if mode == "frozen" else ""
        lines.append(f"bn eval: {plural(len(kept), 'BatchNorm layer')} in eval mode, running statistics fixed{other}")
    return lines


def frozen_batchnorm(model: Any, index: ModelIndex, bn_names: list[str]) -> list[str]:
    """Replace each ``BatchNorm2d`` (and ``SyncBatchNorm``) among ``bn_names`` by a
    ``FrozenBatchNorm2d`` holding the same statistics, weight and bias; returns the
    names replaced."""
    import torch
    from torch import nn
    from torchvision.ops import FrozenBatchNorm2d

    replaced = []
    for name in bn_names:
        module = index.modules[name]
        if not name or not isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)) or module.running_mean is None:
            continue
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        frozen = frozen.to(device=module.running_mean.device, dtype=module.running_mean.dtype)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, frozen)
        replaced.append(name)
    return replaced


def bn_mode(bn: Optional[str], freeze_norm_stats: Optional[bool]) -> str:
    """``bn``, else the first release's ``freeze_norm_stats`` (true: eval, false: train)."""
    if bn is not None:
        return bn
    return "train" if freeze_norm_stats is False else "eval"


def freeze_names(model: Any, index: ModelIndex, names: list[str], bn: str) -> list[str]:
    """Freeze the parameters ``names`` and apply ``bn`` to the BatchNorm among them; report lines."""
    for name in names:
        index.params[name].requires_grad_(False)
    return apply_bn_mode(model, index, batchnorm_in(index, set(names)), bn)


# -- the policies ------------------------------------------------------------------------------------


class FreezeParams(Params):
    """Freeze the parameters the patterns in ``modules`` name; nothing else changes.

    A pattern is a module or parameter name ('layer1', 'fc.weight'), a prefix of
    parameter names ('0.', 'backbone.'), a glob ('layer1.*') or a regex after 're:'
    ('re:layer[34]\\..*', matching whole names). Each pattern reports the tensors and
    numbers it matched; one that matches nothing is an error naming the closest modules.
    An empty list freezes nothing. BatchNorm layers of the frozen part follow ``bn``.
    """

    modules: list[str] = Field(default_factory=list, description=f"What to freeze: {PATTERNS}.")
    bn: Optional[BnMode] = Field(None, description=BN_DESCRIPTION + " Default: eval.")
    freeze_norm_stats: Optional[bool] = Field(None, description="The first release's switch, kept working: true is "
                                                                "bn 'eval', false is bn 'train'. Give bn instead.")

    @model_validator(mode="after")
    def _one_bn_switch(self) -> FreezeParams:
        if self.bn is not None and self.freeze_norm_stats is not None:
            raise ValueError("give bn or freeze_norm_stats, not both (freeze_norm_stats is the old name: "
                             "true = bn 'eval', false = bn 'train')")
        return self


class Freeze:
    """``freeze``: the parameters the patterns name stop training."""

    def __init__(self, patterns: list[str], bn: str = "eval", label: str = "freeze") -> None:
        self.patterns, self.bn, self.label = list(patterns), bn, label
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any) -> None:
        index = ModelIndex(model)
        matches = index.select(self.patterns, self.label)
        names = union(matches)
        lines = [f"{self.label} {m.describe()}" for m in matches]
        if len(matches) > 1:
            lines.append(f"{self.label} in all: {plural(len(names), 'tensor')}, {index.numbers(names):,} numbers")
        self.torchtk_report = lines + freeze_names(model, index, names, self.bn)
        return None


class FeatureExtractParams(Params):
    """Train only the head: freeze every parameter outside ``train``.

    The classic feature-extraction recipe for a pretrained backbone. By default the
    head is the output layer the model factory replaces (``fc`` of a ResNet,
    ``classifier.6`` of a VGG, ``classifier.1`` of a MobileNetV2 or EfficientNet,
    ``heads.head`` of a ViT, the last Linear of a Sequential; GoogLeNet's and Inception's
    auxiliary heads too). This policy decides every parameter (what ``train`` names
    trains, the rest is frozen), so list it before other policies. BatchNorm layers of
    the frozen part follow ``bn``; those of the trained part train.
    """

    train: list[str] = Field(default_factory=list, description=f"What stays trainable: {PATTERNS}; empty: the "
                                                               "model's head.")
    bn: BnMode = Field("eval", description=BN_DESCRIPTION)


class FeatureExtract:
    def __init__(self, patterns: list[str], bn: str = "eval") -> None:
        self.patterns, self.bn = list(patterns), bn
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any) -> None:
        index = ModelIndex(model)
        patterns = self.patterns or head_modules(model)
        matches = index.select(patterns, "feature_extract")
        trained = set(union(matches))
        for name, parameter in index.params.items():
            parameter.requires_grad_(name in trained)
        frozen = [n for n in index.params if n not in trained]
        for name in batchnorm_in(index, trained):
            index.modules[name].train()
        lines = [f"feature_extract trains {m.describe()}" for m in matches]
        lines.append(f"feature_extract freezes the rest: {plural(len(frozen), 'tensor')}, "
                     f"{index.numbers(frozen):,} numbers")
        self.torchtk_report = lines + apply_bn_mode(model, index, batchnorm_in(index, set(frozen)), self.bn)
        return None


def head_modules(model: Any) -> list[str]:
    """The model's head modules: :func:`torchtk.plugins._heads.find_head` where it is
    available, else the last top-level child module that owns parameters."""
    try:
        from torchtk.plugins._heads import find_head
    except ImportError:  # pragma: no cover - the module ships with torchtk
        return [head_prefix(model)]
    try:
        return find_head(model)
    except ValueError as exc:
        raise PatternError(f"feature_extract: {exc}; give `train` explicitly") from None


def head_prefix(model: Any) -> str:
    """``"fc."``: the last top-level child module that owns parameters."""
    with_parameters = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    if not with_parameters:
        raise PatternError("feature_extract: the model has no child module with parameters; give `train` explicitly")
    return with_parameters[-1] + "."


class FreezeUntilParams(Params):
    """Freeze everything up to and including one module.

    Order is ``model.named_modules()`` order: registration order, parents before their
    children, a module's own parameters at its position (so the root's own parameters,
    such as a ViT's ``class_token``, are always frozen). ``module: "layer2"`` on a
    ResNet freezes conv1, bn1, layer1 and layer2, and leaves layer3, layer4 and fc
    training. A parameter name works too (everything up to and including it).
    """

    module: str = Field(min_length=1, description="The last module (or parameter) to freeze, by exact name.")
    bn: BnMode = Field("eval", description=BN_DESCRIPTION)


class FreezeUntil:
    def __init__(self, module: str, bn: str = "eval") -> None:
        self.module, self.bn = module, bn
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any) -> None:
        index = ModelIndex(model)
        if self.module in index.modules:
            last = index.module_params(self.module)
        elif self.module in index.params:
            last = [self.module]
        else:
            raise PatternError(f"freeze_until: {self.module!r} is no module or parameter name"
                               f"{index.closest(self.module)}; "
                               f"top-level modules: {index.top_level()}")
        if not last:
            raise PatternError(f"freeze_until: module {self.module!r} has no parameters")
        end = max(index.order[n] for n in last)
        names = [n for n in index.params if index.order[n] <= end]
        self.torchtk_report = [f"freeze_until {self.module!r}: {plural(len(names), 'tensor')}, "
                               f"{index.numbers(names):,} numbers frozen, from {names[0]!r} to {names[-1]!r}"]
        self.torchtk_report += freeze_names(model, index, names, self.bn)
        return None


# -- gradual unfreezing ----------------------------------------------------------------------------------


class Stage(Params):
    """One stage of gradual unfreezing: what joins the optimizer at which epoch, at which lr."""

    epoch: int = Field(ge=2, description="The epoch (1-based) at whose start these parameters start training.")
    modules: list[str] = Field(min_length=1, description=f"What joins then: {PATTERNS}.")
    lr: Optional[float] = Field(None, gt=0, description="The group's base lr (absolute); give lr or lr_factor.")
    lr_factor: Optional[float] = Field(None, gt=0, description="The group's lr as a factor of the lr of the group "
                                                               "'default' (the optimizer's lr); default 0.1.")
    weight_decay: Optional[float] = Field(None, ge=0, description="The group's weight decay; default: the optimizer's.")
    name: Optional[str] = Field(None, min_length=1, description="The group's name (history column lr/<name>); "
                                                                "default unfreeze_epoch<epoch>.")

    @model_validator(mode="after")
    def _one_lr(self) -> Stage:
        if self.lr is not None and self.lr_factor is not None:
            raise ValueError("give lr or lr_factor, not both")
        return self


class UnfreezeAtParams(Params):
    """Gradual unfreezing: freeze modules now, let them train from given epochs on.

    Each stage's modules are frozen when the run is built; at the start of the stage's
    epoch they become trainable and join the optimizer as a new param group (as
    Lightning's BackboneFinetuning does). Its lr is ``lr_factor`` (default 0.1) times
    the lr of the group ``default`` (the parameters no other policy gave an lr: the
    optimizer's lr, under its schedule), or its base lr is ``lr``: it joins at the
    point the lr schedule has reached, and every scheduler drives it from there as it
    drives ``default`` (without a ``default`` group: as it drives the first group,
    with ``lr_factor`` relative to the optimizer's lr).
    ``tk plan`` shows the group appearing at its epoch, and a resumed run adds it again.
    BatchNorm layers of the stages follow ``bn`` for the whole run: with ``eval`` their
    running statistics stay fixed also after their weight and bias start training;
    ``frozen`` keeps them FrozenBatchNorm2d (their weight and bias never train).
    """

    stages: list[Stage] = Field(min_length=1, description="The stages: epoch, modules and lr of each.")
    bn: BnMode = Field("eval", description=BN_DESCRIPTION)

    @model_validator(mode="after")
    def _unique_names(self) -> UnfreezeAtParams:
        names = [s.name or f"unfreeze_epoch{s.epoch}" for s in self.stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"two stages make the group {repeated[0]!r}: give them different names")
        return self


class UnfreezeAt:
    """``unfreeze_at``: a freeze policy that is also a callback.

    At build (``__call__``) it freezes every stage's parameters; the core then gives it
    the run's optimizer and schedulers (``bind``). ``on_epoch_start`` makes a due
    stage's parameters trainable and calls ``optimizer.add_param_group`` (parameters
    some other policy left trainable are in the optimizer already and are skipped);
    the new group has an ``initial_lr`` and every scheduler grows by one group
    (``base_lrs``, ``_last_lr``, ``lr_lambdas``, ``min_lrs``, ``max_lrs``, the per-group
    keys of ``one_cycle``, the nested schedulers of ``sequential``, ``chained`` and
    ``warmup``): see :func:`add_group`. ``state_dict`` holds which stages joined and the
    names of their parameters; ``load_state_dict`` (on resume, before the optimizer's
    state is loaded) adds those groups again in the same order, so the state fits.
    """

    def __init__(self, params: UnfreezeAtParams) -> None:
        self.stages = list(params.stages)
        self.bn = params.bn
        self.names: list[list[str]] = [[] for _ in self.stages]  # parameter names of each stage
        self.added: list[dict[str, Any]] = []  # {"stage": i, "names": [...]}, in the order they joined
        self.model: Any = None
        self.optimizer: Any = None
        self.schedulers: list[Any] | None = None
        self.torchtk_report: list[str] = []

    def group_name(self, index: int) -> str:
        stage = self.stages[index]
        return stage.name or f"unfreeze_epoch{stage.epoch}"

    def __call__(self, model: Any) -> None:
        self.model = model
        index = ModelIndex(model)
        claimed: dict[str, int] = {}
        lines: list[str] = []
        for i, stage in enumerate(self.stages):
            matches = index.select(stage.modules, f"unfreeze_at stage {i} (epoch {stage.epoch})")
            names = union(matches)
            twice = [n for n in names if n in claimed]
            if twice:
                raise PatternError(f"unfreeze_at: stage {i} (epoch {stage.epoch}) and stage {claimed[twice[0]]} both "
                                   f"hold {twice[0]!r} (and {len(twice) - 1} more); give each parameter one stage")
            claimed.update(dict.fromkeys(names, i))
            self.names[i] = names
            lines += [f"unfreeze_at epoch {stage.epoch} ({self.group_name(i)}): {m.describe()}" for m in matches]
        every = [n for names in self.names for n in names]
        self.torchtk_report = lines + freeze_names(model, index, every, self.bn)
        return None

    # -- the run --------------------------------------------------------------------------------

    def bind(self, optimizer: Any, schedulers: list[Any]) -> None:
        """The run's optimizer and scheduler objects, which the stages' groups join.

        The core calls this once both are built (before a resume loads any state), so
        ``load_state_dict`` can add the groups again before the optimizer's state loads.
        """
        self.optimizer, self.schedulers = optimizer, list(schedulers)

    @hookimpl
    def on_epoch_start(self, state: Any) -> None:
        if self.optimizer is None:  # a core that does not bind: the state's optimizer
            self.bind(state.optimizer, list(getattr(state, "schedulers", None) or ()))
        done = {entry["stage"] for entry in self.added}
        for i, stage in enumerate(self.stages):
            if i not in done and stage.epoch <= state.epoch:
                self._join(i, state)

    def _join(self, i: int, state: Any) -> None:
        optimizer = self.optimizer
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = dict(self.model.named_parameters())
        names = [n for n in self.names[i] if n in params and id(params[n]) not in held]
        skipped = len(self.names[i]) - len(names)
        stage = self.stages[i]
        if not names:
            state.log(f"unfreeze_at epoch {stage.epoch}: every parameter of {self.group_name(i)!r} trains already; "
                      "no group added")
            self.added.append({"stage": i, "names": []})
            return
        group = add_group(optimizer, [params[n] for n in names], self.group_name(i), stage, self.schedulers or [])
        self.added.append({"stage": i, "names": names})
        numbers = sum(params[n].numel() for n in names)
        note = f" ({skipped} trained already)" if skipped else ""
        state.log(f"unfreeze_at epoch {stage.epoch}: {self.group_name(i)!r} joins the optimizer: "
                  f"{plural(len(names), 'tensor')}{note}, {numbers:,} numbers, lr {group['lr']:.6g} "
                  f"(base lr {group['initial_lr']:.6g})")

    def state_dict(self) -> dict[str, Any]:
        return {"added": [{"stage": e["stage"], "names": list(e["names"])} for e in self.added]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Remember the stages that joined and add their groups again (the core calls this on
        resume after ``bind`` and before the optimizer's state is loaded, which then sets
        the groups' lr and moments to the saved ones)."""
        self.added = [{"stage": int(e["stage"]), "names": list(e["names"])} for e in state["added"]]
        if self.optimizer is None:
            return
        params = dict(self.model.named_parameters())
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        for entry in self.added:
            tensors = [params[n] for n in entry["names"]]
            if tensors and not all(id(t) in held for t in tensors):
                add_group(self.optimizer, tensors, self.group_name(entry["stage"]), self.stages[entry["stage"]],
                          self.schedulers or [])


# per-group lists of schedulers: scaled from the reference group's entry, or copied
_SCALED_LISTS = ("base_lrs", "_last_lr", "min_lrs", "max_lrs", "after_lrs")
_COPIED_LISTS = ("lr_lambdas", "base_momentums", "max_momentums")
_SCALED_KEYS = ("max_lr", "min_lr")  # per-group keys one_cycle keeps in the param groups
_COPIED_KEYS = ("max_momentum", "base_momentum")
DEFAULT_GROUP = "default"  # the core's group of the parameters no rule holds (at the optimizer's lr)


def reference_group(optimizer: Any) -> int:
    """The group a joining group is scaled from: ``default``, else the first."""
    names = [group.get("name") for group in optimizer.param_groups]
    return names.index(DEFAULT_GROUP) if DEFAULT_GROUP in names else 0


def add_group(optimizer: Any, tensors: list[Any], name: str, stage: Stage, schedulers: list[Any]) -> dict[str, Any]:
    """Make ``tensors`` trainable and add them to ``optimizer`` as the group ``name``.

    The group is the reference group (:func:`reference_group`) scaled by ``s``:
    ``stage.lr_factor`` (default 0.1; when there is no group ``default``, times the
    optimizer's lr over the first group's base lr), or ``stage.lr`` over the
    reference's base lr.
    Its base lr (``initial_lr``) is ``s`` times the reference's, its lr now ``s`` times
    the reference's lr now (the point the schedule has reached), and every scheduler's
    per-group entries grow by the reference's entry times ``s`` (functions and
    momentums copied), so the schedulers drive it as they drive the reference.
    """
    for tensor in tensors:
        tensor.requires_grad_(True)
    ref_index = reference_group(optimizer)
    ref = optimizer.param_groups[ref_index]
    ref_base = float(ref.get("initial_lr", ref["lr"]))
    factor = stage.lr_factor if stage.lr_factor is not None else 0.1
    if stage.lr is not None:
        scale = stage.lr / ref_base if ref_base > 0 else 1.0
    elif ref.get("name") == DEFAULT_GROUP or ref_base <= 0:
        scale = factor
    else:  # no default group (every trainable parameter has a rule): a factor of the optimizer's lr
        scale = factor * float(optimizer.defaults["lr"]) / ref_base
    group: dict[str, Any] = {"params": tensors, "name": name, "lr": float(ref["lr"]) * scale,
                             "initial_lr": ref_base * scale}
    if stage.weight_decay is not None:
        group["weight_decay"] = stage.weight_decay
    for key in _SCALED_KEYS:
        if key in ref:
            group[key] = ref[key] * scale
    for key in _COPIED_KEYS:
        if key in ref:
            group[key] = ref[key]
    before = len(optimizer.param_groups)
    optimizer.add_param_group(group)
    grown: set[int] = set()
    for scheduler in schedulers:
        grow_scheduler(scheduler, before, ref_index, scale, grown)
    return optimizer.param_groups[-1]


def grow_scheduler(scheduler: Any, before: int, ref_index: int, scale: float, grown: set[int]) -> None:
    """Give ``scheduler`` (and the schedulers it wraps) an entry for one more param group."""
    for attribute in _SCALED_LISTS + _COPIED_LISTS:
        values = getattr(scheduler, attribute, None)
        if isinstance(values, list) and len(values) == before and id(values) not in grown:
            grown.add(id(values))
            value = values[ref_index]
            values.append(value * scale if attribute in _SCALED_LISTS else value)
    for inner in list(getattr(scheduler, "_schedulers", None) or ()) + [getattr(scheduler, "after", None)]:
        if inner is not None:
            grow_scheduler(inner, before, ref_index, scale, grown)


@hookimpl
def register_components(register):
    register(Component("freeze", "freeze", "Freeze parameters by name, glob or regex (e.g. a backbone).",
                       params=FreezeParams))
    register(Component("freeze", "feature_extract", "Train only the head; freeze the rest (pretrained backbone).",
                       params=FeatureExtractParams))
    register(Component("freeze", "freeze_until", "Freeze everything up to and including a named module.",
                       params=FreezeUntilParams))
    register(Component("freeze", "unfreeze_at", "Gradual unfreezing: modules join the optimizer at given epochs.",
                       params=UnfreezeAtParams))


@hookimpl
def freeze_policy(name, params):
    if name == "feature_extract":
        return FeatureExtract(params.train, params.bn)
    if name == "freeze_until":
        return FreezeUntil(params.module, params.bn)
    if name == "unfreeze_at":
        return UnfreezeAt(params)
    return Freeze(params.modules, bn_mode(params.bn, params.freeze_norm_stats))
