"""Python objects where a spec names components: ``torchtk.train(spec, model=net, loss=fn)``,
or the same objects written into a spec dict (``{"model": net, ...}``).

Each object is taken out of the data before anything validates or copies it (a function
is no JSON), kept by its spec path (``loss[0]``), and replaced by the placeholder
``{"object": "<python object: my_mod.focal>"}`` that ``spec.json`` then records, with a
note that the run cannot be re-run from it alone. What an object is, per kind: the
component itself (a model, a loss function, a callback, a metric, a dataset, a
transform, an init or freeze callable, a precision), except for an optimizer and a
scheduler, which need the run's parameters or optimizer first: there it is a factory
called as an imported one (``functools.partial(torch.optim.SGD, lr=0.1)``,
``lambda optimizer: StepLR(optimizer, 2)``); see :mod:`torchtk.core.imported`.
"""

from __future__ import annotations

from typing import Any

from torchtk.core.spec.models import COMPONENT_SLOTS, SLOTS

_DATA = (str, dict, list, tuple, int, float, bool, type(None))
_REF_KEYS = ("name", "import", "object", "params")


def is_object(value: Any) -> bool:
    """Whether ``value`` is an object given in place of a component reference."""
    return not isinstance(value, _DATA)


def take_objects(data: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Put ``given`` (slot field -> object, or list of objects and refs) into ``data``,
    then replace every object in ``data``'s slots by its placeholder, in place (the
    containers on the way are copied, so a caller's dict is left as it was). Returns
    ``{spec path: object}``."""
    from torchtk.core.imported import object_placeholder

    unknown = sorted(set(given) - COMPONENT_SLOTS)
    if unknown:
        raise TypeError(f"train() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; components can be given "
                        f"as objects for: {', '.join(sorted(COMPONENT_SLOTS))}")
    for field, value in given.items():
        current = data.get(field)
        if is_object(value) and isinstance(current, dict):  # data=my_dataset keeps batch_size and the others
            value = {**{k: v for k, v in current.items() if k not in _REF_KEYS}, "object": value}
        data[field] = list(value) if isinstance(value, tuple) else value
    found: dict[str, Any] = {}
    for slot in SLOTS:
        parent, key = _parent(data, slot.field)
        if parent is None or key not in parent:
            continue
        value = parent[key]
        if slot.one_or_many and is_object(value):
            value = [value]
        if slot.many and isinstance(value, (list, tuple)):
            items = [_take(item, f"{slot.field}[{index}]", found, object_placeholder)
                     for index, item in enumerate(value)]
            parent[key] = items
        else:
            parent[key] = _take(value, slot.field, found, object_placeholder)
    return found


def _take(value: Any, path: str, found: dict[str, Any], placeholder: Any) -> Any:
    if isinstance(value, dict) and is_object(value.get("object")):  # data=obj merged above
        found[path] = value["object"]
        return {**value, "object": placeholder(value["object"])}
    if is_object(value):
        found[path] = value
        return {"object": placeholder(value)}
    return value


def _parent(data: dict[str, Any], field: str) -> tuple[dict[str, Any] | None, str]:
    """The dict holding a (dotted) slot field, copied on the way down; None if absent."""
    *outer, key = field.split(".")
    node = data
    for part in outer:
        child = node.get(part)
        if not isinstance(child, dict):
            return None, key
        node[part] = child = dict(child)
        node = child
    return node, key
