"""Spec files that cannot be a spec: each is exit 2 with one message naming the file and
what is wrong, and none blocks or reads without bound (the path is stat'ed first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchtk.core.spec.loading import MAX_SPEC_BYTES

ROOT = Path(__file__).resolve().parents[2]


def one_error(result, *fragments):
    """Exit 2, one ``error:`` line on stderr holding every fragment, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tk_process(*args, timeout=60):
    """``tk`` in its own process, so a read that blocks would fail the test by its timeout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torchtk", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_directory_is_refused(tk, tmp_path):
    one_error(tk("validate", tmp_path), str(tmp_path), "is a directory")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    result = tk_process("validate", fifo)  # opening a FIFO with no writer would block forever
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {fifo}: is a named pipe (FIFO), not a regular file; give a spec " \
                                    "file (JSON or YAML)"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_refused_without_reading_it(tmp_path):
    result = tk_process("validate", "/dev/zero")
    assert result.returncode == 2 and "/dev/zero: is a character device, not a regular file" in result.stderr


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tk, tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:  # sparse: the limit is checked on the size, nothing is read
        handle.truncate(MAX_SPEC_BYTES + 1)
    one_error(tk("validate", big), str(big), "too large for a spec file (the limit is 10 MB)")
    assert MAX_SPEC_BYTES == 10 * 1024 * 1024  # the limit README.md documents


def test_a_file_at_the_size_limit_is_parsed(tk, tmp_path, small_spec):
    import json

    text = json.dumps(small_spec)
    padded = tmp_path / "padded.json"
    padded.write_text(text + " " * (MAX_SPEC_BYTES - len(text)))
    result = tk("validate", padded)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_an_empty_file_is_refused(tk, spec_file, text):
    path = spec_file(text=text)
    one_error(tk("validate", path), str(path), "the file is empty")


def test_a_binary_file_is_refused(tk, tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"PK\x03\x04\x00\x00binary" + bytes(range(256)))
    one_error(tk("validate", path), f"{path}:1: a binary file (a NUL byte at offset 4)")


def test_latin_1_text_is_not_utf_8(tk, tmp_path):
    path = tmp_path / "spec.json"
    path.write_bytes('{"name": "caf\u00e9"}'.encode("latin-1"))
    one_error(tk("validate", path), f"{path}:1: not valid UTF-8 (byte 0xe9")


@pytest.mark.parametrize(("name", "text", "kind"), [
    ("array.json", "[1, 2]", "an array"), ("string.json", '"rings"', "a string"),
    ("number.yaml", "3", "a number"), ("comments.yaml", "# nothing but a comment\n", "an empty document")])
def test_a_document_that_is_not_an_object_is_refused(tk, spec_file, name, text, kind):
    path = spec_file(text=text, name=name)
    one_error(tk("validate", path), str(path), f"a spec must be a JSON object ({{...}}), got {kind}")


def test_a_symlink_loop_is_refused(tk, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    one_error(tk("validate", a), str(a), "cannot open the spec file: a loop of symbolic links")


def test_a_dangling_symlink_names_its_target(tk, tmp_path):
    link = tmp_path / "spec.json"
    link.symlink_to(tmp_path / "gone.json")
    one_error(tk("validate", link), str(link), "a symbolic link to", "gone.json", "which does not exist")


def test_a_very_long_path_is_refused_and_cut_in_the_message(tk, tmp_path):
    long = str(tmp_path / ("x" * 5000)) + ".json"
    line = one_error(tk("validate", long), "characters)")
    assert len(line) < 600  # the 5,000-character name is not echoed whole


def test_a_path_through_a_file_is_refused(tk, spec_file):
    path = spec_file()
    one_error(tk("validate", f"{path}/inner.json"), "cannot open the spec file: Not a directory")


def test_an_unreadable_file_is_refused(tk, spec_file):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = spec_file()
    path.chmod(0)
    one_error(tk("validate", path), str(path), "cannot read spec file: Permission denied")
