"""The settings that hold secrets (API_KEYS / API_KEYS_FILE, ADMIN_TOKEN / ADMIN_TOKEN_FILE),
read for app/config.py: each given inline or as a file a secret manager mounts, never both,
never empty (that would mean no protection at all: fail closed, not open), and never quoted in
an error (it is a secret).
"""
from __future__ import annotations

import re
from typing import Mapping

from mlapi.errors import ConfigurationError

# What a key or token may be: an RFC 6750 bearer token (so it can travel in Authorization:
# Bearer), long enough not to be guessed. secrets.token_urlsafe(32) makes one.
_API_KEY = re.compile(r"[A-Za-z0-9._~+/-]{16,}=*")
_KEY_ADVICE = ("16 or more of A-Z a-z 0-9 - . _ ~ + / (make one with: python -c "
               "'import secrets; print(secrets.token_urlsafe(32))')")


def text(env: Mapping[str, str], key: str) -> str | None:
    """The value, stripped; unset and empty are the same (None)."""
    return (env.get(key) or "").strip() or None


def secret_file(env: Mapping[str, str], key: str) -> str | None:
    """The stripped content of the file `key` names (a secret kept out of the environment)."""
    path = text(env, key)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().strip()
    except OSError as exc:
        raise ConfigurationError(f"{key}={path!r} cannot be read: {exc.strerror}") from None
    if not secret:
        raise ConfigurationError(f"{key}={path!r} is empty: write the token into it, or unset {key}")
    return secret


def _inline_or_file(env: Mapping[str, str], key: str) -> tuple[str | None, str]:
    """`key`'s value, or the content of the file `key`_FILE names, and which of the two gave it."""
    inline = text(env, key)
    if inline and text(env, f"{key}_FILE"):
        raise ConfigurationError(f"{key} and {key}_FILE are both set: keep one ({key}_FILE for a mounted secret)")
    return (inline, key) if inline else (secret_file(env, f"{key}_FILE"), f"{key}_FILE")


def api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """API_KEYS (comma-separated) or API_KEYS_FILE (one a line, # starts a comment)."""
    content, source = _inline_or_file(env, "API_KEYS")
    if content is None:
        return ()
    if source == "API_KEYS":
        keys = [key.strip() for key in content.split(",")]
    else:
        keys = [line.split("#", 1)[0].strip() for line in content.splitlines()]
    keys = [key for key in keys if key]
    if not keys:
        raise ConfigurationError(f"{source} holds no key: write one key per line (# starts a comment), or unset it")
    for number, key in enumerate(keys, 1):
        if not _API_KEY.fullmatch(key):
            raise ConfigurationError(f"{source}: key {number} is not a key: write {_KEY_ADVICE}")
    return tuple(dict.fromkeys(keys))


def admin_token(env: Mapping[str, str]) -> str | None:
    token, source = _inline_or_file(env, "ADMIN_TOKEN")
    if token is not None and not _API_KEY.fullmatch(token):
        raise ConfigurationError(f"{source} is not a token: write {_KEY_ADVICE}")
    return token
