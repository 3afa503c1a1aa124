#!/usr/bin/env bash
# Build a flashable SkinScan SD image with pi-gen (64-bit Raspberry Pi OS Lite + the
# SkinScan stage). Needs a pi-gen checkout of its arm64 branch and internet access.
#
#   SKINSCAN_MAINT_PASSWORD=... hardware/image/build.sh --pi-gen DIR [--docker]
#                                                        [--clinic-key FILE]
#
#   --pi-gen DIR       a pi-gen checkout (git clone --branch arm64 <pi-gen repository>)
#   --docker           use pi-gen's build-docker.sh instead of build.sh
#   --clinic-key FILE  bake the clinic's public key into the image
#
# The image lands in DIR/deploy/. Re-running rebuilds the SkinScan stage from this tree.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "build.sh: error: $*" >&2; exit 1; }
info() { echo "build.sh: $*"; }

PIGEN=""
DOCKER=0
ASSEMBLE_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pi-gen) [[ $# -ge 2 ]] || die "--pi-gen needs a folder"; PIGEN="$(realpath "$2")"; shift 2 ;;
    --docker) DOCKER=1; shift ;;
    --clinic-key) [[ $# -ge 2 ]] || die "--clinic-key needs a file"
      ASSEMBLE_ARGS+=(--clinic-key "$(realpath "$2")"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ -n "$PIGEN" ]] || die "--pi-gen DIR is required (a checkout of pi-gen's arm64 branch)"
[[ -x "$PIGEN/build.sh" && -d "$PIGEN/stage2" ]] || die "$PIGEN is not a pi-gen checkout"
[[ -n "${SKINSCAN_MAINT_PASSWORD:-}" ]] \
  || die "set SKINSCAN_MAINT_PASSWORD: the console password of the 'maint' user"
if ! grep -rqs -- "arm64" "$PIGEN/build.sh" "$PIGEN/scripts/common"; then
  die "$PIGEN looks like a 32-bit pi-gen: use its arm64 branch (no runtime exists for 32-bit)"
fi

# pi-gen's docker build mounts only its own folder, so the stage goes inside it.
STAGE="$PIGEN/stage-skinscan"
info "assembling the SkinScan stage into $STAGE"
"$HERE/assemble.sh" "$STAGE" "${ASSEMBLE_ARGS[@]}"
export SKINSCAN_STAGE_DIR SKINSCAN_MAINT_PASSWORD
if [[ "$DOCKER" == 1 ]]; then SKINSCAN_STAGE_DIR="stage-skinscan"; else SKINSCAN_STAGE_DIR="$STAGE"; fi
# The config is sourced by pi-gen; its variables are expanded into a concrete copy
# here, because build-docker.sh passes only the file into its container.
CONFIG="$PIGEN/config-skinscan"
# It holds the maintenance password: never left behind.
trap 'rm -f "$CONFIG"' EXIT
(umask 077; bash -c 'set -euo pipefail; source "$1"; declare -p IMG_NAME RELEASE STAGE_LIST \
  DEPLOY_COMPRESSION TARGET_HOSTNAME LOCALE_DEFAULT KEYBOARD_KEYMAP KEYBOARD_LAYOUT \
  TIMEZONE_DEFAULT FIRST_USER_NAME FIRST_USER_PASS DISABLE_FIRST_BOOT_USER_RENAME ENABLE_SSH' \
  _ "$HERE/config" | sed 's/^declare -- //' >"$CONFIG")
# Only the SkinScan image is wanted, not the plain Lite image of stage2.
touch "$PIGEN/stage2/SKIP_IMAGES"
info "running pi-gen (an hour or more the first time)"
cd "$PIGEN"
if [[ "$DOCKER" == 1 ]]; then
  ./build-docker.sh -c config-skinscan
else
  [[ $EUID -eq 0 ]] || die "pi-gen's build.sh must run as root (or use --docker)"
  ./build.sh -c config-skinscan
fi
info "done: $(find "$PIGEN/deploy" -maxdepth 1 -name '*skinscan*' -printf '%f ' 2>/dev/null)"
