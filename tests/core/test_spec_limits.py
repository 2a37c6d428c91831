"""Hostile input found by a tester (issue 13), one regression test each: every one is an
input error (exit 2) naming where the problem is, bounded in time, memory and message
size (``torchtk.core.spec.limits``, ``loading``, ``overrides``, ``errors.shorten``).
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time

import pytest

import torchtk
from torchtk.core.errors import ParamsError, SpecError, UserInputError
from torchtk.core.spec.limits import MAX_DEPTH, MAX_YAML_NODES, data_problems
from torchtk.core.spec.problems import echo

ALIAS_BOMB = "".join([  # the tester's shape (theirs was 494 bytes): 9 ** 9 = 387,420,489 strings
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
    *(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
])


def tk_subprocess(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float, float]:
    """``tk ARGS`` in a fresh interpreter: the result, its wall time and its peak RSS in MB."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", "import sys; from torchtk.core.cli import main; main(sys.argv[1:])",
                             *args], capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far, an upper bound
    return result, seconds, peak


def error_of(tk, *args: str) -> str:
    result = tk(*args)
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:])
    assert result.stderr.startswith("error: ") and "--debug" not in result.stderr
    return result.stderr


# -- YAML aliases -----------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_while_composing_in_bounded_time_and_memory(tmp_path):
    """It ran 300 s at 5.8 GB, ignoring SIGTERM, and its message then held the expansion."""
    assert len(ALIAS_BOMB.encode()) < 500
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    result, seconds, _ = tk_subprocess("validate", str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: {path}:") and f"more than {MAX_YAML_NODES:,} values" in result.stderr
    assert len(result.stderr) < 500 and seconds < 60
    start = time.perf_counter()
    with pytest.raises(UserInputError, match="alias bomb"):
        torchtk.load_spec(path)
    assert time.perf_counter() - start < 5


def test_the_alias_bomb_stays_small_in_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(UserInputError):
            torchtk.load_spec(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_aliases_within_the_bound_still_work(spec_file):
    text = """
name: shared
model: {name: mlp, params: {in_features: 2, hidden: [16], out_features: 1}}
data: {name: rings, params: {n_positive: 50, n_negative: 150}}
loss:
  - {name: focal, params: &focal {alpha: 0.75, gamma: 2.0}}
  - {name: focal, params: *focal, weight: 0.5}
trainer: {epochs: 1, device: cpu}
"""
    spec = torchtk.load_spec(spec_file(name="spec.yaml", text=text))
    assert spec.loss[1].params == spec.loss[0].params and spec.loss[1].params["gamma"] == 2.0


@pytest.mark.parametrize("text,expected", [
    ("a: &x [*x]\n", "1:8: malformed YAML: the alias *x is used inside its own anchor"),
    ("&a [*a]\n", "1:5: malformed YAML: the alias *a is used inside its own anchor"),
    ("? [a, b]\n: 1\nname: x\n", "1:3: malformed YAML: a key must be a string, not a list or mapping"),
    ('name: "a\x07b"\n', "1:9: malformed YAML: the character '\\x07' is not allowed"),
    ("seed: \x01\n", "1:7: malformed YAML: the character '\\x01' is not allowed"),
    ("x: " + "[" * 50 + "]" * 50 + "\n", f"1:{3 + MAX_DEPTH}: malformed YAML: nested deeper than {MAX_DEPTH} levels"),
    ("seed: " + "1" * 5000 + "\n", "1:7: malformed YAML: the integer 11111111111111111111... (5,000 characters) has "
                                   "too many digits"),
])
def test_hostile_yaml_is_an_input_error_at_its_line_and_column(tk, spec_file, text, expected):
    path = spec_file(name="spec.yaml", text=text)
    assert error_of(tk, "validate", path).startswith(f"error: {path}:{expected}")


# -- nesting, control characters, names -------------------------------------------------------


def test_deep_json_nesting_is_an_input_error_not_a_recursion_error(tk, spec_file, small_spec):
    path = spec_file(text="[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in error_of(tk, "validate", path)
    small_spec["model"]["params"]["hidden"] = json.loads("[" * 40 + "]" * 40)
    message = error_of(tk, "validate", spec_file(small_spec))
    assert f"model.params.hidden{'[0]' * (MAX_DEPTH - 3)}: nested deeper than {MAX_DEPTH} levels" in message


def test_schedulers_nested_400_deep_are_an_input_error(tk, spec_file, small_spec):
    scheduler = {"name": "step", "params": {"step_size": 1}}
    for _ in range(400):
        scheduler = {"name": "warmup", "params": {"then": scheduler}}
    small_spec["scheduler"] = scheduler
    text = json.dumps(small_spec) if sys.getrecursionlimit() > 5000 else None
    if text is None:
        sys.setrecursionlimit(10_000)
        try:
            text = json.dumps(small_spec)
        finally:
            sys.setrecursionlimit(1000)
    assert "nested too deeply" in error_of(tk, "validate", spec_file(text=text))


def test_a_deep_dict_from_python_and_a_cyclic_one_are_spec_errors(small_spec):
    small_spec["model"]["params"]["hidden"] = cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH} levels"):
        torchtk.load_spec(small_spec)


def test_a_5000_character_spec_path_is_an_input_error(tk):
    message = error_of(tk, "validate", "a" * 5000)
    # the name is cut in the middle (loading._shown) and the reason is the file system's
    assert "cannot open the spec file: File name too long" in message and "(5000 characters)" in message
    assert len(message) < 500


def test_a_relative_import_path_is_refused_by_the_pattern(tk, spec_file, small_spec):
    small_spec["model"] = {"import": ".:x"}
    assert "model.import: String should match pattern" in error_of(tk, "validate", spec_file(small_spec))


@pytest.mark.parametrize("device,expected", [
    ("cuda:99999999999999999999999", "trainer.device: a CUDA device index is at most 127"),
    ("cuda:" + "9" * 5000, "trainer.device: String should match pattern"),
    ("cuda:128", "trainer.device: a CUDA device index is at most 127"),
])
def test_an_impossible_cuda_index_is_an_input_error(tk, spec_file, small_spec, device, expected):
    small_spec["trainer"]["device"] = device
    assert expected in error_of(tk, "validate", spec_file(small_spec))


@pytest.mark.parametrize("text,expected", [
    ("min(1)", "min() takes at least 2 arguments"), ("exp(1, 2)", "exp() takes 1 argument"),
    ("(-1) ** 0.5", "outside its domain"), ("0x" + "f" * 260, "beyond the range of a float"),
    ("floor(9)**floor(9)**floor(9)", "overflows"),
])
def test_lr_lambda_problems_exit_2_at_the_spec_path(tk, spec_file, small_spec, text, expected):
    small_spec["scheduler"] = {"name": "lambda", "params": {"lr_lambda": text}}
    message = error_of(tk, "validate", spec_file(small_spec))
    assert "scheduler[0].params.lr_lambda: " in message and expected in message


# -- non-finite numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("name,text,path", [
    ("spec.json", '"lr": 1e999', "optimizer.params.lr"),
    ("spec.json", '"lr": -1e999', "optimizer.params.lr"),
    ("spec.yaml", "lr: .nan", "optimizer.params.lr"),
    ("spec.yaml", "lr: .inf", "optimizer.params.lr"),
])
def test_non_finite_numbers_are_refused_at_their_path(tk, spec_file, small_spec, name, text, path):
    import yaml

    small_spec["optimizer"]["params"]["lr"] = 123.25
    if name.endswith(".json"):
        body = json.dumps(small_spec).replace('"lr": 123.25', text)
    else:
        body = yaml.safe_dump(small_spec).replace("lr: 123.25", text)
    message = error_of(tk, "validate", spec_file(name=name, text=body))
    assert f"{path}: not a finite number" in message


