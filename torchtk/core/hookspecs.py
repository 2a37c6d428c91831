"""Every hook torchtk calls, in one place.

A plugin is a module (or object) whose functions carry ``@torchtk.hookimpl`` and are
named after the hooks below. An implementation may accept any subset of a hook's
arguments, so hooks can grow new arguments without breaking plugins.

Two calling conventions are used, and each hook says which:

* **catalog call** -- ``register_components`` is called once per plugin, separately, so
  the registry knows which plugin declared which component.
* **provider call** -- the ``make_*``, ``freeze_policy`` and ``precision_context`` hooks
  are called on *one* plugin only: the one whose catalog declared the requested
  ``(kind, name)``. Pluggy's last-registered-first order therefore never decides which
  component a name means.
* **run call** -- the lifecycle hooks below (``on_fit_start``, ``on_epoch_start``,
  ``on_step``, ``on_step_end``, ``on_validation_start``, ``on_validation_end``,
  ``on_epoch_end``, ``on_save_checkpoint``, ``on_load_checkpoint``, ``on_exception``,
  ``on_fit_end``) are called on the callback objects the spec lists, and only on those,
  in the spec's order. Installing a plugin never adds a callback to a run, and a hook
  no listed callback implements is never called (it costs nothing).

One epoch calls them in this order::

    on_fit_start                                   (once)
    on_epoch_start
        on_step, on_step_end                       (per optimizer update)
    on_validation_start, on_validation_end         (when the run has a validation split)
    on_epoch_end
    on_save_checkpoint                             (the checkpoint of the epoch)
    ...
    on_fit_end                                     (once; on_exception instead on a failure)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from torchtk.core.components import Component
    from torchtk.core.state import RunInfo, TrainState

hookspec = pluggy.HookspecMarker("torchtk")
hookimpl = pluggy.HookimplMarker("torchtk")


# -- catalog ---------------------------------------------------------------------------


@hookspec
def register_components(register: Callable[[Component], None]) -> None:
    """Declare the components this plugin provides.

    Called once per plugin when the registry is first used (catalog call). Call
    ``register(Component(...))`` for each component. This must be cheap: do not import
    torch or other heavy dependencies here, so that ``tk list`` stays fast.

    :param register: Callback taking one :class:`torchtk.Component`.
    :returns: Nothing; the return value is ignored.

    .. versionadded:: 0.1
    """


# -- provider calls: build one component ------------------------------------------------


@hookspec(firstresult=True)
def make_loss(name: str, params: BaseModel, model: Any) -> Any:
    """Build the loss ``name`` from its validated ``params``.

    Called on the providing plugin only (provider call), once per loss term of a run,
    before training starts.

    :param name: The component's canonical name (aliases are already resolved).
    :param params: An instance of the component's params model, already validated.
    :param model: The ``nn.Module`` being trained, or ``None`` outside a run;
        regularization terms read its parameters.
    :returns: An ``nn.Module`` or callable ``(output, target) -> scalar tensor``.
        How ``tk predict`` reads a model output trained with the loss is declared in
        the catalog entry, ``extras={"prediction": "softmax" | "sigmoid" | "log_softmax"
        | "probabilities" | "value"}`` (``torchtk.core.prediction.OUTPUT_KINDS``); a
        loss whose params have ``mode`` and ``from_logits`` needs no declaration.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_scheduler(name: str, params: BaseModel, optimizer: Any, run: RunInfo | None) -> Any:
    """Build the learning-rate scheduler ``name`` for ``optimizer``.

    Called on the providing plugin only (provider call), once per run, after the
    optimizer is built. Whether the scheduler steps per optimizer update or per epoch,
    and whether it needs a monitored metric, is declared in the component's catalog
    entry (``Component(extras={"interval": "step" | "epoch", "needs_metric": bool})``);
    a built scheduler may override ``needs_metric`` with a bool attribute of that name
    (a warmup followed by ``reduce_on_plateau`` does). The spec's ``interval`` overrides
    the declared one.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :param optimizer: The ``torch.optim.Optimizer`` the scheduler drives.
    :param run: Facts about the run (epochs, updates per epoch) for schedulers whose
        length depends on it, or ``None`` outside a run.
    :returns: An object with ``step()``, ``state_dict()`` and ``load_state_dict()``,
        normally a ``torch.optim.lr_scheduler.LRScheduler``.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def freeze_policy(name: str, params: BaseModel) -> Callable[[Any], Any]:
    """Build the fine-tuning policy ``name``.

    Called on the providing plugin only (provider call), once per policy of a run, after
    the model is built. The engine applies policies in the spec's order.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :returns: A callable ``policy(model)`` that sets ``requires_grad``, puts frozen
        normalisation layers in eval mode (the engine keeps every module a policy left
        in eval mode there, epoch after epoch), and returns either ``None`` or a list of
        *group rules*: dicts with ``"params"`` (tensors of the model), an optional
        ``"name"`` and optimizer options (``"lr"``, ``"weight_decay"``, ...). The core
        merges the rules of all policies once, after the last policy ran: each
        parameter takes the options of every rule holding it (later rules win), frozen
        parameters are dropped, unclaimed ones form the group ``default``
        (:mod:`torchtk.core.param_groups`).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def precision_context(name: str, params: BaseModel, device: Any) -> Any:
    """Give the numeric precision setup for precision ``name`` on ``device``.

    Called on the providing plugin only (provider call), once per run, after the freeze
    policies and before the optimizer is built. Raise (a ``torchtk.TorchtkError`` for a
    message of your own) when ``device`` cannot run it: the run stops before training.

    :param name: The component's canonical name (``fp32``, ``bf16``, ``bf16_true``, ...).
    :param params: An instance of the component's params model, already validated.
    :param device: The ``torch.device`` the run uses.
    :returns: A :class:`torchtk.Precision`: a context-manager factory for the forward
        pass, an optional gradient scaler, and optionally the dtype the engine converts
        the model to (``param_dtype``) and casts floating-point inputs and targets to
        (``input_dtype``).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_model(name: str, params: BaseModel) -> Any:
    """Build the model ``name``.

    Called on the providing plugin only (provider call), once per run, first of all.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :returns: An ``nn.Module``.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_dataset(name: str, params: BaseModel) -> Any:
    """Build the dataset ``name``.

    Called on the providing plugin only (provider call), once per run, before the model.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :returns: A map-style ``torch.utils.data.Dataset`` of ``(input, target)`` pairs;
        the engine splits it into training and validation parts. A dataset of images
        declares how ``tk predict`` reads an image file for its runs in the catalog
        entry, ``extras={"file_reader": "module:function"}``: the function takes the
        dataset's params and returns a callable ``path -> input`` (the same tensor the
        dataset's own samples hold) with an ``extensions`` tuple
        (``torchtk.plugins.images.FileReader``).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_optimizer(name: str, params: BaseModel, parameters: Any) -> Any:
    """Build the optimizer ``name`` over ``parameters``.

    Called on the providing plugin only (provider call), once per run, after freeze
    policies were applied.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :param parameters: A list of named parameter-group dicts (``{"name": "default",
        "params": [...]}``, more groups when freeze policies return group rules); only
        trainable parameters are in them. ``Registry.create`` passes what it is given.
    :returns: A ``torch.optim.Optimizer``. An optimizer whose ``step`` needs a closure
        that re-evaluates the loss (L-BFGS) declares ``extras={"needs_closure": True}``
        in its catalog entry: the engine then calls ``step(closure)``, the closure
        re-evaluating the current batch, and refuses accumulation and a GradScaler.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_metric(name: str, params: BaseModel, classes: "list[str] | None") -> Any:
    """Build the metric ``name``.

    Called on the providing plugin only (provider call), once per metric the spec lists
    (twice for one with ``"train": true``: a second object for the training batches);
    the engine calls ``reset()`` before and ``compute()`` after each pass.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :param classes: The dataset's class names, or ``None`` (a dataset without them, or
        ``Registry.create`` outside a run), for per-class columns and figures.
    :returns: An object with ``reset()``, ``update(output, target)`` and
        ``compute()``. ``update`` should not synchronise with the device. ``compute()``
        returns a float (logged as ``val_<name>``), or a dict ``{column: float}`` when
        the object has a ``columns`` list naming those keys (logged as
        ``val_<name>/<column>``; an empty ``columns`` logs nothing). Optionally
        ``write_best(run_dir, epoch)``: called on the main process after a validation
        pass that is the best so far, to write files (``confusion_matrix.png``).
        ``tk evaluate`` calls it too, in a temporary folder whose files it keeps as
        ``eval-<timestamp>-<file>``, with ``title=`` (what was evaluated) when
        ``write_best`` takes that keyword.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_callback(name: str, params: BaseModel) -> Any:
    """Build the callback ``name``.

    Called on the providing plugin only (provider call), once per callback the spec
    lists, before training starts.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :returns: An object whose methods are named after the run hooks below
        (``on_step``, ``on_epoch_end``, ...) and marked with ``@torchtk.hookimpl``. It
        may also define ``state_dict()`` / ``load_state_dict()`` to be checkpointed
        (stored under the stable key ``callbacks[<index>]:<name>``), and a ``monitor``
        string naming the logged value it reads, which the engine checks is logged
        before training starts.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def make_init(name: str, params: BaseModel) -> Callable[[Any, frozenset], list[str]]:
    """Build the weight initialiser ``name``.

    Called on the providing plugin only (provider call), once per entry of the spec's
    ``init`` list, right after the model is built and before the freeze policies; the
    engine applies the initialisers in the spec's order.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :returns: A callable ``init(model, loaded)`` that initialises layers of ``model`` in
        place and returns the names of the parameters it initialised. ``loaded`` is the
        frozenset of parameter names the model factory loaded from pretrained weights
        (``model.torchtk_loaded_parameters``, empty when none); an initialiser leaves
        them alone unless its params ask otherwise. It may carry ``torchtk_report``
        lines, which the run writes to ``train.log``.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def make_transform(name: str, params: BaseModel) -> Callable[[Any], Any]:
    """Build the input transform ``name`` (resize, crop, flip, normalize, ...).

    Called on the providing plugin only (provider call), once per entry of the spec's
    ``data.transforms.train`` and ``data.transforms.val`` lists, before the data is
    split into batches. The engine chains each list in order and applies it to the
    input of every sample of that split only.

    :param name: The component's canonical name.
    :param params: An instance of the component's params model, already validated.
    :returns: A callable ``transform(input) -> input`` (for example a torchvision
        ``transforms.v2`` transform). It must pickle, so that DataLoader workers
        (``num_workers > 0``) can use it.

    .. versionadded:: 0.2
    """


# -- run calls: the callbacks a spec lists, in its order -----------------------------------


@hookspec
def on_fit_start(state: TrainState) -> None:
    """Called once before the first epoch (run call), after everything is built.

    :param state: The live :class:`torchtk.TrainState` of the run.
    :returns: Nothing.

    .. versionadded:: 0.1
    """


@hookspec
def on_epoch_start(state: TrainState) -> None:
    """Called at the start of every epoch, before its first batch (run call).

    ``state.epoch`` is the epoch about to train. This is where gradual unfreezing
    adds parameter groups (``state.optimizer.add_param_group``).

    :param state: The live :class:`torchtk.TrainState`.
    :returns: Nothing.

    .. versionadded:: 0.2
    """


@hookspec
def on_step(state: TrainState) -> None:
    """Called at every optimisation step, after ``backward()`` and before
    ``optimizer.step()`` (run call).

    Gradients are final and unscaled when this runs, so this is where gradient
    clipping, NaN guards and gradient statistics live. Set ``state.skip_step = True``
    to skip this optimizer update (and the scheduler step that would follow it).

    :param state: The live :class:`torchtk.TrainState`; ``state.loss`` is the step's
        loss tensor (do not call ``.item()`` on it every step: it synchronises).
    :returns: Nothing.

    .. versionadded:: 0.1
    """


@hookspec
def on_step_end(state: TrainState) -> None:
    """Called after the optimizer (and per-update scheduler) step (run call).

    :param state: The live :class:`torchtk.TrainState`.
    :returns: Nothing.

    .. versionadded:: 0.1
    """


@hookspec
def on_validation_start(state: TrainState) -> None:
    """Called before the validation pass of every epoch (run call), with the model
    about to be put in eval mode; not called when the run has no validation split.

    An EMA callback swaps the averaged weights in here.

    :param state: The live :class:`torchtk.TrainState`.
    :returns: Nothing.

    .. versionadded:: 0.2
    """


@hookspec
def on_validation_end(state: TrainState) -> None:
    """Called after the validation pass of every epoch (run call), before the epoch's
    values are checked and logged; ``state.metrics`` holds the validation values.

    An EMA callback swaps the training weights back here.

    :param state: The live :class:`torchtk.TrainState`.
    :returns: Nothing.

    .. versionadded:: 0.2
    """


@hookspec
def on_epoch_end(state: TrainState) -> None:
    """Called after validation of every epoch, before the checkpoint is written (run call).

    ``state.metrics`` holds this epoch's logged values (``train_loss``, ``val_loss``,
    ``val_<metric>``). Set ``state.should_stop = True`` to end training after this epoch.
    On an epoch that did not validate (``trainer.val_every_n_epochs``) the ``val_*``
    values are absent, and a callback whose ``monitor`` attribute names one of them is not
    called: decisions on a monitored value are taken on validated epochs only.

    :param state: The live :class:`torchtk.TrainState`.
    :returns: Nothing.

    .. versionadded:: 0.1
    """


@hookspec
def on_save_checkpoint(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Called when a checkpoint's payload is complete, before it is written (run call).

    Add what the callback needs on resume (EMA or SWA weights) under a key of its own;
    values must be tensors or plain data, so the file still loads with
    ``torch.load(weights_only=True)``. A callback's ``state_dict()`` is stored already.

    :param state: The live :class:`torchtk.TrainState`.
    :param checkpoint: The payload dict about to be written (``"model"``, ``"optimizer"``, ...).
    :returns: Nothing.

    .. versionadded:: 0.2
    """


