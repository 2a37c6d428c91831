"""Forward+backward time of torchtk's custom losses against the tutorial's naive code,
MONAI and segmentation_models_pytorch (when installed: `pip install torchtk[bench]`).

    python benchmarks/losses.py [--rounds 60] [--threads N] [--json] [--only NAME]

Shapes: binary (16, 1, 128, 128) and multiclass (16, 5, 128, 128) logits, 1024 boxes.
Every implementation of one formula is timed in the same run, interleaved round by round
(in a rotating order, each on its own copy of the inputs) so that load on the machine
and cache state hit all of them alike; the table shows each one's median
in ms, torchtk's min/median/max, and torchtk's ratio of medians to the fastest peer's
(<= 1.0 is the goal; "min ratio" compares the best rounds, the least noisy figure on a
shared machine). Values are compared too, so a fast wrong implementation shows up.
The machine's 1-minute load average before and after the run is printed under the table.
Every torchtk loss runs with its options at their defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

import torchtk

BINARY = (16, 1, 128, 128)
MULTICLASS = (16, 5, 128, 128)
BOXES = 1024


# -- the tutorial's implementations ("Loss Function Library - Keras & PyTorch"), as written there

def naive_dice(inputs, targets, smooth=1):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    intersection = (inputs * targets).sum()
    return 1 - (2.0 * intersection + smooth) / (inputs.sum() + targets.sum() + smooth)


def naive_iou(inputs, targets, smooth=1):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    intersection = (inputs * targets).sum()
    union = (inputs + targets).sum() - intersection
    return 1 - (intersection + smooth) / (union + smooth)


def naive_tversky(inputs, targets, smooth=1, alpha=0.5, beta=0.5):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    tp = (inputs * targets).sum()
    fp = ((1 - targets) * inputs).sum()
    fn = (targets * (1 - inputs)).sum()
    return 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def naive_dice_bce(inputs, targets, smooth=1):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    intersection = (inputs * targets).sum()
    dice_loss = 1 - (2.0 * intersection + smooth) / (inputs.sum() + targets.sum() + smooth)
    return F.binary_cross_entropy(inputs, targets, reduction="mean") + dice_loss


def naive_batch_focal(inputs, targets, alpha=0.8, gamma=2):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    bce = F.binary_cross_entropy(inputs, targets, reduction="mean")
    return alpha * (1 - torch.exp(-bce)) ** gamma * bce


def naive_focal(inputs, targets, alpha=0.25, gamma=2):
    """The tutorial's per-element focal loss (sigmoid, BCE, p_t, alpha_t)."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy(p, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean()


def naive_multiclass(score: str) -> Callable:
    """The tutorial's formula per class over the batch, with softmax and one-hot."""
    def loss(inputs, targets, smooth=1):
        probs = torch.softmax(inputs, 1)
        onehot = F.one_hot(targets, inputs.shape[1]).permute(0, 3, 1, 2).float()
        inter = (probs * onehot).sum((0, 2, 3))
        psum, tsum = probs.sum((0, 2, 3)), onehot.sum((0, 2, 3))
        if score == "dice":
            value = 1 - (2 * inter + smooth) / (psum + tsum + smooth)
        elif score == "iou":
            value = 1 - (inter + smooth) / (psum + tsum - inter + smooth)
        else:
            value = 1 - (inter + smooth) / (inter + 0.5 * (psum - inter) + 0.5 * (tsum - inter) + smooth)
        value = value.mean()
        return value + F.cross_entropy(inputs, targets) if score == "dice_bce" else value
    return loss


def naive_sce(pred, labels, alpha=0.1, beta=1.0):
    """The paper's reference implementation (Wang et al. 2019)."""
    ce = F.cross_entropy(pred, labels)
    pred = torch.clamp(F.softmax(pred, dim=1), min=1e-7, max=1.0)
    onehot = torch.clamp(F.one_hot(labels, pred.shape[1]).permute(0, 3, 1, 2).float(), min=1e-4, max=1.0)
    rce = -1 * torch.sum(pred * torch.log(onehot), dim=1)
    return alpha * ce + beta * rce.mean()


def naive_softmax_focal(inputs, targets, gamma=2.0):
    logp = F.log_softmax(inputs, 1).gather(1, targets.unsqueeze(1))
    return (-(1 - logp.exp()) ** gamma * logp).mean()


# -- peers ----------------------------------------------------------------------------------

