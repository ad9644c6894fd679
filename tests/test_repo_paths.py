"""No tracked text file names a folder of the machine that wrote it.

Results, docs and comments record paths relative to the repository (benchmarks/report.py's
``relative``), so they mean the same in every checkout.  Flagged: the home, scratch and work
roots of the machines this project runs on, and this checkout's own absolute path, its home and
its temporary folder.  Not flagged: such a word inside a longer path or a name (``runs/tmp/``,
``gcc-toolset-13/root/usr``), after a shell expansion (``$(mktemp -d)/work/``, ``${TMP}/tmp/``) or
a home-relative ``~/``.
"""
import os
import re
import subprocess
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTS = ("work", "root", "home", "tmp")
# a path's start: not after a name character, a dot, a dash, ~, ), } or $
START = r"(?<![\w.~)}$-])"


def machine_path_pattern():
    """The roots above and this machine's own folders (checkout, home, temporary folder), each
    at the start of a path."""
    folders = {REPO, os.path.expanduser("~"), tempfile.gettempdir()}
    own = [re.escape(folder.rstrip(os.sep) + os.sep) for folder in sorted(folders)
           if os.path.isabs(folder) and folder.rstrip(os.sep)]
    return re.compile(START + "(?:" + "|".join([f"/{root}/" for root in ROOTS] + own) + ")")


MACHINE_PATH = machine_path_pattern()


def tracked_text_files():
    """(path, text) of every file git tracks that reads as UTF-8 text without NUL bytes."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"git ls-files failed in {REPO} ({err}): not a git checkout")
    for name in listed.decode().split("\0"):
        path = os.path.join(REPO, name)
        if not name or not os.path.isfile(path):  # deleted in the working tree
            continue
        with open(path, "rb") as f:
            raw = f.read()
        if b"\0" in raw:
            continue
        try:
            yield name, raw.decode("utf-8")
        except UnicodeDecodeError:  # binary data (images, gzip)
            continue


def absolute_paths(text):
    """[(line number, the line)] of ``text`` that hold a path of a machine."""
    return [(number, line.strip()[:200]) for number, line in enumerate(text.splitlines(), 1)
            if MACHINE_PATH.search(line)]


@pytest.mark.parametrize("line", [
    'data: "/ho' 'me/alice/mnist"', "see /wo" "rk/shared/notes/x.md", "at /ro" "ot/.pyenv/lib",
    "-o /t" "mp/x.cubin", "file:///t" "mp/x"])
def test_a_machine_path_is_found(line):
    assert absolute_paths(line)


@pytest.mark.parametrize("line", [
    'venv="$(mktemp -d)/venv"', "out=$(mktemp -d)/wo" "rk/x", "${TMPDIR}/t" "mp/x",
    "runs/t" "mp/model.npz", "gcc-toolset-13/ro" "ot/usr/bin/c++", "~/wo" "rk/notes",
    "https://example.org/ho" "me/index.html", "data/mnist", "benchmarks/results/x.json"])
def test_a_relative_path_or_a_name_is_not(line):
    assert not absolute_paths(line)


def test_no_tracked_file_names_a_folder_of_this_machine():
    found = [f"{name}:{number}: {line}" for name, text in tracked_text_files()
             for number, line in absolute_paths(text)]
    assert not found, ("tracked files record absolute paths; write them relative to the "
                       "repository (benchmarks/report.py: relative()):\n" + "\n".join(found))
