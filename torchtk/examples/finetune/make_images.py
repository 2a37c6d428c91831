"""Write the fine-tuning example's images: two small tasks of rendered shapes as PNG files.

    python examples/finetune/make_images.py [OUT_DIR]     (default: finetune-data next to this file)

The specs name ``finetune-data/...``, which is relative to the spec files' folder, so the
default puts the images where ``stage1.json`` and ``stage2.json`` find them from any
working directory.

Task A (stage 1, 3 classes): circle, square, triangle.
Task B (stage 2, 5 classes): ring, cross, diamond, hbar, vbar -- other shapes, the same
kind of images, so features learned on A transfer to B.

Each task gets ``train/<class>/*.png``, ``val/<class>/*.png`` and ``test/<class>/*.png``
(the layout torchvision's ``ImageFolder`` and torchtk's ``image_folder`` read; ``test`` is
for ``tk evaluate``, no run trains or validates on it): 32x32 RGB, random size, position,
colours and noise, from a fixed seed (the same files on every machine; the test images
are drawn after all the others, so adding them changed no train or val file).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 32
TASKS = {
    "task-a": ("circle", "square", "triangle"),
    "task-b": ("ring", "cross", "diamond", "hbar", "vbar"),
}
SPLITS = ("train", "val", "test")
COUNTS = {"task-a": (300, 60, 60), "task-b": (30, 60, 60)}  # images per class and split (B: the small target task)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, rng: random.Random, colour: tuple[int, int, int]) -> None:
    r = rng.uniform(6, 12)
    cx, cy = rng.uniform(r + 1, SIZE - r - 1), rng.uniform(r + 1, SIZE - r - 1)
    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(2, int(r / 3))
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=width)
    elif shape == "cross":
        draw.line([(cx - r, cy), (cx + r, cy)], fill=colour, width=width)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=colour, width=width)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "hbar":
        draw.rectangle((cx - r, cy - width, cx + r, cy + width), fill=colour)
    elif shape == "vbar":
        draw.rectangle((cx - width, cy - r, cx + width, cy + r), fill=colour)
    else:
        raise ValueError(shape)


def render(shape: str, rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(0, 90) for _ in range(3))
    colour = tuple(rng.randrange(140, 256) for _ in range(3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    draw_shape(ImageDraw.Draw(image), shape, rng, colour)
    noise = Image.effect_noise((SIZE, SIZE), rng.uniform(10, 30)).convert("RGB")
    return Image.blend(image, noise, 0.15).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))


def write(out: Path, seed: int = 0) -> dict[str, int]:
    """Write every task's images under ``out``; returns the number of files per task.

    Every task's train and val images come first and the test images after them all:
    PIL's noise draws from one generator of its own, so this order keeps the train and
    val files what they were before the test split existed."""
    rngs = {task: random.Random(f"{seed}-{task}") for task in TASKS}
    written = dict.fromkeys(TASKS, 0)
    for splits in (SPLITS[:2], SPLITS[2:]):
        for task, classes in TASKS.items():
            for split in splits:
                per_class = COUNTS[task][SPLITS.index(split)]
                for shape in classes:
                    folder = out / task / split / shape
                    folder.mkdir(parents=True, exist_ok=True)
                    for index in range(per_class):
                        render(shape, rngs[task]).save(folder / f"{index:04d}.png")
                    written[task] += per_class
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "finetune-data"
    for task, count in write(target).items():
        print(f"{target / task}: {count} images in {len(TASKS[task])} classes")
