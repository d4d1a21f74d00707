"""The `mlapi` command: the parser and main(). Each group of sub-commands lives in its own
module and registers itself here: serve (the production server), card (a model's card),
demo (the demo models), data (`features`, `publish`) and bulk (`batch-predict`).

main() builds the Settings once, from the environment, and hands them to the command; a bad
setting is one line on stderr (`mlapi: <what is wrong>`, exit code 2), never a traceback,
and nothing has started by then.
"""
from __future__ import annotations

import argparse
import sys

from mlapi.config import Settings
from mlapi.errors import ConfigurationError


def build_parser() -> argparse.ArgumentParser:
    from mlapi.cli import bulk, card, data, demo, serve

    parser = argparse.ArgumentParser(prog="mlapi", description="Serve scikit-learn models over HTTP.")
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command reads the settings unless its register() says otherwise (`demo` reads none).
    parser.set_defaults(reads_settings=True)
    for group in (serve, card, demo, data, bulk):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env() if args.reads_settings else None
        return args.handler(args, settings) or 0
    except ConfigurationError as exc:
        print(f"mlapi: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