def peers_binary(name):
    found = {}
    try:
        import monai.losses as M

        common = dict(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
        found["monai"] = {
            "dice": lambda: M.DiceLoss(**common),
            "iou": lambda: M.DiceLoss(jaccard=True, **common),
            "tversky": lambda: M.TverskyLoss(alpha=0.5, beta=0.5, **common),
            "dice_bce": lambda: M.DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0),
            "focal": lambda: M.FocalLoss(gamma=2.0, alpha=0.25),
        }.get(name, lambda: None)()
    except ImportError:
        pass
    try:
        import segmentation_models_pytorch.losses as S

        def smp_dice_bce():
            bce, dice = S.SoftBCEWithLogitsLoss(), S.DiceLoss("binary", smooth=1.0)
            return lambda x, t: bce(x, t) + dice(x, t)

        found["smp"] = {
            "dice": lambda: S.DiceLoss("binary", smooth=1.0),
            "iou": lambda: S.JaccardLoss("binary", smooth=1.0),
            "tversky": lambda: S.TverskyLoss("binary", smooth=1.0, alpha=0.5, beta=0.5),
            "dice_bce": smp_dice_bce,
            "focal": lambda: S.FocalLoss("binary", alpha=0.25, gamma=2.0),
            "soft_bce": lambda: S.SoftBCEWithLogitsLoss(),
        }.get(name, lambda: None)()
    except ImportError:
        pass
    return {k: v for k, v in found.items() if v is not None}


