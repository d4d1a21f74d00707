"""`mlapi card [NAME[:VERSION] | MODEL_FILE ...] [--json]`: a model's card in the terminal.

The models are loaded as the server loads them (MODELS, or the files named, which replace
MODELS as in `mlapi serve`); no server needs to run. The card itself is
app/serving/card.py's; this module picks the models and prints it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mlapi.config import Settings
from mlapi.errors import ConfigurationError, MlapiError
from mlapi.naming import ModelSpec, split_model_ref

# An argument naming one of these is a model file, not a served model's name.
ARTIFACT_SUFFIXES = (".joblib", ".pkl", ".pickle", ".skops")
# Categories listed per feature in the text card (all of them in --json).
SHOWN_CATEGORIES = 10


def register(commands) -> None:
    card = commands.add_parser("card", help="show a model's card: features and their types, classes, sha256, "
                                            "which code computes it (loads MODELS, or the files named)")
    card.add_argument("models", nargs="*", metavar="MODEL",
                      help="NAME or NAME:VERSION of a model in MODELS (default: every one), or model files "
                           "as `mlapi serve` takes them (PATH, NAME=PATH, NAME:VERSION=PATH)")
    card.add_argument("--json", action="store_true",
                      help="print the card as JSON (an array when there are several)")
    card.set_defaults(handler=cmd_card)


def cmd_card(args, settings: Settings) -> int:
    from mlapi.cli.serve import model_files

    files = [arg for arg in args.models if _is_model_file(arg)]
    picked = [arg for arg in args.models if arg not in files]
    specs = _pick(model_files(files) if files else settings.models, picked)
    cards, failed = _load_cards(specs, settings)
    if args.json:
        if cards:
            print(json.dumps(cards[0] if len(cards) == 1 else cards, indent=2))
    else:
        print("\n\n".join(render(card) for card in cards))
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


def _is_model_file(argument: str) -> bool:
    return "=" in argument or "/" in argument or argument.endswith(ARTIFACT_SUFFIXES) or Path(argument).is_file()


def _pick(specs: tuple[ModelSpec, ...], references: list[str]) -> list[ModelSpec]:
    """The specs the NAME[:VERSION] references name, in their order; all of them without any."""
    if not references:
        return list(specs)
    picked = []
    for reference in references:
        name, version = split_model_ref(reference)
        matching = [spec for spec in specs if spec.name == name and version in (None, spec.version)]
        if not matching:
            known = ", ".join(f"{spec.name}:{spec.version}" for spec in specs)
            raise ConfigurationError(f"no model {reference!r} to show; configured: {known} "
                                     f"(set MODELS, or name a model file: mlapi card path/to/model.joblib)")
        picked += [spec for spec in matching if spec not in picked]
    return picked


def _load_cards(specs: list[ModelSpec], settings: Settings) -> tuple[list[dict], list[str]]:
    from mlapi.serving.card import model_card
    from mlapi.serving.loading import load_model

    cards, failed = [], []
    for spec in specs:
        try:
            cards.append(model_card(load_model(spec, settings)))
        except MlapiError as exc:  # the reason the server would give in /readyz
            failed.append(f"{spec.name}:{spec.version} NOT loaded from {spec.uri}: {exc.message}")
    return cards, failed


def render(card: dict) -> str:
    """The card as aligned text: one fact per line, one line per feature."""
    facts = [("task", f"{card['task']}, {card['input_kind']} input"),
             ("source", card["source"]),
             ("sha256", card["sha256"] or "-")]
    if card["classes"] is not None:
        facts.append(("classes", ", ".join(str(label) for label in card["classes"])))
    facts.append(("compute path", card["compute_path"]))
    if card["features"] is not None:
        facts.append(("features", str(len(card["features"]))))
    elif card["n_features"] is not None:
        facts.append(("features", f"{card['n_features']}, fitted without names: send each instance as a list"))
    elif card["input_kind"] == "text":
        facts.append(("input", "one text per instance"))
    lines = [f"{card['name']}:{card['version']}"]
    lines += [f"  {label:<13}{value}" for label, value in facts]
    width = max((len(feature["name"]) for feature in card["features"] or ()), default=0)
    for feature in card["features"] or ():
        kind = feature["type"] + _categories_text(feature.get("categories"))
        lines.append(f"    {feature['name']:<{width}}  {kind}")
    if card["example"] is not None:
        lines.append(f"  {'example':<13}{json.dumps(card['example'])}")
    return "\n".join(lines)


def _categories_text(categories: list | None) -> str:
    if not categories:
        return ""
    shown = ", ".join(str(value) for value in categories[:SHOWN_CATEGORIES])
    more = len(categories) - SHOWN_CATEGORIES
    return f": {shown}" + (f", ... ({len(categories)} in all)" if more > 0 else "")
