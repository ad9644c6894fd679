"""Every command shown in docs/*.md runs: bash and python blocks, page by page, on small settings.

The convention (also at the top of docs/README.md):
- ```bash blocks run as one bash script (set -e), after SUBSTITUTIONS shrink each line's settings;
- ```python blocks run each as its own script in a fresh interpreter;
- ```text blocks are sample output and are not run;
- a block right after a line `<!-- docs-test: skip (reason) -->` is not run (GPU commands).
A page's blocks run in document order in one temporary folder, so `docs/figures/...` and `runs/...`
land there and the repository is left as it was. benchmarks/*.py are copied into that folder:
the scripts write their results next to themselves (ROOT/benchmarks/results).
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
    (r"^python benchmarks/posteriors\.py", r"\g<0> --posteriors gaussian laplace --iw-samples 4"),
    # the committed posteriors run (10 epochs on all of MNIST) took minutes, past the block's limit
    (r"^(python benchmarks/posteriors\.py.*) --epochs 10 --train-subset 0",
     r"\1 --epochs 1 --train-subset 512 --test-subset 256 --hidden-dim 16"),
    (r"--epochs 3 --train-subset \d+",
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


def runnable(page):
    with open(os.path.join(DOCS, page)) as f:
        return [(lang, code) for lang, code, skipped in blocks(f.read())
                if lang in ("bash", "python") and not skipped]


def workspace(root):
    """A folder to run a page in: docs/figures/ and a copy of the benchmark scripts."""
    os.makedirs(os.path.join(root, "docs", "figures"))
    bench = os.path.join(root, "benchmarks")
    os.makedirs(bench)
    for name in os.listdir(os.path.join(REPO, "benchmarks")):
        if name.endswith((".py", ".sh")):
            shutil.copy(os.path.join(REPO, "benchmarks", name), bench)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg", PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    return env


def run_block(language, code, cwd, env, index):
    if language == "bash":
        script = "set -e\n" + "\n".join(shrink(line) for line in code.splitlines())
        command = ["bash", "-c", script]
    else:
        path = os.path.join(cwd, f"block_{index}.py")
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
    env = workspace(str(tmp_path))
    for index, (language, code) in enumerate(runnable(page)):
        run_block(language, code, str(tmp_path), env, index)
    # the figures a page writes into docs/figures are made by its commands
    with open(os.path.join(DOCS, page)) as f:
        made = re.findall(r"\(figures/([^)]+)\)", f.read())
    for name in made:
        produced = os.path.join(str(tmp_path), "docs", "figures", name)
        if os.path.exists(os.path.join(DOCS, "figures", name)) and not os.path.exists(produced):
            pytest.fail(f"docs/{page} shows figures/{name} but its commands did not write it")
