"""Who is calling: the one answer the request pipeline gives every layer that keeps state per
caller (rate limits; the call log and the prediction cache of issue 17).

With API keys on, a caller is its key's id ("key:1a2b3c4d"): every address the key is used from
is one caller. Without keys, the client's address ("ip:203.0.113.7"). X-Forwarded-For is read
only as far as it was written by proxies we trust: each of TRUSTED_PROXY_HOPS proxies appends
the address it saw, so the client is the entry that many places from the right (Cloud Run's
front end appends one: TRUSTED_PROXY_HOPS=1). Entries to its left are the client's own words,
never read, so a forged header cannot make a client someone else; with 0 hops (the default)
the header is ignored and the caller is the TCP peer. An IPv6 client is its /64: one host holds
a whole /64 and could otherwise change its address per request; an IPv4 client seen through a
dual-stack socket (::ffff:a.b.c.d) is its IPv4 address, else every IPv4 client would be one.
"""
from __future__ import annotations

import ipaddress

from mlapi.http.api_keys import ApiKeys, open_path

# environ key under which the pipeline leaves the caller for the layers inside it.
CALLER_KEY = "mlapi.caller"
IPV6_PREFIX = 64


def caller_of(environ: dict) -> str:
    """The caller the pipeline identified (see module docstring)."""
    return environ[CALLER_KEY]


def client_address(environ: dict, trusted_hops: int) -> str:
    """The address of the client as the outermost trusted proxy saw it (the TCP peer with no
    trusted proxy, or when the header has fewer entries than proxies: the chain is not ours)."""
    if trusted_hops:
        entries = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if len(entries) >= trusted_hops and entries[-trusted_hops].strip():
            return entries[-trusted_hops].strip()
    return environ.get("REMOTE_ADDR") or "unknown"


def address_caller(address: str) -> str:
    if ":" in address:  # IPv6 (an IPv4 address has no colon): its /64, or the IPv4 address it maps
        try:
            parsed = ipaddress.IPv6Address(address)
        except ValueError:
            pass
        else:
            if parsed.ipv4_mapped is not None:
                return f"ip:{parsed.ipv4_mapped}"
            return f"ip:{ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False)}"
    return f"ip:{address[:64]}"  # bounded: a trusted proxy's entry still ends up in storage keys


class Callers:
    def __init__(self, trusted_hops: int, keys: ApiKeys | None):
        self.trusted_hops = trusted_hops
        self.keys = keys

    def identify(self, environ: dict) -> str:
        """The caller, also left in environ[CALLER_KEY]; ApiKeyRequired (401) on a route that
        needs a key and has no valid one."""
        if self.keys is not None and not open_path(environ.get("PATH_INFO", "")):
            caller = "key:" + self.keys.identify(environ)
        else:
            caller = self.address(environ)
        environ[CALLER_KEY] = caller
        return caller

    def address(self, environ: dict) -> str:
        """The caller by its address alone: who a request is without API keys, and whose count a
        request refused for its key is charged to (http/pipeline.py)."""
        return address_caller(client_address(environ, self.trusted_hops))


def build_callers(settings) -> Callers:
    return Callers(settings.trusted_proxy_hops, ApiKeys(settings.api_keys) if settings.api_keys else None)
