"""Checks run inside the built image by tests/image/test_image.py (`python /checks/in_image.py CHECK`),
with the image's own Python: what the Dockerfile trimmed must still be there where it is used.

- libraries: every shared library in the virtualenv still loads (dlopen, every symbol bound):
  the builder strips their symbol tables and turns duplicates into links, and a library that
  broke would otherwise only fail when its module is first imported, perhaps in production;
- bytecode: after importing what the server imports (mlapi.wsgi, as uWSGI's master does), every
  module loaded from source has up-to-date bytecode: the server cannot write any, so a module
  without it is compiled again at every start.

Prints what failed, one per line, and exits 1 if anything did.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import struct
import sys
import sysconfig
from pathlib import Path


def shared_libraries(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.so*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as file:
                if file.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def check_libraries() -> list[str]:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    libraries = shared_libraries(site_packages)
    assert len(libraries) > 100, f"only {len(libraries)} shared libraries under {site_packages}"
    failed = []
    for library in libraries:
        try:
            ctypes.CDLL(str(library))  # RTLD_NOW: every symbol bound, as on import
        except OSError as exc:
            failed.append(f"{library}: {exc}")
    print(f"{len(libraries)} shared libraries loaded, {len(failed)} failed", file=sys.stderr)
    return failed


def stale_bytecode(source: str, cached: str) -> bool:
    """True when `cached` is missing or does not match `source` (the timestamp-based pyc header
    the import system checks: flags 0, then the source's mtime and size)."""
    try:
        with open(cached, "rb") as file:
            header = file.read(16)
    except OSError:
        return True
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return True
    flags, mtime, size = struct.unpack("<3I", header[4:16])
    if flags:
        return False  # hash-based: checked (or not) by its own rule, never rewritten
    stat = os.stat(source)
    return mtime != (int(stat.st_mtime) & 0xFFFFFFFF) or size != (stat.st_size & 0xFFFFFFFF)


def check_bytecode() -> list[str]:
    import mlapi.wsgi  # noqa: F401  (loads the models, as the server's master does)

    missing = []
    modules = [module for module in list(sys.modules.values()) if getattr(module, "__spec__", None)]
    for module in modules:
        source, cached = module.__spec__.origin, module.__spec__.cached
        if source and cached and source.endswith(".py") and stale_bytecode(source, cached):
            missing.append(f"{module.__name__}: {source}")
    print(f"{len(modules)} modules imported, {len(missing)} without bytecode", file=sys.stderr)
    return missing


CHECKS = {"libraries": check_libraries, "bytecode": check_bytecode}

if __name__ == "__main__":
    failures = CHECKS[sys.argv[1]]()
    print("\n".join(failures))
    sys.exit(1 if failures else 0)
