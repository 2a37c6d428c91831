"""The two ends of a classifier: its head (the output layer) and its stem (the first
convolution). Generic model surgery used by the model factories and the freeze policies.

Depends on torch only (no torchvision), imported when a function is called.

``find_head(model)`` names the output layer(s): the last ``Linear`` or ``Conv2d`` (in
registration order) inside the last top-level child module that owns parameters, plus
the same for every top-level child whose name starts with ``aux`` (any case): the
auxiliary heads of GoogLeNet (``aux1``, ``aux2``) and Inception v3 (``AuxLogits``).
On the 80 torchvision classifiers this finds ``fc`` (ResNet, RegNet, ShuffleNet),
``classifier.6`` (VGG, AlexNet), ``classifier.1`` (EfficientNet, MobileNetV2, MNASNet,
and SqueezeNet's final 1x1 convolution), ``classifier.3`` (MobileNetV3), ``classifier``
(DenseNet), ``classifier.2`` (ConvNeXt), ``classifier.5`` (MaxViT), ``head`` (Swin) and
``heads.head`` (ViT); on a ``Sequential`` it finds the last Linear/Conv2d layer.

``replace_head(model, num_classes)`` puts a freshly initialised layer of the same type
and input size (PyTorch's default initialisation, as in the fine-tuning tutorials) in
place of each of them, on the same device and dtype.

``find_input_conv(model)`` names the first ``Conv2d`` in registration order (``conv1``,
``features.0``, ``conv_proj``, ...), and ``adapt_input_conv(model, in_channels)``
rebuilds it for another number of input channels, keeping its weights the way timm's
``adapt_input_conv`` does: summed over the input channels for one channel, repeated
over the channels and rescaled by ``old / new`` for more (so the response to an input
whose channels are equal stays the same).
"""

from __future__ import annotations

from typing import Any

__all__ = ["find_head", "replace_head", "head_classes", "find_input_conv", "adapt_input_conv",
           "adapt_conv_weight", "get_submodule", "set_submodule"]


def _is_head_layer(module: Any) -> bool:
    from torch import nn

    return isinstance(module, (nn.Linear, nn.Conv2d))


def _owns_parameters(module: Any) -> bool:
    return any(True for _ in module.parameters())


def _last_layer(prefix: str, module: Any) -> str | None:
    if _is_head_layer(module):
        return prefix
    last = None
    for name, sub in module.named_modules(prefix=prefix):
        if _is_head_layer(sub):
            last = name
    return last


def find_head(model: Any) -> list[str]:
    """Qualified module names of the model's head(s), the main head first.

    The main head is the last ``Linear``/``Conv2d`` in the last top-level child that owns
    parameters; auxiliary heads are the last ``Linear``/``Conv2d`` of each top-level
    child named ``aux*`` (case-insensitive) that owns parameters. Raises ``ValueError``
    when the model has no such layer.
    """
    children = [(name, child) for name, child in model.named_children() if child is not None and _owns_parameters(child)]
    if not children:
        raise ValueError(f"{type(model).__name__} has no child module with parameters, so no head to find")
    aux = [(name, child) for name, child in children if name.lower().startswith("aux")]
    main = [(name, child) for name, child in children if not name.lower().startswith("aux")]
    if not main:
        raise ValueError(f"{type(model).__name__}: every child module with parameters is an auxiliary head")
    name, child = main[-1]
    head = _last_layer(name, child)
    if head is None:
        raise ValueError(f"{type(model).__name__}: its last module with parameters, {name!r}, holds no Linear or "
                         f"Conv2d layer to act as the head")
    heads = [head]
    for name, child in aux:
        layer = _last_layer(name, child)
        if layer is not None:
            heads.append(layer)
    return heads


def get_submodule(model: Any, name: str) -> Any:
    """``model.get_submodule(name)``; ``""`` is the model itself."""
    return model.get_submodule(name) if name else model


def set_submodule(model: Any, name: str, module: Any) -> None:
    """Put ``module`` at the qualified ``name`` (``"classifier.6"``, ``"heads.head"``)."""
    parent_name, _, leaf = name.rpartition(".")
    parent = get_submodule(model, parent_name)
    setattr(parent, leaf, module)  # nn.Sequential accepts setattr(seq, "6", m) for an existing index


def head_classes(layer: Any) -> int:
    """The number of outputs of a head layer (``out_features`` or ``out_channels``)."""
    return layer.out_features if hasattr(layer, "out_features") else layer.out_channels


def _fresh_like(layer: Any, num_classes: int) -> Any:
    from torch import nn

    weight = layer.weight
    factory = {"device": weight.device, "dtype": weight.dtype}
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None, **factory)
    if layer.groups != 1:
        raise ValueError(f"cannot replace a grouped convolution head ({layer})")
    return nn.Conv2d(layer.in_channels, num_classes, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                     dilation=layer.dilation, bias=layer.bias is not None, padding_mode=layer.padding_mode, **factory)


def replace_head(model: Any, num_classes: int, heads: list[str] | None = None) -> list[str]:
    """Replace every head layer (``heads``, default ``find_head(model)``) by a freshly
    initialised layer with ``num_classes`` outputs; returns the replaced module names.

    The model's ``num_classes`` attribute, where it has one (SqueezeNet), follows.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    heads = find_head(model) if heads is None else list(heads)
    for name in heads:
        set_submodule(model, name, _fresh_like(get_submodule(model, name), num_classes))
    if isinstance(getattr(model, "num_classes", None), int):
        model.num_classes = num_classes
    return heads


def find_input_conv(model: Any) -> str:
    """The qualified name of the first ``Conv2d`` in registration order (``"conv1"``)."""
    from torch import nn

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError(f"{type(model).__name__} has no Conv2d layer whose input channels could be adapted")


def adapt_conv_weight(weight: Any, in_channels: int) -> Any:
    """A convolution weight ``(out, old, kh, kw)`` for ``in_channels`` inputs.

    One channel: the sum over the old input channels (a grey image ``g`` then gives the
    response the old filters gave to ``(g, g, g)``). More channels: the old channels
    repeated cyclically up to ``in_channels`` and scaled by ``old / in_channels``.
    Computed in float32 and cast back (half-precision weights sum badly on CPU).
    """
    dtype = weight.dtype
    old = weight.shape[1]
    w = weight.float()
    if in_channels == old:
        return weight.clone()
    if in_channels == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        repeats = -(-in_channels // old)
        w = w.repeat(1, repeats, 1, 1)[:, :in_channels] * (old / in_channels)
    return w.to(dtype)


def adapt_input_conv(model: Any, in_channels: int, name: str | None = None) -> str:
    """Rebuild the first convolution (``name``, default ``find_input_conv(model)``) for
    ``in_channels`` inputs, its weights adapted by ``adapt_conv_weight`` (the bias is
    kept). Returns one line saying what was done."""
    import torch
    from torch import nn

    name = find_input_conv(model) if name is None else name
    conv = get_submodule(model, name)
    old = conv.in_channels
    if old == in_channels:
        return f"{name}: already {in_channels} input channels"
    if conv.groups != 1:
        raise ValueError(f"{name}: the first convolution is grouped (groups={conv.groups}); its input channels "
                         f"cannot be adapted")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        if conv.weight.device.type != "meta":
            new.weight.copy_(adapt_conv_weight(conv.weight, in_channels))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    new.weight.requires_grad_(conv.weight.requires_grad)
    set_submodule(model, name, new)
    how = "summed over channels" if in_channels == 1 else f"repeated over channels and scaled by {old}/{in_channels}"
    return f"in_channels: {name}.weight adapted from {old} to {in_channels} input channels ({how})"
