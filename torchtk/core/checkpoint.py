"""Checkpoints: what a run saves, how it is written, and how a resumed run reads it back.

The service decides *how* (payload, atomic streamed writes, rank 0 only, RNG states,
the resume fingerprint); the engine and policy callbacks decide *when*
(``state.checkpoints.save("epoch3.pt")``). Checkpoints load with
``torch.load(weights_only=True)``: every value is a tensor or plain data.

Format 2 keeps the resumable training state in ``"state"`` (:meth:`TrainState.state_dict`)
and callback states under stable keys (``callbacks[0]:early_stopping``); format 1
(the first release) is still read.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchtk.core.errors import RunFailed, UserInputError
from torchtk.core.outputs import remove_temporaries
from torchtk.core.spec import path_settings, spec_defaults, spec_differences, spec_fingerprint
from torchtk.core.spec.fingerprint import path_notes

if TYPE_CHECKING:
    from torchtk.core.assembly import Parts
    from torchtk.core.distributed import Placement
    from torchtk.core.outputs import RunDir
    from torchtk.core.state import TrainState

LAST = "last.pt"  # the checkpoint --resume continues from
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def capture_rng(generator: Any, device: Any) -> dict[str, Any]:
    """Every random state a resumed run needs to continue identically."""
    import torch

    version, state, gauss = random.getstate()
    rng = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
           "python": list(state), "python_version": version, "python_gauss": gauss}
    if getattr(device, "type", None) == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def restore_rng(rng: dict[str, Any], generator: Any, device: Any) -> None:
    import torch

    torch.set_rng_state(rng["torch"].cpu())
    generator.set_state(rng["generator"].cpu())
    random.setstate((rng["python_version"], tuple(rng["python"]), rng["python_gauss"]))
    if "cuda" in rng and getattr(device, "type", None) == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


class CheckpointService:
    """Writes and restores a run's checkpoints under ``<run dir>/checkpoints``."""

    def __init__(self, parts: Parts, state: TrainState, run_dir: RunDir, placement: Placement) -> None:
        self.parts, self.state, self.run_dir, self.placement = parts, state, run_dir, placement
        self.source: str | None = None  # the spec as the user named it (file or example), for the resume hint

    @property
    def directory(self) -> Path:
        return self.run_dir.checkpoints

    def payload(self) -> dict[str, Any]:
        """The checkpoint of the run as it is now (after an epoch ended)."""
        parts, state = self.parts, self.state
        scaler = parts.precision.scaler
        payload = {
            "version": CHECKPOINT_VERSION,
            "epoch": state.epoch,
            "step": state.step,
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "schedulers": [s.scheduler.state_dict() for s in parts.schedulers],
            "scaler": scaler.state_dict() if scaler is not None else None,
            "callbacks": {key: cb.state_dict() for key, cb in parts.callbacks.items() if hasattr(cb, "state_dict")},
            "state": state.state_dict(),
            "classes": parts.classes,
            "spec": spec_fingerprint(parts.spec),
            "rng": capture_rng(parts.generator, parts.device),
        }
        if parts.hooks.on_save_checkpoint:
            parts.hooks.on_save_checkpoint(state, payload)
        return payload

    def save(self, *names: str, payload: dict[str, Any] | None = None) -> list[Path]:
        """Write the current checkpoint atomically under each of ``names`` (rank 0 only).

        ``last.pt`` holds the training weights (what ``--resume`` continues). Every other
        file (``best.pt``, a checkpoint policy's top-k) holds the weights that were
        validated: a callback that validates other weights than the model's (``ema`` with
        ``for_validation``) puts them under ``"validated_model"`` in ``on_save_checkpoint``.
        """
        payload = payload if payload is not None else self.payload()
        validated = payload.pop("validated_model", None)
        self.refuse_non_finite(payload["model"], validated, names)  # on every process, before any is written
        written = []
        if self.placement.is_main:  # one serialisation per distinct payload, written to all its names
            same = [name for name in names if validated is None or name == LAST]
            others = [name for name in names if name not in same]
            for group, chosen in ((same, payload), (others, {**payload, "model": validated})):
                if group:
                    self.run_dir.save_checkpoint(chosen, *group)
                    written += [self.directory / name for name in group]
        self.placement.barrier()
        return written

    def last_good(self) -> str:
        """What to tell a user whose run stopped: where to resume from."""
        if not (self.directory / "last.pt").exists():
            return "No checkpoint was written yet."
        import shlex

        spec = self.source if self.source is not None else str(self.run_dir.path / "spec.json")
        return (f"Last good checkpoint: {self.directory / 'last.pt'}; continue with: "
                f"tk train {shlex.quote(spec)} --resume {shlex.quote(str(self.run_dir.path))}")

    # -- what a checkpoint may hold, and repairs after a crash ---------------------------

    def refuse_non_finite(self, model: dict[str, Any], validated: dict[str, Any] | None,
                          names: tuple[str, ...]) -> None:
        """Never write weights that hold nan or inf (the previous files stay, and stay good).

        With validation a non-finite model shows as a nan ``val_loss`` first; without it
        (``val_split: 0``, a ``train_*`` monitor) the training loss can still be finite
        in the epoch whose last update broke the weights, so the weights are checked here.
        """
        broken = non_finite(model) + (non_finite(validated) if validated is not None else [])
        if not broken:
            return
        shown = ", ".join(dict.fromkeys(broken[:5])) + (f" and {len(broken) - 5} more" if len(broken) > 5 else "")
        files = " and ".join(names)
        raise RunFailed(f"the model's weights became nan or inf in epoch {self.state.epoch} ({shown}); {files} "
                        f"{'was' if len(names) == 1 else 'were'} not written over. " + self.last_good())

    def after_resume(self) -> None:
        """Repair what a kill (SIGKILL, power loss) can leave behind, once a resumed run has
        restored its state and started its callbacks (``on_fit_start``: ``ema`` then has the
        average that ``best.pt`` holds).

        The engine writes ``last.pt`` and then ``best.pt``: a kill between the two leaves a
        ``best.pt`` of an older epoch while the restored state names the epoch of
        ``last.pt`` as the best; it is written again now, from the restored state, which is
        the one that epoch ended with. Temporary files of writes that never finished are
        removed (only torchtk's own names: ``.<file>.<12 hex digits>.tmp``).
        """
        best_epoch = self.state.best_row.get("epoch")
        stale = (self.placement.is_main and best_epoch is not None and best_epoch == self.state.epoch
                 and _epoch_of(self.directory / "best.pt") != best_epoch)
        if self.placement.is_main:
            for directory in (self.run_dir.path, self.directory):
                remove_temporaries(directory)
        if self.placement.agree(stale):  # every process takes part in the save (its barrier)
            self.run_dir.log(f"resume: best.pt did not hold epoch {best_epoch}, the best one (a run killed between "
                             "writing last.pt and best.pt); written again from the restored state")
            self.save("best.pt")

    # -- reading ---------------------------------------------------------------------------

    def read(self, path: Path) -> dict[str, Any]:
        """A checkpoint's payload in the current format; unreadable files are input errors."""
        import torch

        try:
            payload = torch.load(path, map_location=self.parts.device, weights_only=True)  # never weights_only=False
        except FileNotFoundError:
            raise UserInputError(f"--resume: no checkpoint at {path}") from None
        except Exception as exc:
            refused = pickled_object(exc)
            if refused is not None:
                raise UserInputError(f"--resume: {path} {refused}") from None
            raise UserInputError(f"--resume: {path} is not a readable torchtk checkpoint (corrupt, truncated, or "
                                 f"not written by torchtk): {type(exc).__name__}") from exc
        if not isinstance(payload, dict):
            raise UserInputError(f"--resume: {path} holds {_kind(payload)}, not a torchtk checkpoint (a dict with "
                                 f"the model, optimizer and training state)")
        version = payload.get("version")
        if version not in READABLE_VERSIONS:
            raise UserInputError(f"--resume: {path} has checkpoint format {version!r}; this torchtk reads formats "
                                 f"{', '.join(map(str, READABLE_VERSIONS))}")
        if version != CHECKPOINT_VERSION:
            try:
                payload = _from_format_1(payload, list(self.parts.callbacks), self.parts.spec.trainer.monitor)
            except (KeyError, TypeError, ValueError) as exc:
                raise UserInputError(f"--resume: {path} is not a usable format-1 checkpoint: missing or malformed "
                                     f"{exc}") from None
        problems = payload_problems(payload, self.parts)
        if problems:
            raise UserInputError(f"--resume: {path} is not a usable torchtk checkpoint, nothing was loaded from it: "
                                 + "; ".join(problems[:5]) + (f" ({len(problems)} problems)" if len(problems) > 5
                                                              else ""))
        return payload

    def restore(self, path: Path) -> int:
        """Load the checkpoint at ``path`` into the run; returns the next epoch to train.

        The order matters: model, callback states and the training state first, then
        ``on_load_checkpoint`` (a callback that added param groups during the run, such
        as gradual unfreezing, adds them again there), then the optimizer, scheduler and
        scaler states (into the same groups), and the RNG states last.
        """
        parts, state = self.parts, self.state
        payload = self.read(path)
        defaults = spec_defaults(parts.resolved) if parts.resolved is not None else None
        paths = path_settings(parts.resolved)
        differences = spec_differences(payload["spec"], spec_fingerprint(parts.spec), defaults=defaults, paths=paths)
        if differences:
            raise UserInputError(f"--resume: this spec differs from the one {path.parent.parent} was started with, "
                                 f"at {', '.join(differences)}; only trainer settings such as epochs may change"
                                 + path_notes(payload["spec"], differences, paths))
        try:
            parts.model.load_state_dict(payload["model"])
            for key, callback in parts.callbacks.items():
                if key in payload["callbacks"]:
                    _load_callback(callback, key, payload["callbacks"][key], path)
            state.load_state_dict(payload["state"])
            if parts.hooks.on_load_checkpoint:
                parts.hooks.on_load_checkpoint(state, payload)
            parts.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserInputError(f"--resume: {path} was not written by a run of this spec (model or optimizer "
                                 f"differ): {str(exc).splitlines()[0]}") from exc
        for scheduled, scheduler_state in zip(parts.schedulers, payload["schedulers"]):
            scheduled.scheduler.load_state_dict(scheduler_state)
        if parts.precision.scaler is not None and payload["scaler"] is not None:
            parts.precision.scaler.load_state_dict(payload["scaler"])
        restore_rng(payload["rng"], parts.generator, parts.device)
        return payload["epoch"] + 1


