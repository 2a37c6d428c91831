"""The test kit for plugin authors, used by torchtk's own tests too.

    from torchtk.testing import check_plugin, run_tiny, run_tk

    def test_my_plugin_conforms():
        assert check_plugin("torchtk-my-plugin") == []      # distribution, entry-point or module name

    def test_my_callback_trains():
        run = run_tiny(callback="my_callback")              # two epochs of the tiny rings problem
        assert len(run.history) == 2

Installing torchtk also installs a pytest plugin (``torchtk.testing.pytest_plugin``,
a ``pytest11`` entry point) with the fixtures ``tk_plugin``, ``tk_registry``, ``tk`` and
``run_tiny``. Importing this package imports neither torch nor pytest.
"""

from __future__ import annotations

from torchtk.testing.checks import PluginReport, assert_plugin_ok, check_plugin, registry_for, registry_with
from torchtk.testing.runner import TkResult, run_tk
from torchtk.testing.tiny import TINY_SPEC, TinyRun, run_tiny

__all__ = ["PluginReport", "TINY_SPEC", "TinyRun", "TkResult", "assert_plugin_ok", "check_plugin", "registry_for",
           "registry_with",
           "run_tiny", "run_tk"]
