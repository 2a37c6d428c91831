"""Image datasets: folders of image files (torchvision ``ImageFolder`` layout), the
torchvision datasets MNIST, FashionMNIST, CIFAR10 and CIFAR100 read from a local
``root``, and ``fake_images`` (torchvision ``FakeData``) for tests and demos.

Every dataset here yields ``(image, target)`` with the image a float32 ``(C, H, W)``
tensor in ``[0, 1]`` (what torchvision's ``v2.ToImage()`` + ``v2.ToDtype(torch.float32,
scale=True)`` make of it) and the target an int64 class index; the spec's
``data.transforms`` then act on those tensors. Each dataset (each split) carries
``classes``, the class names in index order, which the run keeps in ``metrics.json``
and the checkpoints.

Images of different sizes do not batch: give such a folder a ``resize`` (and, to keep
the aspect ratio, ``center_crop`` / ``random_resized_crop``) transform for both
splits. The datasets carry a ``collate_fn`` that says so, with the two sizes, instead
of torch's "stack expects each tensor to be equal size".

Each dataset's catalog entry also says how ``tk predict`` reads an image file that is not
in the dataset (``extras["file_reader"]``, a :class:`FileReader`): decoded in the same
mode, as the same float32 tensor.

Nothing is ever downloaded unless the spec says ``"download": true``; a missing root,
missing files or an unreadable image is one input error naming the path and what to
put there. Neither torch nor torchvision is imported until a dataset is built, so
``tk list`` stays cheap; every object here pickles, for ``num_workers > 0``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torchtk import Component, TorchtkError, hookimpl

PARAMS = "torchtk.plugins._image_params"


class ImageDataError(TorchtkError, ValueError):
    """Bad image data (a missing folder or file, an unreadable image): exit code 2.

    Raised inside a DataLoader worker, torch re-raises it in the main process with the
    worker's whole traceback as its message; the constructor keeps only the message
    itself, so the user sees one clear line naming the file.
    """

    exit_code = 2

    def __init__(self, message: str = "") -> None:
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if message.startswith("Caught ") and marker in message:  # re-raised from a worker
            message = message.rsplit(marker, 1)[1].strip() + " (in a DataLoader worker)"
        super().__init__(message)


# -- what the datasets return ------------------------------------------------------------


def to_float_image(image: Any) -> Any:
    """A PIL image or a uint8 ``(C, H, W)`` tensor as a float32 tensor in [0, 1]: exactly
    ``v2.ToDtype(torch.float32, scale=True)(v2.ToImage()(image))``, as a plain tensor."""
    import torch
    from torchvision.transforms.v2 import functional as F

    if not isinstance(image, torch.Tensor):
        image = F.pil_to_tensor(image)
    return F.to_dtype(image, torch.float32, scale=True)


def read_image(path: str, mode: str) -> Any:
    """Decode one image file with PIL as torchvision's ``pil_loader`` does (``mode``:
    ``"RGB"`` or ``"L"``); any failure is an :class:`ImageDataError` naming the file."""
    from PIL import Image

    try:
        with open(path, "rb") as file:
            return Image.open(file).convert(mode)
    except Exception as exc:
        raise ImageDataError(f"{path}: cannot read this image ({type(exc).__name__}: {exc}); "
                             "replace or remove the file") from exc


def collate_images(batch: list[Any]) -> Any:
    """torch's ``default_collate``, with a clear message when images of different sizes
    meet in one batch (give the spec a ``resize`` transform for both splits)."""
    from torch.utils.data import default_collate

    try:
        return default_collate(batch)
    except RuntimeError as exc:
        if "stack expects each tensor to be equal size" not in str(exc):
            raise
        sizes = []
        for sample in batch:
            shape = list(getattr(sample[0], "shape", ()))
            if shape not in sizes:
                sizes.append(shape)
        raise ImageDataError(
            f"images of different sizes in one batch ({' and '.join(map(str, sizes[:2]))}, as (C, H, W)): "
            'add a resize transform to data.transforms.train and data.transforms.val, for example '
            '{"name": "resize", "params": {"size": [224, 224]}} (or resize + center_crop to keep the '
            "aspect ratio)") from None


class ImageFiles:
    """A map-style dataset of image files with class indices (what torchvision's
    ``ImageFolder`` holds: ``samples``, ``targets``, ``classes``, ``class_to_idx``),
    yielding float32 CHW tensors in [0, 1] and int targets."""

    collate_fn = staticmethod(collate_images)

    def __init__(self, root: str, samples: list[tuple[str, int]], classes: list[str], mode: str) -> None:
        self.root = root
        self.samples = samples
        self.targets = [target for _, target in samples]
        self.classes = classes
        self.class_to_idx = {name: index for index, name in enumerate(classes)}
        self.mode = mode
        self.torchtk_report = [f"{len(samples)} images in {len(classes)} classes from {root}"]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        return to_float_image(read_image(path, self.mode)), target

    def __repr__(self) -> str:
        return f"ImageFiles({self.root!r}, {len(self.samples)} images, {len(self.classes)} classes)"


class TensorImages:
    """Images held in memory as one uint8 ``(N, C, H, W)`` tensor (MNIST, CIFAR), each
    converted to float32 in [0, 1] when it is read, with int64 targets."""

    collate_fn = staticmethod(collate_images)

    def __init__(self, data: Any, targets: Any, classes: list[str], source: str) -> None:
        self.data, self.targets, self.classes = data, targets, classes
        self.torchtk_report = [f"{len(data)} images {tuple(data.shape[1:])} in {len(classes)} classes from {source}"]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return to_float_image(self.data[index]), self.targets[index]


class PILImages:
    """A torchvision dataset yielding PIL images (``FakeData``), as float32 CHW tensors."""

    collate_fn = staticmethod(collate_images)

    def __init__(self, dataset: Any, classes: list[str]) -> None:
        self.dataset, self.classes = dataset, classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self.dataset[index]
        return to_float_image(image), int(target)


class FileReader:
    """How a run's dataset reads one image file that is not in it (``tk predict``): decoded
    with PIL in the dataset's ``mode`` and converted exactly as its own samples are, to a
    float32 ``(C, H, W)`` tensor in [0, 1]. ``extensions`` are what a folder of inputs
    is scanned for. Declared by a dataset's catalog entry as ``extras={"file_reader":
    "module:function"}``, the function taking the dataset's params."""

    collate_fn = staticmethod(collate_images)

    def __init__(self, mode: str, extensions: tuple[str, ...] | None = None) -> None:
        from torchtk.plugins._image_params import IMAGE_EXTENSIONS

        self.mode = mode
        self.extensions = tuple(e.lower() for e in (extensions or IMAGE_EXTENSIONS))

    def __call__(self, path: str) -> Any:
        return to_float_image(read_image(path, self.mode))

    def __repr__(self) -> str:
        return f"FileReader({self.mode!r})"


