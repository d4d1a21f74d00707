"""`mlapi demo`: train the demo models (app/cli/demo_models.py) into a folder."""
from __future__ import annotations


def register(commands) -> None:
    demo = commands.add_parser("demo", help="train the demo models (iris, tickets) into a folder")
    demo.add_argument("--out", default="models")
    demo.add_argument("--force", action="store_true", help="retrain even if the files exist")
    demo.set_defaults(handler=cmd_demo, reads_settings=False)


def cmd_demo(args, settings=None) -> int:
    from mlapi.cli.demo_models import write_demo_models

    written = write_demo_models(args.out, force=args.force)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"demo models already in {args.out}/ (use --force to retrain)")
    return 0
