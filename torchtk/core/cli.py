"""The ``tk`` command line: each command parses, calls the library, and renders.

No logic lives only here. Errors the user can fix (exit code 2) and failed runs (exit
code 1) print one message without a traceback; ``--debug`` shows it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
import warnings
from typing import Any, List, Optional

import typer

from torchtk.core.errors import (BUILD_INTERRUPTED, RunInterrupted, TorchtkError, UserInputError, interrupt_signals,
                                 interrupted, interrupted_message, shorten)

app = typer.Typer(
    name="tk",
    help="torchtk: train PyTorch models from a validated JSON spec, with pluggable losses, "
    "schedulers, fine-tuning policies, precision and step callbacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_options = {"debug": False, "trained": False, "console": False}  # console: run as the tk program itself
MESSAGE_SHOWN = 50_000  # characters of an error message tk prints

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON output.")
SET_OPTION = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                          help="Override a spec value, e.g. --set optimizer.params.lr=0.01 (repeatable).")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


PLUGIN_OPTION = typer.Option(None, "--plugin", "-p", metavar="FILE.py|MODULE",
                             help="Load a plugin file (./my_losses.py) or module for this command, as the spec's "
                                  "\"plugins\" do (repeatable).")


def _registry(plugins: Optional[List[str]] = None) -> Any:
    """The process-wide registry, with the ``-p`` plugins loaded (an import: the user named them)."""
    from torchtk.core.registry import get_registry

    registry = get_registry()
    if plugins:
        from torchtk.core.user_plugins import load, prepare

        load(registry, prepare(plugins, None, where="-p"))
    return registry


_PROSE_COLUMNS = {"summary": 24, "description": 24, "provides": 12, "status": 8}


def _table(*columns: str, **options: Any) -> Any:
    """A table where names never wrap or get cut; only prose columns wrap."""
    from rich.table import Column, Table

    return Table(*(Column(c, ratio=1, min_width=_PROSE_COLUMNS[c]) if c in _PROSE_COLUMNS
                   else Column(c, no_wrap=True) for c in columns), **options)


def _print_json(data: Any) -> None:
    _print_closed_ok(json.dumps(data, indent=2, default=str))


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors.")) -> None:
    _options["debug"] = debug
    if ctx.invoked_subcommand != "train":  # under torchrun only a training is shared out; the rest would be copies
        from torchtk.core.distributed import refuse_under_torchrun

        refuse_under_torchrun(f"tk {ctx.invoked_subcommand}")


@app.command("list")
def list_components(
    kind: Optional[str] = typer.Argument(None, help="losses, schedulers, freeze, precision, callbacks, models, "
                                                    "datasets, optimizers or metrics; omit for counts per kind."),
    pattern: Optional[str] = typer.Option(None, "--filter", "-f", help="Wildcard on names, e.g. '*dice*'."),
    as_json: bool = JSON_OPTION,
    plugin: Optional[List[str]] = PLUGIN_OPTION,
) -> None:
    """List components of a kind with summary and providing plugin."""

    from torchtk.core import report
    from torchtk.core.components import KINDS

    registry = _registry(plugin)
    if kind is None and pattern is not None:
        raise UserInputError("--filter needs a KIND, e.g. tk list losses --filter '*dice*'")
    if kind is None:
        counts = report.kind_counts(registry)
        if as_json:
            return _print_json(counts)
        table = _table("kind", "components", "list with", box=None)
        for name, count in counts.items():
            table.add_row(name, str(count), f"tk list {KINDS[name].plural}")
        _console().print(table)
        return None
    if as_json:
        return _print_json(report.component_list(registry, kind, pattern))
    table = _table("name", "plugin", "summary", box=None)
    for row in report.component_rows(registry, kind, pattern):
        aliases = f" [dim](alias: {', '.join(row['aliases'])})[/dim]" if row["aliases"] else ""
        also = f" [dim](also: {', '.join(row['also'])})[/dim]" if row["also"] else ""
        table.add_row(row["name"], row["provider"], row["summary"] + aliases + also)
    _console().print(table)
    return None


@app.command("show")
def show(
    kind: str = typer.Argument(..., help="Component kind, singular or plural."),
    name: str = typer.Argument(..., help="Component name or alias."),
    as_json: bool = JSON_OPTION,
    plugin: Optional[List[str]] = PLUGIN_OPTION,
) -> None:
    """Show one component: summary, every param (type, default, bounds), aliases, plugin."""

    from rich.padding import Padding
    from rich.text import Text

    info = _registry(plugin).describe(kind, name)
    if as_json:
        return _print_json(info)
    console = _console()
    console.print(f"[bold]{info['kind']} {info['name']}[/bold] — {info['summary']}")
    if info["aliases"]:
        console.print(f"aliases: {', '.join(info['aliases'])}")
    provider = info["plugin"] + (f" ({info['distribution']} {info['version']})" if info["distribution"] else "")
    console.print(f"plugin: {provider}")
    for key, value in info["extras"].items():
        console.print(f"{key}: {value}")
    if info["description"]:
        console.print()
        console.print(reflow(info["description"]), markup=False)
    console.print()
    if not info["params"]:
        console.print("params: none")
        return None
    console.print("[bold]params[/bold]")
    for p in info["params"]:
        default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
        bounds = "".join(f", {k} {v}" for k, v in p["bounds"].items())
        console.print(f"  [bold]{p['name']}[/bold]: {p['type']} ({default}{bounds})", markup=True, highlight=False)
        if p["description"]:
            console.print(Padding(Text(p["description"]), (0, 0, 0, 6)))
    return None


def reflow(text: str) -> str:
    """Docstring paragraphs as flowing text, so the terminal wraps them cleanly; indented
    lines and bullet lists keep their line breaks."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.splitlines()
        plain = all(line[:1] not in (" ", "\t") and not line.startswith(("- ", "* ")) for line in lines)
        paragraphs.append(" ".join(line.strip() for line in lines) if plain else paragraph)
    return "\n\n".join(paragraphs)


