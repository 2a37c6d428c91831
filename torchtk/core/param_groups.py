"""Optimizer parameter groups from the rules fine-tuning policies return, merged once.

A freeze policy sets ``requires_grad`` and may return *group rules*: dicts with
``"params"`` (tensors of the model), an optional ``"name"``, and optimizer options
(``"lr"``, ``"weight_decay"``, ``"betas"``, ...). Rules from every policy are merged
only after all policies ran, so policies compose:

* a parameter takes the options of every rule that holds it, in spec order (a later
  rule's option overrides an earlier one's), and its group is named after those rules
  (``head``, ``head+no_decay``); parameters no rule holds form the group ``default``;
* a parameter that is frozen once all policies ran is in no group, whatever rule
  listed it earlier;
* groups come in the order of their first parameter in ``model.named_parameters()``;
* a rule without a ``"name"`` is named by what it holds (:func:`held_name`: ``layer4``,
  ``conv1+conv2``), as is a param group added without one during the run.

Without any rule the optimizer gets one group, ``default``, of every trainable parameter.

A rule may carry ``"lr_scale"`` instead of (or besides) ``"lr"``: a multiplier of the
lr. Once the optimizer is built, :func:`apply_lr_scale` sets each such group's lr to
its lr (the rule's ``"lr"``, else the optimizer's) times ``lr_scale``, once, before any
scheduler reads it (``lr_scale`` stays in the group, for the record). Like every
option, the later rule's ``lr_scale`` wins; scales are not multiplied together.
This is mmengine's ``paramwise_cfg`` idea (options per parameter, then grouped),
with the options given by the policies instead of config keys.
"""

from __future__ import annotations

from typing import Any

from torchtk.core.errors import UserInputError

DEFAULT_GROUP = "default"


def check_rules(result: Any, where: str) -> list[dict[str, Any]]:
    """A policy's return value as a list of rules (``None``: no rules)."""
    if result is None:
        return []
    if isinstance(result, dict) or not isinstance(result, (list, tuple)):
        raise UserInputError(f"{where}: a freeze policy returns None or a list of group rules "
                             f"(dicts with \"params\"), got {type(result).__name__}")
    rules = []
    for index, rule in enumerate(result):
        if not isinstance(rule, dict) or "params" not in rule:
            raise UserInputError(f"{where}: group rule {index} must be a dict with \"params\", got {rule!r:.80}")
        params = rule["params"]
        rules.append({**rule, "params": [params] if hasattr(params, "requires_grad") else list(params)})
    return rules


def merge_groups(model: Any, rules: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Optimizer parameter groups for ``model``, each a dict with a ``"name"``.

    ``rules`` are ``(spec path of the policy, rule)`` pairs in spec order.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise UserInputError("freeze: the policies leave no trainable parameter; nothing would train")
    if not rules:
        return [{"name": DEFAULT_GROUP, "params": trainable}]
    known = {id(p): n for n, p in model.named_parameters()}
    claims: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for where, rule in rules:
        name = str(rule.get("name") or held_name([known.get(id(t), "") for t in rule["params"]]))
        options = {k: v for k, v in rule.items() if k not in ("params", "name")}
        for tensor in rule["params"]:
            if id(tensor) not in known:
                raise UserInputError(f"{where}: group rule {name!r} holds a tensor that is not a parameter of the model")
            claims.setdefault(id(tensor), []).append((name, options))
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for tensor in trainable:
        names: list[str] = []
        options: dict[str, Any] = {}
        for name, rule_options in claims.get(id(tensor), ()):
            if name not in names:
                names.append(name)
            options.update(rule_options)
        key = (tuple(names), repr(sorted(options.items())))
        group = groups.setdefault(key, {"name": "+".join(names) or DEFAULT_GROUP, **options, "params": []})
        group["params"].append(tensor)
    seen: dict[str, int] = {}
    for group in groups.values():  # rules of one name with different options: name_2, name_3
        seen[group["name"]] = seen.get(group["name"], 0) + 1
        if seen[group["name"]] > 1:
            group["name"] = f"{group['name']}_{seen[group['name']]}"
    return list(groups.values())


def apply_lr_scale(optimizer: Any) -> None:
    """Each group with an ``"lr_scale"`` trains at its lr times that scale.

    Called by the core right after the optimizer is built, before the schedulers (which
    take the scaled lr as their ``initial_lr``). A group's lr at that point is the one its
    rule gave, else the optimizer's default, so ``lr_scale`` is relative to either.
    """
    for index, group in enumerate(optimizer.param_groups):
        scale = group.get("lr_scale")
        if scale is None:
            continue
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise UserInputError(f"param group {group.get('name') or index!r}: lr_scale must be a positive number, "
                                 f"got {scale!r}")
        group["lr"] = group["lr"] * scale


def held_name(names: list[str]) -> str:
    """A name for a group of parameters (by their names in the model) saying what it holds:
    the deepest module that holds them all (``layer4``, ``backbone.layer1``), else their
    top-level modules (``conv1+conv2``, at most three; more: ``conv1..fc2``), else
    ``default`` (nothing to go by)."""
    modules = [n.rsplit(".", 1)[0].split(".") if "." in n else [] for n in names if n]
    if not modules:
        return DEFAULT_GROUP
    common: list[str] = []
    for parts in zip(*modules):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    if common:
        return ".".join(common)
    tops = list(dict.fromkeys(n.split(".")[0] for n in names if n))
    return "+".join(tops) if len(tops) <= 3 else f"{tops[0]}..{tops[-1]}"


def group_names(optimizer: Any, model: Any = None) -> list[str]:
    """Each param group's name: its ``"name"``; for a group without one, what it holds
    (:func:`held_name`, given the ``model``; ``_2`` added where another group has that
    name), else ``group<i>``."""
    groups = optimizer.param_groups
    names = [str(group["name"]) if group.get("name") else None for group in groups]
    if all(names):
        return names  # type: ignore[return-value]
    known = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    for i, group in enumerate(groups):
        if names[i] is None:
            base = held_name([known.get(id(p), "") for p in group["params"]]) if known else f"group{i}"
            name, n = base, 1
            while name in names:
                n += 1
                name = f"{base}_{n}"
            names[i] = name
    return names  # type: ignore[return-value]
