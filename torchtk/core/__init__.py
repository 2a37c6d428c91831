"""The core: hookspecs, plugin host, registry, spec models, engine and CLI.

It knows no concrete component; every loss, scheduler or model reaches it through the
hooks in :mod:`torchtk.core.hookspecs`.
"""
