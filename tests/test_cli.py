"""One CLI grammar: every verb of every package, with a typo injected, exits 2 naming the close match.

The commands are the runnable examples each verb shows in its `--help` (the documented
ones); a typo goes into the verb, an option and an override key (with and without `+`).
No typo is ever answered with advice to add the key.
"""

from __future__ import annotations

import importlib
import shlex

import pytest

PACKAGES = ["signals", "train", "eval", "serve", "scripts"]


def verbs():
    for pkg in PACKAGES:
        main = importlib.import_module(f"{pkg}.__main__")
        for name, verb in main.VERBS.items():
            yield pkg, name, verb


def run(pkg: str, argv: list[str], capsys) -> tuple[int, str]:
    main = importlib.import_module(f"{pkg}.__main__").main
    try:
        code = main(argv)
    except SystemExit as e:                      # argparse exits on usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def swap(word: str, at: int) -> str:
    """A typo: two neighbouring letters swapped."""
    return word[:at] + word[at + 1] + word[at] + word[at + 2:]


CASES = [(pkg, name, verb) for pkg, name, verb in verbs()]


@pytest.mark.parametrize(("pkg", "name", "verb"), CASES, ids=[f"{p}-{n}" for p, n, _ in CASES])
def test_every_verb_has_help_with_a_runnable_example(pkg, name, verb, capsys):
    code, out = run(pkg, [name, "--help"], capsys)
    assert code == 0 and "example:" in out and verb.example.split()[2] == pkg
    assert verb.example.split()[3] == name or (verb.overrides and name == "run"), verb.example


@pytest.mark.parametrize(("pkg", "name", "verb"), CASES, ids=[f"{p}-{n}" for p, n, _ in CASES])
def test_a_typo_in_the_verb_names_the_close_match(pkg, name, verb, capsys):
    code, out = run(pkg, [swap(name, 1), "--help"], capsys)
    assert code == 2 and f"did you mean {name}" in out, out


@pytest.mark.parametrize(("pkg", "name", "verb"), CASES, ids=[f"{p}-{n}" for p, n, _ in CASES])
def test_a_typo_in_an_option_names_the_close_match(pkg, name, verb, capsys, tmp_path):
    argv = shlex.split(verb.example)[3:]
    if argv and argv[0] != name:
        argv = [name, *argv]                    # `python -m train +exp=smoke` is `run +exp=smoke`
    options = [a for a in argv if a.startswith("--") and len(a) > 5]
    if not options:
        code, out = run(pkg, [name, "--jsn"], capsys)
        assert code == 2 and "unrecognized arguments: --jsn" in out
        return
    typo = swap(options[0], 3)
    code, out = run(pkg, [typo if a == options[0] else a for a in argv], capsys)
    assert code == 2 and f"did you mean {options[0]}" in out, out


OVERRIDE_TYPOS = {
    ("signals", "build"): [("split.metod=user", "data.split.method"), ("+split.metod=user", "data.split.method"),
                           ("data=demoo", "demo"), ("caps.per_usr=3", "data.caps.per_user")],
    ("train", "run"): [("method.args.learnig_rate=1e-4", "learning_rate"),
                       ("+method.args.learnig_rate=1e-4", "learning_rate"), ("+exp=smook", "smoke"),
                       ("data.split.metod=user", "data.split.method"), ("+gate.primery=winrate", "gate.primary"),
                       ("eval.batch_sise=8", "eval.batch_size"), ("+model.dtyp=float32", "model.dtype"),
                       ("+seeed=1", "seed")],
    ("eval", "run"): [("gate.margn=0.1", "gate.margin"), ("+eval.judge.chekcs=[]", "eval.judge.checks"),
                      ("eval.bootstrap.resample=10", "eval.bootstrap.resamples")],
    ("scripts", "nightly"): [("nightly.min_new_interaction=5", "nightly.min_new_interactions"),
                             ("+nightly.landng=x", "nightly.landing")],
}


@pytest.mark.parametrize(("pkg", "name", "override", "near"),
                         [(p, n, o, m) for (p, n), cases in OVERRIDE_TYPOS.items() for o, m in cases])
def test_a_typo_in_an_override_key_names_the_close_match_and_never_suggests_adding_it(
        pkg, name, override, near, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # nothing may be written: the typo fails first
    exp = [] if pkg == "signals" or "exp=" in override else ["+exp=smoke" if pkg != "scripts" else "+exp=demo"]
    code, out = run(pkg, [name, *exp, override, "--store", str(tmp_path / "s.duckdb")], capsys)
    assert code == 2, out
    assert near in out and "did you mean" in out, out
    assert "append to your config" not in out and "use +" not in out
    assert list(tmp_path.iterdir()) == []


def test_the_store_flag_is_one_name_and_a_hint_runs_as_printed(tmp_path, capsys):
    from tests.conftest import ROOT

    store = tmp_path / "s.duckdb"
    bad = tmp_path / "bad.jsonl"
    bad.write_text((ROOT / "tests" / "data" / "native_example.jsonl").read_text() + "not json\n")
    code, out = run("signals", ["ingest", str(bad), "--store", str(store)], capsys)
    assert code == 0
    hint = next(line.split("see: ", 1)[1] for line in out.splitlines() if "see: " in line)
    assert f"--store {store}" in hint
    code, out = run("signals", shlex.split(hint)[3:], capsys)        # runnable as printed
    assert code == 0 and "malformed_json" in out
    code, out = run("eval", ["registry", "--db", str(store)], capsys)
    assert code == 2 and "--db is now --store" in out


def test_options_and_overrides_mix_in_any_order(tmp_path, capsys):
    from tests.conftest import ROOT

    store = tmp_path / "s.duckdb"
    assert run("signals", ["ingest", str(ROOT / "tests" / "data" / "native_example.jsonl"),
                           "--store", str(store)], capsys)[0] == 0
    code, out = run("signals", ["build", "data=smoke", "--store", str(store), f"snapshot_root={tmp_path}/s",
                                "--json"], capsys)
    assert code == 0 and '"version"' in out
    code, out = run("signals", ["build", "--json", f"snapshot_root={tmp_path}/s", "data=smoke",
                                "--store", str(store)], capsys)
    assert code == 0 and '"version"' in out


@pytest.mark.parametrize("argv", [["stats"], ["quarantine"], ["snapshots"], ["build", "data=smoke"]])
def test_a_command_that_reads_refuses_a_missing_store(argv, tmp_path, capsys):
    missing = tmp_path / "missing.duckdb"
    code, out = run("signals", [*argv, "--store", str(missing)], capsys)
    assert code == 2 and "does not exist" in out and not missing.exists()
