"""torchtk-timm: every timm model, timm's optimizers and the timm schedules torch lacks,
as torchtk components. Importing this package imports neither torch nor timm."""

__version__ = "0.1.0"
