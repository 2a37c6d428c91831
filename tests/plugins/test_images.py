"""Image datasets: image_folder on folder trees the tests write, MNIST/FashionMNIST from
IDX files, CIFAR from fake pickled batches, fake_images, and every bad-input case."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

import torchtk
from torchtk import Splits
from torchtk.plugins import _image_params
from torchtk.plugins.images import ImageDataError
from torchtk.testing import check_plugin, registry_with


def dataset(name: str, **params):
    return torchtk.registry.create("dataset", name, **params)


def write_tree(folder: Path, classes=("cat", "dog", "owl"), per_class=3, size=(8, 6), mode="RGB") -> Path:
    """``folder/<class>/<i>.png``: small images whose pixel values encode class and index."""
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            value = (40 * c + 10 * i) % 256
            color = (value, 255 - value, 7) if mode == "RGB" else value
            Image.new(mode, size, color).save(folder / name / f"{i}.png")
    return folder


def reference(folder: Path):
    """What a careful user writes by hand: ImageFolder with ToImage + ToDtype."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    return ImageFolder(str(folder), transform=v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))


# -- image_folder ---------------------------------------------------------------------


def test_image_folder_root_matches_torchvision_image_folder(tmp_path):
    root = write_tree(tmp_path / "images")
    (root / "dog" / "nested").mkdir()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(root / "dog" / "nested" / "x.JPG")  # nested, upper-case extension
    (root / "dog" / "notes.txt").write_text("not an image")
    ds = dataset("image_folder", root=str(root))
    ref = reference(root)
    assert ds.classes == ref.classes == ["cat", "dog", "owl"]
    assert ds.class_to_idx == ref.class_to_idx
    assert ds.samples == ref.samples and len(ds) == 10
    for index in range(len(ds)):
        image, target = ds[index]
        expected, expected_target = ref[index]
        assert type(image) is torch.Tensor and image.dtype == torch.float32 and image.shape == (3, 6, 8)
        assert torch.equal(image, expected.as_subclass(torch.Tensor)) and target == expected_target
        assert 0 <= image.min() and image.max() <= 1
    batch = ds.collate_fn([ds[0], ds[1]])
    assert batch[1].dtype == torch.int64
    assert pickle.loads(pickle.dumps(ds)).samples == ds.samples


def test_image_folder_hidden_folders_and_extensions(tmp_path):
    root = write_tree(tmp_path / "images", classes=("a", "b"))
    (root / ".ipynb_checkpoints").mkdir()  # ImageFolder would make this a class
    Image.new("RGB", (8, 6)).save(root / "a" / "extra.bmp")
    assert dataset("image_folder", root=str(root)).classes == ["a", "b"]
    assert len(dataset("image_folder", root=str(root), extensions=[".png"])) == 6
    assert len(dataset("image_folder", root=str(root), extensions=[".PNG", ".bmp"])) == 7
    with pytest.raises(Exception, match="must start with a dot"):
        dataset("image_folder", root=str(root), extensions=["png"])


def test_image_folder_grayscale(tmp_path):
    root = write_tree(tmp_path / "images")
    image, _ = dataset("image_folder", root=str(root), grayscale=True)[0]
    assert image.shape == (1, 6, 8)
    grey = write_tree(tmp_path / "grey", mode="L")
    assert dataset("image_folder", root=str(grey))[0][0].shape == (3, 6, 8)  # RGB by default, as ImageFolder


def test_image_folder_train_and_val_folders(tmp_path):
    train = write_tree(tmp_path / "train")
    val = write_tree(tmp_path / "val", classes=("cat", "owl"), per_class=2)  # a val folder may lack a class
    result = dataset("image_folder", train=str(train), val=str(val))
    assert isinstance(result, Splits)
    assert result.train.classes == result.val.classes == ["cat", "dog", "owl"]
    assert len(result.train) == 9 and len(result.val) == 4
    assert sorted({t for _, t in result.val.samples}) == [0, 2]  # owl keeps the train folder's index
    only_train = dataset("image_folder", train=str(train))
    assert isinstance(only_train, Splits) and only_train.val is None


def test_image_folder_val_with_an_unknown_class(tmp_path):
    train = write_tree(tmp_path / "train", classes=("cat", "dog"))
    val = write_tree(tmp_path / "val", classes=("cat", "emu"))
    with pytest.raises(ImageDataError, match=r"emu .*the classes are the train folder's"):
        dataset("image_folder", train=str(train), val=str(val))