def non_finite(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold nan or inf.

    Each tensor's smallest and largest value (``torch.aminmax``: nan propagates, -inf
    shows in the minimum, +inf in the maximum, and unlike a sum or a norm nothing can
    overflow for finite weights), stacked, then one host read; called once per
    checkpoint, never per step. 11 ms for resnet18's 11.7M numbers on one CPU thread
    (``torch._foreach_norm`` with ``ord=inf`` takes 120 ms there).
    """
    import torch

    named = [(name, value.detach()) for name, value in state.items()
             if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel()]
    if not named:
        return []
    device = named[0][1].device  # the flags of each tensor in its own dtype, gathered on one device
    finite = torch.stack([torch.stack(torch.aminmax(value)).isfinite().all().to(device) for _, value in named])
    if bool(finite.all()):
        return []
    return [name for (name, _), ok in zip(named, finite.tolist()) if not ok]


def _epoch_of(path: Path) -> int | None:
    """The epoch a checkpoint holds, reading no tensor (``mmap``); ``None`` if it has none."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return payload.get("epoch") if isinstance(payload, dict) else None
    except Exception:  # missing, truncated, not a checkpoint: it holds no epoch
        return None


def _from_format_1(payload: dict[str, Any], callback_keys: list[str], monitor: str) -> dict[str, Any]:
    """Format 1 kept the state at the top level and callback states by list position."""
    history = list(payload["history"])
    best = payload["best_value"]
    monitor_rows = [row for row in history if best is not None and row.get(monitor) == best]
    state = {"epoch": payload["epoch"], "step": payload["step"], "history": history, "best_value": best,
             "best_row": monitor_rows[0] if monitor_rows else {}, "should_stop": payload["stopped_early"],
             "last_update_lrs": None}
    callbacks = {key: s for key, s in zip(callback_keys, payload["callbacks"]) if s is not None}
    return {**payload, "version": CHECKPOINT_VERSION, "state": state, "callbacks": callbacks}


