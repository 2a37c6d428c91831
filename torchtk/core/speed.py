"""The speed options of a run: ``trainer.compile``, ``trainer.channels_last``, ``trainer.tf32``.

None of them changes what is trained or what is saved: ``torch.compile`` wraps the
module the loop calls (``Parts.wrapped``) once, while checkpoints, evaluation and export
keep using the plain module (``Parts.model``), so state_dict keys never get the
compiled module's ``_orig_mod.`` prefix. ``channels_last`` stores the model's 4-D
weights and the 4-D input batches in NHWC order (faster convolutions on GPUs with
tensor cores and with oneDNN on CPU). ``tf32`` sets torch's process-wide choice for
float32 matmuls and convolutions on CUDA (TF32 on Ampere and newer); left unset, torch's
own defaults stay. What cannot work is an input error naming the option, before training
where it can be told then (no C++ compiler for the CPU backend, no Triton for CUDA) and
at the first batch otherwise (a model torch.compile cannot trace).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from torchtk.core.errors import UserInputError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value: bool | str) -> str | None:
    """``trainer.compile`` as a torch.compile mode (``None``: not compiled)."""
    if value is True:
        return "default"
    return value or None


def check_compiler(device: Any) -> None:
    """torch.compile's default backend (inductor) needs a C++ compiler for CPU code and
    Triton for CUDA; without them it fails at the first batch with a long traceback."""
    import torch

    if not torch._dynamo.is_dynamo_supported():
        raise UserInputError("trainer.compile: torch.compile does not support this Python or platform; "
                             "set trainer.compile: false")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise UserInputError("trainer.compile: torch.compile needs Triton for CUDA and it is not installed "
                                 "(pip install triton, the version your torch wheel names); or set "
                                 "trainer.compile: false")
    elif device.type == "cpu":
        candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
        if not any(name and shutil.which(name) for name in candidates):
            raise UserInputError("trainer.compile: torch.compile needs a C++ compiler for CPU code and none was "
                                 "found (c++, g++, clang++ or $CXX); install one (apt install g++) or set "
                                 "trainer.compile: false")


def compiled(module: Any, mode: str, device: Any) -> Any:
    """``torch.compile(module, mode=mode)``, after checking that it can work here."""
    import torch

    check_compiler(device)
    return torch.compile(module, mode=mode)


def compile_failure(exc: BaseException) -> UserInputError | None:
    """The input error for an exception torch.compile raised while compiling the model at
    its first call (a graph break it cannot handle, a backend failure), else ``None``."""
    module = type(exc).__module__ or ""
    if not module.startswith(("torch._dynamo", "torch._inductor")):
        return None
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return UserInputError(f"trainer.compile: torch.compile cannot compile this model: {type(exc).__name__}: "
                          f"{reason}; set trainer.compile: false (or another mode)")


def channels_last(value: Any) -> Any:
    """A 4-D tensor (or a tuple/list of tensors) in channels-last memory order; others as they are."""
    import torch

    if isinstance(value, (tuple, list)):
        return type(value)(channels_last(item) for item in value)
    if hasattr(value, "dim") and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def set_tf32(enabled: bool | None) -> None:
    """float32 matmuls and cuDNN convolutions in TF32 (``True``) or full IEEE float32
    (``False``); ``None`` leaves torch's settings as they are."""
    if enabled is None:
        return
    import torch

    precision = "tf32" if enabled else "ieee"
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9's API (allow_tf32 is deprecated there)
        matmul.fp32_precision = precision
        cudnn.conv.fp32_precision = precision
    else:
        matmul.allow_tf32 = enabled
        cudnn.allow_tf32 = enabled