@pytest.mark.parametrize("params, message", [
    ({}, "give either root"),
    ({"root": "a", "train": "b"}, "give either root"),
    ({"root": "a", "val": "b"}, "give either root|val needs train"),
])
def test_image_folder_params(params, message):
    with pytest.raises(Exception, match=message):
        dataset("image_folder", **params)


def test_missing_folder(tmp_path):
    with pytest.raises(ImageDataError, match=f"image_folder root: {tmp_path / 'nope'} does not exist"):
        dataset("image_folder", root=str(tmp_path / "nope"))
    write_tree(tmp_path / "train")
    with pytest.raises(ImageDataError, match=f"image_folder val: {tmp_path / 'val'} does not exist"):
        dataset("image_folder", train=str(tmp_path / "train"), val=str(tmp_path / "val"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageDataError, match="is not a folder"):
        dataset("image_folder", root=str(tmp_path / "file"))


def test_empty_folder_and_folder_without_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match=rf"{tmp_path / 'empty'} is empty: put each class's images in a "
                                             rf"subfolder named after the class"):
        dataset("image_folder", root=str(tmp_path / "empty"))
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "1.png")
    with pytest.raises(ImageDataError, match="holds 1 files but no class folders"):
        dataset("image_folder", root=str(tmp_path / "flat"))


def test_class_folder_without_images(tmp_path):
    root = write_tree(tmp_path / "images", classes=("a", "b"))
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("no images here")
    with pytest.raises(ImageDataError, match=rf"no images \(.*\.png.*\) in the class folder {root / 'c'}: "):
        dataset("image_folder", root=str(root))
    assert dataset("image_folder", root=str(root), allow_empty=True).classes == ["a", "b", "c"]


def test_unreadable_image_fails_at_build_time(tmp_path):
    root = write_tree(tmp_path / "images")
    (root / "dog" / "0.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageDataError, match=rf"{root / 'dog' / '0.png'}: cannot read this image"):
        dataset("image_folder", root=str(root))
    assert len(dataset("image_folder", root=str(root), verify="none")) == 9


def test_unreadable_image_later_names_the_file(tmp_path):
    root = write_tree(tmp_path / "images")
    broken = root / "dog" / "2.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated: the header reads, the pixels do not
    with pytest.raises(ImageDataError, match="2.png: cannot read"):
        dataset("image_folder", root=str(root), verify="all")
    ds = dataset("image_folder", root=str(root))  # only the first image of each class is decoded
    index = ds.samples.index((str(broken), 1))
    with pytest.raises(ImageDataError, match=rf"{broken}: cannot read this image"):
        ds[index]


def test_decode_error_in_a_worker_is_one_clear_message(tmp_path):
    from torch.utils.data import DataLoader, Subset

    root = write_tree(tmp_path / "images", classes=("a",), per_class=2)
    ds = dataset("image_folder", root=str(root))
    (root / "a" / "1.png").write_bytes(b"garbage")
    loader = DataLoader(Subset(ds, [1]), batch_size=1, num_workers=1, collate_fn=ds.collate_fn)
    with pytest.raises(ImageDataError) as info:
        next(iter(loader))
    message = str(info.value)
    assert message.startswith(f"{root / 'a' / '1.png'}: cannot read this image")
    assert "Traceback" not in message and message.endswith("(in a DataLoader worker)")
    assert info.value.exit_code == 2


def test_images_of_different_sizes_say_to_resize(tmp_path):
    root = write_tree(tmp_path / "images", classes=("a",), per_class=1, size=(8, 6))
    write_tree(tmp_path / "images", classes=("b",), per_class=1, size=(5, 5))
    ds = dataset("image_folder", root=str(root))
    with pytest.raises(ImageDataError, match=r"different sizes in one batch \(\[3, 6, 8\] and \[3, 5, 5\].*"
                                             r"add a resize transform to data.transforms.train"):
        ds.collate_fn([ds[0], ds[1]])


def tiny_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_run_on_train_and_val_folders_keeps_the_classes(tmp_path, workers):
    write_tree(tmp_path / "train", per_class=4, size=(10, 10))
    write_tree(tmp_path / "val", per_class=2, size=(12, 9))
    spec = {
        "name": "folders", "seed": 0,
        "model": {"import": "tests.plugins.test_images:tiny_model"},
        "data": {"name": "image_folder", "params": {"train": str(tmp_path / "train"), "val": str(tmp_path / "val")},
                 "batch_size": 4, "num_workers": workers,
                 "transforms": {"train": [{"name": "random_resized_crop", "params": {"size": 8}}, "hflip",
                                          "normalize"],
                                "val": [{"name": "resize", "params": {"size": [8, 8]}}, "normalize"]}},
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "params": {"lr": 0.1}},
        "metrics": ["accuracy"],
        "trainer": {"epochs": 2, "device": "cpu", "output_dir": str(tmp_path / "runs")},
    }
    result = torchtk.train(spec)
    assert len(result.history) == 2 and "val_accuracy" in result.history[-1]
    assert json.loads((result.run_dir / "metrics.json").read_text())["classes"] == ["cat", "dog", "owl"]


