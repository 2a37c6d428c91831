"""Relative paths in a spec (torchtk.core.spec.paths): params marked ``PathParam`` are
resolved against the spec file's folder, ``--set`` values and Python dicts against the
current directory; spec.json keeps absolute paths, and a resume compares paths by the
file they name."""

from __future__ import annotations

import json
import os
import shutil
import types
from pathlib import Path
from typing import Optional

import pytest
from PIL import Image
from pydantic import BaseModel, Field

import torchtk
from torchtk import Component, InputPath, Params, hookimpl
from torchtk.core.spec import load_resolved, load_spec, path_settings, same_path, spec_differences
from torchtk.testing import registry_with


def write_images(folder: Path, classes=("a", "b"), per_class=4) -> Path:
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (16, 16), (60 * c + 10 * i, 20, 200 - 60 * c)).save(folder / name / f"{i}.png")
    return folder


def image_spec(train="data/train", val="data/val", weights=None):
    model = {"name": "simple_cnn", "params": {"in_channels": 3, "num_classes": 2}}
    if weights is not None:
        model["params"]["weights"] = weights
    return {"name": "paths", "seed": 0, "model": model,
            "data": {"name": "image_folder", "params": {"train": train, "val": val}, "batch_size": 4},
            "loss": "cross_entropy", "optimizer": {"name": "sgd", "params": {"lr": 0.1}},
            "trainer": {"epochs": 1, "device": "cpu"}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A spec in project/specs/ naming data/ next to it, and the working directory elsewhere."""
    specs = tmp_path / "project" / "specs"
    write_images(specs / "data" / "train")
    write_images(specs / "data" / "val", per_class=2)
    path = specs / "run.json"
    path.write_text(json.dumps(image_spec()))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return path


def test_paths_in_a_spec_file_are_relative_to_its_folder(project):
    params = load_spec(str(project)).data.params
    assert params["train"] == str(project.parent / "data" / "train")
    assert params["val"] == str(project.parent / "data" / "val")


def test_a_relative_spec_path_gives_an_absolute_folder(project, monkeypatch):
    monkeypatch.chdir(project.parent.parent)
    params = load_spec("specs/run.json").data.params
    assert params["train"] == str(project.parent / "data" / "train") and os.path.isabs(params["train"])


def test_a_set_value_is_relative_to_the_current_directory(project):
    cwd = Path.cwd()
    params = load_spec(str(project), overrides=["data.params.val=mine/val"]).data.params
    assert params["val"] == str(cwd / "mine" / "val")
    assert params["train"] == str(project.parent / "data" / "train")  # the file's own value: its folder
    whole = 'data={"name": "image_folder", "params": {"root": "all"}}'  # a --set above the path counts too
    assert load_spec(str(project), overrides=[whole]).data.params["root"] == str(cwd / "all")


def test_a_dict_spec_is_relative_to_the_current_directory(project):
    spec = load_spec(image_spec())
    assert spec.data.params["train"] == str(Path.cwd() / "data" / "train")
    assert load_spec(torchtk.load_spec(image_spec())).data.params["train"] == str(Path.cwd() / "data" / "train")


def test_absolute_home_and_name_values_are_kept(project):
    absolute = str(project.parent / "data" / "train")
    spec = load_spec(image_spec(train=absolute, val="~/val", weights="DEFAULT"))
    assert spec.data.params["train"] == absolute and spec.data.params["val"] == "~/val"
    assert spec.model.params["weights"] == "DEFAULT"  # a weights name, not a file
    assert load_spec(image_spec(weights="./DEFAULT")).model.params["weights"] == str(Path.cwd() / "DEFAULT")
    assert load_spec(image_spec(weights="w/best.pt")).model.params["weights"] == str(Path.cwd() / "w" / "best.pt")


def test_tk_validate_shows_the_absolute_paths(project, tk):
    result = tk("validate", project)
    assert result.exit_code == 0, result.stderr
    assert result.json()["data"]["params"]["train"] == str(project.parent / "data" / "train")


def test_a_missing_folder_is_named_by_its_resolved_path(project):
    project.write_text(json.dumps(image_spec(train="data/trian")))
    with pytest.raises(torchtk.TorchtkError, match=str(project.parent / "data" / "trian")):
        torchtk.train(str(project))


def test_a_run_trains_on_the_files_next_to_its_spec_and_its_spec_json_resumes_from_anywhere(project, tmp_path, tk,
                                                                                            monkeypatch):
    result = tk("train", project, "--json")
    assert result.exit_code == 0, result.stderr
    run_dir = Path.cwd() / result.json()["run_dir"]
    saved = json.loads((run_dir / "spec.json").read_text())
    assert saved["data"]["params"]["train"] == str(project.parent / "data" / "train")
    monkeypatch.chdir(tmp_path)  # somewhere else again: spec.json's absolute paths name the same files
    resumed = tk("train", run_dir / "spec.json", "--resume", run_dir, "--set", "trainer.epochs=2", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.json()["epochs_run"] == 2
    again = tk("train", project, "--resume", run_dir, "--set", "trainer.epochs=3", "--json")  # the original spec too
    assert again.exit_code == 0, again.stderr


def test_a_checkpoint_with_a_relative_path_resumes_with_the_same_folder_given_absolute(project, tk):
    """A fingerprint written with a relative path (torchtk before paths were resolved, or
    another spelling of the same folder) is no difference when it names the same folder."""
    import torch

    shutil.copytree(project.parent / "data", Path.cwd() / "data")
    result = torchtk.train(image_spec())  # a dict: relative to the cwd
    last = result.run_dir / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    assert payload["spec"]["data"]["params"]["train"] == str(Path.cwd() / "data" / "train")
    payload["spec"]["data"]["params"]["train"] = "data/train"  # as an older checkpoint recorded it
    payload["spec"]["data"]["params"]["val"] = "./data//val/"
    torch.save(payload, last)
    spec = image_spec(train=str(Path.cwd() / "data" / "train"))
    spec["trainer"]["epochs"] = 2
    assert len(torchtk.train(spec, resume=result.run_dir).history) == 2
    spec["data"]["params"]["train"] = str(project.parent / "data" / "train")  # another folder: a difference
    spec["trainer"]["epochs"] = 3
    with pytest.raises(torchtk.TorchtkError, match=r"differs .* at data\.params\.train;") as raised:
        torchtk.train(spec, resume=result.run_dir)
    read = Path.cwd() / "data" / "train"  # what the resumed epoch's last.pt recorded: the absolute path
    assert str(raised.value).endswith(f"(the run read data.params.train from {read})")  # a moved folder shows


def test_a_symlinked_folder_is_the_same_path(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert same_path(str(tmp_path / "link"), str(tmp_path / "real" / "."))
    assert not same_path(str(tmp_path / "real"), str(tmp_path / "other"))
    assert spec_differences({"a": {"p": "x/../real"}}, {"a": {"p": "real"}}, paths=frozenset({"a.p"})) == []
    assert spec_differences({"a": {"p": "x/../real"}}, {"a": {"p": "real"}}) == ["a.p"]  # not a path setting


# -- a plugin's own path params ---------------------------------------------------------------


class Inner(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    file: InputPath = Field(description="A file inside a nested model.")
    label: str = Field("x", description="Not a path.")


class ReaderParams(Params):
    """A dataset reading files a plugin names."""

    files: list[InputPath] = Field(default_factory=list, description="Files to read.")
    maybe: Optional[InputPath] = Field(None, description="An optional folder.")
    inner: Optional[Inner] = Field(None, description="Nested settings.")
    stages: list[Inner] = Field(default_factory=list, description="A list of nested settings.")
    title: str = Field("t", description="Not a path.")


def reader_plugin():
    plugin = types.ModuleType("reader_plugin")

    @hookimpl
    def register_components(register):
        register(Component("dataset", "reader", "Reads files.", params=ReaderParams))

    plugin.register_components = register_components
    return plugin


def test_a_plugin_marks_its_own_path_params_also_in_lists_and_nested_models(tmp_path, monkeypatch):
    registry = registry_with(reader_plugin())
    spec = image_spec()
    spec["data"] = {"name": "reader", "params": {"files": ["a.csv", "/abs/b.csv"], "maybe": "m", "title": "t/x",
                                                 "inner": {"file": "i.txt", "label": "l/y"},
                                                 "stages": [{"file": "s0"}, {"file": "s1"}]}}
    path = tmp_path / "specs" / "s.json"
    path.parent.mkdir()
    path.write_text(json.dumps(spec))
    monkeypatch.chdir(tmp_path)
    resolved = load_resolved(str(path), overrides=["data.params.stages[1].file=typed"], registry=registry)
    params, folder = resolved.spec.data.params, path.parent
    assert params["files"] == [str(folder / "a.csv"), "/abs/b.csv"] and params["maybe"] == str(folder / "m")
    assert params["inner"] == {"file": str(folder / "i.txt"), "label": "l/y"} and params["title"] == "t/x"
    assert [s["file"] for s in params["stages"]] == [str(folder / "s0"), str(tmp_path / "typed")]
    assert resolved.entry("data").params.inner.file == str(folder / "i.txt")  # the validated model agrees
    assert {p for p in path_settings(resolved) if p.startswith("data.")} == {
        "data.params.files[0]", "data.params.files[1]", "data.params.maybe", "data.params.inner.file",
        "data.params.stages[0].file", "data.params.stages[1].file"}


def test_path_params_are_strings_of_format_path_in_the_schema():
    from torchtk.core.spec import run_spec_schema

    text = json.dumps(run_spec_schema())
    assert '"format": "path"' in text
    assert ReaderParams.model_json_schema()["properties"]["maybe"]["anyOf"][0] == {"format": "path", "type": "string"}