@app.command("plugins")
def plugins(as_json: bool = JSON_OPTION, plugin: Optional[List[str]] = PLUGIN_OPTION) -> None:
    """Installed plugins: origin, version, what each provides, and any that failed to load."""
    from torchtk.core.report import clash_lines, plugin_report, short_plugin_name

    data = plugin_report(_registry(plugin))
    if as_json:
        return _print_json(data)
    rows, conflicts = data["plugins"], data["conflicts"]
    table = _table("plugin", "distribution", "status", "provides", box=None)
    for row in rows:
        dist = f"{row['distribution']} {row['version']}".strip()
        provides = ", ".join(f"{n} {k}" for k, n in sorted(row["provides"].items())) or "-"
        status = "broken (see below)" if row["status"] != "ok" else "ok"
        table.add_row(short_plugin_name(row["name"]), dist, status, provides)
    console = _console()
    console.print(table)
    for row in rows:
        if row["status"] != "ok":
            console.print(f"{row['name']}: {row['status']}", markup=False)
    for c in conflicts:
        console.print(f"conflict: {c['kind']} {c['name']!r} is provided by {' and '.join(c['providers'])}; "
                      f"a spec must name one as plugin::{c['name']}", markup=False)
    for line in clash_lines(data["clashes"]):
        console.print(line, markup=False)
    for slow in data["slow"]:
        console.print(f"slow: {slow['note']}", markup=False)
    return None


@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="Plugin name: folder NAME, distribution torchtk-NAME, module torchtk_NAME."),
    parent: str = typer.Option(".", "--dir", help="Folder to create NAME in (default: the current one)."),
) -> None:
    """Write a ready plugin package: pyproject with the entry point, a loss, a callback, tests, README."""
    from torchtk.core.scaffold import new_plugin as write_plugin

    names, target, written = write_plugin(name, parent)
    print(f"Wrote {names.distribution} (module {names.module}, entry point {names.entry_point!r}) in {target}:")
    for path in written:
        print(f"  {path.relative_to(target)}")
    shown = str(target) if target.is_absolute() or str(target).startswith(".") else f"./{target}"  # pip: a path
    print(f"Next: pip install {shown} && pytest {shown} && tk list losses   # shows {names.prefix}_smooth_bce")