def test_a_run_on_one_folder_split_by_val_split(tmp_path):
    write_tree(tmp_path / "all", per_class=5, size=(8, 8))
    spec = {
        "name": "one-folder", "seed": 0, "model": {"import": "tests.plugins.test_images:tiny_model"},
        "data": {"name": "image_folder", "params": {"root": str(tmp_path / "all")}, "batch_size": 5, "val_split": 0.2},
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "params": {"lr": 0.1}},
        "trainer": {"epochs": 1, "device": "cpu", "output_dir": str(tmp_path / "runs")},
    }
    result = torchtk.train(spec)
    assert json.loads((result.run_dir / "metrics.json").read_text())["classes"] == ["cat", "dog", "owl"]


def test_a_bad_folder_in_a_spec_is_an_input_error(tmp_path):
    from torchtk.core.errors import UserInputError

    spec = {"name": "x", "model": {"import": "tests.plugins.test_images:tiny_model"},
            "data": {"name": "image_folder", "params": {"root": str(tmp_path / "missing")}},
            "loss": "cross_entropy", "optimizer": "sgd",
            "trainer": {"epochs": 1, "device": "cpu", "output_dir": str(tmp_path / "runs")}}
    with pytest.raises(UserInputError, match=rf"^data: .*{tmp_path / 'missing'} does not exist"):
        torchtk.train(spec)


# -- MNIST and FashionMNIST from IDX files ------------------------------------------------


def write_idx(raw: Path, n_train=5, n_test=3, packed=False, size=28) -> None:
    """The four IDX files torchvision's MNIST reads (big-endian magic, counts, bytes)."""
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        pixels = bytes((i * 7 + j) % 256 for i in range(count) for j in range(size * size))
        files = {f"{prefix}-images-idx3-ubyte": struct.pack(">iiii", 2051, count, size, size) + pixels,
                 f"{prefix}-labels-idx1-ubyte": struct.pack(">ii", 2049, count) + bytes(i % 10 for i in range(count))}
        for name, content in files.items():
            if packed:
                (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (raw / name).write_bytes(content)


@pytest.mark.parametrize("packed", [False, True])
def test_mnist_from_a_local_root(tmp_path, packed):
    from torchvision.datasets import MNIST
    from torchvision.transforms import v2

    write_idx(tmp_path / "MNIST" / "raw", packed=packed)
    result = dataset("mnist", root=str(tmp_path))
    assert isinstance(result, Splits) and len(result.train) == 5 and len(result.val) == 3
    ref = MNIST(str(tmp_path), train=True, transform=v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))
    assert result.train.classes == ref.classes and result.train.classes[0] == "0 - zero"
    for index in range(5):
        image, target = result.train[index]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32
        assert torch.equal(image, ref[index][0].as_subclass(torch.Tensor)) and int(target) == ref[index][1]
        assert target.dtype == torch.int64
    assert len(dataset("mnist", root=str(tmp_path), split="test")) == 3
    assert len(dataset("mnist", root=str(tmp_path), split="train")) == 5
    pickle.loads(pickle.dumps(result.train))