def test_non_finite_loss_weight_dataset_param_and_dict_values_are_refused(small_spec):
    small_spec["loss"][0]["weight"] = math.inf
    small_spec["data"]["params"]["noise"] = math.nan
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec)
    assert dict(raised.value.problems) == {
        "loss[0].weight": "not a finite number (got infinity); give a finite number",
        "data.params.noise": "not a finite number (got NaN); give a finite number"}


def test_set_with_a_non_finite_value_is_blamed_on_the_option(small_spec):
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec, overrides=["optimizer.params.lr=1e999", "loss.0.weight=-1e999"])
    assert set(dict(raised.value.problems)) == {"--set optimizer.params.lr=1e999: optimizer.params.lr",
                                                "--set loss.0.weight=-1e999: loss[0].weight"}


def test_params_refuse_non_finite_numbers_from_python_too():
    with pytest.raises(ParamsError, match="gamma: Input should be a finite number"):
        torchtk.registry.create("loss", "focal", gamma=math.inf)


def test_tk_validate_prints_strict_json(tk, spec_file, small_spec):
    result = tk("validate", spec_file(small_spec))
    assert result.exit_code == 0

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(result.stdout, parse_constant=refuse)["optimizer"]["params"]["lr"] == 0.01


def test_grad_clip_takes_inf_as_a_string_for_the_max_norm(small_spec, tmp_path):
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 0.05, "norm_type": "inf",
                                                                "log_norm": True}}]
    small_spec["trainer"]["epochs"] = 1
    assert torchtk.load_spec(small_spec).callbacks[0].params["norm_type"] == "inf"
    result = torchtk.train(small_spec, progress=False)
    assert math.isfinite(result.history[0]["grad_norm"]) and result.history[0]["grad_norm"] > 0
    small_spec["callbacks"][0]["params"]["norm_type"] = 1e999
    with pytest.raises(SpecError, match=r"callbacks\[0\]\.params\.norm_type: not a finite number"):
        torchtk.load_spec(small_spec)


