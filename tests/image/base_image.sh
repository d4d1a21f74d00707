#!/usr/bin/env bash
# A stand-in for the Dockerfile's base image (python:3.11.13-slim-bookworm), built from Debian's
# own packages where no image registry can be reached: Debian bookworm (`--variant=minbase`) with
# its python3 (3.11, as the Dockerfile's), pip, Python's own headers and libpython (uWSGI compiles
# and links against them), ca-certificates and netbase. Made to carry what python:slim carries,
# neither more (the image test's size would be inflated) nor less (it would be flattered): 133 MB
# here, for 130 MB of python:3.11.16-slim-bookworm (docker-library/repo-info's "Virtual Size").
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
  # - as in python:slim, no static libpython (uWSGI links the shared one);
  # - as in python:slim, Python's headers and libpython3.11.so but no C library headers
  #   (libc6-dev, linux-libc-dev and the rest of python3-dev's dependencies, 20 MB): python3-dev
  #   is installed for apt to pick the matching versions, its Python files are kept aside, it is
  #   purged with what it pulled in (libpython3.11 itself kept: uWSGI links it), and the files
  #   are put back, outside dpkg as python:slim's own Python is. The builder's build-essential
  #   brings the C headers back where they are needed;
  # - as in python:slim (whose Dockerfile deletes every *.pyc under /usr/local after
  #   `make install`), no bytecode for the standard library or pip (24 MB): Debian's packages
  #   compile it when installed. The image's runtime stage compiles what its servers import.
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
    --customize-hook='chroot "$1" dpkg-query -L libpython3.11-dev python3.11-dev >"$1"/tmp/python-dev.list' \
    --customize-hook='cd "$1" && while read -r path; do
        if [ -f ".$path" ] || [ -L ".$path" ]; then echo ".$path"; fi; done <tmp/python-dev.list |
        tar -cf tmp/python-dev.tar -T -' \
    --customize-hook='chroot "$1" apt-mark manual libpython3.11 >/dev/null;
        chroot "$1" apt-get purge -y --auto-remove python3-dev >/dev/null' \
    --customize-hook='tar -xf "$1"/tmp/python-dev.tar -C "$1" && rm "$1"/tmp/python-dev.*' \
    --customize-hook='find "$1"/usr/lib/python3* -name "*.pyc" -delete;
        find "$1"/usr/lib/python3* -type d -name __pycache__ -empty -delete' \
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
