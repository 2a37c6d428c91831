"""Every torchvision classification model by name, with a new head, adapted input
channels and local weights.

Listing reads the catalog in ``_vision_catalog.py`` (data: no torchvision import);
torchvision is imported only when a model is built. How a model is built:

1. The architecture is built with its original head (1000 ImageNet classes) and 3
   input channels, or straight with ``num_classes`` outputs when no weights are given.
2. Weights, when given, are read: a torchvision weights name from the torch hub cache
   (never downloaded), or a local file (``_weights.read_state_dict``). The model takes
   the shape the file has where the file itself was adapted (its head's classes, its
   first convolution's channels), then the tensors are loaded (``_weights.load_state``).
3. The head is then sized for ``num_classes``: a head whose shape differs from the
   file's is freshly initialised and reported, the rest keeps the loaded weights.
4. The first convolution is adapted to ``in_channels`` (``_heads.adapt_input_conv``:
   weights summed for one channel, repeated and rescaled for more).

What was done is in ``model.torchtk_report`` (written to train.log); the parameter
names loaded from weights are in ``model.torchtk_loaded_parameters`` (``init``
policies leave them alone).
"""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl
from torchtk.plugins._weights import WeightsPath
from torchtk.plugins._vision_catalog import FAMILIES, MODELS, TORCHVISION_VERSION, Entry

AUX_FAMILIES = ("googlenet", "inception")


class VisionModelParams(Params):
    """A torchvision classification model, its head sized for ``num_classes``.

    ``weights``: null (random initialisation), a local file (a state_dict .pt or
    .pth, a torchvision .pth, a torchtk checkpoint such as a previous run's
    best.pt, or .safetensors with the safetensors package), or a torchvision
    weights name such as "IMAGENET1K_V1" or "DEFAULT". A name is used only when
    its file is already in the torch hub cache ($TORCH_HOME/hub/checkpoints, by
    default ~/.cache/torch/hub/checkpoints): torchtk never downloads, and the
    error says which file to put where.

    The head (fc, classifier[-1], heads.head, SqueezeNet's final convolution,
    GoogLeNet's and Inception's auxiliary heads) is a freshly initialised layer
    when its size differs from the weights'; every other tensor keeps its
    weights. Any other key of the file that does not fit the model (missing,
    unexpected, another shape) is an error listing the keys, unless
    strict_weights is false.

    in_channels other than 3 adapts the first convolution and keeps its
    pretrained filters: summed over RGB for 1 channel, repeated over the
    channels and rescaled for more (as timm does).
    """

    num_classes: int | None = Field(None, ge=1, description=(
        "Outputs of the head. Null: the weights' number of classes (1000 for ImageNet weights, or the classes "
        "of a torchtk checkpoint), or the architecture's 1000 without weights."))
    in_channels: int = Field(3, ge=1, description=(
        "Channels of the input images: 1 for grey, 4 for RGB + another band; the first convolution is adapted "
        "and keeps its pretrained filters."))
    weights: WeightsPath | None = Field(None, min_length=1, description=(
        "Null (random init), a local weights file path, or a torchvision weights name such as 'IMAGENET1K_V1' "
        "or 'DEFAULT' whose file is already in the torch hub cache (never downloaded)."))
    strict_weights: bool = Field(True, description=(
        "A weights key outside the head that is missing, unexpected or of another shape is an error (true) or "
        "skipped and reported (false)."))
    dropout: float | None = Field(None, ge=0, lt=1, description=(
        "Dropout probability passed to the architecture (classifier dropout of AlexNet, VGG, SqueezeNet, "
        "GoogLeNet, Inception, MobileNet, MNASNet, EfficientNet; every block's dropout in ViT and Swin). "
        "Null: the architecture's default."))
    aux_logits: bool = Field(False, description=(
        "googlenet and inception_v3 only: keep the auxiliary heads (also sized for num_classes). In training "
        "mode the model then returns torchvision's (logits, aux...) tuple, which the loss must accept."))


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M"


def summary(entry: Entry) -> str:
    """One line for ``tk list models``."""
    family = FAMILIES[entry.family].title
    return f"torchvision {family}, {_millions(entry.num_params)} params, ImageNet acc@1 {entry.acc1:.1f}%."


