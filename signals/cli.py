"""One grammar for every command: `python -m PKG VERB [options] [overrides]`.

Each package's `__main__.py` lists its verbs (`Verb`: a function, its arguments, a
runnable example) and calls `main`. Options and Hydra overrides (`KEY=VALUE`,
`+exp=NAME`) mix in any order; `--store FILE` is the one flag for the signal store
everywhere (for commands that compose `conf/`, it is the override `store=FILE`).
A misspelled option or key exits 2 naming the close match; every command shares
one exit-code table:

    0  ok (also: nothing to do)
    1  failed: an unexpected error, or a stage of the pipeline failed (rerunning resumes)
    2  bad input: unknown option or key, bad value, missing file, store or snapshot
    3  locked: another process holds the store or the scheduled job's lock
    4  not promoted: the candidate was trained and evaluated, the gate did not promote it
    5  quarantined: `ingest --strict` stored some records in quarantine
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_NOT_PROMOTED, EXIT_QUARANTINED = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    EXIT_OK: "ok (also: nothing to do)",
    EXIT_FAILED: "failed: an unexpected error, or a pipeline stage failed (rerunning resumes)",
    EXIT_USAGE: "bad input: unknown option or key, bad value, missing file, store or snapshot",
    EXIT_LOCKED: "locked: another process holds the store or the scheduled job's lock",
    EXIT_NOT_PROMOTED: "not promoted: trained and evaluated, but the gate did not promote it",
    EXIT_QUARANTINED: "quarantined: `ingest --strict` stored some records in quarantine",
}


@dataclass
class Verb:
    """A subcommand: `run(args) -> exit code`; its docstring's first line is its help."""
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    example: str = ""
    overrides: bool = False          # takes Hydra overrides (KEY=VALUE) as positionals
    aliases: list[str] = field(default_factory=list)


class Parser(argparse.ArgumentParser):
    """argparse that suggests the close match for an unknown option and exits 2."""

    def error(self, message: str):
        if "unrecognized arguments" in message:
            given = message.split(":", 1)[1].split()
            options = [s for a in self._actions for s in a.option_strings]
            for g in given:
                name = g.split("=", 1)[0]
                if name == "--db":
                    message = "--db is now --store (one flag for the signal store in every command)"
                    break
                if name.startswith("-"):
                    near = difflib.get_close_matches(name, options, n=2, cutoff=0.6)
                    if near:
                        message += f" (did you mean {', '.join(near)}?)"
                        break
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_store(p: argparse.ArgumentParser, *, wait: float | None = 10.0) -> None:
    """`--store FILE` (and `--wait SECONDS` for commands that may meet another writer)."""
    p.add_argument("--store", default=None, metavar="FILE",
                   help="the signal store (default: $SIGNALS_DB, else data/signal.duckdb)")
    if wait is not None:
        p.add_argument("--wait", type=float, default=wait, metavar="SECONDS",
                       help=f"wait this long for another process holding the store (default {wait:g})")


def store_overrides(args: argparse.Namespace) -> list[str]:
    """The verb's overrides with `--store FILE` as `store=FILE` (the flag wins)."""
    out = list(getattr(args, "overrides", []) or [])
    if getattr(args, "store", None):
        out.append(f"store={args.store}")
    return out


def _help_line(fn) -> str:
    doc = (fn.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _parser(prog: str, name: str, verb: Verb) -> Parser:
    doc = inspect.cleandoc(verb.run.__doc__ or "")
    epilog = f"example:\n  {verb.example}" if verb.example else None
    p = Parser(prog=f"{prog} {name}", description=doc, epilog=epilog,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    verb.arguments(p)
    if verb.overrides:
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="Hydra overrides, e.g. +exp=smoke data.split.method=user (any order with options)")
    return p


def usage(prog: str, summary: str, verbs: dict[str, Verb]) -> str:
    lines = [f"usage: {prog} VERB [options] [overrides]", "", summary, "", "verbs:"]
    for name, verb in verbs.items():
        lines.append(f"  {name:12} {_help_line(verb.run)}")
    lines += ["", f"`{prog} VERB --help` shows a verb's options and a runnable example.", "exit codes:"]
    lines += [f"  {code}  {text}" for code, text in EXIT_CODES.items()]
    return "\n".join(lines)


def main(prog: str, summary: str, verbs: dict[str, Verb], argv: list[str] | None = None,
         *, default: str | None = None) -> int:
    """Parse `VERB [options] [overrides]`, run the verb, map errors to the exit-code table."""
    os.environ.setdefault("TZ", "UTC")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(prog, summary, verbs))
        return EXIT_OK if argv else EXIT_USAGE
    names = {a: n for n, v in verbs.items() for a in (n, *v.aliases)}
    if argv[0] in names:
        name, rest = names[argv[0]], argv[1:]
    elif default and ("=" in argv[0] or argv[0].startswith("-")):
        name, rest = default, argv                # `python -m train +exp=smoke` is `run +exp=smoke`
    else:
        near = difflib.get_close_matches(argv[0], list(verbs), n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        print(f"{prog}: error: unknown verb {argv[0]!r}{hint}; verbs: {', '.join(verbs)}", file=sys.stderr)
        return EXIT_USAGE
    verb = verbs[name]
    parser = _parser(prog, name, verb)
    _check_options(parser, rest)
    args = parser.parse_intermixed_args(rest) if verb.overrides else parser.parse_args(rest)
    if verb.overrides:
        bad = [o for o in args.overrides if "=" not in o and not o.startswith("~")]   # ~KEY deletes
        if bad:
            parser.error(f"{bad[0]!r} is not an override: write KEY=VALUE (e.g. +exp=smoke or seed=1)")
    return run_verb(prog, verb, args)


def _check_options(parser: Parser, argv: list[str]) -> None:
    """An unknown `--option` fails first, naming the close match (before positionals confuse argparse)."""
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    for token in argv:
        if token == "--":
            return
        name = token.split("=", 1)[0]
        if token.startswith("--") and not any(o.startswith(name) for o in options):
            parser.error(f"unrecognized arguments: {token}")


def run_verb(prog: str, verb: Verb, args: argparse.Namespace) -> int:
    from signals.store import StoreLocked

    try:
        return int(verb.run(args) or 0)
    except StoreLocked as e:
        print(f"{prog}: locked: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)     # ConfigError, RecipeError, EvalError, StoreMissing, ...
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - a bug or an environment failure: the traceback helps
        traceback.print_exc()
        return EXIT_FAILED