# -- checking a payload before anything is loaded into the run ------------------------------
# A file torch.load(weights_only=True) reads holds only tensors and plain data, but any of
# them: each entry is checked against what this run's objects hold, so a malformed file is
# one input error naming the file and the entry, never a half-restored run.

_TOP = {"epoch": int, "step": int, "model": dict, "optimizer": dict, "schedulers": list, "callbacks": dict,
        "state": dict, "spec": dict, "rng": dict}
_STATE = {"epoch": int, "step": int, "history": list, "best_row": dict, "should_stop": bool}


def pickled_object(exc: BaseException) -> str | None:
    """What to say when ``torch.load(weights_only=True)`` refused a pickled Python object
    (whose code therefore never ran); ``None`` for any other error."""
    import pickle
    import re

    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if not isinstance(exc, pickle.UnpicklingError) or found is None:
        return None  # a corrupt or truncated file, or data of no class at all
    return (f"holds a pickled Python object ({found.group(1)}), which torchtk never loads: checkpoints and weights "
            "are read with torch.load(weights_only=True), tensors and plain data only, and nothing in the file was run")


def _kind(value: Any) -> str:
    """A value's type as a message names it: ``a list``, ``a Tensor``, ``null``."""
    if value is None:
        return "null"
    kinds = ((bool, "boolean"), ((int, float), "number"), (str, "string"), ((list, tuple), "list"), (dict, "dict"))
    name = next((name for types, name in kinds if isinstance(value, types)), type(value).__name__)
    return f"a {name}" if name[0] not in "aeiou" else f"an {name}"


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, kind)