def describe(name: str) -> str:
    """The long description ``tk show model NAME`` prints."""
    import inspect

    entry = MODELS[name]
    family = FAMILIES[entry.family]
    weights = ", ".join(f"{w} ({size} px{', DEFAULT' if w == entry.default else ''})"
                        for w, size in entry.weights.items())
    heads = ", ".join(family.head if entry.family not in AUX_FAMILIES else family.head[:1])
    aux = f"; auxiliary heads with aux_logits: {', '.join(family.head[1:])}" if entry.family in AUX_FAMILIES else ""
    lines = [
        f"torchvision.models.{name} ({family.title}, torchvision {TORCHVISION_VERSION}):",
        f"{entry.num_params:,} parameters with the 1000-class head.",
        f"Weights: {weights}.",
        f"DEFAULT: {entry.default}, ImageNet-1K acc@1 {entry.acc1}%.",
        f"Input: {entry.input_size} px as the DEFAULT weights were evaluated; at least {entry.min_size} px.",
        f"Head: {heads}{aux}.",
        f"First convolution: {family.stem}.",
        "dropout: accepted." if entry.dropout else "dropout: not an argument of this architecture.",
    ]
    return "\n".join(lines) + "\n\n" + inspect.cleandoc(VisionModelParams.__doc__ or "")


# -- building ----------------------------------------------------------------------------------

def _densenet_keys(state: dict) -> dict:
    """torchvision's DenseNet files use the old key names ``...denselayer1.norm.1.weight``."""
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    renamed = {}
    for key, value in state.items():
        match = pattern.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def _aux_children(model) -> list[str]:
    return [name for name, child in model.named_children() if name.lower().startswith("aux") and child is not None]


def _drop_aux(model) -> list[str]:
    """Remove GoogLeNet's / Inception's auxiliary heads, as torchvision does after loading."""
    names = _aux_children(model)
    for name in names:
        setattr(model, name, None)
    model.aux_logits = False
    return names


def _under(key: str, prefixes) -> bool:
    return any(key.startswith(prefix + ".") for prefix in prefixes)


