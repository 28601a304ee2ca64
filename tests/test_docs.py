"""The docs cannot rot: every link resolves inside the repository, and every command runs.

Pages: README.md and docs/**/*.md. In each ```bash block, every line that is not blank or
a comment is a command (`python -m ...`, `.venv/bin/python -m ...` or `make ...`; a
trailing `\\` continues it); any other line fails the test, so nothing is skipped
silently. A trailing `# exits N` comment states the expected exit code (default 0).
Placeholders `RUN_ID`, `RUN_DIR` and `VERSION` are replaced by a real run id, run
directory and snapshot version of the working directory (or stand-ins where none exist).
A block whose first line is `# file: PATH` is written to PATH (without that line) before
the page's commands run.

How each command is executed (`mode`):

- real: run as shown, in a subprocess with PYTHONPATH=<repo root>, in a copy of a
  prepared working directory (`template`: simulated logs in data/landing, a store at
  data/signal.duckdb, one snapshot, tests/data/native_example.jsonl, the hh-rlhf sample
  in data/real/ when ../shared/ has it). The commands of one page share one copy and
  run in order, as a reader would run them. Cheap verbs only: ingest, stats,
  quarantine, build, snapshots, optout, forget, retain, sources, fetch --list,
  registry, promote, rollback, dashboard, simulate, train tiny, serve keys, --help.
- smoke: a real command on the smoke store or run (it names data/smoke/, RUN_ID or RUN_DIR):
  run in the working directory that a real `python -m train +exp=smoke` left
  (`test_smoke_run_and_the_commands_that_use_it`, in document order).
- compose: `python -m train [run]` runs in-process with `--cfg` appended (compose +
  print the resolved tree), then the same overrides through `scripts.config.compose`
  and `train.config.validate`; `python -m eval [run]` through its own compose
  (`eval.__main__.compose`, which maps `candidate=` ...); `python -m scripts nightly`
  through `scripts.config.compose` and `train.config.validate`, as the job does
  before it takes its lock. Each goes through the real CLI parser.
  `python -m serve gateway` (a server that runs until stopped) through
  `serve.settings.compose`.
- parse: commands that need the network (`signals fetch NAME`, `train fetch-model`) or
  minutes of work (`serve export`, `scripts demo`): the real CLI parser, with the verb's
  function replaced.
- make: the target exists in the Makefile and each `VAR=...` is a Makefile variable.
- pytest: every test path named exists (the suite is not run from inside itself).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHARED_REAL = ROOT.parent / "shared" / "data" / "real"
PLACEHOLDERS = ("RUN_ID", "RUN_DIR", "VERSION")
SMOKE = "python -m train +exp=smoke"
TIMEOUT = 900


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ----------------------------------------------------------------------------- reading pages


def blocks(page: Path) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines) of every fenced block."""
    out, lang, start, body = [], None, 0, []
    for n, line in enumerate(page.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)\s*$", line)
        if fence and lang is None:
            lang, start, body = fence.group(1) or "text", n + 1, []
        elif fence:
            out.append((lang, start, body))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"{rel(page)}: a ``` block is not closed"
    return out


@dataclass
class Command:
    page: Path
    line: int
    text: str            # as shown, comment removed
    argv: list[str]
    expect: int
    mode: str

    def __str__(self) -> str:
        return f"{rel(self.page)}:{self.line}: {self.text}"


