"""tk evaluate / torchtk.evaluate: a run's checkpoint scored on its own validation split
(exactly what the run logged), on another split, or on other data, and written down."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from PIL import Image

import torchtk
from torchtk.core import evaluation
from torchtk.core.errors import UserInputError

CLASSES = ("cat", "dog", "owl")
COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "owl": (40, 40, 200)}


def val_values(row):
    """A history row's ``val_*`` values, named as evaluation names them."""
    return {key[len("val_"):]: value for key, value in row.items() if key.startswith("val_")}


def write_images(folder, per_class, classes=CLASSES, offset=0):
    """``per_class`` 16x16 PNGs per class: the class's colour, a little different in each."""
    for name in classes:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            base = COLOURS[name]
            colour = tuple(min(255, c + 9 * ((i + offset) % 5)) for c in base)
            image = Image.new("RGB", (16, 16), colour)
            image.putpixel(((i * 3) % 16, (i * 7) % 16), (255, 255, 255))
            image.save(folder / name / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def rings_run(tmp_path_factory):
    """The small rings spec, its best epoch not its last (val_loss monitored for a maximum)."""
    from tests.conftest import SMALL_RINGS

    spec = copy.deepcopy(SMALL_RINGS)
    spec["trainer"].update(output_dir=str(tmp_path_factory.mktemp("rings") / "runs"), mode="max")
    return torchtk.train(spec, progress=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_images(root / "train", 6)
    write_images(root / "val", 3, offset=2)
    write_images(root / "test", 4, offset=1)
    write_images(root / "test-two-classes", 2, classes=("cat", "owl"))
    return root


@pytest.fixture(scope="module")
def image_run(images):
    spec = {
        "name": "shapes", "seed": 0,
        "model": {"name": "simple_cnn", "params": {"in_channels": 3, "num_classes": 3}},
        "data": {"name": "image_folder", "batch_size": 4,
                 "params": {"train": str(images / "train"), "val": str(images / "val")},
                 "transforms": {"train": [{"name": "random_horizontal_flip"}]}},
        "loss": "cross_entropy",
        "optimizer": {"name": "adam", "params": {"lr": 0.001}},
        "metrics": ["accuracy",
                    {"name": "f1", "params": {"task": "multiclass", "num_classes": 3, "average": "none"}},
                    {"name": "confusion_matrix", "params": {"task": "multiclass", "num_classes": 3}}],
        "trainer": {"epochs": 2, "device": "cpu", "output_dir": str(images / "runs")},
    }
    return torchtk.train(spec, progress=False)


# -- the run's own validation split ------------------------------------------------------


def test_best_checkpoint_gives_back_the_best_epochs_values_exactly(rings_run):
    result = torchtk.evaluate(rings_run.run_dir)
    assert result.values == val_values(rings_run.best)  # every term of the loss, the metric: bit for bit
    assert result.epoch == rings_run.best["epoch"] and result.split == "val" and result.own_data
    assert result.samples == 200 and result.checkpoint == rings_run.best_checkpoint.resolve()


def test_last_checkpoint_gives_back_the_last_epochs_values(rings_run):
    assert rings_run.best["epoch"] != rings_run.last["epoch"]  # the fixture monitors val_loss for a maximum
    result = torchtk.evaluate(rings_run.run_dir, checkpoint="last")
    assert result.values == val_values(rings_run.last) and result.epoch == rings_run.last["epoch"]
    assert result.values != val_values(rings_run.best)


def test_the_image_runs_val_split_with_per_class_columns_by_class_name(image_run):
    result = torchtk.evaluate(image_run.run_dir)
    assert result.values == val_values(image_run.best)
    assert result.per_class == {"f1": list(CLASSES)} and result.classes == list(CLASSES)
    assert {f"f1/{name}" for name in CLASSES} <= set(result.values) and "f1/cat" not in result.scalars
    assert result.samples == 9 and result.batches == 3


# -- other splits and other data -----------------------------------------------------------


def test_train_and_all_splits_are_scored_whole_with_the_validation_transforms(rings_run):
    val = torchtk.evaluate(rings_run.run_dir)
    train = torchtk.evaluate(rings_run.run_dir, split="train")
    whole = torchtk.evaluate(rings_run.run_dir, split="all")
    assert (train.samples, whole.samples) == (600, 800) and (train.split, whole.split) == ("train", "all")
    expected = (train.values["loss"] * 600 + val.values["loss"] * 200) / 800
    assert whole.values["loss"] == pytest.approx(expected, rel=1e-12)
    assert whole.values["accuracy"] == pytest.approx((train.values["accuracy"] * 600 + val.values["accuracy"] * 200)
                                                     / 800, abs=1e-12)


def test_the_training_split_gets_the_validation_transforms(small_spec):
    """Noise strong enough to spoil the rings is a training augmentation only: not evaluated."""
    small_spec["data"]["transforms"] = {"train": [{"name": "gaussian_noise", "params": {"sigma": 4.0, "clip": False}}]}
    small_spec["trainer"]["epochs"] = 1
    run = torchtk.train(small_spec, progress=False)
    result = torchtk.evaluate(run.run_dir, split="train")
    saved = torchtk.load_run(run.run_dir)
    from torchtk.core.data import split

    dataset = torchtk.registry.create("dataset", "rings", **small_spec["data"]["params"])
    train, _ = split(dataset, saved.spec)
    inputs, targets = (torch.stack([train[i][k] for i in range(len(train))]) for k in (0, 1))
    with torch.no_grad():
        correct = ((saved.model("best")(inputs) > 0).float() == targets).double().mean().item()
    assert result.samples == len(train) == 600 and result.values["accuracy"] == correct


def reference_scores(run_dir, folder):
    """What a careful user writes by hand: ImageFolder, the best weights, argmax and cross entropy."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    dataset = ImageFolder(str(folder), transform=v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))
    model = torchtk.load_run(run_dir).model("best")
    inputs = torch.stack([dataset[i][0].as_subclass(torch.Tensor) for i in range(len(dataset))])
    targets = torch.tensor(dataset.targets)
    with torch.no_grad():
        logits = model(inputs)
    accuracy = (logits.argmax(1) == targets).double().mean().item()
    return accuracy, torch.nn.functional.cross_entropy(logits, targets).item(), len(dataset)


def test_another_folder_as_a_test_set_uses_all_of_it(image_run, images):
    test = {"name": "image_folder", "params": {"root": str(images / "test")}}
    result = torchtk.evaluate(image_run.run_dir, data=test)
    accuracy, loss, size = reference_scores(image_run.run_dir, images / "test")
    assert result.samples == size == 12 and result.split == "all" and not result.own_data
    assert result.values["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result.values["loss"] == pytest.approx(loss, rel=1e-5)
    assert result.data == f"all of image_folder(root={images / 'test'})"
    assert result.data_spec["transforms"]["train"] == [{"name": "random_horizontal_flip", "params": {"p": 0.5}}]
    # the same folder as the val part of the run's own train/val folders: the same samples
    as_val = torchtk.evaluate(image_run.run_dir, overrides=[f"data.params.val={images / 'test'}"])
    assert as_val.split == "val" and as_val.samples == 12
    assert as_val.values["accuracy"] == result.values["accuracy"]
    assert as_val.values["loss"] == pytest.approx(result.values["loss"], rel=1e-6)  # float32 batches of other samples


def test_a_data_fragment_with_its_own_val_part_scores_that_part(image_run, images, tmp_path):
    fragment = tmp_path / "test-data.yaml"
    fragment.write_text(f"params:\n  train: {images / 'train'}\n  val: {images / 'test'}\nbatch_size: 5\n")
    result = torchtk.evaluate(image_run.run_dir, data=str(fragment))
    assert result.split == "val" and result.samples == 12 and result.batches == 3  # its batch_size, the run's name
    assert result.data_spec["name"] == "image_folder" and result.data_spec["batch_size"] == 5
    assert result.values["accuracy"] == pytest.approx(reference_scores(image_run.run_dir, images / "test")[0])


def test_dev_run_limits_apply_to_the_runs_own_split_only(small_spec):
    small_spec["trainer"]["limit_val_batches"] = 2
    run = torchtk.train(small_spec, progress=False)
    own = torchtk.evaluate(run.run_dir)
    assert own.values == val_values(run.best) and own.samples == 100
    assert own.limits == {"trainer.limit_val_batches": 2}
    other = torchtk.evaluate(run.run_dir, overrides=["data.params.noise=0.5"])
    assert other.samples == 200 and other.limits == {} and not other.own_data
    cut = torchtk.evaluate(run.run_dir, overrides=["data.params.noise=0.5", "trainer.limit_val_batches=1"])
    assert cut.samples == 50  # given here, the switch applies again


def test_other_metrics_replace_the_specs(rings_run):
    from torchmetrics.functional.classification import binary_auroc, binary_f1_score

    result = torchtk.evaluate(rings_run.run_dir, metrics=["f1", {"name": "auroc"}])
    parts = torchtk.load_run(rings_run.run_dir).parts("best")
    with torch.no_grad():
        pairs = [(parts.model(x).squeeze(1), y.squeeze(1)) for x, y in parts.val]
    logits, targets = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]).long()
    assert set(result.values) == {"loss", "loss/focal", "loss/l2_regularization", "f1", "auroc"}
    assert result.values["f1"] == pytest.approx(binary_f1_score(logits.sigmoid(), targets).item(), abs=1e-6)
    assert result.values["auroc"] == pytest.approx(binary_auroc(logits.sigmoid(), targets).item(), abs=1e-6)
    assert result.values["loss"] == val_values(rings_run.best)["loss"]
    assert result.metrics == ["f1", "auroc"]


# -- what is written ------------------------------------------------------------------------


def test_the_eval_file_says_what_was_evaluated_and_is_never_overwritten(rings_run, monkeypatch):
    monkeypatch.setattr(evaluation.time, "strftime", lambda fmt, *args: "20261201-120000" if "%Y%m%d" in fmt
                        else "2026-12-01T12:00:00")
    first = torchtk.evaluate(rings_run.run_dir)
    second = torchtk.evaluate(rings_run.run_dir, checkpoint="last", split="train")
    assert first.path.name == "eval-20261201-120000.json" and second.path.name == "eval-20261201-120000-2.json"
    saved = json.loads(first.path.read_text())
    assert saved == first.to_json()  # the second evaluation left the first file alone
    assert saved["checkpoint"] == {"path": str(rings_run.best_checkpoint.resolve()), "epoch": rings_run.best["epoch"]}
    assert saved["values"] == val_values(rings_run.best) and saved["time"] == "2026-12-01T12:00:00"
    assert saved["data"]["split"] == "val" and saved["data"]["samples"] == 200 and saved["data"]["own"] is True
    assert saved["data"]["description"] == "the run's validation split"
    assert saved["data"]["spec"]["name"] == "rings" and saved["data"]["spec"]["val_split"] == 0.25
    assert saved["device"] == "cpu" and saved["precision"] == "fp32" and saved["metrics"] == ["accuracy"]
    later = json.loads(second.path.read_text())
    assert later["checkpoint"]["epoch"] == rings_run.last["epoch"] and later["data"]["samples"] == 600


def test_the_confusion_matrix_of_an_evaluation_is_its_own_file(image_run, images, monkeypatch):
    from matplotlib.figure import Figure

    titles, suptitle = [], Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, **kw: titles.append(text) or suptitle(self, text, **kw))
    trained = (image_run.run_dir / "confusion_matrix.json").read_bytes()
    result = torchtk.evaluate(image_run.run_dir, data={"params": {"root": str(images / "test")}})
    expected = f"confusion matrix, best.pt (epoch {result.epoch}) on all of image_folder(root={images / 'test'})"
    assert titles == [expected]
    stem = result.path.name[: -len(".json")]
    assert [p.name for p in result.files] == [f"{stem}-confusion_matrix.json", f"{stem}-confusion_matrix.png"]
    assert all(p.parent == image_run.run_dir and p.stat().st_size > 0 for p in result.files)
    matrix = json.loads(result.files[0].read_text())
    assert matrix["labels"] == list(CLASSES) and sum(map(sum, matrix["matrix"])) == 12
    assert matrix["title"] == f"best.pt (epoch {result.epoch}) on {result.data}"
    assert json.loads(result.path.read_text())["files"] == [p.name for p in result.files]
    assert (image_run.run_dir / "confusion_matrix.json").read_bytes() == trained  # the run's own file is kept
    assert not list(image_run.run_dir.glob(".eval-*"))  # no temporary folder left behind


# -- the command line -----------------------------------------------------------------------


def test_tk_evaluate_prints_the_values_and_the_per_class_table(tk, image_run):
    result = tk("evaluate", image_run.run_dir)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{image_run.run_dir.name}: best.pt (epoch {image_run.best['epoch']}) on the run's "
                               "validation split, 9 samples")
    accuracy = image_run.best["val_accuracy"]
    assert any(line.split() == ["accuracy", f"{accuracy:.4f}"] for line in lines)
    assert any(line.split() == ["class", "f1"] for line in lines)
    for name in CLASSES:
        assert any(line.split() == [name, f"{image_run.best[f'val_f1/{name}']:.4f}"] for line in lines)
    assert lines[-1].startswith(f"wrote {image_run.run_dir}/eval-") and lines[-1].endswith("-confusion_matrix.png")


def test_tk_evaluate_json(tk, rings_run):
    result = tk("evaluate", rings_run.run_dir, "--checkpoint", "last", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["values"] == val_values(rings_run.last) and json.loads(open(data["path"]).read())["values"] == data[
        "values"]


def test_a_checkpoint_of_another_spec_is_refused(tk, rings_run, small_spec, tmp_path):
    small_spec["model"]["params"]["hidden"] = [8]
    small_spec["trainer"]["epochs"] = 1
    foreign = torchtk.train(small_spec, progress=False).best_checkpoint
    result = tk("evaluate", rings_run.run_dir, "--checkpoint", foreign)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: --checkpoint {foreign}: {foreign} was written by a run of another spec")
    assert "differs at model.params.hidden" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--data", '{"name": "image_folder", "params": {'],
     "error: --data: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 37)"),
    (["--data", "[1, 2]"], "error: --data [1, 2]: neither a JSON object nor an existing JSON/YAML file"),
    (["--data", '{"params": {"n_positive": -5}}'],
     "error: --data: data.params.n_positive: Input should be greater than or equal to 1 (got -5)"),
    (["--data", '{"name": "rngs"}'], "error: --data: data.name: unknown dataset 'rngs'. Did you mean 'rings'?"),
    (["--data", '{"batch_sise": 5}'], "error: --data: data.batch_sise: "),
    (["--checkpoint", "nope.pt"], "error: --checkpoint nope.pt: no such file; give best, last or a checkpoint file"),
    (["--split", "test"], "error: --split test: choose val, train, all"),
    (["--metric", "acuracy"], "error: --metric: metrics[0].name: unknown metric 'acuracy'. Did you mean 'accuracy'"),
    (["--metric", '{"name": "f1", "params": {"task": "multiclass", "num_classes": 3}}'],
     "error: --metric: metrics[0] (f1): "),
    (["--device", "gpu"], "error: --device gpu: give auto, cpu, cuda, cuda:N or mps"),
])
def test_bad_input_is_one_clear_message(tk, rings_run, args, message):
    result = tk("evaluate", rings_run.run_dir, *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_data_file_that_is_not_an_object(tk, rings_run, tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[1, 2]")
    result = tk("evaluate", rings_run.run_dir, "--data", path)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: --data: {path}: a data spec must be")


def test_not_a_run_directory(tk, tmp_path):
    result = tk("evaluate", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path}: is not a run directory (no spec.json in it)")
    assert tk("evaluate", tmp_path / "nowhere").stderr.startswith(f"error: {tmp_path / 'nowhere'}: does not exist")


def test_data_whose_classes_are_not_the_runs_is_refused(tk, image_run, images):
    folder = images / "test-two-classes"
    result = tk("evaluate", image_run.run_dir, "--data", json.dumps({"params": {"root": str(folder)}}))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --data: the dataset's classes (cat, owl) are not the run's (cat, dog, owl)")
    with pytest.raises(UserInputError, match=r"--data: data: building dataset 'image_folder' failed: .*does not exist"):
        torchtk.evaluate(image_run.run_dir, data={"params": {"root": str(images / "nowhere")}})


def test_a_run_without_a_validation_split(tk, small_spec):
    small_spec["data"]["val_split"] = 0
    small_spec["trainer"].update(epochs=1, monitor="train_loss")
    run = torchtk.train(small_spec, progress=False)
    result = tk("evaluate", run.run_dir, "--checkpoint", "last")
    assert result.exit_code == 2 and "--split val: this run has no validation split" in result.stderr
    assert torchtk.evaluate(run.run_dir, checkpoint="last", split="all").samples == 800


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_run_trained_on_a_device_this_machine_lacks(tk, small_spec):
    small_spec["trainer"]["epochs"] = 1
    run = torchtk.train(small_spec, progress=False)
    spec = json.loads((run.run_dir / "spec.json").read_text())
    spec["trainer"]["device"] = "cuda"  # as if trained on a GPU machine
    (run.run_dir / "spec.json").write_text(json.dumps(spec))
    result = tk("evaluate", run.run_dir)
    assert result.exit_code == 2 and "CUDA is not available here" in result.stderr
    assert "--device chooses another" in result.stderr
    assert torchtk.evaluate(run.run_dir, device="cpu").values == val_values(run.best)
