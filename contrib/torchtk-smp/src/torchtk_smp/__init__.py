"""torchtk-smp: segmentation_models_pytorch architectures with any encoder, and its losses
torchtk lacks, as torchtk components. Importing this package imports neither torch nor smp."""

__version__ = "0.1.0"
