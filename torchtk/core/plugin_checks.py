"""Plugin mistakes that would otherwise pass silently, caught where they are made.

* A callback method that looks like a run hook but is none (``on_stepp``, or a
  ``@hookimpl`` method of an unknown name, or a run hook's name without ``@hookimpl``):
  pluggy never calls it, so the run would train without it. Refused when the run is
  built (exit 2), naming the method, the closest hook and the component.
* A params model that is a plain pydantic ``BaseModel`` (coerces ``"0.5"`` to 0.5,
  drops misspelt keys): refused at registration, the plugin is broken with that reason.
* A plugin that imports torch (or another heavy library) when it is loaded: every
  ``tk list`` pays for it. The host measures each plugin's import (time, and which heavy
  modules appeared in ``sys.modules``) and ``tk plugins`` names the slow ones.

Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from torchtk.core import hookspecs
from torchtk.core.errors import TorchtkError, UserInputError

if TYPE_CHECKING:
    from torchtk.core.components import Component
    from torchtk.core.plugins import PluginInfo

# the run hooks a callback may implement (hookspecs' "run calls"), in calling order
RUN_HOOKS = tuple(name for name, spec in vars(hookspecs).items()
                  if name.startswith("on_") and hasattr(spec, "torchtk_spec"))
# public methods the engine calls on a callback that are not hooks
CALLBACK_METHODS = ("state_dict", "load_state_dict", "bind")
_IMPL_MARK = "torchtk_impl"  # the attribute pluggy's HookimplMarker("torchtk") sets

# libraries whose import a listing must not pay for (torch alone costs seconds)
HEAVY_MODULES = ("torch", "torchvision", "timm", "segmentation_models_pytorch", "monai", "tensorflow", "jax")
SLOW_IMPORT_SECONDS = 1.0  # a third-party plugin's own import; the built-ins import pydantic first


# -- callbacks -----------------------------------------------------------------------------


def callback_method_problems(callback: Any) -> list[str]:
    """What in ``callback`` looks like a run hook but would never be called, one line each
    (``method 'on_stepp' is not a run hook (did you mean 'on_step'?)``)."""
    problems = []
    for name, marked in _public_methods(callback):
        if name in RUN_HOOKS:
            if not marked:
                problems.append(f"method {name!r} is a run hook but lacks @torchtk.hookimpl, so it is never called")
            continue
        if name in CALLBACK_METHODS or not (marked or name.startswith("on_")):
            continue
        close = difflib.get_close_matches(name, RUN_HOOKS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"method {name!r} is not a run hook{hint}, so it is never called")
    return problems


def _public_methods(callback: Any) -> Iterator[tuple[str, bool]]:
    """``(name, marked with @hookimpl)`` of every public routine of ``callback`` (a plain
    function-style callback, such as a module, has them as attributes too)."""
    for name in dir(callback):
        if name.startswith("_"):
            continue
        try:
            value = inspect.getattr_static(callback, name)
        except AttributeError:
            continue
        value = getattr(value, "__func__", value)  # staticmethod / classmethod
        if inspect.isroutine(value):
            yield name, hasattr(value, _IMPL_MARK)


def check_callback(callback: Any, label: str) -> None:
    """Refuse a callback with methods no run hook would call (exit 2); ``label`` names
    the component (``callbacks[0] 'mine' (plugin torchtk_mine, torchtk-mine 1.0)``)."""
    problems = callback_method_problems(callback)
    if problems:
        raise UserInputError(f"{label}: {'; '.join(problems)}. Run hooks: {', '.join(RUN_HOOKS)} "
                             "(`tk hooks` documents each); other public methods need a name not starting with on_")


# -- params models ---------------------------------------------------------------------------


def params_model_problem(model: Any) -> str | None:
    """Why ``model`` cannot be a params model, or ``None`` when it can: it must subclass
    ``torchtk.Params`` and keep its strictness."""
    from torchtk.core.components import Params

    if not isinstance(model, type):
        return None  # not a class: reported as "params must be a pydantic model" where it is loaded
    if not issubclass(model, Params):
        return (f"params model {model.__name__} is a plain pydantic BaseModel, which coerces '0.5' to 0.5 and "
                "silently drops misspelt keys; subclass torchtk.Params instead")
    config = model.model_config
    if config.get("extra") != "forbid" or config.get("strict") is not True:
        return (f"params model {model.__name__} overrides torchtk.Params' strictness (extra='forbid', "
                "strict=True), so misspelt keys or strings for numbers would pass")
    return None


def check_declared(components: list[Component]) -> None:
    """Refuse a plugin's catalog at registration if a params model given as a class is
    not a strict ``torchtk.Params`` (lazy ones are checked when first loaded)."""
    for component in components:
        problem = params_model_problem(component.params) if isinstance(component.params, type) else None
        if problem:
            raise TorchtkError(f"{component.kind} {component.name!r}: {problem}")


# -- the cost of loading a plugin --------------------------------------------------------------


@dataclass
class ImportCost:
    """How long importing a plugin took and which heavy libraries it pulled in."""

    seconds: float = 0.0
    heavy: list[str] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        return bool(self.heavy) or self.seconds >= SLOW_IMPORT_SECONDS


class measure_import:
    """``with measure_import() as cost: import_module(...)``: fills ``cost`` from the
    clock and from ``sys.modules`` before and after (a library already imported by an
    earlier plugin is not counted again)."""

    def __enter__(self) -> ImportCost:
        self.cost = ImportCost()
        self.before = {name for name in HEAVY_MODULES if name in sys.modules}
        self.start = time.perf_counter()
        return self.cost

    def __exit__(self, *exc: Any) -> None:
        self.cost.seconds = time.perf_counter() - self.start
        self.cost.heavy = [name for name in HEAVY_MODULES if name in sys.modules and name not in self.before]


def slow_plugin_note(info: PluginInfo) -> str | None:
    """``plugin 'slow' (torchtk-slow 1.0) imports torch when loaded (6.9 s): ...``, or
    ``None`` for a plugin that loads cheaply (or was not measured)."""
    cost = getattr(info, "import_cost", None)
    if cost is None or not cost.slow or (info.builtin and not cost.heavy):  # the first built-in imports pydantic
        return None
    dist = f" ({info.distribution} {info.version})".replace(" )", ")") if info.distribution else ""
    return cost_note(f"plugin {info.name!r}{dist}", cost)


def cost_note(subject: str, cost: ImportCost) -> str:
    """``<subject> imports torch when loaded (6.9 s): every `tk list` pays for it; ...``."""
    what = f"imports {', '.join(cost.heavy)}" if cost.heavy else "is slow to import"
    return (f"{subject} {what} when loaded ({cost.seconds:.1f} s): every `tk list` pays for it; "
            "import heavy libraries inside the hooks that build components, not at module level")


def import_cost_in_fresh_process(module: str, timeout: float = 120.0) -> ImportCost:
    """The cost of ``import module`` in a new interpreter, where nothing is imported yet
    (what a plugin's test kit calls: inside pytest, torch is usually imported already)."""
    code = (f"import json, sys, time\nimport torchtk.core.registry\nimport pydantic\n"  # what every listing imports
            f"before = set(sys.modules)\nstart = time.perf_counter()\nimport {module}\n"
            f"print(json.dumps([time.perf_counter() - start, [m for m in {list(HEAVY_MODULES)!r} "
            "if m in sys.modules and m not in before]]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # what imports here imports there
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise TorchtkError(f"importing {module} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    seconds, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    return ImportCost(seconds=seconds, heavy=heavy)

