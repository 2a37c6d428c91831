"""The ``tk`` command line: each command parses, calls the library, and renders.

No logic lives only here. Errors the user can fix (exit code 2) and failed runs (exit
code 1) print one message without a traceback; ``--debug`` shows it.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from typing import Any, List, Optional

import typer

from torchtk.core.errors import TorchtkError, UserInputError, shorten, sigterm_as_interrupt

app = typer.Typer(
    name="tk",
    help="torchtk: train PyTorch models from a validated JSON spec, with pluggable losses, "
    "schedulers, fine-tuning policies, precision and step callbacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_options = {"debug": False}
MESSAGE_SHOWN = 50_000  # characters of an error message tk prints

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON output.")
SET_OPTION = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                          help="Override a spec value, e.g. --set optimizer.params.lr=0.01 (repeatable).")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _registry() -> Any:
    from torchtk.core.registry import get_registry

    return get_registry()


_PROSE_COLUMNS = {"summary": 24, "description": 24, "provides": 12, "status": 8}


def _table(*columns: str, **options: Any) -> Any:
    """A table where names never wrap or get cut; only prose columns wrap."""
    from rich.table import Column, Table

    return Table(*(Column(c, ratio=1, min_width=_PROSE_COLUMNS[c]) if c in _PROSE_COLUMNS
                   else Column(c, no_wrap=True) for c in columns), **options)


def _print_json(data: Any) -> None:
    _print_closed_ok(json.dumps(data, indent=2, default=str))


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors.")) -> None:
    _options["debug"] = debug


@app.command("list")
def list_components(
    kind: Optional[str] = typer.Argument(None, help="losses, schedulers, freeze, precision, callbacks, models, "
                                                    "datasets, optimizers or metrics; omit for counts per kind."),
    pattern: Optional[str] = typer.Option(None, "--filter", "-f", help="Wildcard on names, e.g. '*dice*'."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List components of a kind with summary and providing plugin."""

    from torchtk.core import report
    from torchtk.core.components import KINDS

    registry = _registry()
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
        table.add_row(row["name"], row["provider"], row["summary"] + aliases)
    _console().print(table)
    return None


@app.command("show")
def show(
    kind: str = typer.Argument(..., help="Component kind, singular or plural."),
    name: str = typer.Argument(..., help="Component name or alias."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one component: summary, every param (type, default, bounds), aliases, plugin."""

    from rich.padding import Padding
    from rich.text import Text

    info = _registry().describe(kind, name)
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
def plugins(as_json: bool = JSON_OPTION) -> None:
    """Installed plugins: origin, version, what each provides, and any that failed to load."""
    from torchtk.core.report import plugin_report, short_plugin_name

    data = plugin_report(_registry())
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
    return None


@app.command("validate")
def validate(
    spec: str = typer.Argument(..., help="Spec file (JSON or YAML) or bundled example name."),
    overrides: Optional[List[str]] = SET_OPTION,
) -> None:
    """Validate a spec and print it resolved (canonical names, all params); train nothing.

    Runs every check of tk train that needs no data (monitored names are logged, a
    scheduler that needs a metric steps per epoch); see assembly.check_without_data."""
    from torchtk.core.assembly import check_without_data
    from torchtk.core.spec import load_resolved

    resolved = load_resolved(spec, overrides=overrides)
    check_without_data(resolved)
    _print_json(resolved.spec.model_dump(mode="json"))
    print(f"{spec}: valid", file=sys.stderr)


@app.command("schema")
def schema() -> None:
    """JSON Schema of the run spec, with the params of every installed component."""
    from torchtk.core.spec import run_spec_schema

    _print_json(run_spec_schema())


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
) -> None:
    """Train a spec; outputs go to <output_dir>/<name>-<timestamp>/."""
    from torchtk.core.engine import train as run_training
    from torchtk.core.progress_choice import choose_reporter

    reporter = choose_reporter(False if as_json else "auto", otherwise="plain")  # a pipe or log gets plain lines
    result = run_training(spec, overrides=overrides, resume=resume, progress=reporter)
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
) -> None:
    """Show the lr (and weight decay) of every param group at every optimizer update, without training."""
    from rich.table import Table

    from torchtk.core.plan import compute_plan

    result = compute_plan(spec, overrides=overrides)
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
) -> None:
    """Show the model as the run would train it (after weights, init and freeze policies): each
    module's type, output shape on a probe batch, parameters and whether they train; totals; the
    optimizer's groups. Nothing is trained."""
    from rich.measure import Measurement
    from rich.table import Column, Table

    from torchtk.core.summary import compute_summary

    result = compute_summary(spec, overrides=overrides)
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


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tk`` console script; exits with 0, 1, 2 or 130 (see DESIGN.md).

    SIGTERM ends tk like Ctrl-C (exit code 130, checkpoints kept) from the first moment,
    through the one handler torchtk has (:func:`torchtk.core.errors.sigterm_as_interrupt`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    from torchtk.core.plugins import PluginWarning

    warnings.simplefilter("default", PluginWarning)  # a broken plugin never takes the CLI down
    _options["debug"] = "--debug" in argv
    with sigterm_as_interrupt():
        code = _run(argv)
    sys.exit(code)


def _run(argv: list[str]) -> int:
    """Run one command; returns its exit code, having printed any error in one message."""
    try:
        returned = app(args=argv, prog_name="tk", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0  # the parser returns 130 after Ctrl-C
        if code == 130:
            print("interrupted", file=sys.stderr)
        return code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except TorchtkError as exc:
        if _options["debug"]:
            traceback.print_exc()
        print(f"error: {shorten(str(exc), MESSAGE_SHOWN)}", file=sys.stderr)  # never megabytes of a value
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # the parser's usage errors
            exc.show()
            return exc.exit_code
        if _options["debug"]:
            raise
        # a bug: say so briefly, --debug for the traceback
        print(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


__all__ = ["app", "main"]
