"""The `mlapi` command: the parser and main(). Each group of sub-commands lives in its own
module and registers itself here: serve (the production server), card (a model's card),
demo (the demo models), data (`features`, `publish`) and bulk (`batch-predict`).

main() builds the Settings once, from the environment, and hands them to the command; a bad
setting is one line on stderr (`mlapi: <what is wrong>`, exit code 2), never a traceback,
and nothing has started by then. When the reader of the output leaves early
(`mlapi card --json | head -3`), every command stops quietly, as a Unix tool killed by SIGPIPE
does (exit code 141).
"""
from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys

from mlapi.config import Settings
from mlapi.errors import ConfigurationError, StoreUnavailable


# The module of each group, in the order `mlapi --help` lists them.
GROUPS = ("serve", "card", "demo", "data", "bulk")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, when `argv` starts with `serve`, of that one alone:
    `mlapi serve` is on every cold start's path, and the other groups' modules (with json,
    uuid, orjson) cost it ~8 ms of imports for parsers it does not use."""
    chosen = ("serve",) if (sys.argv[1:] if argv is None else argv)[:1] == ["serve"] else GROUPS
    parser = argparse.ArgumentParser(prog="mlapi", description="Serve scikit-learn models over HTTP.")
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command reads the settings unless its register() says otherwise (`demo` reads none).
    parser.set_defaults(reads_settings=True)
    for group in chosen:
        importlib.import_module(f"mlapi.cli.{group}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # now rather than at exit, so that a reader gone is caught below
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe broke (a database's socket): that is a fault to show
        # Not a SIGPIPE default handler instead: it would kill a command whose socket breaks
        # (the server, Pub/Sub, a database) with no word. What is left to write goes nowhere,
        # so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _run(argv: list[str] | None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        settings = Settings.from_env() if args.reads_settings else None
        return args.handler(args, settings) or 0
    except ConfigurationError as exc:
        print(f"mlapi: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:  # a database unreachable, or its driver not installed: one line, not a traceback
        print(f"mlapi: {exc.message}", file=sys.stderr)
        return 1


def _stdout_reader_gone() -> bool:
    """stdout is a pipe whose reader has closed it (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no stdout, or not a real file (captured)
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
