"""Run the ``tk`` command line from a test: in-process against a registry, or as a child process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess as _subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass
class TkResult:
    """What one ``tk`` command did: its exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The standard output read as JSON (for ``--json`` commands)."""
        return json.loads(self.stdout)


def run_tk(*args: Any, registry: Any = None, subprocess: bool = False, env: Mapping[str, str] | None = None,
           cwd: str | Path | None = None, timeout: float = 300) -> TkResult:
    """Run ``tk ARGS...`` and return its exit code and output.

    In-process (the default) it calls :func:`torchtk.core.cli.main` with ``registry`` as
    the process-wide registry for the call (``None``: the one there is), capturing what
    it prints. ``subprocess=True`` runs ``python -m torchtk`` in a child process instead,
    which sees the installed plugins only, exactly as a user's shell does; ``env`` is
    added to the child's environment and ``cwd`` is its working folder (in-process,
    ``cwd`` is entered for the call).
    """
    argv = [str(arg) for arg in args]
    if subprocess:
        child_env = {**os.environ, **(env or {})}
        done = _subprocess.run([sys.executable, "-m", "torchtk", *argv], capture_output=True, text=True,
                               env=child_env, cwd=cwd, timeout=timeout)
        return TkResult(done.returncode, done.stdout, done.stderr)
    return _in_process(argv, registry, env, cwd)


def _in_process(argv: list[str], registry: Any, env: Mapping[str, str] | None, cwd: str | Path | None) -> TkResult:
    from torchtk.core import cli, registry as registry_module

    previous_registry = registry_module._default
    previous_env = {key: os.environ.get(key) for key in (env or {})}
    previous_cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        if registry is not None:
            registry_module.set_registry(registry)
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(argv)
                code = 0
            except SystemExit as exited:
                code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    finally:
        os.chdir(previous_cwd)
        for key, value in previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if registry is not None:
            registry_module.set_registry(previous_registry)
    return TkResult(code, out.getvalue(), err.getvalue())
