"""Look before you train: ``tk summary``, the model as the run will train it.

``compute_summary`` builds a spec with the same :func:`torchtk.core.assembly.build_parts`
a run uses, up to the optimizer (model, weights and head, init, freeze policies, param
groups), on the CPU, then describes it: one row per module (``named_modules()`` names,
the names freeze and init patterns take) with its type, its output shape on one probe
batch of the spec's data, its parameters and whether they train; the totals; the build
reports (weights loaded, tensors an init or a policy matched); and the optimizer's
groups. Nothing is trained and no run directory is created.

Output shapes come from forward hooks on every module during one no-grad forward pass in
eval mode, with the RNG untouched and each module's train/eval mode restored afterwards.
torchinfo computes a similar table, but per call (a module used twice, such as ResNet's
``relu``, is two rows) and named by attribute (``conv1`` three times in a ResNet) rather
than by the dotted names a spec's patterns use; the hooks here are a few lines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torchtk.core.registry import Registry, get_registry
from torchtk.core.spec import RunSpec, load_resolved, resolve

MB = 1e6  # bytes in a megabyte, as torchinfo counts them


@dataclass
class ModuleRow:
    """One module: ``params`` counts every parameter under it (each shared tensor once)."""

    name: str
    type: str
    depth: int
    output_shape: Any
    params: int
    trainable: int
    status: str  # "trainable", "frozen", "partly frozen", or "" without parameters; ", eval" when kept in eval

    @property
    def frozen(self) -> int:
        return self.params - self.trainable


@dataclass
class Group:
    """One optimizer param group."""

    name: str
    lr: float
    weight_decay: float
    tensors: int
    params: int


@dataclass
class Summary:
    """What ``tk summary`` prints; ``to_json`` is the same as data."""

    name: str
    model: str
    input_shape: Any
    modules: list[ModuleRow]
    totals: dict[str, float]
    reports: list[str]
    optimizer: str
    groups: list[Group] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for row, module in zip(data["modules"], self.modules):
            row["frozen"] = module.frozen
        return data

    def table_rows(self, depth: int | None = None) -> list[dict[str, str]]:
        """The module table as strings, names indented by depth; rows deeper than ``depth`` left out."""
        return [{"module": "  " * row.depth + (row.name or "(model)"),
                 "type": row.type, "output shape": format_shape(row.output_shape),
                 "params": f"{row.params:,}" if row.params else "-", "status": row.status}
                for row in self.modules if depth is None or row.depth <= depth]


    def total_rows(self) -> list[tuple[str, str, str]]:
        """``("trainable", "1,185", "0.00474 MB")``: parameters, trainable, frozen; then buffers."""
        t = self.totals
        rows = [(key, f"{int(t[key]):,}", f"{t[key + '_mb']:.3g} MB") for key in ("params", "trainable", "frozen")]
        return rows + [("buffers", "", f"{t['buffers_mb']:.3g} MB")]


def compute_summary(spec: Any, overrides: list[str] | None = None, registry: Registry | None = None) -> Summary:
    """Build ``spec`` up to the optimizer on the CPU and describe the model it trains."""
    import torch

    from torchtk.core.assembly import build_parts, probe_batch
    from torchtk.core.data import to_device
    from torchtk.core.distributed import SingleProcess

    registry = registry or get_registry()
    if isinstance(spec, RunSpec) and not overrides:
        resolved = resolve(spec.model_copy(deep=True), registry)
    else:
        resolved = load_resolved(spec, overrides=overrides, registry=registry)
    parts = build_parts(resolved, SingleProcess(torch.device("cpu")), upto="optimizer")
    batch = probe_batch(parts.val, parts.train)
    inputs = to_device(batch[0], parts.device, parts.precision.input_dtype) if batch is not None else None
    shapes = output_shapes(parts.model, inputs)
    rows = module_rows(parts.model, shapes, {id(m) for m in parts.frozen_eval})
    return Summary(name=resolved.spec.name, model=type(parts.model).__name__, input_shape=shape_of(inputs),
                   modules=rows, totals=totals(parts.model), reports=list(getattr(parts, "notes", [])),
                   optimizer=type(parts.optimizer).__name__, groups=groups(parts.optimizer, parts.model))


def output_shapes(model: Any, inputs: Any) -> dict[int, Any]:
    """``id(module) -> shape of its first output`` on one no-grad, eval-mode forward pass."""
    import torch

    from torchtk.core.assembly import input_errors

    if inputs is None:
        return {}
    shapes: dict[int, Any] = {}

    def record(module: Any, _args: Any, output: Any) -> None:
        shapes.setdefault(id(module), shape_of(output))

    modes = [(module, module.training) for module in model.modules()]
    handles = [module.register_forward_hook(record) for module, _ in modes]
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad(), \
                input_errors("model: the forward pass fails on a batch of the data"):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return shapes


def shape_of(value: Any) -> Any:
    """``[4, 16]`` for a tensor; a list or dict of those for tuples and dicts; else the type name."""
    if hasattr(value, "shape"):
        return list(value.shape)
    if isinstance(value, (list, tuple)):
        return [shape_of(v) for v in value]
    if isinstance(value, dict):
        return {str(k): shape_of(v) for k, v in value.items()}
    return None if value is None else type(value).__name__


def format_shape(shape: Any) -> str:
    """``[4, 16]``; ``([4, 16], [4])`` for several outputs; ``-`` for a module the forward pass did not call."""
    if shape is None:
        return "-"
    if isinstance(shape, list) and shape and not all(isinstance(d, int) for d in shape):
        return "(" + ", ".join(format_shape(s) for s in shape) + ")"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    return str(shape)


def module_rows(model: Any, shapes: dict[int, Any], in_eval: set[int]) -> list[ModuleRow]:
    """One row per module of ``model.named_modules()``, in its order."""
    rows = []
    for name, module in model.named_modules():
        parameters = list(module.parameters())  # shared tensors once
        total = sum(p.numel() for p in parameters)
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        status = "" if not total else "trainable" if trainable == total else "frozen" if not trainable \
            else "partly frozen"
        if id(module) in in_eval and status:
            status += ", eval"
        rows.append(ModuleRow(name, type(module).__name__, name.count(".") + 1 if name else 0,
                              shapes.get(id(module)), total, trainable, status))
    return rows


def totals(model: Any) -> dict[str, float]:
    """Parameters, trainable and frozen, in numbers and megabytes (10^6 bytes)."""
    parameters = list(model.parameters())
    size = {True: 0, False: 0}
    count = {True: 0, False: 0}
    for p in parameters:
        count[p.requires_grad] += p.numel()
        size[p.requires_grad] += p.numel() * p.element_size()
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"params": count[True] + count[False], "trainable": count[True], "frozen": count[False],
            "params_mb": (size[True] + size[False]) / MB, "trainable_mb": size[True] / MB,
            "frozen_mb": size[False] / MB, "buffers_mb": buffers / MB}


def groups(optimizer: Any, model: Any = None) -> list[Group]:
    """Each optimizer param group: name, lr, weight decay, how many tensors and numbers."""
    from torchtk.core.param_groups import group_names

    return [Group(name, float(group["lr"]), float(group.get("weight_decay", 0.0)), len(group["params"]),
                  sum(p.numel() for p in group["params"]))
            for name, group in zip(group_names(optimizer, model), optimizer.param_groups)]
