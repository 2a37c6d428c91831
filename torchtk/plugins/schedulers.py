"""Built-in learning-rate schedulers: every ``torch.optim.lr_scheduler`` class by name,
the classic ``step_decay``, ``warmup`` before any other scheduler, and composition.

One step unit everywhere: a scheduler is stepped once per epoch or once per optimizer
update (``"interval"``), never per batch, so gradient accumulation does not shorten a
schedule. ``lambda`` and ``multiplicative`` take their function as a small arithmetic
expression in ``epoch`` (checked by :func:`compile_expression`, never ``eval``), or the
name of a function-style scheduler such as ``step_decay``; ``cyclic``'s ``scale_fn`` is an
expression in ``x`` checked by the same evaluator. Every torch scheduler but
``reduce_on_plateau`` takes ``last_epoch`` to start mid-schedule: it is built fresh and
stepped ``last_epoch + 1`` times, so the lr is the schedule's own at that point.

A function-style scheduler is a scheduler component whose catalog entry declares
``extras={"lr_lambda": "package.module:function"}``, where
``function(epoch: int, params) -> float`` returns the factor applied to the base lr;
its plugin builds it with ``LambdaLR(optimizer, lambda epoch: function(epoch, params))``.
Its name then also works as ``{"name": "lambda", "params": {"lr_lambda": NAME}}``
(with the function's default params).

Names (of nested schedulers, of function-style schedulers) are resolved in the registry
that validates the params, passed as pydantic's validation context
(``info.context["registry"]``, as ``Registry.validate_params`` does); only params
validated without a context use the process-wide ``torchtk.registry``. A validated
params model remembers what it resolved, so building it never resolves names again.

Nothing here imports torch at import time: params models derived from torch's
constructors are built on first use.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union

from pydantic import Field, PrivateAttr, create_model, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from torchtk import Component, Params, TorchtkError, hookimpl
from torchtk.core.errors import shorten

if TYPE_CHECKING:
    from torchtk.core.registry import Registry

FloatOrList = Union[float, list[float]]

# -- restricted arithmetic expressions -------------------------------------------------------

MAX_EXPRESSION_LENGTH = 300
MAX_EXPRESSION_DEPTH = 50  # nested operations and calls; "0.5 * (1 + cos(pi * epoch / 100))" has 5


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` in floats: an overflow is an error, never a huge integer, and a
    negative base with a fractional exponent is an error, never a complex number."""
    return math.pow(base, exponent)


_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
}
_UNARY: dict[type, Callable[[float], float]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "exp": math.exp, "log": math.log, "log10": math.log10,
    "sqrt": math.sqrt, "cos": math.cos, "sin": math.sin, "floor": math.floor, "ceil": math.ceil,
}
# how many arguments each function takes: (least, most); log's second is the base
ARITY: dict[str, tuple[int, int]] = {"min": (2, MAX_EXPRESSION_LENGTH), "max": (2, MAX_EXPRESSION_LENGTH), "log": (1, 2),
                                     **{name: (1, 1) for name in FUNCTIONS if name not in ("min", "max", "log")}}
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLE = "epoch"
EXPRESSION_HELP = (f"an expression may use numbers, {VARIABLE}, + - * / // % **, parentheses, "
                   f"the constants {', '.join(CONSTANTS)} and the functions {', '.join(FUNCTIONS)}")


class ExpressionError(ValueError):
    """An expression that is not allowed, or fails when evaluated."""