def test_grad_clip_inf_norm_clips_the_largest_element():
    import types

    import torch

    clip = torchtk.registry.create("callback", "grad_clip", max_norm=1.0, norm_type="inf")
    parameter = torch.nn.Parameter(torch.zeros(3))
    parameter.grad = torch.tensor([0.5, -4.0, 2.0])
    state = types.SimpleNamespace(optimizer=torch.optim.SGD([parameter], lr=0.1), epoch_values={})
    clip.on_fit_start(state)
    clip.on_step(state)
    assert state.grad_norm.item() == 4.0  # the max norm, before clipping
    assert parameter.grad.abs().max().item() == pytest.approx(1.0, rel=1e-5)


def test_yaml_only_values_and_keys_are_refused_at_their_path(spec_file, small_spec):
    import yaml

    text = yaml.safe_dump(small_spec).replace("name: rings-small", "name: 2024-01-01") + "1: x\n"
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(spec_file(name="spec.yaml", text=text))
    found = dict(raised.value.problems)
    assert found["name"].startswith("a YAML date is not a JSON value")
    assert found[""] == "the key 1 is a number; keys are strings (quote it)"


# -- echoed values, --set ----------------------------------------------------------------------


def test_a_huge_wrong_typed_value_gives_a_short_message(small_spec):
    """A 200 MB list gave a 314 MB message; this is 20 MB of it."""
    small_spec["optimizer"]["params"]["lr"] = [0.5] * 4_000_000
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec)
    message = str(raised.value)
    assert len(message) < 600 and "... (more than 1,000,000 characters)" in message


def test_an_unknown_name_of_50_mb_gives_a_short_message(small_spec):
    small_spec["loss"] = "x" * 50_000_000
    start = time.perf_counter()
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec)
    assert time.perf_counter() - start < 30  # difflib on it took minutes
    assert len(str(raised.value)) < 600 and "... (50,000,002 characters)" in str(raised.value)


