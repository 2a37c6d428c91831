"""Built-in plugins. Each is an ordinary plugin module, loaded through the same hooks
as a third-party one; this tuple is the only place the core learns their names."""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "torchtk.plugins.datasets",
    "torchtk.plugins.images",
    "torchtk.plugins.transforms",
    "torchtk.plugins.models",
    "torchtk.plugins.vision_models",
    "torchtk.plugins.losses.classification",
    "torchtk.plugins.losses.segmentation",
    "torchtk.plugins.losses.detection",
    "torchtk.plugins.losses.regularization",
    "torchtk.plugins.losses.torch_nn",
    "torchtk.plugins.optimizers",
    "torchtk.plugins.schedulers",
    "torchtk.plugins.freezing",
    "torchtk.plugins.groups",
    "torchtk.plugins.init",
    "torchtk.plugins.precision",
    "torchtk.plugins.callbacks",
    "torchtk.plugins.metrics",
    "torchtk.plugins.segmentation",
)