def compile_expression(text: str, variable: str = VARIABLE, what: str = "lr") -> Callable[[int], float]:
    """Compile a restricted arithmetic expression in ``epoch`` into ``f(epoch) -> float``.

    ``variable`` names the one variable (CyclicLR's ``scale_fn`` uses ``x``); ``what``
    names the expression in error messages.

    Only numbers, the variable ``epoch``, ``+ - * / // % **``, unary minus, the
    constants in :data:`CONSTANTS` and the functions in :data:`FUNCTIONS` (with the
    number of arguments in :data:`ARITY`) are allowed, at most
    :data:`MAX_EXPRESSION_LENGTH` characters and :data:`MAX_EXPRESSION_DEPTH` levels of
    nesting; anything else (attributes, names, subscripts, lambdas, comparisons)
    raises :class:`ExpressionError`. Every value is a float, ``floor`` and ``ceil``
    included, and ``**`` is ``math.pow``, so ``9 ** 9 ** 9`` overflows (an error) at
    once instead of computing a huge integer, and ``(-1) ** 0.5`` is an error, not a
    complex number. The result is a closure, never ``eval``.
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg} at column {exc.offset}") from None
    except (RecursionError, MemoryError, ValueError):  # nesting the parser itself refuses; a NUL character
        raise ExpressionError(f"not a valid expression: nested deeper than {MAX_EXPRESSION_DEPTH} levels or "
                              "not plain text") from None
    evaluate = _compile(tree.body, source, variable, depth=0)
    factor = "learning-rate factor" if what == "lr" else f"{what} value"

    def lr_lambda(epoch: int) -> float:
        try:
            value = evaluate(float(epoch))
        except (ArithmeticError, ValueError) as exc:
            raise ExpressionError(f"{what} expression {source!r} fails at {variable} {epoch}: {_failure(exc)}") from None
        if not math.isfinite(value) or value < 0:
            raise ExpressionError(f"{what} expression {source!r} gives {value} at {variable} {epoch}; a {factor} "
                                  "must be a finite number >= 0")
        return value

    return lr_lambda


def _failure(exc: Exception) -> str:
    """What went wrong in an evaluation, in words (math's own are "math range error")."""
    if isinstance(exc, OverflowError):
        return "a value overflows (it is beyond the range of a float)"
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if str(exc) == "math domain error":
        return ("a function or ** is outside its domain (log or sqrt of a negative number, a negative number to a "
                "fractional power, 0 to a negative power)")
    return str(exc)


def _compile(node: ast.AST, source: str, variable: str, depth: int) -> Callable[[float], float]:
    if depth > MAX_EXPRESSION_DEPTH:
        raise ExpressionError(f"expression nested deeper than {MAX_EXPRESSION_DEPTH} levels")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            value = float(node.value)
        except OverflowError:  # an integer literal such as 0xfff...f beyond the float range
            raise ExpressionError(f"the number {ast.get_source_segment(source, node)[:40]!r}... is beyond the range "
                                  "of a float") from None
        return lambda epoch: value
    if isinstance(node, ast.Name):
        if node.id == variable:
            return lambda epoch: epoch
        if node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            return lambda epoch: value
        raise ExpressionError(f"unknown name {node.id!r}; {_help(variable)}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        left, right = _compile(node.left, source, variable, depth + 1), _compile(node.right, source, variable, depth + 1)
        return lambda epoch: op(left(epoch), right(epoch))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op, operand = _UNARY[type(node.op)], _compile(node.operand, source, variable, depth + 1)
        return lambda epoch: op(operand(epoch))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        return _compile_call(node, source, variable, depth)
    snippet = ast.get_source_segment(source, node) or type(node).__name__
    raise ExpressionError(f"{snippet!r} is not allowed; {_help(variable)}")


def _compile_call(node: ast.Call, source: str, variable: str, depth: int) -> Callable[[float], float]:
    name = node.func.id  # type: ignore[attr-defined]
    if node.keywords or not node.args or any(isinstance(a, ast.Starred) for a in node.args):
        raise ExpressionError(f"{name}() takes positional arguments only")
    least, most = ARITY[name]
    if not least <= len(node.args) <= most:
        wanted = f"{least}" if least == most else (f"{least} or {most}" if most == least + 1 else f"at least {least}")
        raise ExpressionError(f"{name}() takes {wanted} argument{'s' if most > 1 else ''}, got {len(node.args)}")
    function, args = FUNCTIONS[name], [_compile(a, source, variable, depth + 1) for a in node.args]
    return lambda epoch: float(function(*(a(epoch) for a in args)))


def _help(variable: str) -> str:
    return EXPRESSION_HELP if variable == VARIABLE else EXPRESSION_HELP.replace(f", {VARIABLE},", f", {variable},")


# -- which registry names are resolved in ------------------------------------------------------


def registry_from(info: ValidationInfo | None = None) -> Registry:
    """The registry validating these params (the validation context's ``"registry"``),
    or the process-wide one when params are validated without a context."""
    context = info.context if info is not None else None
    if isinstance(context, dict) and context.get("registry") is not None:
        return context["registry"]
    import torchtk

    return torchtk.registry


class _Pinned:
    """What a params model remembers from its validation: the registry, and for a nested
    scheduler its component and validated params. Copies of the params model share it
    (it is never deep-copied), and it takes no part in equality."""

    __slots__ = ("registry", "component", "params")

    def __init__(self, registry: Registry, component: Component | None = None, params: Any = None) -> None:
        self.registry, self.component, self.params = registry, component, params

    def __deepcopy__(self, memo: dict[int, Any]) -> _Pinned:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Pinned)

    __hash__ = None  # type: ignore[assignment]


def function_schedulers(registry: Registry | None = None) -> dict[str, Component]:
    """Function-style schedulers (catalog entries declaring ``extras["lr_lambda"]``) by name."""
    registry = registry if registry is not None else registry_from()
    return {c.name: c for c in registry.components("scheduler") if c.extras.get("lr_lambda")}


def lr_function(text: str, registry: Registry | None = None) -> Callable[[int], float]:
    """``f(epoch) -> factor`` for an expression or a function-style scheduler's name."""
    if text.isidentifier() and text != VARIABLE and text not in CONSTANTS:
        from torchtk.core.components import load_object

        registry = registry if registry is not None else registry_from()
        component = function_schedulers(registry).get(text)
        if component is not None:
            function = load_object(component.extras["lr_lambda"])
            params = registry.validate_params(component, {})
            return lambda epoch: function(epoch, params)
    return compile_expression(text)


def _check_lr_function(text: str, registry: Registry) -> str:
    if text.isidentifier() and text != VARIABLE and text not in CONSTANTS:
        named = function_schedulers(registry)
        if text in named:
            try:
                registry.validate_params(named[text], {})
            except ValidationError:
                raise ValueError(f"{text!r} has required params; use it as its own scheduler "
                                 f"{{\"name\": \"{text}\", \"params\": {{...}}}}") from None
            return text
        raise ValueError(f"{shorten(repr(text))} is neither an expression nor a function-style scheduler "
                         f"({', '.join(named) or 'none installed'}); {EXPRESSION_HELP}")
    try:
        compile_expression(text)(0)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None
    return text


LAST_EPOCH = ("Start mid-schedule: -1 starts at the beginning; k starts where the schedule is after k + 1 "
              "steps (torch's last_epoch, with the lr of that point rather than the optimizer's current one).")


class LambdaParams(Params):
    """Set each group's lr to its initial lr times lr_lambda(epoch) (LambdaLR).

    lr_lambda is an arithmetic expression in epoch such as "0.95 ** epoch" or
    "min(1, (epoch + 1) / 5)", or the name of a function-style scheduler such as
    step_decay (used with its default params). A list gives one per param group.
    Expressions may use numbers, epoch, + - * / // % **, parentheses, pi, e, and
    min, max, abs, exp, log, log10, sqrt, cos, sin, floor, ceil. epoch counts
    scheduler steps: optimizer updates when the scheduler's interval is "step".
    """

    lr_lambda: Union[str, list[str]] = Field(
        description="Factor on the initial lr: an expression in epoch (e.g. \"0.95 ** epoch\") or the name of "
                    "a function-style scheduler; a list gives one per param group.",
        min_length=1)

    last_epoch: int = Field(-1, ge=-1, le=10_000_000, description=LAST_EPOCH)

    _pinned: Optional[_Pinned] = PrivateAttr(default=None)

    @field_validator("lr_lambda")
    @classmethod
    def _valid_functions(cls, value: Union[str, list[str]], info: ValidationInfo) -> Union[str, list[str]]:
        registry = registry_from(info)
        for text in [value] if isinstance(value, str) else value:
            _check_lr_function(text, registry)
        return value

    @model_validator(mode="after")
    def _remember_registry(self, info: ValidationInfo) -> LambdaParams:
        self._pinned = _Pinned(registry_from(info))
        return self

    def functions(self) -> Union[Callable[[int], float], list[Callable[[int], float]]]:
        registry = self._pinned.registry if self._pinned is not None else registry_from()
        if isinstance(self.lr_lambda, str):
            return lr_function(self.lr_lambda, registry)
        return [lr_function(text, registry) for text in self.lr_lambda]


class MultiplicativeParams(LambdaParams):
    """Multiply each group's lr by lr_lambda(epoch) at every step (MultiplicativeLR).

    lr_lambda is an arithmetic expression in epoch such as "0.95" or
    "max(0.9, 1 - epoch / 100)", or the name of a function-style scheduler. A list
    gives one per param group.

    The factors compound: after n steps the lr is the initial lr times the product of
    lr_lambda(1) ... lr_lambda(n), so "0.95" decays like exponential with gamma 0.95.
    """

    lr_lambda: Union[str, list[str]] = Field(
        description="Factor the current lr is multiplied by at each step, so the factors compound: an expression "
                    "in epoch (e.g. \"0.95\") or the name of a function-style scheduler; a list gives one per "
                    "param group.",
        min_length=1)


# -- step_decay: the classic custom scheduler, written as a function ------------------------------


class StepDecayParams(Params):
    """The classic step decay: lr = base_lr * factor ** (epoch // every).

    A function-style scheduler: torchtk.plugins.schedulers.step_decay gives the factor
    on the base lr, and LambdaLR applies it. With the defaults the lr drops tenfold at
    epochs 30, 60, 90. Its name also works as {"name": "lambda", "params":
    {"lr_lambda": "step_decay"}}.
    """

    factor: float = Field(0.1, gt=0, description="Multiplier applied at each drop.")
    every: int = Field(30, ge=1, description="Epochs (scheduler steps) between two drops.")


def step_decay(epoch: int, params: StepDecayParams) -> float:
    """The factor on the base lr at ``epoch``."""
    return params.factor ** (epoch // params.every)


# -- nested scheduler references (sequential, chained, warmup) ------------------------------------


def _error_at(loc: tuple[Any, ...], message: str, value: Any) -> ValidationError:
    return ValidationError.from_exception_data("scheduler", [InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=loc, input=value)])


class NestedScheduler(Params):
    """One scheduler inside a composite: ``{"name": ..., "params": {...}}`` or a bare name.

    Validating it resolves the name and validates the params in the validating registry;
    ``params`` become the full validated params (what ``spec.json`` shows), and the
    component, its params model instance and the registry are remembered for
    :meth:`build`.
    """

    name: str = Field(description="Scheduler name, as in the spec's scheduler slot.")
    params: dict[str, Any] = Field(default_factory=dict, description="The scheduler's params.")
    _pinned: Optional[_Pinned] = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _validate_params(self, info: ValidationInfo) -> NestedScheduler:
        registry = registry_from(info)
        try:
            component = registry.resolve("scheduler", self.name)
            registry.params_model(component)
        except TorchtkError as exc:
            raise _error_at(("name",), str(exc), self.name) from None
        try:
            validated = registry.validate_params(component, self.params)
        except ValidationError as exc:
            raise ValidationError.from_exception_data("scheduler", [
                InitErrorDetails(type=error["type"] if error["type"] != "value_error" else
                                 PydanticCustomError("value_error", error["msg"]),
                                 loc=("params", *error["loc"]), input=error["input"],
                                 **({"ctx": error["ctx"]} if "ctx" in error and error["type"] != "value_error" else {}))
                for error in exc.errors()]) from None
        object.__setattr__(self, "params", validated.model_dump(mode="json"))
        self._pinned = _Pinned(registry, component, validated)
        return self

    def _resolution(self) -> _Pinned:
        """What validation resolved; an instance built without validation
        (``model_construct``) is resolved now, in the process-wide registry."""
        if self._pinned is None:
            registry = registry_from()
            component = registry.resolve("scheduler", self.name)
            self._pinned = _Pinned(registry, component, registry.validate_params(component, self.params))
        return self._pinned

    @property
    def component(self) -> Component:
        return self._resolution().component

    def build(self, optimizer: Any, run: Any) -> Any:
        resolved = self._resolution()
        return resolved.registry.build(resolved.component, resolved.params, optimizer=optimizer, run=run)


def _no_metric_schedulers(refs: list[NestedScheduler], where: str) -> list[NestedScheduler]:
    for index, ref in enumerate(refs):
        if ref.component.extras.get("needs_metric"):
            raise _error_at((index, "name"), f"{ref.name} needs a metric and cannot be inside {where}; "
                            "use warmup, whose \"then\" may be reduce_on_plateau", ref.name)
    return refs


class SequentialParams(Params):
    """Run schedulers one after another, switching at the given milestones (SequentialLR).

    {"schedulers": [{"name": "linear", "params": {"start_factor": 0.1, "total_iters": 5}},
    {"name": "cosine_annealing", "params": {"T_max": 45}}], "milestones": [5]}.
    All of them step at this scheduler's interval; reduce_on_plateau cannot be one of
    them (torch passes it no metric): use warmup for that.
    """

    schedulers: list[NestedScheduler] = Field(min_length=1, description="The schedulers, in order.")
    milestones: list[int] = Field(description="Steps at which the next scheduler takes over "
                                              "(one fewer than schedulers, increasing).")

    @field_validator("schedulers")
    @classmethod
    def _no_metric(cls, value: list[NestedScheduler]) -> list[NestedScheduler]:
        return _no_metric_schedulers(value, "sequential")

    @model_validator(mode="after")
    def _milestones_fit(self) -> SequentialParams:
        if len(self.milestones) != len(self.schedulers) - 1:
            raise ValueError(f"milestones needs {len(self.schedulers) - 1} value(s), one per switch between "
                             f"the {len(self.schedulers)} schedulers; got {len(self.milestones)}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be positive and increasing, got {self.milestones}")
        return self


class ChainedParams(Params):
    """Step several schedulers together, multiplying their effects (ChainedScheduler).

    Each scheduler's factor applies on top of the others', e.g. a constant warmup factor
    times an exponential decay. A list in the spec's scheduler slot does the same, and
    lets each member have its own interval.
    """

    schedulers: list[NestedScheduler] = Field(min_length=1, description="The schedulers stepped together.")

    @field_validator("schedulers")
    @classmethod
    def _no_metric(cls, value: list[NestedScheduler]) -> list[NestedScheduler]:
        return _no_metric_schedulers(value, "chained")


# -- warmup ----------------------------------------------------------------------------------


class WarmupParams(Params):
    """Warm the lr up for length steps, then hand over to any scheduler (then).

    Linear warmup ramps each group's factor from start_factor to 1 (reached at step
    length); constant warmup holds it at start_factor. length counts this scheduler's
    steps: epochs by default, optimizer updates with "interval": "step" on the
    scheduler ref, so gradient accumulation never shortens it. then starts from its
    own step 0 when the warmup ends and steps at the same interval; it may be
    reduce_on_plateau, which then receives the monitored metric (interval epoch only;
    metrics seen during warmup are ignored). Each param group warms up to its own lr.
    Warmup sets the lr itself: put the scheduler that follows in then, not beside
    warmup in a list.
    """

    length: int = Field(ge=1, description="Warmup length in scheduler steps (epochs, or updates with interval step).")
    mode: Literal["linear", "constant"] = Field("linear", description="Ramp linearly to the lr, or hold a constant fraction.")
    start_factor: float = Field(0.1, gt=0, le=1, description="Fraction of the lr at the first step of the warmup.")
    then: Optional[NestedScheduler] = Field(None, description="The scheduler after warmup (none: keep the lr constant).")


class Warmup:
    """Warmup for ``length`` steps, then delegate to ``after`` (any scheduler, plateau included).

    Unlike ``SequentialLR`` it passes a metric through, so ``reduce_on_plateau`` may
    follow a warmup. Its ``needs_metric`` attribute tells the engine whether to.
    """

    def __init__(self, optimizer: Any, params: WarmupParams, after: Any = None, needs_metric: bool = False) -> None:
        self.optimizer = optimizer
        self.length, self.mode, self.start_factor = params.length, params.mode, params.start_factor
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.after = after(optimizer) if callable(after) else after
        self.after_lrs = [group["lr"] for group in optimizer.param_groups]
        self.needs_metric = needs_metric
        self.last_epoch = 0
        self._apply(self.factor(0))

    def factor(self, step: int) -> float:
        if self.mode == "constant":
            return self.start_factor
        return self.start_factor + (1.0 - self.start_factor) * step / self.length

    def _apply(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def step(self, metric: Any = None) -> None:
        self.last_epoch += 1
        if self.last_epoch < self.length:
            self._apply(self.factor(self.last_epoch))
            return
        if self.last_epoch == self.length:
            for group, lr in zip(self.optimizer.param_groups, self.after_lrs):
                group["lr"] = lr
        elif self.after is not None:
            if self.needs_metric:
                self.after.step(metric)
            else:
                self.after.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base_lrs": self.base_lrs, "after_lrs": self.after_lrs,
                "_last_lr": self._last_lr, "after": self.after.state_dict() if self.after is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_epoch = state["last_epoch"]
        self.base_lrs, self.after_lrs = list(state["base_lrs"]), list(state["after_lrs"])
        self._last_lr = list(state["_last_lr"])
        if self.after is not None and state["after"] is not None:
            self.after.load_state_dict(state["after"])


# -- params of the torch classes, derived from their constructors ----------------------------------

_INTERVAL_STEP = {"interval": "step", "needs_metric": False}
_INTERVAL_EPOCH = {"interval": "epoch", "needs_metric": False}

_POSITIVE = {"gt": 0}
SCALE_FN = ("Amplitude scale as an expression in x, the same evaluator as lambda's lr_lambda (e.g. "
            "\"0.5 ** (x - 1)\" or \"1 / (1 + 0.1 * x)\"): x is the cycle number (from 1) with scale_mode "
            "cycle, the update count with scale_mode iterations. Replaces mode; null: mode's policy.")
_TORCH_FIELDS: dict[str, tuple[str, dict[str, tuple[Any, dict[str, Any]]]]] = {
    "step": ("StepLR", {"step_size": (int, {"ge": 1}), "gamma": (float, _POSITIVE)}),
    "multi_step": ("MultiStepLR", {"milestones": (list[int], {"min_length": 1}), "gamma": (float, _POSITIVE)}),
    "constant": ("ConstantLR", {"factor": (float, {"ge": 0, "le": 1}), "total_iters": (int, {"ge": 0})}),
    "linear": ("LinearLR", {"start_factor": (float, {"gt": 0, "le": 1}), "end_factor": (float, {"ge": 0, "le": 1}),
                            "total_iters": (int, {"ge": 1})}),
    "exponential": ("ExponentialLR", {"gamma": (float, _POSITIVE)}),
    "polynomial": ("PolynomialLR", {"total_iters": (int, {"ge": 1}), "power": (float, {"ge": 0})}),
    "cosine_annealing": ("CosineAnnealingLR", {"T_max": (int, {"ge": 1}), "eta_min": (float, {"ge": 0})}),
    "reduce_on_plateau": ("ReduceLROnPlateau", {
        "mode": (Literal["min", "max"], {}), "factor": (float, {"gt": 0, "lt": 1}), "patience": (int, {"ge": 0}),
        "threshold": (float, {"ge": 0}), "threshold_mode": (Literal["rel", "abs"], {}), "cooldown": (int, {"ge": 0}),
        "min_lr": (FloatOrList, {"default": 0.0}), "eps": (float, {"ge": 0})}),
    "cyclic": ("CyclicLR", {
        "base_lr": (FloatOrList, {}), "max_lr": (FloatOrList, {}), "step_size_up": (int, {"ge": 1}),
        "step_size_down": (Optional[int], {"ge": 1}),
        "mode": (Literal["triangular", "triangular2", "exp_range"], {}), "gamma": (float, _POSITIVE),
        "scale_fn": (Optional[str], {"max_length": MAX_EXPRESSION_LENGTH, "description": SCALE_FN}),
        "scale_mode": (Literal["cycle", "iterations"], {}), "cycle_momentum": (bool, {}),
        "base_momentum": (FloatOrList, {}), "max_momentum": (FloatOrList, {})}),
    "one_cycle": ("OneCycleLR", {
        "max_lr": (FloatOrList, {}),
        "total_steps": (Optional[int], {"ge": 1, "description": "Length of the cycle in steps (optimizer updates). "
                                        "Default: epochs * steps_per_epoch, filled in from the run."}),
        "epochs": (Optional[int], {"ge": 1, "description": "Epochs of the cycle. Default: the run's epochs."}),
        "steps_per_epoch": (Optional[int], {"ge": 1, "description": "Optimizer updates per epoch. Default: the run's "
                                            "(batches per epoch / accumulate_grad_batches, rounded up)."}),
        "pct_start": (float, {"gt": 0, "lt": 1}), "anneal_strategy": (Literal["cos", "linear"], {}),
        "cycle_momentum": (bool, {}), "base_momentum": (FloatOrList, {}), "max_momentum": (FloatOrList, {}),
        "div_factor": (float, _POSITIVE), "final_div_factor": (float, _POSITIVE), "three_phase": (bool, {})}),
    "cosine_annealing_warm_restarts": ("CosineAnnealingWarmRestarts", {
        "T_0": (int, {"ge": 1}), "T_mult": (int, {"ge": 1}), "eta_min": (float, {"ge": 0})}),
}

_SUMMARIES = {
    "lambda": "Initial lr times a function of the epoch (an expression or a named function).",
    "multiplicative": "Multiply the lr by a function of the epoch at every step.",
    "step": "Decay the lr by gamma every step_size epochs.",
    "multi_step": "Decay the lr by gamma at each milestone epoch.",
    "constant": "Multiply the lr by a constant factor until total_iters, then restore it.",
    "linear": "Change the lr factor linearly from start_factor to end_factor over total_iters.",
    "exponential": "Decay the lr by gamma every epoch.",
    "polynomial": "Decay the lr polynomially to zero over total_iters.",
    "cosine_annealing": "Cosine-anneal the lr from its initial value to eta_min over T_max steps.",
    "reduce_on_plateau": "Reduce the lr by factor when the monitored metric stops improving.",
    "cyclic": "Cycle the lr between base_lr and max_lr (cyclical learning rates); steps per update.",
    "one_cycle": "The 1cycle policy: warm up to max_lr then anneal; steps per update, length from the run.",
    "cosine_annealing_warm_restarts": "Cosine annealing with warm restarts every T_0 (times T_mult) steps.",
    "sequential": "Run several schedulers one after another, switching at milestones.",
    "chained": "Step several schedulers together, multiplying their effects.",
    "step_decay": "Classic step decay: lr = base_lr * factor ** (epoch // every) (function-style).",
    "warmup": "Linear or constant warmup for N epochs or updates, then any scheduler (plateau included).",
}

for _name, (_cls, _fields) in _TORCH_FIELDS.items():
    if _name != "reduce_on_plateau":  # torch's ReduceLROnPlateau has no last_epoch
        _fields["last_epoch"] = (int, {"ge": -1, "le": 10_000_000, "description": LAST_EPOCH})

_CLASSES = {name: cls for name, (cls, _) in _TORCH_FIELDS.items()} | {
    "lambda": "LambdaLR", "multiplicative": "MultiplicativeLR", "sequential": "SequentialLR", "chained": "ChainedScheduler"}


@functools.cache
def torch_params(name: str) -> type[Params]:
    """The params model of a torch scheduler, derived from its constructor on first use."""
    from torch.optim import lr_scheduler

    from torchtk.plugins._torch_params import params_for

    cls_name, fields = _TORCH_FIELDS[name]
    model = params_for(getattr(lr_scheduler, cls_name), fields)
    if name == "multi_step":
        model = create_model(model.__name__, __base__=model,
                             __validators__={"_increasing": field_validator("milestones")(_increasing_milestones)})
        model.__doc__ = model.__base__.__doc__
    if name == "cyclic":
        model = create_model(model.__name__, __base__=model,
                             __validators__={"_scale_fn": model_validator(mode="after")(_check_scale_fn)})
        model.__doc__ = model.__base__.__doc__
    return model


def _check_scale_fn(self: Any) -> Any:
    """cyclic's scale_fn: a valid expression in x, given instead of (not with) mode."""
    if self.scale_fn is None:
        return self
    if "mode" in self.model_fields_set:
        raise ValueError("give scale_fn or mode, not both (torch ignores mode when scale_fn is given)")
    try:
        function = compile_expression(self.scale_fn, variable="x", what="scale_fn")
        function(1)
    except ExpressionError as exc:
        raise ValueError(f"scale_fn: {exc}") from None
    return self


def fast_forward(scheduler: Any, name: str, last_epoch: int) -> Any:
    """A fresh torch scheduler stepped ``last_epoch + 1`` times: where torch's
    ``last_epoch`` would start it, with the schedule's own lr at that point."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "lr_scheduler.step() before optimizer.step()"
            for _ in range(last_epoch + 1):
                scheduler.step()
    except (ValueError, ExpressionError) as exc:
        raise TorchtkError(f"scheduler {name!r}: last_epoch {last_epoch} cannot be reached: {exc}") from None
    return scheduler


def _increasing_milestones(cls: Any, value: list[int]) -> list[int]:
    """multi_step's milestones must be strictly increasing, as torch's MultiStepLR documents
    (torch itself would silently count a repeated milestone twice and sort the others)."""
    if any(b <= a for a, b in zip(value, value[1:])):
        raise ValueError("milestones must be strictly increasing, e.g. [30, 80]")
    return value


def _params_source(name: str) -> Any:
    if name in _TORCH_FIELDS:
        return functools.partial(torch_params, name)
    return {"lambda": LambdaParams, "multiplicative": MultiplicativeParams, "sequential": SequentialParams,
            "chained": ChainedParams, "step_decay": StepDecayParams, "warmup": WarmupParams}[name]


@hookimpl
def register_components(register):
    for name, summary in _SUMMARIES.items():
        extras: dict[str, Any] = dict(_INTERVAL_STEP if name in ("cyclic", "one_cycle") else _INTERVAL_EPOCH)
        if name == "reduce_on_plateau":
            extras["needs_metric"] = True
        if name == "step_decay":
            extras["lr_lambda"] = "torchtk.plugins.schedulers:step_decay"
        register(Component("scheduler", name, summary, params=_params_source(name), extras=extras))


def _fill_one_cycle(kwargs: dict[str, Any], run: Any) -> dict[str, Any]:
    if kwargs["total_steps"] is not None:
        return kwargs
    if run is not None:
        kwargs["epochs"] = kwargs["epochs"] or run.epochs
        kwargs["steps_per_epoch"] = kwargs["steps_per_epoch"] or run.steps_per_epoch
    if kwargs["epochs"] is None or kwargs["steps_per_epoch"] is None:
        raise TorchtkError("one_cycle needs total_steps, or epochs and steps_per_epoch, when it is built "
                           "outside a run (inside a run they are filled in from the trainer)")
    return kwargs


@hookimpl
def make_scheduler(name, params, optimizer, run):
    from torch.optim import lr_scheduler

    cls = getattr(lr_scheduler, _CLASSES.get(name, "LambdaLR"))
    if name in ("lambda", "multiplicative"):
        return fast_forward(cls(optimizer, params.functions()), name, params.last_epoch)
    if name == "step_decay":
        return lr_scheduler.LambdaLR(optimizer, lambda epoch: step_decay(epoch, params))
    if name == "warmup":
        then = params.then
        if then is None:
            return Warmup(optimizer, params)
        return Warmup(optimizer, params, after=lambda opt: then.build(opt, run),
                      needs_metric=bool(then.component.extras.get("needs_metric")))
    if name == "sequential":
        return cls(optimizer, [ref.build(optimizer, run) for ref in params.schedulers], params.milestones)
    if name == "chained":
        return cls([ref.build(optimizer, run) for ref in params.schedulers], optimizer)
    kwargs = params.model_dump()
    last_epoch = kwargs.pop("last_epoch", -1)
    if name == "one_cycle":
        kwargs = _fill_one_cycle(kwargs, run)
    if kwargs.get("scale_fn") is not None:
        kwargs["scale_fn"] = compile_expression(kwargs["scale_fn"], variable="x", what="scale_fn")
    return fast_forward(cls(optimizer, **kwargs), name, last_epoch)
