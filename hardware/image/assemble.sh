#!/usr/bin/env bash
# Assemble the SkinScan pi-gen stage, ready for pi-gen's STAGE_LIST: a copy of
# stage-skinscan/ whose 01-skinscan/files/share holds the app wheel built from this
# tree, the units, provision.sh and, if given, the clinic's public key.
#
#   hardware/image/assemble.sh DEST [--wheel WHEEL] [--clinic-key FILE]
#
# DEST is replaced. Without --wheel, the wheel is built here with pip.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

die() { echo "assemble.sh: error: $*" >&2; exit 1; }
info() { echo "assemble.sh: $*"; }

[[ $# -ge 1 ]] || die "usage: $0 DEST [--wheel WHEEL] [--clinic-key FILE]"
DEST="$1"; shift
WHEEL=""
CLINIC_KEY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheel) [[ $# -ge 2 ]] || die "--wheel needs a file"; WHEEL="$2"; shift 2 ;;
    --clinic-key) [[ $# -ge 2 ]] || die "--clinic-key needs a file"; CLINIC_KEY="$2"; shift 2 ;;
    *) die "unknown option '$1'" ;;
  esac
done
[[ -z "$CLINIC_KEY" || -f "$CLINIC_KEY" ]] || die "clinic key $CLINIC_KEY not found"

build_wheel() {
  # The project's own venv has setuptools; a bare python3 needs network for build isolation.
  local out="$1" py=python3 isolation=()
  if [[ -x "$ROOT/.venv/bin/python" ]] && "$ROOT/.venv/bin/python" -c 'import setuptools, wheel' 2>/dev/null; then
    py="$ROOT/.venv/bin/python"
    isolation=(--no-build-isolation)
  fi
  info "building the skinscan wheel from $ROOT"
  # A private copy keeps build/ and *.egg-info out of the working tree.
  local src
  src="$(mktemp -d)"
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    # The tracked files as they are in the working tree: no venvs, runs or caches.
    git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -cf - | tar -C "$src" -xf -
  else
    cp -r "$ROOT/." "$src/"
  fi
  "$py" -m pip wheel --no-deps --disable-pip-version-check -q "${isolation[@]}" -w "$out" "$src" \
    || { rm -rf "$src"; die "pip wheel failed"; }
  rm -rf "$src"
}

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
cp -r "$HERE/stage-skinscan" "$DEST"
SHARE="$DEST/01-skinscan/files/share"
"$ROOT/hardware/pi/provision.sh" write-share "$SHARE"
mkdir -p "$SHARE/dist"
if [[ -n "$WHEEL" ]]; then
  [[ -f "$WHEEL" ]] || die "wheel $WHEEL not found"
  cp "$WHEEL" "$SHARE/dist/"
else
  build_wheel "$SHARE/dist"
fi
compgen -G "$SHARE/dist/skinscan-*.whl" >/dev/null || die "no skinscan wheel in $SHARE/dist"
if [[ -n "$CLINIC_KEY" ]]; then
  install -m 0644 "$CLINIC_KEY" "$SHARE/clinic.pub"
fi
info "stage ready: $DEST ($(basename "$(compgen -G "$SHARE/dist/skinscan-*.whl")"))"
