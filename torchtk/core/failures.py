"""What a user is told when a run fails while training: which component raised, by its
spec path, name, plugin and distribution (``callbacks[1] 'exploder' (plugin torchtk_x,
torchtk-x 1.2.3) raised ValueError in on_epoch_end: boom``).

The component is found from the traceback's frames, and only once the run has failed,
so calling hooks, losses and metrics costs what it cost before: nothing is wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from torchtk.core.assembly import Parts

# what a callback implements that the engine calls: its run hooks and its checkpointed state
_CALLBACK_METHODS = ("on_fit_start", "on_epoch_start", "on_step", "on_step_end", "on_validation_start",
                     "on_validation_end", "on_epoch_end", "on_save_checkpoint", "on_load_checkpoint", "on_exception",
                     "on_fit_end", "state_dict", "load_state_dict", "bind")


def describe(parts: Parts, exc: BaseException) -> str:
    """What went wrong, for a run that failed on ``exc`` (not a ``TorchtkError``):
    ``callbacks[1] 'exploder' (plugin torchtk_x, torchtk-x 1.2.3) raised ValueError in
    on_epoch_end: boom``."""
    found = culprit(parts, exc)
    where = f"{component_label(parts, found[0])} " if found is not None else ""
    hook = f" in {found[1]}" if found is not None and found[1] else ""
    if isinstance(exc, SystemExit):
        return (f"{where or 'code run during training '}called sys.exit({exc.code!r}){hook}; a component may not "
                "end the run")
    if isinstance(exc, OSError) and exc.filename is not None and found is None:  # a write torchtk made itself
        return f"cannot write {exc.filename}: {exc.strerror}"
    if found is None:
        return f"{type(exc).__name__}: {exc}"
    return f"{where}raised {type(exc).__name__}{hook}: {exc}"


def component_label(parts: Parts, path: str) -> str:
    """``callbacks[1] 'exploder' (plugin torchtk_x, torchtk-x 1.2.3)``; a model given by
    import path: ``model 'pkg.models:build' (imported)``."""
    resolved = parts.resolved
    try:
        entry = resolved.entry(path) if resolved is not None else None
    except KeyError:
        entry = None
    if entry is None:
        return path
    component = entry.component
    if component is None:
        return f"{path} {entry.ref.label!r} ({'given from Python' if entry.ref.object_ else 'imported'})"
    provider = f"plugin {component.plugin}"
    if component.distribution:
        provider += f", {component.distribution} {component.version or ''}".rstrip()
    return f"{path} {component.name!r} ({provider})"


def culprit(parts: Parts, exc: BaseException) -> tuple[str, str] | None:
    """``(spec path, method)`` of the component whose code raised ``exc``: the frame
    nearest the engine that belongs to a built component (so a callback that calls the
    model is named, not the model); ``method`` is set for a callback's hook."""
    objects, codes = _suspects(parts)
    for frame in _frames(exc):
        path = codes.get(frame.f_code)
        owner = frame.f_locals.get("self")
        if path is None and owner is not None:
            path = objects.get(id(owner))
        if path is not None:
            name = frame.f_code.co_name
            return path, name if path.startswith(("callbacks[", "freeze[")) and name in _CALLBACK_METHODS else ""
    return None


def _frames(exc: BaseException) -> Iterator[Any]:
    traceback = exc.__traceback__
    while traceback is not None:
        yield traceback.tb_frame
        traceback = traceback.tb_next


def _suspects(parts: Parts) -> tuple[dict[int, str], dict[Any, str]]:
    """Every built component a run calls while training: ``id(object) -> spec path``, and
    the code of function-style components (a loss closure, a callback's plain function)."""
    objects: dict[int, str] = {}
    codes: dict[Any, str] = {}

    def add(obj: Any, path: str) -> None:
        if obj is None:
            return
        objects.setdefault(id(obj), path)
        code = getattr(obj, "__code__", None)
        if code is not None:
            codes.setdefault(code, path)

    for key, callback in parts.callbacks.items():
        path = key.split(":", 1)[0]
        add(callback, path)
        for name in _CALLBACK_METHODS:
            method = getattr(getattr(callback, name, None), "__func__", getattr(callback, name, None))
            if getattr(method, "__code__", None) is not None:
                codes.setdefault(method.__code__, path)
    for index, term in enumerate(parts.loss.terms if parts.loss is not None else []):
        add(term, f"loss[{index}]")
    for index, metric in enumerate(parts.metrics.values()):
        add(metric, f"metrics[{index}]")
    indexes = {key: index for index, key in enumerate(parts.metrics)}
    for key, metric in parts.train_metrics.items():
        add(metric, f"metrics[{indexes.get(key, 0)}]")
    for index, scheduled in enumerate(parts.schedulers):
        add(scheduled.scheduler, f"scheduler[{index}]")
    add(parts.optimizer, "optimizer")
    if parts.model is not None and callable(getattr(parts.model, "modules", None)):
        for module in parts.model.modules():
            add(module, "model")
    for batches in (parts.train, parts.val):
        add(getattr(batches, "dataset", None), "data")
    return objects, codes