def split_comment(line: str) -> tuple[str, str]:
    """The command and its trailing `# comment` (a # inside quotes is not a comment)."""
    quote, i = None, 0
    while i < len(line):
        c = line[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
        i += 1
    return line.rstrip(), ""


def commands(page: Path) -> tuple[list[Command], list[str]]:
    """The commands of every ```bash block of `page`, and the lines that are not commands."""
    found, bad = [], []
    for lang, start, body in blocks(page):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        assert lang == "bash", f"{rel(page)}:{start}: use ```bash for commands, ```text for others"
        pending, first = "", start
        for n, raw in enumerate(body, start):
            if not pending:
                first = n
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            text, comment = split_comment(line)
            if not text:
                continue
            if not re.match(r"^(python -m |\.venv/bin/python -m |make( |$))", text):
                bad.append(f"{rel(page)}:{first}: not a command the test can run: {text!r} "
                           "(a ```bash block holds only python -m / make commands; use ```text)")
                continue
            argv = shlex.split(text)
            m = re.search(r"\bexits? (\d+)\b", comment)
            found.append(Command(page, first, text, argv, int(m.group(1)) if m else 0, mode_of(argv)))
    return found, bad


def mode_of(argv: list[str]) -> str:
    if argv[0] == "make":
        return "make"
    pkg, rest = argv[2], argv[3:]
    if pkg == "pytest":
        return "pytest"
    if "--help" in rest or "-h" in rest:
        return "real"
    verb = rest[0] if rest and not rest[0].startswith("-") and "=" not in rest[0] else "run"
    mode = {("train", "run"): "compose", ("train", "fetch-model"): "parse", ("eval", "run"): "compose",
            ("scripts", "nightly"): "compose", ("serve", "gateway"): "compose", ("serve", "run"): "compose",
            ("serve", "export"): "parse", ("scripts", "demo"): "parse"}.get((pkg, verb), "real")
    if (pkg, verb) == ("signals", "fetch") and "--list" not in rest:
        mode = "parse"
    if pkg not in ("signals", "train", "eval", "serve", "scripts"):
        mode = "unknown"
    text = " ".join(argv)
    if mode == "real" and ("data/smoke/" in text or re.search(r"\bRUN_(ID|DIR)\b", text)):
        mode = "smoke"
    return mode


def file_blocks(page: Path) -> dict[str, str]:
    out = {}
    for _, _, body in blocks(page):
        if body and (m := re.match(r"^(?:#|//|--) file: (\S+)\s*$", body[0])):
            out[m.group(1)] = "\n".join(body[1:]) + "\n"
    return out


ALL = {page: commands(page) for page in PAGES}
COMMANDS = [c for page in PAGES for c in ALL[page][0]]


# ----------------------------------------------------------------------------- pages and links


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the reference belongs in docs/"
    assert "make demo" in "\n".join(lines) and "make test" in "\n".join(lines)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_link_resolves_inside_the_repository(page):
    text = page.read_text()
    outside = re.sub(r"https?://(127\.0\.0\.1|localhost)\b", "", text)     # loopback: the gateway's own address
    assert "http://" not in outside and "https://" not in outside, f"{rel(page)}: no link may leave the repository"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_relative_to(ROOT), f"{rel(page)}: {target} leaves the repository"
        assert dest.exists(), f"{rel(page)}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{rel(page)}: {target}: no heading #{anchor} in {rel(dest)}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text().splitlines():
        if m := re.match(r"^#{1,6}\s+(.*)$", line):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = set()
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            linked.add((page.parent / target).resolve())
    orphans = [rel(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"pages nothing links to: {orphans}"


def test_every_line_of_a_bash_block_is_a_command_the_test_runs():
    bad = [b for page in PAGES for b in ALL[page][1]]
    assert not bad, "\n".join(bad)
    unknown = [str(c) for c in COMMANDS if c.mode == "unknown"]
    assert not unknown, "\n".join(unknown)
    assert any(c.text == SMOKE or c.text == f".venv/bin/{SMOKE}" for c in COMMANDS), \
        f"the docs no longer show `{SMOKE}`"


def test_every_verb_is_in_the_cli_page():
    text = (ROOT / "docs" / "cli.md").read_text()
    for pkg in ("signals", "train", "eval", "serve", "scripts"):
        for verb in importlib.import_module(f"{pkg}.__main__").VERBS:
            assert re.search(rf"`python -m {pkg} \[?{re.escape(verb)}\b", text), \
                f"docs/cli.md: no row for `python -m {pkg} {verb}`"


@pytest.mark.parametrize("page", [p for p in PAGES if any(lang == "python" for lang, _, _ in blocks(p))], ids=rel)
def test_python_snippets_parse_and_their_imports_exist(page):
    """Python blocks are not run (they need a store, a run, ...), but what they import must exist."""
    for lang, start, body in blocks(page):
        if lang != "python":
            continue
        tree = ast.parse("\n".join(body), filename=f"{rel(page)}:{start}")
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    modules[a.asname or a.name.split(".")[0]] = importlib.import_module(a.name)
            elif isinstance(node, ast.ImportFrom):
                mod = importlib.import_module(node.module)
                for a in node.names:
                    obj = getattr(mod, a.name, None)
                    if obj is None:
                        obj = importlib.import_module(f"{node.module}.{a.name}")
                    modules[a.asname or a.name] = obj
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                owner = modules[node.value.id]
                if isinstance(owner, type(sys)):
                    assert hasattr(owner, node.attr), \
                        f"{rel(page)}:{start}: {node.value.id}.{node.attr} does not exist"


# ----------------------------------------------------------------------------- the working directory


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("SIGNALS_DB", "RUN_ID", "REAL_DATA", "PYTHONPATH")}
    return e | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false"}


def sh(argv: list[str], cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """What the pages assume: simulated logs, a store with them, one snapshot, the example file."""
    d = tmp_path_factory.mktemp("docs-template")
    (d / "tests" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "data" / "native_example.jsonl", d / "tests" / "data")
    if (SHARED_REAL / "hh-rlhf").is_dir():
        shutil.copytree(SHARED_REAL / "hh-rlhf", d / "data" / "real" / "hh-rlhf")
    for argv in (["scripts", "simulate", "--out", "data/landing", "--days", "2", "--per-day", "100"],
                 ["signals", "ingest", "data/landing"], ["signals", "build", "data=demo"]):
        r = sh([sys.executable, "-m", *argv], d)
        assert r.returncode == 0, f"preparing the docs' working directory: {argv}\n{r.stdout}\n{r.stderr}"
    return d


def placeholder_values(cwd: Path) -> dict[str, str]:
    runs = sorted(cwd.glob("runs/*/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    snaps = sorted((p for p in cwd.glob("data/**/manifest.json") if not (p.parent / "REVOKED.json").exists()),
                   key=lambda p: p.stat().st_mtime)
    return {"RUN_ID": runs[-1].parent.name if runs else "20260101-120000",
            "RUN_DIR": str(runs[-1].parent.relative_to(cwd)) if runs else "runs/smoke/20260101-120000",
            "VERSION": snaps[-1].parent.name if snaps else "demo-000000000000"}


def substitute(argv: list[str], values: dict[str, str]) -> list[str]:
    out = []
    for a in argv:
        for k in sorted(values, key=len, reverse=True):
            a = re.sub(rf"\b{k}\b", values[k], a)
        out.append(a)
    return out


# ----------------------------------------------------------------------------- the modes


def run_real(c: Command, cwd: Path) -> None:
    argv = substitute(c.argv, placeholder_values(cwd))
    if "data/real/" in " ".join(argv) and not (cwd / "data" / "real").is_dir():
        pytest.skip(f"{c}: needs the real sample data ({SHARED_REAL} is absent)")
    r = sh([sys.executable, *argv[argv.index("-m"):]], cwd)
    assert r.returncode == c.expect, f"{c}\nexit {r.returncode}, expected {c.expect}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def in_process(pkg: str, argv: list[str], replace=None) -> int:
    """Run `python -m pkg argv` through its CLI in this process; `replace` swaps the verb's function."""
    main = importlib.import_module(f"{pkg}.__main__")
    saved, environ = dict(main.VERBS), dict(os.environ)
    if replace is not None:
        name = argv[0] if argv and argv[0] in main.VERBS else "run"
        main.VERBS[name] = dataclasses.replace(main.VERBS[name], run=replace)
    try:
        with warnings.catch_warnings():      # the entry points set up the console for the process
            code = main.main(list(argv))
    except SystemExit as e:                  # argparse
        code = e.code
    finally:
        main.VERBS.clear()
        main.VERBS.update(saved)
        os.environ.clear()
        os.environ.update(environ)
    return code


def run_compose(c: Command, cwd: Path, capsys) -> None:
    from scripts.config import compose
    from signals.cli import store_overrides
    from train.config import validate

    argv = substitute(c.argv, placeholder_values(cwd))
    pkg, rest = argv[2], argv[3:]

    def whole_tree(args) -> int:
        validate(compose(store_overrides(args)))
        return 0

    def eval_tree(args) -> int:
        main = importlib.import_module("eval.__main__")
        main.compose(store_overrides(args))
        return 0

    def serve_tree(args) -> int:
        from serve.settings import compose as compose_serve

        compose_serve(list(args.overrides))
        return 0

    checks = []
    if pkg == "serve":
        checks = [(rest, serve_tree)]
    elif pkg == "train":
        checks = [(rest + ["--cfg"], None), (rest, whole_tree)]
    elif pkg == "eval":
        checks = [(rest, eval_tree)]
    elif pkg == "scripts":
        checks = [(rest, whole_tree)]
    for args, replace in checks:
        code = in_process(pkg, args, replace)
        out = capsys.readouterr()
        assert code == c.expect, f"{c}\n(compose check {args})\nexit {code}\n{out.out[-2000:]}\n{out.err[-3000:]}"


def run_parse(c: Command, capsys) -> None:
    argv = c.argv[c.argv.index("-m") + 1:]
    code = in_process(argv[0], argv[1:], replace=lambda args: 0)
    out = capsys.readouterr()
    assert code == 0, f"{c}\n(parse check)\nexit {code}\n{out.err[-2000:]}"


def run_make(c: Command) -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+):", makefile, re.M))
    variables = set(re.findall(r"^(\w+)\s*[?:]?=", makefile, re.M))
    args = c.argv[1:] or ["demo"]
    for a in args:
        if "=" in a:
            assert a.split("=", 1)[0] in variables, f"{c}: {a.split('=', 1)[0]} is not a Makefile variable"
        else:
            assert a in targets, f"{c}: no target {a!r} in the Makefile"


def run_pytest(c: Command) -> None:
    paths = [a.split("::")[0] for a in c.argv[3:] if not a.startswith("-")]
    assert paths, f"{c}: names no test file"
    for p in paths:
        assert (ROOT / p).exists(), f"{c}: {p} does not exist"


# ----------------------------------------------------------------------------- the tests


FAST_PAGES = [p for p in PAGES if any(c.mode != "smoke" for c in ALL[p][0])]


@pytest.mark.parametrize("page", FAST_PAGES, ids=rel)
def test_every_command_of_a_page_runs(page, template, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "work"
    shutil.copytree(template, cwd)
    for name, text in file_blocks(page).items():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text(text)
    monkeypatch.chdir(cwd)
    for k in ("SIGNALS_DB", "RUN_ID", "REAL_DATA"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")     # as train.console sets it for a run
    for c in ALL[page][0]:
        if c.mode == "real":
            run_real(c, cwd)
        elif c.mode == "compose":
            run_compose(c, cwd, capsys)
        elif c.mode == "parse":
            run_parse(c, capsys)
        elif c.mode == "make":
            run_make(c)
        elif c.mode == "pytest":
            run_pytest(c)
        else:
            assert c.mode == "smoke", c


@pytest.mark.slow
def test_smoke_run_and_the_commands_that_use_it(tmp_path):
    """`python -m train +exp=smoke` for real, as a newcomer runs it in a fresh checkout, then every
    command the docs show on the smoke store or run, in document order."""
    cwd = tmp_path / "smoke"
    cwd.mkdir()
    r = sh([sys.executable, "-m", "train", "+exp=smoke"], cwd)
    assert r.returncode == 0, f"{SMOKE}\nexit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    assert "gate decision:" in r.stdout, r.stdout[-3000:]
    assert list(cwd.glob("runs/smoke/*/manifest.json")) and (cwd / "data" / "smoke" / "signal.duckdb").is_file()
    for c in COMMANDS:
        if c.mode == "smoke":
            run_real(c, cwd)