def build_vision_model(name: str, params: VisionModelParams):
    """The architecture, its weights loaded (original head first), then head and stem adapted."""
    import warnings

    from torchvision import models

    from torchtk.plugins._weights import add_report

    entry = MODELS[name]
    kwargs = _architecture_kwargs(name, entry, params)
    builder = models.get_model_builder(name)
    if params.weights is None:
        return _random_model(name, entry, params, builder, kwargs)
    notes: list[str] = []
    state, source, optional = _read_weights(name, entry, params, kwargs, notes)
    if entry.family in AUX_FAMILIES:
        kwargs.update(aux_logits=True, init_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = builder(weights=None, **kwargs)
    if entry.family == "densenet":
        state = _densenet_keys(state)
    if entry.family in AUX_FAMILIES:
        state = _fit_aux_heads(model, entry, params, state, optional, notes)
    _load_and_adapt(model, params, state, source, optional, notes)
    add_report(model, *notes)
    return model


def _architecture_kwargs(name: str, entry, params: VisionModelParams) -> dict:
    """Builder arguments the params ask for (dropout), with the input errors they can raise."""
    from torchtk.core.errors import UserInputError

    kwargs: dict = {}
    if params.dropout is not None:
        if not entry.dropout:
            takes = sorted({FAMILIES[e.family].title for e in MODELS.values() if e.dropout})
            raise UserInputError(f"model.params.dropout: {name} takes no dropout argument; the families that do: "
                                 f"{', '.join(takes)}")
        kwargs["dropout"] = params.dropout
    if params.aux_logits and entry.family not in AUX_FAMILIES:
        raise UserInputError(f"model.params.aux_logits: {name} has no auxiliary heads (only googlenet and "
                             f"inception_v3 have them)")
    return kwargs


def _random_model(name: str, entry, params: VisionModelParams, builder, kwargs: dict):
    from torchtk.plugins._heads import adapt_input_conv
    from torchtk.plugins._weights import add_report

    notes: list[str] = []
    if entry.family in AUX_FAMILIES:
        kwargs.update(aux_logits=params.aux_logits, init_weights=True)
    if params.num_classes is not None:
        kwargs["num_classes"] = params.num_classes
    model = builder(weights=None, **kwargs)
    if params.in_channels != 3:
        notes.append(adapt_input_conv(model, params.in_channels))
    _grey_input(model, params.in_channels, notes)
    add_report(model, f"weights: none ({name} randomly initialised)", *notes)
    return model


def _read_weights(name: str, entry, params: VisionModelParams, kwargs: dict, notes: list[str]):
    """The state dict of ``params.weights``, where it came from, and the modules it may lack;
    a torchvision weights name also sets the builder arguments its file was made with."""
    from torchtk.plugins._weights import cached_torchvision_weights, is_weights_name, read_state_dict

    optional: list[str] = []  # module names the file may lack (kept as initialised)
    if not is_weights_name(params.weights):
        state, kind = read_state_dict(params.weights)
        return state, f"{params.weights} ({kind})", optional
    member, path = cached_torchvision_weights(name, params.weights)
    state, _ = read_state_dict(path)
    if member.meta.get("categories"):
        kwargs["num_classes"] = len(member.meta["categories"])
    else:  # vgg16 IMAGENET1K_FEATURES: only `features` holds trained values
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        optional.append("classifier")
        notes.append(f"weights: {member.name} has no trained classifier; classifier newly initialised")
    if entry.family in AUX_FAMILIES:
        kwargs["transform_input"] = True  # what torchvision does for its weights
    if entry.family == "vision_transformer":
        kwargs["image_size"] = member.meta["min_size"][0]
    if entry.family == "maxvit":
        kwargs["input_size"] = member.meta["min_size"]
    return state, f"torchvision {member.name} ({path})", optional


def _fit_aux_heads(model, entry, params: VisionModelParams, state: dict, optional: list[str],
                   notes: list[str]) -> dict:
    """GoogLeNet's and Inception's auxiliary heads: dropped unless ``aux_logits``, fresh if the file lacks them."""
    from torchtk.plugins._weights import is_weights_name

    aux = _aux_children(model)
    in_file = [k for k in state if _under(k, aux)]
    if not params.aux_logits:
        _drop_aux(model)
        if in_file:
            notes.append(f"weights: {len(in_file)} tensors of the auxiliary heads ({', '.join(aux)}) not used "
                         f"(aux_logits is false)")
        return {k: v for k, v in state.items() if not _under(k, aux)}
    if not in_file:
        optional += aux
        notes.append(f"weights: the file has no auxiliary heads; {', '.join(aux)} newly initialised")
    elif entry.family == "googlenet" and is_weights_name(params.weights):
        notes.append("weights: torchvision's googlenet auxiliary heads are not pretrained; train them")
    return state


def _load_and_adapt(model, params: VisionModelParams, state: dict, source: str, optional: list[str],
                    notes: list[str]) -> None:
    """Size the head, load the weights (a head of another size stays fresh), adapt the stem."""
    from torchtk.plugins._heads import adapt_input_conv, find_head, find_input_conv, get_submodule, head_classes, \
        replace_head
    from torchtk.plugins._weights import load_state

    heads = find_head(model)
    stem = find_input_conv(model)
    stem_weight = state.get(f"{stem}.weight")
    if params.in_channels != 3 and stem_weight is not None and stem_weight.shape[1] == params.in_channels:
        adapt_input_conv(model, params.in_channels, stem)  # the file was adapted already: take its shape
    current = head_classes(get_submodule(model, heads[0]))
    file_head = state.get(f"{heads[0]}.weight")
    target = params.num_classes or (file_head.shape[0] if file_head is not None else current)
    if target != current:
        replace_head(model, target, heads)
    result = load_state(model, state, source=source, head=heads, optional=optional, strict=params.strict_weights,
                        hint="strict_weights: false loads the keys that fit")
    fresh_heads = [h for h in heads if any(_under(k, [h]) for k in result.head)]
    if fresh_heads:
        keys = [k for k in result.head if _under(k, fresh_heads)]
        notes.append(f"head: {', '.join(keys)} newly initialised ({target} classes)")
    elif target != 1000 or params.num_classes is not None:
        notes.append(f"head: {', '.join(heads)} loaded from the weights ({target} classes)")
    if get_submodule(model, stem).in_channels != params.in_channels:
        notes.append(adapt_input_conv(model, params.in_channels, stem))
    _grey_input(model, params.in_channels, notes)


def _grey_input(model, in_channels: int, notes: list[str]) -> None:
    """GoogLeNet's and Inception's ``transform_input`` re-normalises three RGB channels."""
    if in_channels != 3 and getattr(model, "transform_input", False):
        model.transform_input = False
        notes.append("transform_input turned off (it re-normalises exactly 3 RGB channels)")


# -- the plugin --------------------------------------------------------------------------------

def _doc(name: str):
    return lambda: describe(name)


@hookimpl
def register_components(register):
    for entry in MODELS.values():
        register(Component("model", entry.name, summary(entry), params=VisionModelParams, doc=_doc(entry.name)))


@hookimpl
def make_model(name, params):
    return build_vision_model(name, params)
