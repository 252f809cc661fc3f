"""Every benchmark command the README and docs/ show names a bench module and flags
that exist. Running them takes minutes to hours (that is what `make bench` is for);
this runs each module's ``--help`` and checks the documented flags against it, and
each documented make target against the Makefile (``make -n``), so a renamed flag
or module fails here instead of in a reader's terminal."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```[a-z]*[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]*-m bench[^`]*)`")  # inline code may wrap lines
INDENTED = re.compile(r"^((?: {4}\S.*\n)+)", re.M)  # a Markdown indented code block
DOCUMENTS = [REPO / "README.md", REPO / "e2e" / "README.md", *sorted(REPO.glob("docs/*.md"))]


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of each shell line (in a fenced block, or inline code) that runs
    a bench module or a bench make target; continuation lines joined, comments and
    env settings dropped."""
    found = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        outside = FENCE.sub("", text)
        inline = [" ".join(span.split()) for span in INLINE.findall(outside)]
        for block in [*FENCE.findall(text), *INDENTED.findall(outside), *inline]:
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if "-m bench" not in line and not re.search(r"\bmake (e2e-)?bench\b", line):
                    continue
                for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line):
                    try:
                        argv = shlex.split(part)
                    except ValueError:
                        continue
                    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
                        argv = argv[1:]  # VAR=value before the command
                    if argv and ("-m" in argv or argv[0] == "make"):
                        found.append((f"{doc.relative_to(REPO)}: {line}", argv))
    return found


@functools.cache
def help_text(module: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"python -m {module} --help failed:\n{proc.stderr}"
    return proc.stdout


def test_docs_show_bench_commands() -> None:
    modules = {argv[argv.index("-m") + 1] for _, argv in documented_commands()
               if "-m" in argv}
    assert {"bench", "bench.drain_profile", "bench.sse"} <= modules, modules


def test_every_documented_bench_command_names_real_modules_and_flags() -> None:
    for where, argv in documented_commands():
        if argv[0] == "make":
            targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
            proc = subprocess.run(["make", "-n", *targets], cwd=REPO, capture_output=True,
                                  text=True, timeout=60, check=False)
            assert proc.returncode == 0, f"{where}\n{proc.stderr}"
            continue
        if "-m" not in argv:
            continue
        module = argv[argv.index("-m") + 1]
        if not module.startswith("bench"):
            continue
        if module == "bench.report":  # a positional file, no flags: it has no --help
            continue
        text = help_text(module)
        for arg in argv[argv.index("-m") + 2:]:
            if arg.startswith("--"):
                flag = arg.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (
                    f"{where}\n{flag} is not an option of python -m {module}")
