"""Pure codecs, one module per wire format: plain dicts in, plain dicts out, no Flask."""