def test_echo_cuts_long_values_and_says_how_long_they_were():
    assert echo([1, 2]) == "[1, 2]" and echo("ab") == '"ab"'
    assert echo("x" * 1000) == '"' + "x" * 199 + '... (1,002 characters)'
    assert echo(list(range(10**6))).endswith("... (more than 1,000,000 characters)")


def test_many_problems_are_listed_up_to_20_and_counted(small_spec):
    small_spec["model"]["params"]["hidden"] = ["a"] * 1000
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec)
    message = str(raised.value)
    assert len(raised.value.problems) == 1000 and message.count("Input should be a valid integer") == 20
    assert message.endswith("... and 980 more problems")


def test_a_set_path_of_5000_keys_is_refused_with_its_size():
    with pytest.raises(UserInputError, match="the key path is 28,889 characters long; at most 500"):
        torchtk.load_spec("rings", overrides=[".".join(f"k{i}" for i in range(5000)) + "=1"])
    with pytest.raises(UserInputError, match="the key path has 40 parts; a spec is at most 32 levels deep"):
        torchtk.load_spec("rings", overrides=[".".join("k" * 40) + "=1"])


def test_a_set_value_nested_too_deeply_is_an_input_error():
    with pytest.raises(UserInputError, match="nested too deeply"):
        torchtk.load_spec("rings", overrides=["model.params.hidden=" + "[" * 100_000 + "]" * 100_000])


def test_5000_set_options_are_each_blamed_and_listed_briefly():
    """Blaming problems on options compared every problem with every option (quadratic:
    15 s for 5000 options); it is a set lookup per part of a problem's path now."""
    overrides = [f"trainer.k{i}=1" for i in range(5000)]
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec("rings", overrides=overrides)
    problems = raised.value.problems
    assert len(problems) == 5000 and all(path.startswith("--set trainer.k") for path, _ in problems)
    assert str(raised.value).endswith("... and 4,980 more problems")


def test_data_problems_walk_shared_data_once_per_depth():
    shared = {"x": [1.0] * 1000}
    data = {"a": shared, "b": shared, "c": {"d": shared}}
    assert data_problems(data) == []
    data["e"] = float("nan")
    assert data_problems(data) == [(("e",), "not a finite number (got NaN); give a finite number")]


def test_checks_after_validation_echo_a_bounded_name_too(tk, spec_file, small_spec):
    """Found by the long fuzz run: ``tk validate`` repeated a 100,000-character monitor."""
    small_spec["trainer"]["monitor"] = "x" * 100_000
    message = error_of(tk, "validate", spec_file(small_spec))
    assert message.startswith("error: trainer.monitor: 'xxx") and "... (100,002 characters) is not logged" in message
    assert len(message) < 500


def test_lone_surrogates_are_refused_at_their_path(spec_file, small_spec):
    """Found by the long fuzz run: JSON's "\\ud800" decodes to a string that is not unicode;
    in a key it gave a problem without a path."""
    text = json.dumps(small_spec).replace('"rings-small"', '"\\ud800"').replace('"seed"', '"\\udc00"')
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(spec_file(text=text))
    assert dict(raised.value.problems) == {
        "name": "not valid unicode: the string holds a lone surrogate (such as \\ud800)",
        "": 'the key "\\udc00" is not valid unicode (it holds a lone surrogate)'}


def test_a_key_named_like_a_pydantic_validator_keeps_its_path(small_spec):
    """Found by the long fuzz run: --set function-= crashed (IndexError) where a key
    starting with function- was taken for pydantic's validator part of a location."""
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(small_spec, overrides=["function-=", "trainer.function-x=1"])
    assert {path for path, _ in raised.value.problems} == {"--set function-=: function-",
                                                           "--set trainer.function-x=1: trainer.function-x"}