@app.command("validate")
def validate(
    spec: str = typer.Argument(..., help="Spec file (JSON or YAML) or bundled example name."),
    overrides: Optional[List[str]] = SET_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print {spec, imports, valid} as one JSON object."),
    plugin: Optional[List[str]] = PLUGIN_OPTION,
) -> None:
    """Validate a spec and print it resolved (canonical names, all params); train nothing.

    Runs every check of tk train that needs no data (monitored names are logged, a
    scheduler that needs a metric steps per epoch); see assembly.check_without_data.
    Imports nothing the spec names: code it would import ({"import": "module:factory"})
    is looked up and listed, and tk train imports and runs it. So are the spec's
    "plugins" files and modules: found and listed, not imported (a name only they
    provide is reported unchecked); -p plugins are imported, and checked fully."""
    from torchtk.core.assembly import check_without_data
    from torchtk.core.imported import spec_imports
    from torchtk.core.spec import load_resolved

    resolved = load_resolved(spec, overrides=overrides, plugins=plugin or (), import_plugins=False)
    check_without_data(resolved)
    imports = spec_imports(resolved)
    unchecked = [{"path": e.path, "name": e.ref.name, "reason": e.deferred} for e in resolved.entries if e.deferred]
    if as_json:
        return _print_json({"spec": resolved.spec.model_dump(mode="json"), "imports": imports, "unchecked": unchecked,
                            "valid": True})
    _print_json(resolved.spec.model_dump(mode="json"))
    for item in imports:
        if "plugin" in item:
            done = "imported: -p names it" if item["imported"] else "tk validate did not import it"
            _print_err(f"{item['path']}: tk train will import the plugin {item['plugin']} {item['object']} as module "
                       f"{item['module']} (code this spec names runs with your permissions; {done})")
        else:
            _print_err(f"{item['path']}: tk train will import {item['module']} and call {item['object']} (code this "
                       "spec names runs with your permissions; tk validate did not import it)")
    for item in unchecked:
        _print_err(f"{item['path']}: {item['name']!r} {item['reason']}; tk validate -p names them to check it")
    _print_err(f"{spec}: valid")
    return None


@app.command("schema")
def schema() -> None:
    """JSON Schema of the run spec, with the params of every installed component."""
    from torchtk.core.spec import run_spec_schema

    _print_json(run_spec_schema())


