"""The rings workload under Lightning, run in a process of its own by engine_overhead.py.

Lightning's import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` and installs its own
warnings filters, so it never runs in the process that times torchtk and the
hand-written loop: ``engine_overhead.py`` starts this script as a subprocess, which
times Lightning and, alternating with it, the same hand-written loop (its reference
in this process), and prints one JSON line: seconds per epoch of each, steps per epoch.
Without Lightning installed (the ``bench`` extra) it prints ``{"missing": "..."}``.

    .venv/bin/python benchmarks/lightning_rings.py [--rounds 4] [--epochs 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import hand_written_epochs  # noqa: E402  (the same hand loop as the parent's)

from torchtk.core.spec import load_spec  # noqa: E402


def lightning_epochs(spec, epochs: int, clip: bool, lightning) -> list[float]:
    """Seconds per epoch of a LightningModule doing the hand loop's work (fit + validation)."""
    import torchtk

    class Rings(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = torchtk.registry.create("model", "mlp", **spec.model.params)
            self.loss_fn = torch.nn.BCEWithLogitsLoss()

        def training_step(self, batch, index):
            return self.loss_fn(self.model(batch[0]), batch[1])

        def validation_step(self, batch, index):
            out = self.model(batch[0])
            self.log("val_loss", self.loss_fn(out, batch[1]), prog_bar=False)
            self.log("val_accuracy", ((out > 0).float() == batch[1]).float().mean(), prog_bar=False)

        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.parameters(), lr=spec.optimizer.params["lr"])
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, **spec.scheduler[0].params)]

    class Clock(lightning.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self.started = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module) -> None:
            if not trainer.sanity_checking:
                self.seconds.append(time.perf_counter() - self.started)

    torch.manual_seed(spec.seed)
    dataset = torchtk.registry.create("dataset", "rings", **spec.data.params)
    x, y = dataset.tensors
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
    n_val = int(round(len(x) * spec.data.val_split))
    loader = torch.utils.data.DataLoader
    train = loader(torch.utils.data.TensorDataset(x[order[n_val:]], y[order[n_val:]]), batch_size=spec.data.batch_size,
                   shuffle=True)
    val = loader(torch.utils.data.TensorDataset(x[order[:n_val]], y[order[:n_val]]), batch_size=spec.data.batch_size)
    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        trainer = lightning.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                    num_sanity_val_steps=0, gradient_clip_val=spec.callbacks[0].params["max_norm"]
                                    if clip else None, callbacks=[clock], default_root_dir=out)
        trainer.fit(Rings(), train, val)
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-callbacks", action="store_true")
    args = parser.parse_args()
    try:
        import lightning
    except ImportError:
        print(json.dumps({"missing": "lightning is not installed (pip install -c constraints.txt -e '.[bench]')"}))
        return
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    clip = not args.no_callbacks
    spec = load_spec("rings", overrides=["trainer.device=cpu"])
    lightning_epochs(spec, 2, clip, lightning)  # warm-up
    hand, light = [], []
    for index in range(args.rounds):
        for side in (("hand", "lightning") if index % 2 == 0 else ("lightning", "hand")):
            if side == "hand":
                hand += hand_written_epochs(spec, args.epochs, clip)[1:]
            else:
                light += lightning_epochs(spec, args.epochs, clip, lightning)[1:]
    size = spec.data.params["n_positive"] + spec.data.params["n_negative"]
    steps = -(-(size - int(round(size * spec.data.val_split))) // spec.data.batch_size)
    print(json.dumps({"hand": hand, "lightning": light, "steps": steps, "version": lightning.__version__,
                      "nvml_check": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")}))


if __name__ == "__main__":
    main()