def payload_problems(payload: dict[str, Any], parts: Parts) -> list[str]:
    """Every way ``payload`` does not fit the run ``parts`` (empty: it can be loaded)."""
    import torch

    problems = [f"'{key}' is missing" if key not in payload else f"'{key}' is {_kind(payload[key])}, not "
                f"{'a count' if kind is int else _kind(kind())}"
                for key, kind in _TOP.items() if key not in payload or not _is(payload[key], kind)]
    if problems:
        return problems
    model = payload["model"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        problems.append("'model' is not a state_dict (names to tensors)")
    optimizer = payload["optimizer"]
    if not (isinstance(optimizer.get("state"), dict) and isinstance(optimizer.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in optimizer["param_groups"])):
        problems.append("'optimizer' is not an optimizer state_dict (state and param_groups)")
    problems += _state_problems(payload["state"])
    problems += _scheduler_problems(payload["schedulers"], [s.scheduler.state_dict() for s in parts.schedulers])
    scaler = parts.precision.scaler
    if scaler is not None and payload.get("scaler") is not None:
        problems += _fits(payload["scaler"], scaler.state_dict(), "scaler")
    problems += _rng_problems(payload["rng"])
    return problems


def _state_problems(saved: dict[str, Any]) -> list[str]:
    problems = [f"'state.{key}' is {_kind(saved.get(key))}, not {'a count' if kind is int else _kind(kind())}"
                for key, kind in _STATE.items() if not _is(saved.get(key), kind)]
    if not all(isinstance(row, dict) for row in saved.get("history", [])):
        problems.append("'state.history' is not a list of epoch rows")
    if saved.get("best_value") is not None and not isinstance(saved["best_value"], (int, float)):
        problems.append(f"'state.best_value' is {_kind(saved['best_value'])}, not a number or null")
    if saved.get("last_update_lrs") is not None and not isinstance(saved["last_update_lrs"], dict):
        problems.append(f"'state.last_update_lrs' is {_kind(saved['last_update_lrs'])}, not a dict or null")
    return problems


def _scheduler_problems(saved: list[Any], fresh: list[dict[str, Any]]) -> list[str]:
    if len(saved) != len(fresh):
        return [f"'schedulers' holds {len(saved)} scheduler states, this run has {len(fresh)} schedulers"]
    return [problem for i, (state, own) in enumerate(zip(saved, fresh))
            for problem in _fits(state, own, f"schedulers[{i}]")]


def _fits(saved: Any, fresh: Any, where: str) -> list[str]:
    """Where ``saved`` does not have the shape of ``fresh`` (the state a freshly built object
    gives): the same kind of value everywhere, every public key of a dict (private ones,
    ``_step_count``, differ between torch versions), no public key it lacks. Lists may
    differ in length (param groups added during the run); null fits anything."""
    if saved is None or fresh is None:
        return []
    if _kind(saved) != _kind(fresh):
        return [f"'{where}' is {_kind(saved)}, where this run's holds {_kind(fresh)}"]
    if isinstance(fresh, dict):
        public = lambda keys: {k for k in keys if not (isinstance(k, str) and k.startswith("_"))}  # noqa: E731
        missing, extra = sorted(map(str, public(fresh) - set(saved))), sorted(map(str, public(saved) - set(fresh)))
        if missing or extra:
            return [f"'{where}' is not this object's state (" + "; ".join(
                part for part in (f"missing {', '.join(missing)}" if missing else "",
                                  f"unknown {', '.join(extra)}" if extra else "") if part) + ")"]
        return [p for key in saved.keys() & fresh.keys() for p in _fits(saved[key], fresh[key], f"{where}.{key}")]
    if isinstance(fresh, (list, tuple)):
        return [p for i, (a, b) in enumerate(zip(saved, fresh)) for p in _fits(a, b, f"{where}[{i}]")]
    return []


def _rng_problems(rng: dict[str, Any]) -> list[str]:
    """The random states, tried on scratch generators: what set_state would refuse."""
    import torch

    problems = []
    for key in ("torch", "generator"):
        try:
            torch.Generator().set_state(rng[key].cpu())
        except (KeyError, AttributeError, TypeError, RuntimeError):
            problems.append(f"'rng.{key}' is not a torch random state")
    try:
        random.Random().setstate((rng["python_version"], tuple(rng["python"]), rng["python_gauss"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        problems.append("'rng.python' is not a Python random state")
    if "cuda" in rng and not (isinstance(rng["cuda"], torch.Tensor) and rng["cuda"].dtype == torch.uint8):
        problems.append("'rng.cuda' is not a CUDA random state")
    return problems


def _load_callback(callback: Any, key: str, saved: Any, path: Path) -> None:
    """A callback's own state: anything its ``load_state_dict`` refuses names the callback."""
    try:
        callback.load_state_dict(saved)
    except Exception as exc:
        raise UserInputError(f"--resume: {path}: the state of {key} does not load: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