@app.command("hooks")
def hooks(
    name: Optional[str] = typer.Argument(None, help="One hook to show in full (e.g. on_step)."),
    markdown: bool = typer.Option(False, "--markdown", help="The whole reference as Markdown (docs/hooks.md)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every hook a plugin can implement: signature, when it is called, its contract."""
    from torchtk.core import hook_reference

    if markdown:
        return _print_closed_ok(hook_reference.markdown().rstrip("\n"))
    if name is not None:
        hook = hook_reference.hook_doc(name)
        if hook is None:
            raise UserInputError(hook_reference.unknown_hook_message(name))
        return _print_closed_ok("\n".join([f"{hook.name}", "", *hook_reference.hook_section(hook)]))
    rows = hook_reference.table_rows()
    if as_json:
        return _print_json(rows)
    table = _table("hook", "call", "summary", box=None)
    for row in rows:
        table.add_row(row["hook"], row["call"], row["summary"])
    _console().print(table)
    return None


@app.command("examples")
def examples(as_json: bool = JSON_OPTION) -> None:
    """Bundled example specs, runnable as `tk train NAME`."""

    from torchtk.core.spec import bundled_examples

    found = {}
    for name, path in bundled_examples().items():
        data = json.loads(path.read_text(encoding="utf-8"))
        found[name] = {"path": str(path), "description": data.get("description", "")}
    if as_json:
        return _print_json(found)
    table = _table("example", "description", "run with", box=None)
    for name, info in found.items():
        table.add_row(name, info["description"], f"tk train {name}")
    _console().print(table)
    return None


@app.command("train")
def train(
    spec: str = typer.Argument(..., help="Spec file (JSON or YAML) or bundled example name (see tk examples)."),
    overrides: Optional[List[str]] = SET_OPTION,
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                         help="Continue the run in RUN_DIR from its last checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress output)."),
    plugin: Optional[List[str]] = PLUGIN_OPTION,
) -> None:
    """Train a spec; outputs go to <output_dir>/<name>-<timestamp>/."""
    try:  # importing torch and the engine: a signal now is one during the build
        from torchtk.core import curves
        from torchtk.core.engine import train as run_training
        from torchtk.core.progress_choice import choose_reporter

        curves.HELPER_PROCESS = _options["console"]  # one run per process: matplotlib's import goes to a helper

        reporter = choose_reporter(False if as_json else "auto", otherwise="plain")  # a pipe or log: plain lines
    except KeyboardInterrupt:
        raise RunInterrupted(BUILD_INTERRUPTED) from None
    result = run_training(spec, overrides=overrides, resume=resume, progress=reporter, plugins=plugin or [])
    _options["trained"] = True  # an interrupt from now on comes after a complete run
    from torchtk.core.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone prints the result
        return None
    summary = {"run_dir": str(result.run_dir), "monitor": result.monitor, "best": result.best,
               "last": result.last, "epochs_run": len(result.history), "stopped_early": result.stopped_early}
    if result.fast_dev_run:
        summary.update(fast_dev_run=result.fast_dev_run, kept=result.kept)
    if as_json:
        return _print_json(summary)
    if result.fast_dev_run:
        return _print_closed_ok(dev_run_line(result))
    best_epoch = result.best.get("epoch", "?")
    _print_closed_ok(f"best {result.monitor} = {result.best_value:.4f} (epoch {best_epoch}); "
                     f"outputs in {result.run_dir}")
    return None


def dev_run_line(result: Any) -> str:
    """The last line of a ``fast_dev_run``: what ran, and whether anything was kept."""
    count = result.fast_dev_run
    batches = f"{count} batch{'es' if count > 1 else ''} of train" + (" and val" if "val_loss" in result.last else "")
    value = result.last.get(result.monitor)
    where = (f"outputs in {result.run_dir}" if result.kept
             else "nothing was kept (trainer.keep_dev_run: true keeps the run directory)")
    shown = f", {result.monitor} = {value:.4f}" if isinstance(value, float) else ""
    return f"fast_dev_run: 1 epoch of {batches} ran{shown}; {where}"


def _print_closed_ok(text: str) -> None:
    """Print a line to stdout; a reader that has gone (``| head``) is no failure."""
    from torchtk.core.progress import discard_stdout, is_closed_stream

    try:
        print(text, flush=True)
    except OSError as exc:
        if not is_closed_stream(exc):
            raise
        discard_stdout()


@app.command("plan")
def plan(
    spec: str = typer.Argument(..., help="Spec file (JSON or YAML) or bundled example name."),
    overrides: Optional[List[str]] = SET_OPTION,
    output: str = typer.Option("lr.png", "--output", "-o", metavar="PNG", help="Where to write the lr plot."),
    as_json: bool = typer.Option(False, "--json", help="Print every update's lr and weight decay as JSON."),
    log_scale: Optional[bool] = typer.Option(None, "--log-scale/--linear-scale",
                                             help="The plot's lr axis (default: log when the lr spans more than "
                                                  "a decade)."),
    plugin: Optional[List[str]] = PLUGIN_OPTION,
) -> None:
    """Show the lr (and weight decay) of every param group at every optimizer update, without training."""
    from rich.table import Table

    from torchtk.core.plan import compute_plan

    result = compute_plan(spec, overrides=overrides, registry=_registry(plugin))
    try:
        png = result.write_png(output, log_scale)
    except OSError as exc:
        raise UserInputError(f"--output {output}: cannot write the plot there: {exc.strerror or exc}") from None
    if as_json:
        return _print_json({**result.to_json(), "plot": str(png)})
    run = result.run
    console = _console()
    schedulers = ", ".join(f"{s['label']} (per {s['interval']})" for s in result.schedulers) or "none"
    console.print(f"[bold]{result.name}[/bold]: {len(result.updates)} updates = {run.epochs} epochs x "
                  f"{run.steps_per_epoch} ({run.batches_per_epoch} batches, accumulate {run.accumulate})")
    console.print(f"schedulers: {schedulers}", markup=False)
    console.print(result.sample_sentence(), markup=False)
    table = Table("update", "epoch", *(f"lr {g}" for g in result.groups), box=None)
    for update in result.sample():
        table.add_row(str(update.update), str(update.epoch), *(f"{lr:.6g}" for lr in update.lr))
    console.print(table)
    for index, group in enumerate(result.groups):
        lrs = result.lrs(index)
        decay = sorted({u.weight_decay[index] for u in result.updates})
        console.print(f"{group:>8} {result.sparkline(index)} {min(lrs):.3g}..{max(lrs):.3g}", markup=False)
        console.print(f"{'':>8} weight decay {', '.join(f'{d:g}' for d in decay)}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"wrote {png}", markup=False)
    return None


@app.command("lr-find")
def lr_find(
    spec: str = typer.Argument(..., help="Spec file (JSON or YAML) or bundled example name."),
    overrides: Optional[List[str]] = SET_OPTION,
    min_lr: float = typer.Option(1e-7, "--min-lr", help="First learning rate of the sweep."),
    max_lr: float = typer.Option(10.0, "--max-lr", help="Last learning rate of the sweep."),
    steps: int = typer.Option(100, "--steps", help="Optimizer updates in the sweep."),
    diverge: float = typer.Option(4.0, "--diverge", help="Stop when the smoothed loss exceeds this times its best."),
    out: str = typer.Option("lr_find.png", "--out", "--output", "-o", metavar="PNG",
                            help="Where to write the plot (default: lr_find.png in the current directory)."),
    as_json: bool = typer.Option(False, "--json", help="Print every update's lr and loss, and the suggestion, as JSON."),
) -> Optional[int]:
    """The lr range test: train for --steps updates with the lr growing exponentially from --min-lr
    to --max-lr, suggest the lr where the smoothed loss falls fastest, and plot it. Nothing else is
    written: no run directory, the spec is not changed."""
    import shlex

    from torchtk.core.lr_find import find_lr

    result = find_lr(spec, overrides=overrides, min_lr=min_lr, max_lr=max_lr, steps=steps, diverge=diverge)
    try:
        png = result.write_png(out)
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write the plot there: {exc.strerror or exc}") from None
    lr = f"{result.suggestion:.3g}" if result.suggestion is not None else None
    command = " ".join(["tk train", shlex.quote(spec), *(f"--set {shlex.quote(o)}" for o in overrides or []),
                        f"--set optimizer.params.lr={lr}"]) if lr is not None else None
    if as_json:
        _print_json({**result.to_json(), "plot": str(png), "command": command})
        return None if lr is not None else 1
    stopped = f"; stopped after {len(result.lrs)}: {result.stopped}" if result.stopped else ""
    _print_closed_ok(f"{result.name}: lr range test, {result.steps} updates from lr {result.min_lr:g} to "
                     f"{result.max_lr:g}{stopped}")
    if lr is None:
        _print_closed_ok(f"no suggestion: {len(result.lrs)} updates are too few; lower --min-lr or --max-lr")
        _print_closed_ok(f"wrote {png}")
        return 1
    _print_closed_ok(f"suggested lr: {lr} (steepest descent of the smoothed loss)")
    _print_closed_ok(f"use it: {command}")
    _print_closed_ok(f"wrote {png}")
    return None


@app.command("summary")
def summary(
    spec: str = typer.Argument(..., help="Spec file (JSON or YAML) or bundled example name."),
    overrides: Optional[List[str]] = SET_OPTION,
    depth: Optional[int] = typer.Option(None, "--depth", min=0, help="Show modules down to this depth (0: the model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the modules, totals, reports and groups as JSON."),
    plugin: Optional[List[str]] = PLUGIN_OPTION,
) -> None:
    """Show the model as the run would train it (after weights, init and freeze policies): each
    module's type, output shape on a probe batch, parameters and whether they train; totals; the
    optimizer's groups. Nothing is trained."""
    from rich.measure import Measurement
    from rich.table import Column, Table

    from torchtk.core.summary import compute_summary

    result = compute_summary(spec, overrides=overrides, registry=_registry(plugin))
    if as_json:
        return _print_json(result.to_json())
    console = _console()
    shape = result.input_shape if result.input_shape is not None else "- (no data)"
    console.print(f"[bold]{result.name}[/bold]: {result.model}, probe batch of shape {shape} on the cpu")
    table = Table(Column("module", no_wrap=True), Column("type", no_wrap=True), Column("output shape", no_wrap=True),
                  Column("params", justify="right"), Column("status", no_wrap=True), box=None)
    for row in result.table_rows(depth):
        table.add_row(*row.values())
    widest = Measurement.get(console, console.options.update_width(10_000), table).maximum
    console.width = max(console.width, widest)  # module names are what patterns take: never cut them
    console.print(table, markup=False)
    totals = Table("", Column("numbers", justify="right"), Column("size", justify="right"), box=None)
    for row in result.total_rows():
        totals.add_row(*row)
    console.print(totals, markup=False)
    for line in result.reports:
        console.print(f"report: {line}", markup=False, soft_wrap=True)
    groups = Table("group", "lr", "weight decay", "tensors", Column("params", justify="right"), box=None)
    for g in result.groups:
        groups.add_row(g.name, f"{g.lr:.6g}", f"{g.weight_decay:g}", str(g.tensors), f"{g.params:,}")
    console.print(f"optimizer {result.optimizer}, {len(result.groups)} param group(s):", markup=False)
    console.print(groups, markup=False)
    return None


# -- after training: tk runs, tk compare (torchtk.core.runs, torchtk.core.compare) -------------

_STATUS_STYLES = {"finished": "green", "stopped early": "green", "running": "cyan", "interrupted": "yellow",
                  "killed": "red", "failed": "red", "unknown": "dim"}


def _print_uncut(table: Any) -> None:
    """Print ``table`` as wide as it needs: its cells are names and values, never cut."""
    from rich.measure import Measurement

    console = _console()
    widest = Measurement.get(console, console.options.update_width(10_000), table).maximum
    console.width = max(console.width, widest)
    console.print(table)


@app.command("runs")
def runs(
    output_dir: str = typer.Argument("runs", metavar="OUTPUT_DIR",
                                     help="The folder runs are in (trainer.output_dir; default runs)."),
    pattern: Optional[str] = typer.Option(None, "--filter", "-f", help="Wildcard on run or directory names, "
                                                                         "e.g. 'rings*'."),
    sort: str = typer.Option("start", "--sort", help="start (oldest first), best (best first, grouped by monitor), "
                                                     "name or duration (shortest first)."),
    reverse: bool = typer.Option(False, "--reverse", "-r", help="Reverse the order."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the runs under OUTPUT_DIR: start, status (finished, stopped early, interrupted, failed,
    running, killed), epochs, best monitored value and duration. Reads only the files runs write."""
    from rich.table import Table
    from rich.text import Text

    from torchtk.core.runs import find_runs, select_runs, table_rows

    records = select_runs(find_runs(output_dir), pattern, sort, reverse)
    if as_json:
        return _print_json([r.to_json() for r in records])
    if not records:
        _print_err(f"no run under {output_dir} matches --filter {pattern!r}")
        return None
    table = Table("run", "name", "start", "status", "epochs", "best", "duration", box=None)
    for row in table_rows(records, output_dir):
        table.add_row(*(Text(v, style=_STATUS_STYLES.get(v, "") if k == "status" else "") for k, v in row.items()))
    _print_uncut(table)
    return None


@app.command("compare")
def compare(
    run_dirs: List[str] = typer.Argument(..., metavar="RUN_DIR...", help="Two or more run directories."),
    out: str = typer.Option("compare.png", "--out", "-o", metavar="PNG",
                            help="Where to write the overlaid curves (default: compare.png in the current directory)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare runs: the spec keys whose values differ, each run's best and last monitored value and
    losses, and compare.png overlaying their loss, monitored metric and lr curves."""
    from rich.table import Column, Table
    from rich.text import Text

    from torchtk.core.compare import compare_runs

    comparison = compare_runs(run_dirs)
    png = comparison.write_png(out)
    if as_json:
        return _print_json({**comparison.to_json(), "plot": str(png)})
    table = Table("", *(Column(header=Text(r.label)) for r in comparison.runs), box=None)
    differences = comparison.difference_rows() or [("(spec)", ["the same"] * len(comparison.runs))]
    for key, cells in differences:
        table.add_row(Text(key), *(Text(c, style="dim" if c == "absent" else "") for c in cells))
    table.add_row()
    for key, cells in comparison.result_rows():
        table.add_row(Text(key), *(Text(c) for c in cells))
    _print_uncut(table)
    _print_closed_ok(f"wrote {png}")


@app.command("predict")
def predict(
    run_dir: str = typer.Argument(..., help="A run directory that tk train wrote."),
    inputs: Optional[List[str]] = typer.Argument(None, help="Image files, or folders: every image under them, "
                                                            "recursively (no class folders needed)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="JSON|FILE",
                                       help="Predict every sample of a dataset instead: a JSON object (or file) "
                                            "over the run's data, e.g. '{\"params\": {\"root\": \"test\"}}'."),
    out: str = typer.Option("predictions.csv", "--out", "-o", metavar="CSV", help="Where to write the rows."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", metavar="DIR",
                                          help="Where a segmentation run's mask PNGs go (default: <out stem>-masks)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or a checkpoint file."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="Also list the K most probable classes (top1, p1, ...)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Default: the run's data.batch_size."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0,
                                              help="Default: the run's data.num_workers."),
    device: Optional[str] = typer.Option(None, "--device", help="Default: the run's trainer.device."),
    output_kind: str = typer.Option("auto", "--output-kind",
                                    help="How to read the output: auto (the run's loss says), softmax, log_softmax, "
                                         "class_probabilities, sigmoid, probabilities, value."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows (and where they went) as JSON."),
) -> None:
    """Apply a run's model to images or a dataset: one CSV row per input with the predicted class,
    its probability and the top k (or the value; or a mask PNG per input for segmentation), the
    run's validation transforms applied."""
    from torchtk.core.prediction import predict as run_prediction

    result = run_prediction(run_dir, inputs or (), data=data, checkpoint=checkpoint, out=out, out_dir=out_dir,
                            top_k=top_k, batch_size=batch_size, num_workers=num_workers, device=device,
                            output_kind=output_kind)
    if as_json:
        return _print_json(result.to_json())
    from rich.measure import Measurement

    console, columns, shown = _console(), result.columns, 10
    table = _table(*columns, box=None)
    for row in result.rows[:shown]:
        table.add_row(*(f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns))
    console.width = max(console.width, Measurement.get(console, console.options.update_width(10_000), table).maximum)
    console.print(table, markup=False)
    if len(result.rows) > shown:
        console.print(f"... {len(result.rows) - shown} more rows in {result.csv}", markup=False)
    _print_closed_ok(result.summary())
    return None


@app.command("evaluate")
def evaluate(
    run_dir: str = typer.Argument(..., help="A run directory that tk train wrote (runs/<name>-<time>)."),
    checkpoint: str = typer.Option("best", "--checkpoint", "-c",
                                   help="best, last, or a checkpoint file (of a run of this spec)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="JSON|FILE",
                                       help="Other data: a JSON object (or a JSON/YAML file) whose keys replace the "
                                            "run's data keys, e.g. '{\"name\": \"image_folder\", \"params\": "
                                            "{\"root\": \"test\"}}'."),
    split: Optional[str] = typer.Option(None, "--split", help="val, train or all (default: val; with --data: the "
                                                              "dataset's own val part, else all of it)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metric", metavar="NAME|JSON",
                                                help="Score these metrics instead of the spec's (repeatable)."),
    overrides: Optional[List[str]] = SET_OPTION,
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps (default: the run's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Score a run's checkpoint with its loss and metrics on its validation split (or other data);
    writes eval-<timestamp>.json (and eval-<timestamp>-confusion_matrix.png) into the run directory."""
    from torchtk.core.evaluation import evaluate as run_evaluation

    result = run_evaluation(run_dir, checkpoint=checkpoint, data=data, overrides=overrides, metrics=metrics,
                            device=device, split=split)
    if as_json:
        return _print_json({**result.to_json(), "path": str(result.path)})
    _print_evaluation(result)
    return None


def _print_evaluation(result: Any) -> None:
    """The scalar values as one table, the per-class columns as a second (a row per class)."""
    from rich.table import Column, Table

    from torchtk.core.evaluation import DEV_RUN_OFF

    console = _console()
    console.print(f"[bold]{result.run_dir.name}[/bold]: {result.checkpoint.name} (epoch {result.epoch}) on "
                  f"{result.data}, {result.samples:,} samples ({result.device}, {result.precision})", soft_wrap=True)
    values = Table("", Column("value", justify="right"), box=None)
    for key, value in result.scalars.items():
        values.add_row(key, f"{value:.4f}")
    console.print(values, markup=False)
    if result.per_class:
        classes = list(dict.fromkeys(c for columns in result.per_class.values() for c in columns))
        console.print()
        table = Table("class", *(Column(key, justify="right") for key in result.per_class), box=None)
        for name in classes:
            cells = [result.values.get(f"{key}/{name}") for key in result.per_class]
            table.add_row(name, *("-" if v is None else f"{v:.4f}" for v in cells))
        console.print(table, markup=False)
    for where, value in result.limits.items():
        console.print(f"note: as in training, the run's {where}={json.dumps(value)} chose these batches "
                      f"(--set {where}={json.dumps(DEV_RUN_OFF[where])} scores the whole split)", markup=False,
                      soft_wrap=True)
    console.print(f"wrote {result.path}" + "".join(f", {p.name}" for p in result.files), markup=False, soft_wrap=True)


@app.command("export")
def export(
    run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="A run directory that tk train wrote."),
    formats: List[str] = typer.Option(..., "--format", "-f", metavar="FORMAT",
                                      help="exported (torch.export .pt2), torchscript, onnx, safetensors, or all; "
                                           "repeat it or give a comma list."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or a checkpoint file of this run."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="PATH",
                                      help="The file (one format) or folder (several); default RUN_DIR/export/."),
    device: str = typer.Option("cpu", "--device", help="Where the model is exported and checked."),
    atol: Optional[float] = typer.Option(None, "--atol", help="Absolute tolerance of the check (default by dtype)."),
    rtol: Optional[float] = typer.Option(None, "--rtol", help="Relative tolerance of the check (default by dtype)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the run's model as torch.export, TorchScript, ONNX or safetensors files, each loaded
    back and checked against the model on a probe batch of the validation data."""
    from torchtk.core.export import export as export_run
    from torchtk.core.export import human_size

    def written(result: Any) -> None:
        if as_json:
            return
        sizes = " and ".join(map(str, result.batch_sizes))
        allowed = "exact" if result.atol == result.rtol == 0 else f"atol {result.atol:g}, rtol {result.rtol:g}"
        _print_closed_ok(f"{result.format}: wrote {result.path} ({human_size(result.size)}); checked on batches of "
                         f"{sizes}: max |diff| to the model {result.max_abs_diff:.3g} ({allowed})")
        for note in result.notes:
            _print_closed_ok(f"  note: {note}")

    results = export_run(run_dir, formats, checkpoint=checkpoint, out=out, device=device, atol=atol, rtol=rtol,
                         on_exported=written)
    if as_json:
        _print_json([result.to_json() for result in results])
    return None


def _print_err(text: str) -> None:
    """Print a line to stderr; a reader that has gone (``2>&1 | head``) is no failure."""
    from torchtk.core.progress import discard_stream, is_closed_stream

    try:
        print(text, file=sys.stderr, flush=True)
    except OSError as exc:
        if not is_closed_stream(exc):
            raise
        discard_stream(sys.stderr)
    except (AttributeError, ValueError):  # no stderr at all (closed at start, or replaced)
        pass


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    _print_err(f"warning: {message}")


def main(argv: list[str] | None = None) -> None:
    """Run the ``tk`` command line on ``argv``; exits with 0, 1, 2 or 130 (see DESIGN.md).

    Ctrl-C and SIGTERM end tk alike (exit code 130, checkpoints kept), through
    :func:`torchtk.core.errors.interrupt_signals`; a second signal exits at once. The
    console script, :func:`torchtk.core.errors.console_main`, installs the handlers
    before even this module is imported, so they hold from Python's start-up on.
    """
    program = argv is None  # the console script itself (tests pass argv and keep their process)
    _options["console"] = program
    with interrupt_signals(signal.SIGINT, signal.SIGTERM):
        code = _run(list(sys.argv[1:] if program else argv))
        if program and code == 130:
            _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """Leave after an interrupt, with the handlers still installed: a signal whose
    ``KeyboardInterrupt`` a C extension swallowed would otherwise make Python end the
    process by SIGINT (exit -2) after it printed its message."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _run(argv: list[str]) -> int:
    """Run one command; returns its exit code, having printed any error in one message. A
    signal is exit code 130 however it surfaced: as a ``KeyboardInterrupt``, as an error it
    caused (a half-imported module), or not at all (its ``KeyboardInterrupt`` was lost)."""
    try:
        warnings.showwarning = _show_warning
        from torchtk.core.plugins import PluginWarning

        warnings.simplefilter("default", PluginWarning)  # a broken plugin never takes the CLI down
        _options["debug"], _options["trained"] = "--debug" in argv, False
        code = _dispatch(argv)
    except KeyboardInterrupt:  # the first signal, arriving while an error was being reported
        code = 130
        _print_err(_interrupted(argv))
    if code == 0 and interrupted():
        _print_err(_interrupted(argv))
        code = 130
    return code


def _interrupted(argv: list[str]) -> str:
    return interrupted_message(argv, _options["trained"])


def _dispatch(argv: list[str]) -> int:
    try:
        returned = app(args=argv, prog_name="tk", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0  # the parser returns 130 after Ctrl-C
        if code == 130:
            _print_err(_interrupted(argv))
        return code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _print_err("aborted")
        return 130
    except TorchtkError as exc:
        if _options["debug"]:
            traceback.print_exc()
        if interrupted() and exc.exit_code != 130:  # an error the signal caused, not the user's input
            _print_err(_interrupted(argv))
            return 130
        _print_err(f"error: {shorten(str(exc), MESSAGE_SHOWN)}")  # never megabytes of a value
        return exc.exit_code
    except KeyboardInterrupt:
        _print_err(_interrupted(argv))
        return 130
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # the parser's usage errors
            exc.show()
            return exc.exit_code
        if _options["debug"]:
            raise
        if interrupted():
            _print_err(_interrupted(argv))
            return 130
        # a bug: say so briefly, --debug for the traceback
        _print_err(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 1


__all__ = ["app", "main"]
