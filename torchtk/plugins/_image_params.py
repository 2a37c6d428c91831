"""The params models of the image datasets (``torchtk.plugins.images``): imported only
when a dataset is shown, validated or built, so ``tk list`` does not pay for them."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from torchtk import InputPath, Params

# torchvision.datasets.folder.IMG_EXTENSIONS (tests check they agree)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderParams(Params):
    """Images in class folders, as torchvision's ``ImageFolder`` reads them:
    ``<folder>/<class>/<image>`` (nested folders inside a class folder are fine).

    Give ``root`` for one folder that the run splits by ``data.val_split``, or ``train``
    (and optionally ``val``) for separate folders: then ``data.val_split`` is ignored,
    and ``val`` must use the training folder's class names (it may lack some). Classes
    are the sorted folder names (hidden ones such as ``.ipynb_checkpoints`` are skipped)
    and are kept in the run. Inputs are float32 ``(C, H, W)`` in [0, 1]; images of
    different sizes need a ``resize`` transform to batch. At build time the first image
    of each class is decoded (``verify``), so a broken file fails before training; a
    file that fails later names itself.
    """

    root: Optional[InputPath] = Field(None, description="One folder of class folders, split by data.val_split.")
    train: Optional[InputPath] = Field(None, description="Folder of class folders for training (instead of root).")
    val: Optional[InputPath] = Field(None, description="Folder of class folders for validation (with train).")
    extensions: list[str] = Field(list(IMAGE_EXTENSIONS), min_length=1,
                                  description="File extensions counted as images (case-insensitive).")
    grayscale: bool = Field(False, description="Load images as one channel (PIL mode L) instead of RGB.")
    verify: Literal["first", "all", "none"] = Field(
        "first", description="Decode at build time the first image of each class, every image, or none.")
    allow_empty: bool = Field(False, description="Allow class folders without images (else an input error).")

    @model_validator(mode="after")
    def _one_source(self) -> "ImageFolderParams":
        if (self.root is None) == (self.train is None):
            raise ValueError("give either root (one folder, split by data.val_split) or train (and val), not both")
        if self.val is not None and self.train is None:
            raise ValueError("val needs train (the training folder)")
        for extension in self.extensions:
            if not extension.startswith(".") or len(extension) < 2:
                raise ValueError(f"extension {extension!r} must start with a dot, like '.png'")
        return self


class TorchvisionParams(Params):
    """Read from a local ``root``; downloaded only with ``download: true``.

    ``split``: ``train+test`` trains on the training set and validates on the test set
    (``data.val_split`` is ignored); ``train`` or ``test`` uses that set alone, split
    by ``data.val_split``. Inputs are float32 ``(C, H, W)`` in [0, 1], targets int64.
    """

    root: InputPath = Field(description="Folder holding the dataset's files (see the error message for the layout).")
    split: Literal["train+test", "train", "test"] = Field(
        "train+test", description="train+test: train on train, validate on test; or one set, split by val_split.")
    download: bool = Field(False, description="Download the files into root if they are missing (network).")


def _doc(first: str) -> str:
    import inspect

    return first + "\n\n" + inspect.cleandoc(TorchvisionParams.__doc__ or "")




class MNISTParams(TorchvisionParams):
    __doc__ = _doc("The MNIST handwritten digits, 28x28 grey (1 channel), 10 classes, 60,000 train and 10,000 test "
                   "images, read as torchvision.datasets.MNIST does from <root>/MNIST/raw/ (the four IDX files, "
                   "gzipped or not).")


class FashionMNISTParams(TorchvisionParams):
    __doc__ = _doc("Fashion-MNIST: Zalando's 28x28 grey images of clothing, 10 classes, 60,000 train and 10,000 "
                   "test, read as torchvision.datasets.FashionMNIST does from <root>/FashionMNIST/raw/ (the four "
                   "IDX files, gzipped or not).")


class CIFAR10Params(TorchvisionParams):
    __doc__ = _doc("CIFAR-10: 32x32 colour images, 10 classes, 50,000 train and 10,000 test, read as "
                   "torchvision.datasets.CIFAR10 does from <root>/cifar-10-batches-py/ (or the archive "
                   "<root>/cifar-10-python.tar.gz, extracted on first use).")


class CIFAR100Params(TorchvisionParams):
    __doc__ = _doc("CIFAR-100: 32x32 colour images, 100 fine classes, 50,000 train and 10,000 test, read as "
                   "torchvision.datasets.CIFAR100 does from <root>/cifar-100-python/ (or the archive "
                   "<root>/cifar-100-python.tar.gz, extracted on first use).")


class FakeImagesParams(Params):
    """Random-noise images with random labels (torchvision ``FakeData``), for tests and
    demos: nothing to learn, nothing to download. Sample ``i`` is the same for a given
    ``seed`` however the data is split or shuffled. Classes are named ``class_0``, ...
    """

    n_samples: int = Field(1000, ge=1, description="Number of images.")
    image_size: list[int] = Field([3, 32, 32], min_length=3, max_length=3,
                                  description="Image shape (channels, height, width).")
    num_classes: int = Field(10, ge=1, description="Number of classes (targets 0 .. num_classes - 1).")
    seed: int = Field(0, ge=0, description="Offset of the per-sample seeds (the run seed only shuffles and splits).")

    @model_validator(mode="after")
    def _positive(self) -> "FakeImagesParams":
        if any(n < 1 for n in self.image_size):
            raise ValueError(f"image_size {self.image_size}: every dimension must be at least 1")
        if self.image_size[0] not in (1, 3):
            raise ValueError(f"image_size {self.image_size}: 1 or 3 channels (FakeData goes through a PIL image)")
        return self