def test_mnist_root_may_name_the_dataset_folder(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    assert len(dataset("mnist", root=str(tmp_path / "MNIST"), split="train")) == 5
    assert len(dataset("mnist", root=str(tmp_path / "MNIST" / "raw"), split="train")) == 5


def test_fashion_mnist(tmp_path):
    write_idx(tmp_path / "FashionMNIST" / "raw", packed=True)
    result = dataset("fashion_mnist", root=str(tmp_path))
    assert result.train.classes[0] == "T-shirt/top" and result.train[0][0].shape == (1, 28, 28)


def test_mnist_missing_files_say_what_to_put_where(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(ImageDataError, match=rf"mnist: t10k-labels-idx1-ubyte missing in {raw}: put "
                                             r"train-images-idx3-ubyte, .* in .*, or set \"download\": true"):
        dataset("mnist", root=str(tmp_path))
    with pytest.raises(ImageDataError, match=rf"mnist: root {tmp_path / 'nowhere'} is not a folder"):
        dataset("mnist", root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match=rf"missing in {tmp_path / 'empty' / 'MNIST' / 'raw'}"):
        dataset("fashion_mnist" if False else "mnist", root=str(tmp_path / "empty"))


def test_download_only_when_asked(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    calls = []

    def offline(self):
        calls.append(self.root)
        raise OSError("network unreachable")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(ImageDataError):
        dataset("mnist", root=str(tmp_path))
    assert calls == []
    with pytest.raises(ImageDataError, match="mnist: reading .* failed .*network unreachable"):
        dataset("mnist", root=str(tmp_path), download=True)
    assert calls == [str(tmp_path)]


# -- CIFAR from fake pickled batches ---------------------------------------------------------


def write_cifar(root: Path, hundred=False, per_file=4) -> Path:
    import numpy as np

    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"
    names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    for index, name in enumerate(names + ["test" if hundred else "test_batch"]):
        data = np.full((per_file, 3 * 32 * 32), index * 20, dtype=np.uint8)
        data[:, :1024] = np.arange(per_file, dtype=np.uint8)[:, None]  # red channel: the sample's index
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: [i % 3 for i in range(per_file)]}, f)
    meta = {"fine_label_names": [f"c{i}" for i in range(100)]} if hundred else {"label_names": ["plane", "car", "bird"]}
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    return folder


@pytest.fixture
def no_md5(monkeypatch):
    """Fake CIFAR files cannot match torchvision's md5 sums."""
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)


def test_cifar10_from_a_local_root(tmp_path, no_md5):
    write_cifar(tmp_path)
    result = dataset("cifar10", root=str(tmp_path))
    assert len(result.train) == 20 and len(result.val) == 4
    assert result.train.classes == ["plane", "car", "bird"]
    image, target = result.train[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and target.dtype == torch.int64
    assert image[0, 0, 0] == pytest.approx(1 / 255) and image[1, 0, 0] == pytest.approx(20 / 255)
    assert int(target) == 1  # sample 1 of data_batch_2
    assert len(dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"), split="test")) == 4


def test_cifar100_from_an_archive(tmp_path, no_md5):
    folder = write_cifar(tmp_path / "src", hundred=True)
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")
    result = dataset("cifar100", root=str(tmp_path / "data"), split="train")
    assert len(result) == 4 and len(result.classes) == 100
    assert (tmp_path / "data" / "cifar-100-python" / "train").exists()


def test_cifar_missing_and_corrupted_files(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(ImageDataError, match=rf"cifar10: data_batch_3 missing in {folder}: extract "
                                             r"cifar-10-python.tar.gz \(from https://"):
        dataset("cifar10", root=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match="cifar100: train, test, meta missing in"):
        dataset("cifar100", root=str(tmp_path / "empty"))
    folder2 = write_cifar(tmp_path / "fake")  # real torchvision md5 check: these fake files fail it
    with pytest.raises(ImageDataError, match=rf"{folder2 / 'data_batch_1'} is corrupted or incomplete"):
        dataset("cifar10", root=str(tmp_path / "fake"))


# -- fake_images ---------------------------------------------------------------------------


def test_fake_images():
    ds = dataset("fake_images", n_samples=6, image_size=[1, 5, 7], num_classes=3, seed=2)
    assert len(ds) == 6 and ds.classes == ["class_0", "class_1", "class_2"]
    image, target = ds[4]
    assert image.shape == (1, 5, 7) and image.dtype == torch.float32 and isinstance(target, int)
    again = dataset("fake_images", n_samples=6, image_size=[1, 5, 7], num_classes=3, seed=2)
    assert torch.equal(again[4][0], image)
    state = torch.get_rng_state()
    ds[0]
    assert torch.equal(torch.get_rng_state(), state)
    pickle.loads(pickle.dumps(ds))[1]
    with pytest.raises(Exception, match="1 or 3 channels"):
        dataset("fake_images", image_size=[2, 5, 5])


# -- the plugin ----------------------------------------------------------------------------


def test_plugin_conforms():
    assert check_plugin(registry_with(), "torchtk.plugins.images") == []


def test_extensions_match_torchvision():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert _image_params.IMAGE_EXTENSIONS == IMG_EXTENSIONS
