"""`mlapi batch-predict`: bulk scoring (placeholder until implemented)."""


def register(commands) -> None:
    pass
