"""A fork server for the SIGKILL test (a helper process, not a test module).

It imports torch, torchtk, the built-in plugins and matplotlib once (by training a tiny
run), then forks one ``tk`` process per request, so that each of the test's many runs
starts in milliseconds instead of the seconds ``import torch`` takes. A forked child runs exactly what the
``tk`` console script runs (``torchtk.core.cli.main``) and is killed like one.

One JSON line per request on stdin, one JSON line per reply on stdout:
``{"argv": [...], "log": path}`` -> ``{"pid": N}`` (the child's stdout and stderr go to
``log``); ``{"wait": N}`` -> ``{"status": S}`` (the exit code; ``-9`` for SIGKILL).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def warm_up() -> None:
    """Run one tiny training once, so no child pays for an import (``torch._dynamo``, which
    the first optimizer imports, takes seconds) or a first draw. One thread: a child forked
    after a parallel region of OpenMP could hang in its own first one."""
    import torch

    import torchtk

    torch.set_num_threads(1)
    spec = {"name": "warm", "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [4], "out_features": 1}},
            "data": {"name": "rings", "params": {"n_positive": 20, "n_negative": 20}, "batch_size": 20},
            "loss": "focal", "optimizer": "adam", "metrics": ["accuracy"], "trainer": {"epochs": 1, "device": "cpu"}}
    with tempfile.TemporaryDirectory() as scratch:
        spec["trainer"]["output_dir"] = scratch
        torchtk.train(spec, progress=False)


def child(argv: list[str], log: str) -> None:
    from torchtk.core import cli

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os._exit(code)


def serve() -> None:
    warm_up()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "argv" in request:
            pid = os.fork()
            if pid == 0:
                child(request["argv"], request["log"])
            reply = {"pid": pid}
        else:
            _, status = os.waitpid(request["wait"], 0)
            reply = {"status": os.waitstatus_to_exitcode(status)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve()
