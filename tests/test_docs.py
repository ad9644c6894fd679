"""Every command shown in docs/*.md runs: bash and python blocks, page by page, on small settings;
so does every Python example of README.md.

The convention (also at the top of docs/README.md):
- ```bash blocks run as one bash script (set -e), after SUBSTITUTIONS shrink each line's settings;
- ```python blocks run each as its own script in a fresh interpreter;
- ```text blocks are sample output and are not run;
- a block right after a line `<!-- docs-test: skip (reason) -->` is not run (GPU commands).
A page's blocks run in document order in one temporary folder, so `runs/...` lands there and the
repository is left as it was. That folder is a git repository holding a copy of what a command
could overwrite: benchmarks/ (the scripts, which write relative to themselves, and their committed
results), docs/figures/ and .gitignore. After a page's blocks `git status --porcelain` must be
empty there: a documented command changes no committed file and leaves nothing git would track.
"""
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
PAGES = sorted(name for name in os.listdir(DOCS) if name.endswith(".md")) if os.path.isdir(DOCS) else []
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\b.*-->")
FENCE = re.compile(r"^```(\w*)\s*$")

# (pattern, replacement) applied in order to each line of a bash block: the docs show the real
# settings, the test runs the same commands small.
SUBSTITUTIONS = [
    (r"^python benchmarks/reparam\.py( --quick)?$",
     "python benchmarks/reparam.py --quick --no-torch --max-log2 16 --dtypes float32 --pause 0"),
    (r"^python benchmarks/posteriors\.py",
     r"\g<0> --posteriors gaussian laplace --iw-samples 4 --iw-subset 16"),
    (r"--epochs \d+ --train-subset \d+",
     "--epochs 1 --train-subset 256 --test-subset 128 --hidden-dim 16"),
    (r"--iw 1000", "--iw 5 --iw-subset 16"),
    (r"^python benchmarks/estimators\.py",
     r"\g<0> --quick --reps 20 --vae-reps 4 --ks 1,2 --vae-ks 2 --epochs 0 "
     r"--reference-samples 50 --examples 2"),
]


def shrink(line):
    """A bash line with SUBSTITUTIONS applied."""
    for pattern, replacement in SUBSTITUTIONS:
        line = re.sub(pattern, replacement, line)
    return line