@hookspec
def on_load_checkpoint(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Called on ``--resume`` (run call) after the core restored the model, every
    callback's ``state_dict`` and the training state from ``checkpoint``, and before it
    loads the optimizer, scheduler and scaler states and the RNG states.

    A callback that added param groups during the run (gradual unfreezing) adds them
    again here, so the optimizer's state loads into the same groups; an EMA callback
    reads its weights from the entry it added in ``on_save_checkpoint``.

    :param state: The live :class:`torchtk.TrainState` (epoch, step, history restored).
    :param checkpoint: The payload that was read.
    :returns: Nothing.

    .. versionadded:: 0.2
    """


@hookspec
def on_exception(state: TrainState, exception: BaseException) -> None:
    """Called when training ends by an exception, Ctrl-C and SIGTERM included (run call),
    before the error is reported; ``on_fit_end`` is not called then.

    An exception raised here is logged and does not replace the original one.

    :param state: The live :class:`torchtk.TrainState`.
    :param exception: What ended the run (``KeyboardInterrupt`` for Ctrl-C and SIGTERM).
    :returns: Nothing.

    .. versionadded:: 0.2
    """


@hookspec
def on_fit_end(state: TrainState) -> None:
    """Called once after the last epoch, also when training stopped early (run call).

    :param state: The live :class:`torchtk.TrainState`.
    :returns: Nothing.

    .. versionadded:: 0.1
    """