def folder_reader(params: Any) -> FileReader:
    """image_folder: RGB, or one channel with ``grayscale``; its own ``extensions``."""
    return FileReader("L" if params.grayscale else "RGB", tuple(params.extensions))


def grey_reader(params: Any) -> FileReader:
    """MNIST, Fashion-MNIST (and other one-channel datasets): PIL mode L."""
    return FileReader("L")


def rgb_reader(params: Any) -> FileReader:
    """CIFAR: RGB."""
    return FileReader("RGB")


def fake_reader(params: Any) -> FileReader:
    """fake_images: as many channels as its ``image_size`` says."""
    return FileReader("L" if params.image_size[0] == 1 else "RGB")


def splits(train: Any, val: Any) -> Any:
    from torchtk import Splits

    return Splits(train=train, val=val)


# -- image_folder ------------------------------------------------------------------------


def _class_folders(folder: Path, what: str) -> list[str]:
    if not folder.exists():
        raise ImageDataError(f"image_folder {what}: {folder} does not exist")
    if not folder.is_dir():
        raise ImageDataError(f"image_folder {what}: {folder} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        loose = sum(1 for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith("."))
        detail = f"holds {loose} files but no class folders" if loose else "is empty"
        raise ImageDataError(f"image_folder {what}: {folder} {detail}: put each class's images in a "
                             f"subfolder named after the class, such as {folder / 'cat' / '001.png'}")
    return classes


def _scan(folder: Path, class_to_idx: dict[str, int], params: Any, what: str) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import make_dataset

    extensions = tuple(e.lower() for e in params.extensions)
    samples = make_dataset(str(folder), class_to_idx, extensions=extensions, allow_empty=True)
    found = {target for _, target in samples}
    empty = [name for name, index in class_to_idx.items() if index not in found]
    if empty and not params.allow_empty:
        shown = ", ".join(str(folder / name) for name in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ImageDataError(f"image_folder {what}: no images ({', '.join(extensions)}) in the class "
                             f"folder{'s' if len(empty) > 1 else ''} {shown}: add images, remove the folder, "
                             "or set allow_empty")
    if not samples:
        raise ImageDataError(f"image_folder {what}: no images in {folder}")
    if params.verify != "none":
        checked: set[int] = set()
        for path, target in samples:
            if params.verify == "all" or target not in checked:
                read_image(path, "L" if params.grayscale else "RGB")
                checked.add(target)
    return samples


def image_folder(params: Any) -> Any:
    mode = "L" if params.grayscale else "RGB"
    if params.root is not None:
        folder = Path(params.root).expanduser()
        classes = _class_folders(folder, "root")
        samples = _scan(folder, {name: i for i, name in enumerate(classes)}, params, "root")
        return ImageFiles(str(folder), samples, classes, mode)
    folder = Path(params.train).expanduser()
    classes = _class_folders(folder, "train")
    class_to_idx = {name: i for i, name in enumerate(classes)}
    train = ImageFiles(str(folder), _scan(folder, class_to_idx, params, "train"), classes, mode)
    if params.val is None:
        return splits(train, None)
    val_folder = Path(params.val).expanduser()
    val_classes = _class_folders(val_folder, "val")
    unknown = [name for name in val_classes if name not in class_to_idx]
    if unknown:
        raise ImageDataError(f"image_folder val: {val_folder} has class folders that the train folder {folder} "
                             f"lacks: {', '.join(unknown)} (the classes are the train folder's)")
    samples = _scan(val_folder, {name: class_to_idx[name] for name in val_classes}, params, "val")
    return splits(train, ImageFiles(str(val_folder), samples, classes, mode))


# -- torchvision datasets from a local root ----------------------------------------------


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _root_of(root: Path, folder: str, inner: str | None = None) -> Path:
    """The root torchvision wants, also when the user named ``<root>/<folder>`` or
    ``<root>/<folder>/<inner>`` (``MNIST/raw``) itself."""
    if (root / folder).is_dir():
        return root
    if root.name == folder:
        return root.parent
    if inner is not None and root.name == inner and root.parent.name == folder:
        return root.parent.parent
    return root


def _mnist(name: str, params: Any) -> Any:
    import gzip
    import shutil

    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}[name]
    given = Path(params.root).expanduser()
    if not params.download and not given.is_dir():
        raise ImageDataError(f"{name}: root {given} is not a folder: " + _mnist_layout(cls, given))
    root = _root_of(given, cls.__name__, "raw")
    raw = root / cls.__name__ / "raw"
    for filename in MNIST_FILES:  # torchvision reads only the extracted files
        target, packed = raw / filename, raw / (filename + ".gz")
        if not target.exists() and packed.exists():
            try:
                with gzip.open(packed, "rb") as source, open(f"{target}.part", "wb") as out:
                    shutil.copyfileobj(source, out)
                os.replace(f"{target}.part", target)
            except OSError as exc:
                raise ImageDataError(f"{name}: cannot extract {packed} into {raw} ({exc}); "
                                     f"extract it yourself: gunzip -k {packed}") from exc
    missing = [f for f in MNIST_FILES if not (raw / f).exists()]
    if missing and not params.download:
        raise ImageDataError(f"{name}: {', '.join(missing)} missing in {raw}: " + _mnist_layout(cls, root))
    return _torchvision(name, params, lambda train: cls(str(root), train=train, download=params.download),
                        lambda ds: (ds.data.unsqueeze(1), ds.targets), raw)


def _mnist_layout(cls: Any, root: Path) -> str:
    return (f"put {', '.join(MNIST_FILES)} (or the same names with .gz, from {cls.mirrors[0]}) in "
            f"{root / cls.__name__ / 'raw'}, or set \"download\": true")


def _cifar(name: str, params: Any) -> Any:
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import check_integrity, extract_archive

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    given = Path(params.root).expanduser()
    if not params.download and not given.is_dir():
        raise ImageDataError(f"{name}: root {given} is not a folder: " + _cifar_layout(cls, given))
    root = _root_of(given, cls.base_folder)
    folder, archive = root / cls.base_folder, root / cls.filename
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if not folder.is_dir() and archive.exists():
        try:
            extract_archive(str(archive), str(root))
        except Exception as exc:
            raise ImageDataError(f"{name}: cannot extract {archive} into {root} ({type(exc).__name__}: {exc})") from exc
    missing = [f for f in files if not (folder / f).exists()]
    if missing and not params.download:
        raise ImageDataError(f"{name}: {', '.join(missing)} missing in {folder}: " + _cifar_layout(cls, root))

    def check() -> None:  # torchvision says only "not found or corrupted": name the file
        for filename, md5 in cls.train_list + cls.test_list + [(cls.meta["filename"], cls.meta["md5"])]:
            if not check_integrity(str(folder / filename), md5):
                raise ImageDataError(f"{name}: {folder / filename} is corrupted or incomplete (its md5 is not "
                                     f"{md5}): replace it from {cls.url}, or set \"download\": true")

    def array(ds: Any) -> tuple[Any, Any]:
        import torch

        return (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(ds.targets, dtype=torch.int64))

    return _torchvision(name, params, lambda train: cls(str(root), train=train, download=params.download),
                        array, folder, check)


def _cifar_layout(cls: Any, root: Path) -> str:
    return (f"extract {cls.filename} (from {cls.url}) into {root} so that {root / cls.base_folder} holds its "
            f"files, or put the archive itself there, or set \"download\": true")


def _torchvision(name: str, params: Any, make: Any, arrays: Any, where: Path,
                 check: Any = None) -> Any:
    def part(train: bool) -> TensorImages:
        try:
            dataset = make(train)
        except ImageDataError:
            raise
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
            if check is not None:
                check()
            raise ImageDataError(f"{name}: torchvision cannot read {where}: {exc}") from exc
        except Exception as exc:  # a failed download, an unreadable file
            raise ImageDataError(f"{name}: reading {where} failed ({type(exc).__name__}: {exc})") from exc
        data, targets = arrays(dataset)
        return TensorImages(data, targets, list(dataset.classes), f"{where} ({'train' if train else 'test'})")

    if params.split == "train+test":
        return splits(part(True), part(False))
    return part(params.split == "train")


# -- fake_images -------------------------------------------------------------------------


def fake_images(params: Any) -> Any:
    from torchvision.datasets import FakeData

    dataset = FakeData(size=params.n_samples, image_size=tuple(params.image_size), num_classes=params.num_classes,
                       random_offset=params.seed)
    return PILImages(dataset, [f"class_{i}" for i in range(params.num_classes)])


# -- the plugin --------------------------------------------------------------------------


READERS = "torchtk.plugins.images"


def _reads(function: str) -> dict[str, str]:
    return {"file_reader": f"{READERS}:{function}"}


@hookimpl
def register_components(register):
    register(Component("dataset", "image_folder", "Images in class folders (torchvision ImageFolder), "
                       "one folder split or separate train/val.", params=f"{PARAMS}:ImageFolderParams",
                       aliases=("imagefolder",), extras=_reads("folder_reader")))
    register(Component("dataset", "mnist", "MNIST digits from a local root (torchvision MNIST).",
                       params=f"{PARAMS}:MNISTParams", extras=_reads("grey_reader")))
    register(Component("dataset", "fashion_mnist", "Fashion-MNIST from a local root (torchvision FashionMNIST).",
                       params=f"{PARAMS}:FashionMNISTParams", aliases=("fashionmnist",), extras=_reads("grey_reader")))
    register(Component("dataset", "cifar10", "CIFAR-10 from a local root (torchvision CIFAR10).",
                       params=f"{PARAMS}:CIFAR10Params", extras=_reads("rgb_reader")))
    register(Component("dataset", "cifar100", "CIFAR-100 from a local root (torchvision CIFAR100).",
                       params=f"{PARAMS}:CIFAR100Params", extras=_reads("rgb_reader")))
    register(Component("dataset", "fake_images", "Random images with random labels (torchvision FakeData).",
                       params=f"{PARAMS}:FakeImagesParams", extras=_reads("fake_reader")))


@hookimpl
def make_dataset(name, params):
    if name == "image_folder":
        return image_folder(params)
    if name in ("mnist", "fashion_mnist"):
        return _mnist(name, params)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, params)
    return fake_images(params)