def blocks(text):
    """[(language, code, skipped)] of the fenced blocks of a Markdown text, in order."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        language = match.group(1)
        previous = next((l for l in reversed(lines[:i]) if l.strip()), "")
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"unclosed ``` block starting at line {i + 1}")
        found.append((language, "\n".join(lines[i + 1:end]), bool(SKIP_MARKER.search(previous))))
        i = end + 1
    return found


def runnable(page, languages=("bash", "python")):
    """[(language, code)] of the blocks of ``page`` (a name in docs/, or a path) that run."""
    with open(os.path.join(DOCS, page)) as f:
        return [(lang, code) for lang, code, skipped in blocks(f.read())
                if lang in languages and not skipped]


def git(root, *arguments):
    """stdout of ``git arguments`` in ``root``, as a user no configuration of this machine
    changes."""
    return subprocess.run(["git", "-c", "user.name=docs test", "-c", "user.email=docs@test",
                           "-c", "commit.gpgsign=false", *arguments], cwd=root, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def workspace(root):
    """A folder to run a page in, committed as a git repository: the benchmark scripts and
    their results, docs/figures/ and .gitignore, copied from the repository."""
    shutil.copytree(os.path.join(REPO, "benchmarks"), os.path.join(root, "benchmarks"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(REPO, "docs", "figures"), os.path.join(root, "docs", "figures"))
    shutil.copy(os.path.join(REPO, ".gitignore"), root)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "what the documented commands must leave as it is")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg", PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    return env


def changed_files(root):
    """``git status --porcelain`` lines of a workspace: what its commands changed or added."""
    return git(root, "status", "--porcelain", "--untracked-files=all").splitlines()


def run_block(language, code, cwd, env, index):
    if language == "bash":
        script = "set -e\n" + "\n".join(shrink(line) for line in code.splitlines())
        command = ["bash", "-c", script]
    else:
        path = os.path.join(os.path.dirname(cwd), f"block_{index}.py")
        with open(path, "w") as f:
            f.write(code + "\n")
        command = [sys.executable, path]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        shown = script if language == "bash" else code
        pytest.fail(f"block {index} ({language}) exited {result.returncode}:\n{shown}\n"
                    f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
    return result


def test_block_parser_and_substitutions():
    text = ("intro\n```bash\necho a\n```\n<!-- docs-test: skip (needs a GPU) -->\n```bash\n"
            "nvidia-smi\n```\n```text\nout\n```\n```python\nprint(1)\n```\n")
    assert blocks(text) == [("bash", "echo a", False), ("bash", "nvidia-smi", True),
                            ("text", "out", False), ("python", "print(1)", False)]
    assert shrink("python -m vae eval runs/x --iw 1000") == \
        "python -m vae eval runs/x --iw 5 --iw-subset 16"
    assert "--quick" in shrink("python benchmarks/reparam.py")
    # the committed posteriors run (10 epochs on all 60000 images) runs small too
    assert shrink("python benchmarks/posteriors.py --epochs 10 --train-subset 0 --out runs/p") == (
        "python benchmarks/posteriors.py --posteriors gaussian laplace --iw-samples 4 "
        "--iw-subset 16 --epochs 1 --train-subset 256 --test-subset 128 --hidden-dim 16 "
        "--out runs/p")


def test_pages_exist_and_have_code():
    assert {"README.md", "reparameterized-node.md", "gradcheck.md", "backward-trace.md",
            "kernels.md", "experiments.md"} <= set(PAGES)
    for page in PAGES:
        if page != "README.md":
            assert runnable(page), f"docs/{page} has no runnable block"


@pytest.mark.parametrize("page", PAGES)
def test_links_resolve(page):
    """Every relative link and image of a page points at an existing file."""
    with open(os.path.join(DOCS, page)) as f:
        text = f.read()
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if "://" in target:
            continue
        assert os.path.exists(os.path.normpath(os.path.join(DOCS, target))), \
            f"docs/{page} links to {target}, which does not exist"


def test_readme_python_blocks_run(tmp_path):
    """README.md's Python examples run as written, each in a fresh interpreter (its bash blocks
    are the set-up commands, which .ci/run runs, and commands the docs pages run)."""
    code = runnable(os.path.join(REPO, "README.md"), languages=("python",))
    assert len(code) >= 3, "README.md should show the engine, higher-order and gradcheck examples"
    root = str(tmp_path / "repository")
    env = workspace(root)
    for index, (language, block) in enumerate(code):
        run_block(language, block, root, env, index)
    assert not changed_files(root), f"README.md's examples write files: {changed_files(root)}"


# the pages that name the code: README.md, benchmarks/README.md and docs/*.md
NAMING_PAGES = ["README.md", os.path.join("benchmarks", "README.md"),
                *(os.path.join("docs", page) for page in PAGES)]
DOTTED = re.compile(r"`((?:minigrad|kernels|vae)(?:\.\w+)+)")
REPO_PATH = re.compile(r"`((?:minigrad|kernels|vae|benchmarks|tests|docs|data)/[^`\s:]*)")


def _resolves(dotted):
    """Whether ``dotted`` names a module, or an attribute of the longest module it starts with."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for part in parts[k:]:
            if not hasattr(found, part):
                return False
            found = getattr(found, part)
        return True
    return False


@pytest.mark.parametrize("page", NAMING_PAGES)
def test_the_code_a_page_names_exists(page):
    """Every `minigrad.x.y` a page names resolves, and every repository path it names exists
    (a path with a pattern in it, {json,md}, * or <device>, is a family of files and is left
    alone)."""
    with open(os.path.join(REPO, page)) as f:
        text = f.read()
    stale = [name for name in sorted(set(DOTTED.findall(text))) if not _resolves(name)]
    stale += [path for path in sorted(set(REPO_PATH.findall(text)))
              if not set("{*<").intersection(path) and not path.endswith(".")
              and not os.path.exists(os.path.join(REPO, path))]
    assert not stale, f"{page} names what does not exist: {stale}"


@pytest.mark.parametrize("page", [p for p in PAGES if p != "README.md"])
def test_page_runs(page, tmp_path):
    root = str(tmp_path / "repository")
    env = workspace(root)
    for index, (language, code) in enumerate(runnable(page)):
        run_block(language, code, root, env, index)
    changed = changed_files(root)
    assert not changed, (f"the commands of docs/{page} change or add files that git would track "
                         "(write into runs/, or a folder the reader names):\n" + "\n".join(changed))
    # the figures a page shows from docs/figures are made by its commands, into runs/figures
    with open(os.path.join(DOCS, page)) as f:
        shown = re.findall(r"\(figures/([^)]+)\)", f.read())
    for name in shown:
        if not os.path.exists(os.path.join(root, "runs", "figures", name)):
            pytest.fail(f"docs/{page} shows figures/{name} but its commands did not write "
                        f"runs/figures/{name}")