def peers_multiclass(name):
    found = {}
    try:
        import monai.losses as M

        common = dict(softmax=True, to_onehot_y=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
        monai = {
            "dice": lambda: M.DiceLoss(**common),
            "iou": lambda: M.DiceLoss(jaccard=True, **common),
            "tversky": lambda: M.TverskyLoss(alpha=0.5, beta=0.5, **common),
            "dice_bce": lambda: M.DiceCELoss(**common),
        }.get(name)
        if monai:
            module = monai()
            found["monai"] = lambda x, t, m=module: m(x, t.unsqueeze(1))
    except ImportError:
        pass
    try:
        import segmentation_models_pytorch.losses as S

        smp = {
            "dice": lambda: S.DiceLoss("multiclass", smooth=1.0),
            "iou": lambda: S.JaccardLoss("multiclass", smooth=1.0),
            "tversky": lambda: S.TverskyLoss("multiclass", smooth=1.0, alpha=0.5, beta=0.5),
        }.get(name)
        if smp:
            found["smp"] = smp()
    except ImportError:
        pass
    return found


# -- timing ---------------------------------------------------------------------------------

def naive_soft_bce(inputs, targets):
    return F.binary_cross_entropy_with_logits(inputs, targets)


def naive_box_iou(a, b, eps=1e-7):
    """The tutorial-style paired IoU loss."""
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    return (1 - inter / (area_a + area_b - inter + eps)).mean()


TIMED_APART = {("box_iou", "torchvision")}  # (loss, implementation): 100x the others' time


def time_all(impls: dict[str, Callable], make_inputs: Callable, rounds: int) -> dict[str, tuple]:
    """(min, median, max) ms of forward+backward per implementation (interleaved), and the value."""
    logits, target = make_inputs()
    # each implementation its own copies, and a new random order every round: whoever runs
    # right after another one would otherwise find the shared target warm in the cache, and a
    # rotation keeps the cyclic order, so one implementation would always follow the same
    # peer (box_iou's row: always after torchvision's 1024 x 1024 matrix, 1.25x slower)
    leaves = {name: logits.detach().clone().requires_grad_(True) for name in impls}
    targets = {name: target.clone() for name in impls}
    values, times = {}, {name: [] for name in impls}
    shuffler = random.Random(0)
    for round_index in range(rounds + 5):
        order = list(impls)
        shuffler.shuffle(order)
        for name in order:
            fn, x = impls[name], leaves[name]
            x.grad = None
            start = time.perf_counter()
            loss = fn(x, targets[name])
            loss.backward()
            elapsed = time.perf_counter() - start
            if round_index >= 5:
                times[name].append(elapsed * 1e3)
            values[name] = float(loss.detach())
    return {name: ((min(times[name]), statistics.median(times[name]), max(times[name])), values[name])
            for name in impls}


def binary_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(BINARY, generator=g) * 2, (torch.rand(BINARY, generator=g) > 0.7).float()


def multiclass_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(MULTICLASS, generator=g) * 2, torch.randint(0, 5, MULTICLASS[:1] + MULTICLASS[2:], generator=g)


def box_inputs():
    g = torch.Generator().manual_seed(0)

    def boxes():
        corner = torch.rand(BOXES, 2, generator=g) * 400
        return torch.cat([corner, corner + torch.rand(BOXES, 2, generator=g) * 100 + 1], 1)
    return boxes(), boxes()


def cases():
    create = torchtk.registry.create
    names = set(torchtk.registry.names("loss"))
    yield "dice", "binary", binary_inputs, {"torchtk": create("loss", "dice"), "naive": naive_dice, **peers_binary("dice")}
    yield "iou", "binary", binary_inputs, {"torchtk": create("loss", "iou"), "naive": naive_iou, **peers_binary("iou")}
    yield "tversky", "binary", binary_inputs, {"torchtk": create("loss", "tversky"), "naive": naive_tversky,
                                               **peers_binary("tversky")}
    yield "dice_bce", "binary", binary_inputs, {"torchtk": create("loss", "dice_bce"), "naive": naive_dice_bce,
                                                **peers_binary("dice_bce")}
    yield "focal", "binary", binary_inputs, {
        "torchtk": create("loss", "focal"), "naive": naive_focal,
        "torchvision": lambda x, t: __import__("torchvision").ops.sigmoid_focal_loss(x, t, reduction="mean"),
        **peers_binary("focal")}
    yield "batch_focal", "binary", binary_inputs, {"torchtk": create("loss", "batch_focal"), "naive": naive_batch_focal}
    for name in ("dice", "iou", "tversky", "dice_bce"):
        yield name, "multiclass", multiclass_inputs, {"torchtk": create("loss", name, mode="multiclass"),
                                                      "naive": naive_multiclass(name), **peers_multiclass(name)}
    yield "focal", "multiclass", multiclass_inputs, {"torchtk": create("loss", "focal", mode="multiclass", alpha=None),
                                                     "naive": naive_softmax_focal}
    yield "sce", "multiclass", multiclass_inputs, {"torchtk": create("loss", "sce"), "naive": naive_sce}
    if "soft_bce" in names:  # absent before the issue-10 options
        yield "soft_bce", "binary", binary_inputs, {"torchtk": create("loss", "soft_bce"), "naive": naive_soft_bce,
                                                    **peers_binary("soft_bce")}
    yield "box_iou", "boxes", box_inputs, {
        "torchtk": create("loss", "box_iou"), "naive": naive_box_iou,
        "torchvision": lambda a, b: (1 - __import__("torchvision").ops.box_iou(a, b).diagonal()).mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", default=None, help="time only the rows of this loss name")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for name, mode, make_inputs, impls in cases():
        if args.only and name != args.only:
            continue
        # an implementation of another order of cost (torchvision's all-pairs box matrix) is
        # timed on its own: interleaved, it would leave the caches cold for whoever runs next
        apart = {k: f for k, f in impls.items() if (name, k) in TIMED_APART}
        measured = time_all({k: f for k, f in impls.items() if k not in apart}, make_inputs, args.rounds)
        if apart:
            measured.update(time_all(apart, make_inputs, args.rounds))
        peers = {k: v for k, v in measured.items() if k != "torchtk"}
        fastest = min(peers, key=lambda k: peers[k][0][1])
        ours, best = measured["torchtk"][0], peers[fastest][0]
        rows.append({"loss": name, "mode": mode, "ms": {k: round(v[0][1], 3) for k, v in measured.items()},
                     "torchtk_min_median_max": [round(t, 3) for t in ours],
                     "value": {k: round(v[1], 6) for k, v in measured.items()},
                     "fastest_peer": fastest, "ratio": round(ours[1] / best[1], 2),
                     "min_ratio": round(ours[0] / min(v[0][0] for v in peers.values()), 2)})
    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "load": load,
                          "cpus": os.cpu_count(), "rows": rows}, indent=1))
        return
    print_table(rows, args.rounds)
    print(f"load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after, on {os.cpu_count()} CPUs")


def print_table(rows: list[dict], rounds: int) -> None:
    columns = ["torchtk", "naive", "monai", "smp", "torchvision"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds, forward+backward in ms "
          f"(median per implementation); binary {BINARY}, multiclass {MULTICLASS}")
    print(f"{'loss':<12} {'mode':<11}" + "".join(f"{c:>10}" for c in columns)
          + f"{'torchtk min/med/max':>22}{'ratio':>7}{'min ratio':>10}  fastest peer")
    for row in rows:
        cells = "".join(f"{row['ms'][c]:>10.2f}" if c in row["ms"] else f"{'-':>10}" for c in columns)
        spread = "/".join(f"{t:.2f}" for t in row["torchtk_min_median_max"])
        print(f"{row['loss']:<12} {row['mode']:<11}{cells}{spread:>22}{row['ratio']:>7.2f}{row['min_ratio']:>10.2f}"
              f"  {row['fastest_peer']}")


if __name__ == "__main__":
    main()
