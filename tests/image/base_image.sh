#!/usr/bin/env bash
# A stand-in for the Dockerfile's base image (python:3.11.13-slim-bookworm), built from Debian's
# own packages where no image registry can be reached: Debian bookworm (`--variant=minbase`) with
# its python3 (3.11, as the Dockerfile's), pip, the headers uWSGI compiles against,
# ca-certificates and netbase.
#
#   tests/image/base_image.sh OUT.tar [NAME]
#
# writes the root filesystem to OUT.tar (kept when it exists: delete it to rebuild) and, given
# NAME, imports it into podman under that name (`podman import`), so that `podman build` finds
# the Dockerfile's FROM locally. tests/image/test_image.py runs it; by hand, as root:
#
#   tests/image/base_image.sh /tmp/bookworm-python.tar python:3.11.13-slim-bookworm
#   make build-image CONTAINER_ENGINE=podman
#
# Needs mmdebstrap (Debian's package; as root, no user namespaces needed) and, for NAME, podman.
set -euo pipefail

out=${1:?usage: base_image.sh OUT.tar [NAME]}
name=${2:-}

if [ ! -s "$out" ]; then
  partial="$out.partial"
  rm -f "$partial"
  # The customize hooks make Debian's Python behave like the official python image's:
  # - PEP 668's EXTERNALLY-MANAGED marker goes (the Dockerfile pip-installs into the system
  #   Python, as one does in python:slim, where that Python is the image's own);
  # - python and pip are on PATH under those names, in /usr/local/bin as in python:slim;
  # - the host's extra CA certificates (a proxy's, a company's) are trusted: pip inside the
  #   build reaches the package index through the same network as the host.
  # - as in python:slim, no static libpython (uWSGI links the shared one).
  # And as in debian:bookworm-slim, which python:slim is made from: /usr merged by symlinks (not
  # by the usrmerge package, which brings perl), no manuals, docs or translations; dpkg keeps
  # these exclusions, so the builder's apt-get install stays as lean.
  # The variant, not a slimmer one, because apt must still work in the Dockerfile's builder.
  # stdin from /dev/null: mmdebstrap reads a sources.list from a non-terminal stdin.
  mmdebstrap --variant=minbase --format=tar --quiet \
    --include=python3,python3-pip,python3-dev,ca-certificates,netbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf /usr/bin/python3 "$1"/usr/local/bin/python' \
    --customize-hook='ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip' \
    --customize-hook='for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -e "$crt" ] && cp "$crt" "$1"/usr/local/share/ca-certificates/; done;
        chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3.*/config-*/libpython3*.a' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$partial" \
    'deb http://deb.debian.org/debian bookworm main' \
    'deb http://deb.debian.org/debian bookworm-updates main' \
    'deb http://deb.debian.org/debian-security bookworm-security main' </dev/null
  mv "$partial" "$out"
fi

if [ -n "$name" ]; then
  # CMD and LANG as python:slim sets them.
  podman import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$out" "$name" >/dev/null
fi
