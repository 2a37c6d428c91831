"""tk predict / torchtk.predict: a trained run's model on image files, folders and a
dataset's samples, checked against the model run by hand on the same inputs."""

from __future__ import annotations

import copy
import csv
import json

import numpy
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

import torchtk
from torchtk.core.errors import UserInputError
from torchtk.core.prediction import MaskWriter, OutputReader, declared_kind, input_files, voc_palette
from torchtk.core.spec import load_resolved
from torchtk.core.spec.loading import EXAMPLES_DIR
from torchtk.plugins.images import to_float_image

CLASSES = ("cat", "dog", "owl")
VAL = v2.Compose([v2.Resize([8, 8]), v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def tiny_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, len(CLASSES)))


def write_images(folder, per_class=4, size=(10, 10), seed=0):
    """``folder/<class>/<i>.png``: random-noise RGB images (a flip changes every one of them)."""
    generator = torch.Generator().manual_seed(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(folder / name / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """An image_folder run of 2 epochs whose train chain (random crop, a flip with p=1)
    differs from its val chain (a resize to 8x8, which the model needs: 10x10 would not fit)."""
    root = tmp_path_factory.mktemp("images")
    write_images(root / "train")
    write_images(root / "val", per_class=2, seed=1)
    spec = {
        "name": "images", "seed": 0, "model": {"import": "tests.core.test_prediction:tiny_model"},
        "data": {"name": "image_folder", "params": {"train": str(root / "train"), "val": str(root / "val")},
                 "batch_size": 4,
                 "transforms": {"train": [{"name": "random_resized_crop", "params": {"size": 8}},
                                          {"name": "hflip", "params": {"p": 1.0}}, "normalize"],
                                "val": [{"name": "resize", "params": {"size": [8, 8]}}, "normalize"]}},
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "params": {"lr": 0.1}}, "metrics": ["accuracy"],
        "trainer": {"epochs": 2, "device": "cpu", "output_dir": str(root / "runs")},
    }
    result = torchtk.train(spec, progress=False)
    return result.run_dir, root


def by_hand(run_dir, paths, transform=VAL, checkpoint="best"):
    """Softmax of the run's model on each image, read and transformed here."""
    model = torchtk.load_run(run_dir).model(checkpoint)
    images = torch.stack([transform(to_float_image(Image.open(p).convert("RGB"))) for p in paths])
    with torch.no_grad():
        return model(images).softmax(dim=1)


def image_paths(folder):
    return [str(folder / name / f"{i}.png") for name in CLASSES for i in range(len(list((folder / name).iterdir())))]


def test_a_folder_gives_class_names_and_the_models_softmax(image_run):
    run_dir, root = image_run
    (root / "val" / "notes.txt").write_text("not an image: a folder is scanned for image files only")
    rows = torchtk.predict(run_dir, [root / "val"], top_k=3)
    paths = image_paths(root / "val")
    assert [row["input"] for row in rows] == paths  # recursive, sorted
    expected = by_hand(run_dir, paths)
    for row, probabilities in zip(rows, expected):
        order = probabilities.argsort(descending=True).tolist()
        assert row["prediction"] == CLASSES[order[0]] == row["top1"]
        assert [row["top1"], row["top2"], row["top3"]] == [CLASSES[j] for j in order]
        assert [row["p1"], row["p2"], row["p3"]] == pytest.approx(probabilities[order].tolist(), abs=1e-6)
        assert row["p1"] >= row["p2"] >= row["p3"] and row["p1"] + row["p2"] + row["p3"] == pytest.approx(1.0)
        assert row["probability"] == row["p1"]


def test_the_val_transforms_are_applied_never_the_training_ones(image_run):
    run_dir, root = image_run
    paths = image_paths(root / "val")
    rows = torchtk.predict(run_dir, paths, top_k=3)
    flipped = by_hand(run_dir, paths, v2.Compose([v2.RandomHorizontalFlip(p=1.0), VAL]))
    plain = by_hand(run_dir, paths)
    got = torch.tensor([[row[f"p{r}"] for r in (1, 2, 3)] for row in rows])
    assert torch.allclose(got, plain.sort(dim=1, descending=True).values, atol=1e-6)
    assert not torch.allclose(got, flipped.sort(dim=1, descending=True).values, atol=1e-3)


def test_the_checkpoint_chosen_is_the_one_used(image_run):
    run_dir, root = image_run
    paths = image_paths(root / "val")[:3]
    rows = torchtk.predict(run_dir, paths, checkpoint="last")
    assert [row["probability"] for row in rows] == pytest.approx(by_hand(run_dir, paths, checkpoint="last")
                                                                 .max(dim=1).values.tolist(), abs=1e-6)


def test_batches_and_workers_change_nothing(image_run):
    run_dir, root = image_run
    one = torchtk.predict(run_dir, [root / "train"], batch_size=1, top_k=2)
    assert len(one) == 12
    for other in (torchtk.predict(run_dir, [root / "train"], batch_size=5, top_k=2),
                  torchtk.predict(run_dir, [root / "train"], batch_size=5, num_workers=1, top_k=2)):
        assert [(r["input"], r["top1"], r["top2"]) for r in other] == [(r["input"], r["top1"], r["top2"]) for r in one]
        assert [r["p1"] for r in other] == pytest.approx([r["p1"] for r in one], abs=1e-6)


def test_a_dataset_gives_its_files_and_targets(image_run):
    """--data over the run's data: the fragment's params replace the run's; the val chain stays."""
    run_dir, root = image_run
    rows = torchtk.predict(run_dir, data=json.dumps({"params": {"root": str(root / "val")}}))
    files = torchtk.predict(run_dir, [root / "val"])
    assert [r["input"] for r in rows] == [r["input"] for r in files]
    assert [r["target"] for r in rows] == [name for name in CLASSES for _ in range(2)]
    assert [r["probability"] for r in rows] == pytest.approx([r["probability"] for r in files], abs=1e-6)


def test_tk_predict_writes_the_csv_and_says_where(tk, image_run, tmp_path):
    run_dir, root = image_run
    out = tmp_path / "out" / "labels.csv"
    result = tk("predict", run_dir, root / "val" / "dog", root / "val" / "cat" / "0.png", "--out", out, "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["input", "prediction", "probability", "top1", "p1", "top2", "p2"]
    assert [r["input"] for r in rows] == [str(root / "val" / "dog" / "0.png"), str(root / "val" / "dog" / "1.png"),
                                          str(root / "val" / "cat" / "0.png")]
    assert {r["prediction"] for r in rows} <= set(CLASSES)
    assert f"3 inputs predicted with best.pt on cpu, outputs read as softmax (loss[0] cross_entropy); wrote {out}" \
        in result.stdout
    as_json = tk("predict", run_dir, root / "val" / "cat" / "0.png", "--out", out, "--json").json()
    assert as_json["csv"] == str(out) and as_json["rows"][0]["input"] == str(root / "val" / "cat" / "0.png")
    assert float(rows[2]["probability"]) == pytest.approx(as_json["rows"][0]["probability"], abs=1e-5)


# -- segmentation: mask PNGs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """The shapes-dice example, shrunk: a U-Net of one level on 16x16 images, 2 epochs
    (val IoU about 0.45: masks with both classes)."""
    spec = json.loads((EXAMPLES_DIR / "shapes-dice.json").read_text())
    spec["model"]["params"].update(base_channels=8, depth=1)
    spec["data"].update(params={"n_samples": 64, "size": 16}, batch_size=16)
    spec["optimizer"]["params"]["lr"] = 0.01
    spec["trainer"].update(epochs=2, device="cpu", output_dir=str(tmp_path_factory.mktemp("shapes") / "runs"))
    return torchtk.train(spec, progress=False).run_dir


def masks_by_hand(run_dir, images):
    model = torchtk.load_run(run_dir).model()
    with torch.no_grad():
        return (model(images).sigmoid() >= 0.5)[:, 0].to(torch.uint8)


def test_segmentation_writes_mask_pngs_of_a_dataset(shapes_run, tmp_path):
    fragment = {"params": {"n_samples": 5, "size": 16, "seed": 7}}
    rows = torchtk.predict(shapes_run, data=fragment, out=tmp_path / "p.csv")
    images = torchtk.registry.create("dataset", "shapes", **fragment["params"]).tensors[0]
    expected = masks_by_hand(shapes_run, images)
    assert [r["input"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["mask"] for r in rows] == [str(tmp_path / "p-masks" / f"{i}.png") for i in range(5)]
    for row, mask in zip(rows, expected):
        image = Image.open(row["mask"])
        assert image.mode == "P" and image.size == (16, 16) and image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        assert torch.equal(torch.from_numpy(numpy.array(image)), mask)
    assert 0 < sum(int(m.sum()) for m in expected) < expected.numel()  # both classes occur: a real check
    with (tmp_path / "p.csv").open() as handle:
        assert [r["mask"] for r in csv.DictReader(handle)] == [r["mask"] for r in rows]


def test_segmentation_of_image_files_keeps_their_size_and_folders(shapes_run, tmp_path):
    images = torchtk.registry.create("dataset", "shapes", n_samples=2, size=16, seed=3).tensors[0]
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for i, image in enumerate(images):
        pixels = (image[0].clamp(0, 1) * 255).round().to(torch.uint8)
        Image.fromarray(pixels.numpy()).save(tmp_path / "in" / ("sub" if i else "") / f"s{i}.png")
    rows = torchtk.predict(shapes_run, [tmp_path / "in"], out=tmp_path / "p.csv", out_dir=tmp_path / "masks")
    assert [r["mask"] for r in rows] == [str(tmp_path / "masks" / "s0.png"), str(tmp_path / "masks" / "sub" / "s1.png")]
    read = torch.stack([to_float_image(Image.open(r["input"]).convert("L")) for r in rows])
    for row, mask in zip(rows, masks_by_hand(shapes_run, read)):
        assert Image.open(row["mask"]).size == (16, 16)
        assert torch.equal(torch.from_numpy(numpy.array(Image.open(row["mask"]))), mask)


def test_multiclass_and_multilabel_masks(tmp_path):
    logits = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    rows = OutputReader("softmax", "test", ["bg", "a", "b"], 1, MaskWriter(tmp_path)).rows(
        logits, ["x", "y"], ["x", "y"], None)
    for row, expected in zip(rows, logits.argmax(dim=1)):
        assert Image.open(row["mask"]).size == (5, 4)
        assert torch.equal(torch.from_numpy(numpy.array(Image.open(row["mask"]))).long(), expected)
    labels = OutputReader("sigmoid", "test", ["a", "b", "c"], 1, MaskWriter(None)).rows(logits, ["x", "y"],
                                                                                      ["x", "y"], None)
    assert torch.equal(labels[0]["mask"], (logits[0] >= 0).long())  # no folder: the tensors themselves
    many = OutputReader("softmax", "test", None, 1, MaskWriter(tmp_path / "many")).rows(
        torch.zeros(1, 300, 2, 2).index_fill_(1, torch.tensor([299]), 1.0), ["x"], ["x"], None)
    assert Image.open(many[0]["mask"]).mode.startswith("I") and numpy.array(
        Image.open(many[0]["mask"])).max() == 299
    assert voc_palette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]


# -- how outputs are read --------------------------------------------------------------------------


@pytest.mark.parametrize("loss, kind", [
    ("cross_entropy", "softmax"), ("bce_with_logits", "sigmoid"), ("nll", "log_softmax"), ("mse", "value"),
    ("bce", "probabilities"), ({"name": "focal"}, "sigmoid"),
    ({"name": "focal", "params": {"mode": "multiclass", "alpha": None}}, "softmax"),
    ({"name": "focal", "params": {"from_logits": False}}, "probabilities"),
    ({"name": "dice", "params": {"mode": "multiclass", "from_logits": False}}, "class_probabilities"),
    ([{"name": "l2_regularization"}, "soft_bce"], "sigmoid"), ("giou", "value"), ("hinge_embedding", None),
])
def test_the_loss_says_how_the_output_is_read(small_spec, loss, kind):
    spec = copy.deepcopy(small_spec)
    spec["loss"] = loss
    assert declared_kind(load_resolved(spec))[0] == kind


def test_one_logit_multilabel_and_the_shape_rule():
    reader = OutputReader("sigmoid", "test", None, 2, MaskWriter(None))
    rows = reader.rows(torch.tensor([[2.0], [-1.0]]), [0, 1], ["0", "1"], torch.tensor([[1.0], [0.0]]))
    p = torch.tensor([2.0, -1.0]).sigmoid().tolist()
    assert rows[0] == {"input": 0, "target": "1", "prediction": "1", "probability": pytest.approx(p[0]),
                       "top1": "1", "p1": pytest.approx(p[0]), "top2": "0", "p2": pytest.approx(1 - p[0])}
    assert rows[1]["prediction"] == "0" and rows[1]["probability"] == pytest.approx(1 - p[1])
    multilabel = OutputReader("sigmoid", "test", ["a", "b", "c"], 1, MaskWriter(None))
    rows = multilabel.rows(torch.tensor([[2.0, -1.0, 0.5], [-3.0, -2.0, -1.0]]), [0, 1], ["0", "1"], None)
    assert [r["prediction"] for r in rows] == ["a;c", ""]
    assert rows[0]["probability"] == pytest.approx(torch.tensor(2.0).sigmoid().item())
    undeclared = OutputReader(None, "shape", ["a", "b"], 1, MaskWriter(None))
    undeclared.rows(torch.zeros(1, 2), [0], ["0"], None)
    assert undeclared.kind == "softmax"


def test_regression_values_and_a_run_whose_data_are_not_images(small_spec, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec.update(loss="mse", scheduler=[], metrics=[], callbacks=[])
    spec["trainer"]["epochs"] = 1
    run_dir = torchtk.train(spec, progress=False).run_dir
    rows = torchtk.predict(run_dir, data="{}", batch_size=64)
    points, targets = torchtk.registry.create("dataset", "rings", **spec["data"]["params"]).tensors
    with torch.no_grad():
        values = torchtk.load_run(run_dir).model()(points)[:, 0]
    assert len(rows) == len(points) == 800 and set(rows[0]) == {"input", "target", "value"}
    assert [r["value"] for r in rows] == pytest.approx(values.tolist(), abs=1e-6)
    assert [r["target"] for r in rows] == targets[:, 0].tolist()
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    with pytest.raises(UserInputError, match=r"dataset 'rings' does not read image files .* --data"):
        torchtk.predict(run_dir, [tmp_path / "x.png"])


def test_the_runs_precision_applies(small_spec):
    spec = copy.deepcopy(small_spec)
    spec.update(precision="bf16")
    spec["trainer"]["epochs"] = 1
    run_dir = torchtk.train(spec, progress=False).run_dir
    rows = torchtk.predict(run_dir, data="{}")
    points = torchtk.registry.create("dataset", "rings", **spec["data"]["params"]).tensors[0]
    model = torchtk.load_run(run_dir).model()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        p = model(points).float().sigmoid()[:, 0]
    assert [r["probability"] for r in rows] == pytest.approx(torch.where(p >= 0.5, p, 1 - p).tolist(), abs=1e-6)
    with torch.no_grad():
        fp32 = model(points).sigmoid()[:, 0]
    assert not torch.allclose(p, fp32, atol=1e-5)  # bf16 does change the numbers: the check means something


def test_folders_are_scanned_recursively_in_order(tmp_path):
    for name in ("b/2.png", "b/10.PNG", "a.jpg", ".hidden/x.png", "c/.x.png", "c/d/e.bmp", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = input_files([tmp_path], (".png", ".jpg", ".bmp"))
    assert [stem for _, stem in found] == ["a", "b/10", "b/2", "c/d/e"]
    assert found[0][0] == str(tmp_path / "a.jpg")


# -- bad input --------------------------------------------------------------------------------------


def one_clear_error(result, *words):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_bad_inputs_are_one_clear_message(tk, image_run, tmp_path):
    run_dir, root = image_run
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "p.csv"
    one_clear_error(tk("predict", tmp_path, root / "val", "--out", out), "is not a run directory")
    one_clear_error(tk("predict", run_dir, tmp_path / "missing.png", "--out", out), "missing.png: no such file")
    one_clear_error(tk("predict", run_dir, tmp_path / "notes.txt", "--out", out), "notes.txt: cannot read this image")
    one_clear_error(tk("predict", run_dir, tmp_path / "broken.png", "--num-workers", "1", "--out", out),
                    "broken.png: cannot read this image")
    one_clear_error(tk("predict", run_dir, tmp_path / "empty", "--out", out), "empty: no images")
    one_clear_error(tk("predict", run_dir, "--out", out), "nothing to predict")
    one_clear_error(tk("predict", run_dir, root / "val", "--data", "{}", "--out", out), "not both")
    one_clear_error(tk("predict", run_dir, "--data", "{oops", "--out", out), "--data: not valid JSON")
    one_clear_error(tk("predict", run_dir, "--data", '{"params": {"rooot": "x"}}', "--out", out),
                    "--data: data.params.rooot: unknown key 'rooot'")
    one_clear_error(tk("predict", run_dir, root / "val", "--checkpoint", "nope.pt", "--out", out),
                    "--checkpoint nope.pt: no such file")
    assert not out.exists()  # nothing half-written


def test_a_run_whose_data_are_not_images_says_to_use_data(tk, small_spec, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["trainer"]["epochs"] = 1
    run_dir = torchtk.train(spec, progress=False).run_dir
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    one_clear_error(tk("predict", run_dir, tmp_path / "x.png", "--out", tmp_path / "p.csv"),
                    "does not read image files", "--data")
