"""Does listing a plugin import torch? Checked in a fresh child process, naming the line that did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

# Run in the child: load the one plugin, list its catalog as `tk list` does, report torch.
_CHILD = r"""
import json, sys, traceback

first = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not first:
            first.extend(f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                         if not f.filename.startswith("<") and "importlib" not in f.filename)
        return None

sys.meta_path.insert(0, Spy())
target, name = sys.argv[1], sys.argv[2]
try:
    from torchtk.core.components import load_object
    from torchtk.core.plugins import PluginHost
    from torchtk.core.registry import Registry

    host = PluginHost(builtins=(), entry_points=False)
    host.register(load_object(target), name)
    listed = [(c.kind, c.name, c.summary, c.aliases) for c in Registry(host).components()]
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
else:
    print(json.dumps({"torch": "torch" in sys.modules, "listed": len(listed), "where": first[-1:]}))
"""


def listing_imports_torch(info: Any) -> tuple[str | None, str | None]:
    """``(problem, skipped reason)``: a problem when listing plugin ``info`` imports torch."""
    target = info.module
    if not target or " " in target or target.startswith("<"):
        return None, f"the plugin is an object ({target}), not importable by name in a new process"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", _CHILD, target, info.name], capture_output=True, text=True,
                          env=env, timeout=120)
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"plugin {info.name!r}: the listing check failed to run: {done.stderr.strip()[-500:]}", None
    if "error" in found:
        return None, f"{target!r} does not load by name in a new process ({found['error']}); made at run time?"
    if found["torch"]:
        where = f" (first imported at {found['where'][0]})" if found["where"] else ""
        return (f"plugin {info.name!r}: listing its components imports torch{where}; import torch inside the "
                "make_* hooks, and give params models that need torch as a 'module:attr' string"), None
    return None, None
