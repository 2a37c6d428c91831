"""The DDP placement's pieces that need no second process: how batches are sharded for two
processes, and what a run under torchrun's environment refuses (exit 2) instead of
training two copies. The end-to-end runs under torchrun are in test_torchrun.py."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from torchtk.core.data import TensorBatches, limit_batches
from torchtk.core.distributed import (Distributed, placement_for, refuse_closure, shard_for_evaluation,
                                      shard_for_training, torchrun_world)
from torchtk.core.errors import UserInputError


def _tensors(size=11):
    return [torch.arange(size, dtype=torch.float32).unsqueeze(1), torch.arange(size)]


def test_in_memory_shards_deal_out_each_global_batch_of_one_process():
    """Rank r of 2 at batch_size 2 takes samples r, r+2 of each batch of 4 of the one-process
    order (the same randperm): together they are that batch; the short last one is padded."""
    tensors = _tensors()
    one = list(TensorBatches(tensors, 4, True, torch.Generator().manual_seed(3)))
    shards = [list(shard_for_training(TensorBatches(tensors, 2, True, torch.Generator().manual_seed(3)), rank, 2))
              for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(one) == 3
    for index, batch in enumerate(one):
        together = torch.cat([shards[0][index][1], shards[1][index][1]])
        if index < 2:
            assert sorted(together.tolist()) == sorted(batch[1].tolist())
        else:  # 3 samples left: one sample from the start of the order pads it to 2 + 2
            assert set(batch[1].tolist()) <= set(together.tolist()) and len(together) == 4
        assert len(shards[0][index][1]) == len(shards[1][index][1])
    # a limit (trainer.limit_train_batches) keeps the shard
    assert limit_batches(shard_for_training(TensorBatches(tensors, 2, False, None), 1, 2), 1, "x").part == (1, 2)


def test_dataloader_shards_use_a_distributed_sampler_with_a_new_epoch_each_pass():
    data = TensorDataset(*_tensors(10))
    loaders = [shard_for_training(DataLoader(data, batch_size=2, shuffle=True,
                                             generator=torch.Generator().manual_seed(5)), rank, 2) for rank in (0, 1)]
    assert all(isinstance(loader.sampler, DistributedSampler) for loader in loaders)
    passes = []
    for _ in range(2):
        seen = [torch.cat([target for _, target in loader]).tolist() for loader in loaders]
        assert len(seen[0]) == len(seen[1]) == 5 and sorted(seen[0] + seen[1]) == list(range(10))
        passes.append(seen)
    assert passes[0] != passes[1]  # set_epoch: each pass its own shuffle, the same on both processes
    assert loaders[0].sampler.epoch == loaders[1].sampler.epoch


def test_validation_shards_cover_every_sample_once_and_are_not_padded():
    tensors = _tensors(7)
    memory = [shard_for_evaluation(TensorBatches(tensors, 2, False, None), rank, 2) for rank in (0, 1)]
    loaded = [shard_for_evaluation(DataLoader(TensorDataset(*tensors), batch_size=2), rank, 2) for rank in (0, 1)]
    for shards in (memory, loaded):
        seen = [int(v) for shard in shards for _, target in shard for v in target]
        assert sorted(seen) == list(range(7))
    with pytest.raises(UserInputError, match="the validation split has 1 samples, fewer than the 2 processes"):
        shard_for_evaluation(TensorBatches(_tensors(1), 2, False, None), 1, 2)


@pytest.fixture
def torchrun_env(monkeypatch):
    """This process as rank 0 of 2, as torchrun would start it (no process group is made)."""
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)


def test_torchrun_env_is_read_without_torch_distributed(torchrun_env, monkeypatch):
    assert torchrun_world() == (0, 0, 2)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert torchrun_world() is None  # torchrun --nproc_per_node=1: one process


@pytest.mark.parametrize("device, sync, message", [
    ("mps", False, "torch.distributed has no backend for MPS"),
    ("cuda:1", False, "names one GPU, but torchrun started 2 processes on this node"),
    ("cpu", True, "trainer.sync_batchnorm: SyncBatchNorm needs CUDA devices"),
])
def test_what_cannot_be_distributed_is_an_input_error(torchrun_env, device, sync, message):
    with pytest.raises(UserInputError, match=message):
        Distributed(device, sync_batchnorm=sync)


def test_single_process_commands_refuse_to_run_as_copies(torchrun_env, small_spec):
    with pytest.raises(UserInputError, match="tk lr-find runs in one process; under torchrun"):
        placement_for("cpu", single="tk lr-find")
    from torchtk.core.lr_find import find_lr

    with pytest.raises(UserInputError, match="tk lr-find runs in one process"):
        find_lr(small_spec)


def test_a_train_under_torchrun_env_that_cannot_be_distributed_exits_2(torchrun_env, spec_file, capsys):
    from torchtk.core.cli import main

    path = spec_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(path), "--set", "trainer.sync_batchnorm=true"])
    assert exit_info.value.code == 2
    assert "SyncBatchNorm needs CUDA devices" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["lr-find"], ["evaluate", "runs/x"], ["list", "losses"]])
def test_other_commands_under_torchrun_env_exit_2(torchrun_env, command, spec_file, capsys):
    from torchtk.core.cli import main

    args = [*command, str(spec_file())] if command == ["lr-find"] else command
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert f"tk {command[0]} runs in one process; under torchrun (WORLD_SIZE=2)" in capsys.readouterr().err


def test_an_optimizer_with_a_closure_is_refused_under_ddp():
    class Parts:
        needs_closure = True

    with pytest.raises(UserInputError, match="L-BFGS.*cannot run under DDP"):
        refuse_closure(Parts())


class CountingDistributed(Distributed):
    """The DDP placement in a one-process gloo group, counting DDP's gradient all-reduces."""

    def wrap(self, model):
        wrapped = super().wrap(model)
        self.reductions = 0

        def count(state, bucket):
            self.reductions += 1
            return torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook(None, bucket)

        wrapped.register_comm_hook(None, count)
        return wrapped


@pytest.fixture
def process_group(tmp_path):
    import torch.distributed as dist
    import torch.distributed.algorithms.ddp_comm_hooks.default_hooks  # noqa: F401

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_accumulation_micro_batches_skip_the_gradient_all_reduce(process_group, small_spec, tmp_path):
    """12 batches in windows of 2: DDP all-reduces 6 times (once per update), not 12."""
    import torchtk
    from torchtk.core.engine import Run
    from torchtk.core.progress import Reporter
    from torchtk.core.spec import load_spec

    small_spec["trainer"].update(epochs=1, accumulate_grad_batches=2)
    placement = CountingDistributed("cpu")
    run = Run(load_spec(small_spec), torchtk.registry, Reporter(), None, placement=placement)
    result = run.fit()
    run.run_dir.close()
    assert placement.reductions == 6
    assert result.model is run.parts.model and not isinstance(result.model, torch.nn.parallel.DistributedDataParallel)
    assert len(list((tmp_path / "runs").iterdir())) == 1 and (result.run_dir / "checkpoints" / "last.pt").exists()
