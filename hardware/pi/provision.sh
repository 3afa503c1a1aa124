#!/usr/bin/env bash
# Turn a Raspberry Pi running 64-bit Raspberry Pi OS (bookworm or trixie) into a
# SkinScan device, or undo that. setup.sh calls it on a Pi; the pi-gen stage and
# customize-image.sh call it inside an image being built.
#
#   provision.sh install   [--wheel PATH] [--clinic-key FILE] [--bundle-key FILE]
#                          [--no-apt] [--image]
#   provision.sh uninstall           remove everything except the scan records
#   provision.sh check     [--image] only the platform checks
#   provision.sh write-share DEST    copy what an installed device keeps (the image stage)
#   provision.sh render-config TOML  print the /etc/skinscan/config.toml it would write
#
#   --wheel PATH       install this skinscan wheel (or the newest one in this folder)
#                      instead of building from the source tree
#   --clinic-key FILE  the clinic's public key for sealed exports (clinic.pub)
#   --bundle-key FILE  a signing key (signing.pub) this scanner trusts for model bundles
#                      (repeatable); kept in /etc/skinscan/bundle-keys, owned by root
#   --no-apt           do not install Debian packages (the image stage installed them)
#   --image            building an image, not a running Pi: skip live-hardware checks,
#                      do not start the service and do not create the device key (each
#                      device makes its own at first start)
#
# Idempotent: a re-run brings the install up to date. Records in /var/lib/skinscan
# (the database, images, device key and clinic key) are never deleted.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The project root: the repository, or /opt/skinscan/share on an installed device.
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

# Files are read under SKINSCAN_SYSROOT (tests point it at a fake root); commands act
# on the running system.
SYSROOT="${SKINSCAN_SYSROOT:-}"
PREFIX=/opt/skinscan
VENV="$PREFIX/venv"
SHARE="$PREFIX/share"
ETC_DIR=/etc/skinscan
DATA_DIR=/var/lib/skinscan
UNIT_DIR=/etc/systemd/system
SERVICE_USER=skinscan
# i2c: /dev/i2c-1, where the UPS's battery fuel gauge is read.
SERVICE_GROUPS=(video gpio input render i2c)
UNITS=(skinscan.service skinscan-poweroff.service skinscan-poweroff.path)
ENABLE_UNITS=(skinscan.service skinscan-poweroff.path)
# The polkit rule that lets the service user mount USB sticks through udisks2 (the
# menu's Export to USB, Free space and Update model; systemd/README.md "USB sticks").
USB_RULE=50-skinscan-usb.rules
POLKIT_RULES_DIR=/etc/polkit-1/rules.d
STAGE_DIR="$ROOT/hardware/image/stage-skinscan"
# Debian packages: the stage's package lists are the one source for both paths.
APT_LISTS=("$STAGE_DIR/00-rpi-archive/00-packages-nr" "$STAGE_DIR/01-skinscan/00-packages-nr")
# LiteRT ships aarch64 wheels for these Python versions only.
PY_MIN=10
PY_MAX=14

die() { echo "provision.sh: error: $*" >&2; exit 1; }
warn() { echo "provision.sh: warning: $*" >&2; }
info() { echo "provision.sh: $*"; }

usage() { sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# --- platform checks -------------------------------------------------------------

os_release_value() {
  # Prints KEY's value from os-release without sourcing the file.
  local key="$1" file="$SYSROOT/etc/os-release"
  [[ -r "$file" ]] || file="$SYSROOT/usr/lib/os-release"
  [[ -r "$file" ]] || return 0
  sed -n "s/^${key}=//p" "$file" | head -n 1 | tr -d '"'
}

check_architecture() {
  # A 64-bit kernel with a 32-bit userland reports aarch64 in uname, so ask dpkg.
  local arch
  arch="$(dpkg --print-architecture 2>/dev/null || true)"
  case "$arch" in
    arm64) ;;
    armhf|armel)
      die "this is a 32-bit Raspberry Pi OS ($arch). SkinScan needs the 64-bit OS: neither" \
        "LiteRT nor tflite-runtime ships a 32-bit ARM build, so no inference runtime exists" \
        "for it. Flash 'Raspberry Pi OS Lite (64-bit)' with Raspberry Pi Imager and run again." ;;
    "") die "cannot tell the OS architecture (dpkg not found): a Debian-based 64-bit Raspberry Pi OS is needed" ;;
    *) die "unsupported architecture '$arch': the device install needs 64-bit ARM (arm64)" ;;
  esac
}

check_os_release() {
  local id codename version
  id="$(os_release_value ID)"
  codename="$(os_release_value VERSION_CODENAME)"
  version="$(os_release_value VERSION_ID)"
  [[ -n "$id" ]] || die "cannot read /etc/os-release: is this Raspberry Pi OS?"
  if [[ "$id" == "raspbian" ]]; then
    die "this is Raspbian, the 32-bit Raspberry Pi OS: no inference runtime exists for it." \
      "Flash 'Raspberry Pi OS Lite (64-bit)' and run again."
  fi
  [[ "$id" == "debian" ]] || warn "untested distribution '$id'; continuing as if it were Debian"
  case "$codename" in
    bookworm|trixie) ;;
    stretch|buster|bullseye)
      die "Raspberry Pi OS '$codename' (Debian ${version:-?}) is too old: SkinScan needs bookworm" \
        "(Debian 12) or trixie (Debian 13), for Python >= 3.10, libcamera's picamera2 and KMS." \
        "Flash a current 64-bit Raspberry Pi OS Lite." ;;
    "")
      if [[ "$version" =~ ^[0-9]+$ ]] && (( version < 12 )); then
        die "Debian $version is too old: SkinScan needs bookworm (12) or trixie (13)"
      fi
      warn "unknown OS release (VERSION_CODENAME is empty); continuing" ;;
    *) warn "untested release '$codename'; bookworm and trixie are the tested ones" ;;
  esac
}

check_python() {
  local minor
  command -v python3 >/dev/null || die "python3 is missing: apt install python3 python3-venv"
  minor="$(python3 -c 'import sys; print(sys.version_info[1] if sys.version_info[0] == 3 else 0)')"
  if (( minor < PY_MIN || minor > PY_MAX )); then
    die "python3 is 3.$minor; the LiteRT runtime has aarch64 wheels for Python 3.$PY_MIN to 3.$PY_MAX only"
  fi
}

boot_config() {
  local f
  for f in "$SYSROOT/boot/firmware/config.txt" "$SYSROOT/boot/config.txt"; do
    if [[ -f "$f" ]]; then echo "$f"; return 0; fi
  done
  return 1
}

check_camera_interface() {
  # picamera2 needs the libcamera stack: camera_auto_detect=1 (the default) or an
  # explicit sensor overlay, and not the legacy stack (start_x=1).
  local image_mode="$1" cfg active
  if ! cfg="$(boot_config)"; then
    if [[ "$image_mode" == 1 ]]; then
      warn "no boot config.txt here (not a Raspberry Pi OS image?): camera interface not checked"
      return 0
    fi
    die "no /boot/firmware/config.txt: cannot check the camera interface (is this Raspberry Pi OS?)"
  fi
  # Only the lines outside a [section] filter other than [all] matter; a simple
  # reading of the uncommented lines is enough for the settings checked here.
  active="$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$cfg" | grep -v '^$' || true)"
  if grep -qE '^start_x=1' <<<"$active"; then
    die "the legacy camera stack is enabled (start_x=1 in $cfg). picamera2 needs libcamera:" \
      "remove start_x=1 (and gpu_mem) and set camera_auto_detect=1, then reboot."
  fi
  if grep -qE '^camera_auto_detect=0' <<<"$active" \
    && ! grep -qE '^dtoverlay=(imx|ov)[0-9]+' <<<"$active"; then
    die "the camera interface is disabled (camera_auto_detect=0 and no sensor dtoverlay in $cfg)." \
      "Set camera_auto_detect=1 (or dtoverlay=imx708 for Camera Module 3), then reboot."
  fi
  if [[ "$image_mode" != 1 ]]; then
    if ! compgen -G "/dev/media*" >/dev/null && ! compgen -G "/dev/video*" >/dev/null; then
      warn "no camera device found right now: check the ribbon cable (contacts facing the" \
        "right way, latch closed), then 'rpicam-hello --list-cameras'. Installing anyway."
    fi
  fi
}

preflight() {
  local image_mode="$1"
  check_architecture
  check_os_release
  check_python
  check_camera_interface "$image_mode"
}

# --- install ---------------------------------------------------------------------

require_root() { [[ $EUID -eq 0 ]] || die "run as root: sudo $0 $*"; }

systemd_running() { [[ -d /run/systemd/system ]] && ! systemd-detect-virt --quiet --chroot 2>/dev/null; }

read_package_list() {
  # Package names from pi-gen style lists: '#' comments, several names per line.
  local f
  for f in "$@"; do
    [[ -r "$f" ]] || die "package list $f is missing"
    sed -e 's/#.*//' "$f" | tr -s '[:space:]' '\n' | grep -v '^$' || true
  done
}

install_packages() {
  local pkgs missing=() p
  mapfile -t pkgs < <(read_package_list "${APT_LISTS[@]}")
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    info "Debian packages already installed"
    return 0
  fi
  info "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || die "apt-get could not install ${missing[*]} (python3-picamera2 and python3-lgpio come" \
      "from the Raspberry Pi archive, which Raspberry Pi OS has configured)"
}

ensure_user() {
  local g
  for g in "${SERVICE_GROUPS[@]}"; do
    # Raspberry Pi OS has them all; a plain Debian lacks gpio and i2c.
    getent group "$g" >/dev/null || groupadd --system "$g"
  done
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    info "creating system user $SERVICE_USER"
    useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "SkinScan service" "$SERVICE_USER"
  fi
  usermod --append --groups "$(IFS=,; echo "${SERVICE_GROUPS[*]}")" "$SERVICE_USER"
}

ensure_dirs() {
  install -d -o root -g root -m 0755 "$PREFIX"
  install -d -o root -g "$SERVICE_USER" -m 0750 "$ETC_DIR"
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$DATA_DIR"
  # Records kept from an earlier install may belong to an older uid.
  chown -R "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR"
}

write_share() {
  # What a device needs later without the repository (this script, the units, the
  # package lists, the pip constraints and the docs), in the repository's layout.
  local dest="$1"
  install -d -m 0755 "$dest/hardware/pi" "$dest/hardware/image" "$dest/systemd"
  install -m 0755 "$ROOT/hardware/pi/provision.sh" "$dest/hardware/pi/"
  install -m 0644 "$ROOT"/hardware/pi/constraints-*.txt "$dest/hardware/pi/"
  rm -rf "$dest/hardware/image/stage-skinscan"
  cp -r "$STAGE_DIR" "$dest/hardware/image/"
  rm -rf "$dest/hardware/image/stage-skinscan/01-skinscan/files"
  install -m 0644 "${UNITS[@]/#/$ROOT/systemd/}" "$dest/systemd/"
  install -m 0644 "$ROOT/systemd/$USB_RULE" "$dest/systemd/"
  if [[ -f "$ROOT/hardware/README.md" ]]; then
    install -m 0644 "$ROOT/hardware/README.md" "$dest/README.md"
  fi
}

copy_share() {
  local tmp="$SHARE.new"
  [[ "$ROOT" == "$SHARE" ]] && return 0
  rm -rf "$tmp"
  write_share "$tmp"
  if [[ -d "$SHARE/dist" ]]; then cp -r "$SHARE/dist" "$tmp/"; fi
  rm -rf "$SHARE"
  mv "$tmp" "$SHARE"
}

pick_wheel() {
  local path="$1" newest
  if [[ -d "$path" ]]; then
    newest="$(find "$path" -maxdepth 1 -name 'skinscan-*.whl' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)"
    [[ -n "$newest" ]] || die "no skinscan-*.whl in $path"
    echo "$newest"
  else
    [[ -f "$path" ]] || die "wheel $path not found"
    echo "$path"
  fi
}

ensure_venv() {
  local want have=""
  want="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [[ -x "$VENV/bin/python" ]]; then
    have="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  fi
  if [[ "$have" != "$want" ]]; then
    [[ -n "$have" ]] && info "the venv's Python ($have) differs from the system's ($want): recreating it"
    rm -rf "$VENV"
    info "creating $VENV (with system site packages, for apt's picamera2 and lgpio)"
    python3 -m venv --system-site-packages "$VENV" \
      || die "python3 -m venv failed: apt install python3-venv"
  fi
}

install_app() {
  local wheel="$1" codename constraints=() src
  codename="$(os_release_value VERSION_CODENAME)"
  # bookworm's apt picamera2 is built against numpy 1.24, so numpy stays below 2 there.
  if [[ -f "$ROOT/hardware/pi/constraints-$codename.txt" ]]; then
    constraints=(-c "$ROOT/hardware/pi/constraints-$codename.txt")
  fi
  if [[ -n "$wheel" ]]; then
    wheel="$(pick_wheel "$wheel")"
    install -d -m 0755 "$SHARE/dist"
    if [[ "$(dirname "$(realpath "$wheel")")" != "$SHARE/dist" ]]; then
      rm -f "$SHARE"/dist/skinscan-*.whl
      install -m 0644 "$wheel" "$SHARE/dist/"
    fi
    src="$SHARE/dist/$(basename "$wheel")"
  else
    [[ -f "$ROOT/pyproject.toml" ]] || die "no --wheel given and no source tree at $ROOT"
    src="$ROOT"
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q)
  info "installing skinscan[device] from $src into $VENV (a few minutes on a Pi)"
  "${pip[@]}" install "${constraints[@]}" "${src}[device]" \
    || die "pip could not install skinscan[device]; is PyPI reachable?"
  # Same version number, new code: reinstall the app itself every time.
  "${pip[@]}" install --no-deps --force-reinstall "$src" >/dev/null
  "$VENV/bin/skinscan" --version >/dev/null || die "the installed skinscan command does not start"
  "$VENV/bin/python" -c 'import ai_edge_litert.interpreter' \
    || die "the LiteRT runtime does not import on this machine"
}

POWEROFF_REQUEST=/run/skinscan/poweroff

render_config() {
  # The shipped defaults ($1), commented out, after the one setting the deployment needs.
  local defaults="$1"
  echo "# SkinScan device settings. Uncomment a line to change it. Written by provision.sh;"
  echo "# the shipped defaults are in $defaults."
  echo
  echo "[system]"
  echo "# Shutdown asks the root unit skinscan-poweroff.path to power off: the service user"
  echo "# has no right to do it itself (see systemd/README.md)."
  echo "shutdown_command = [\"/usr/bin/touch\", \"$POWEROFF_REQUEST\"]"
  echo
  echo "# ---- the shipped defaults ----"
  # Table headers are commented too, so the [system] table above is not repeated.
  sed -e 's/^\([^#]\)/# \1/' "$defaults"
}

write_config() {
  # An existing /etc/skinscan/config.toml is the maintainer's: it is kept.
  local cfg="$ETC_DIR/config.toml" defaults
  if [[ -f "$cfg" ]]; then
    info "keeping the existing $cfg"
    return 0
  fi
  defaults="$("$VENV/bin/python" -c 'import device.config as c; print(c.DEFAULT_CONFIG_PATH)')"
  [[ -f "$defaults" ]] || die "the shipped default config $defaults is missing"
  render_config "$defaults" >"$cfg.new"
  chown root:"$SERVICE_USER" "$cfg.new"
  chmod 0640 "$cfg.new"
  mv "$cfg.new" "$cfg"
  info "wrote $cfg"
}

install_keys() {
  local clinic_key="$1" image_mode="$2" key="$DATA_DIR/device.key"
  if [[ -n "$clinic_key" ]]; then
    [[ -f "$clinic_key" ]] || die "clinic key $clinic_key not found"
    "$VENV/bin/python" -c 'import sys; from device.records.export import load_public_key as f; f(sys.argv[1])' \
      "$clinic_key" || die "$clinic_key is not a SkinScan clinic public key (make one with 'skinscan records keygen')"
    install -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0644 "$clinic_key" "$DATA_DIR/clinic.pub"
    info "installed the clinic public key"
  elif [[ ! -f "$DATA_DIR/clinic.pub" ]]; then
    warn "no clinic public key (--clinic-key FILE): exports stay disabled until $DATA_DIR/clinic.pub exists"
  fi
  if [[ "$image_mode" == 1 ]]; then
    # A key baked into an image would be shared by every card flashed from it.
    [[ -f "$key" ]] && die "$key exists in the image being built: remove it, every device needs its own"
    return 0
  fi
  if [[ ! -f "$key" ]]; then
    (umask 077; head -c 32 /dev/urandom >"$key.new")
    chown "$SERVICE_USER:$SERVICE_USER" "$key.new"
    mv "$key.new" "$key"
    info "created the device key $key (0600): back it up, records cannot be read without it"
  fi
  chown "$SERVICE_USER:$SERVICE_USER" "$key"
  chmod 0600 "$key"
}

install_usb_rule() {
  # polkitd reads the rules folder again by itself when a rule changes.
  install -d -m 0755 "$POLKIT_RULES_DIR"
  install -m 0644 "$ROOT/systemd/$USB_RULE" "$POLKIT_RULES_DIR/$USB_RULE"
  info "installed the USB-stick rule $POLKIT_RULES_DIR/$USB_RULE"
}

install_bundle_keys() {
  # Root owns the trust list, so the service (or anyone who takes it over) cannot add a key.
  local dir="$ETC_DIR/bundle-keys" file id
  for file in "$@"; do
    [[ -f "$file" ]] || die "bundle signing key $file not found"
    id="$("$VENV/bin/python" -c 'import sys; from device.bundles.keys import key_id, load_verify_key as f; print(key_id(f(sys.argv[1])))' "$file")" \
      || die "$file is not a bundle signing public key (make one with 'skinscan bundle keygen'; an export key, clinic.pub, is not one)"
    install -d -o root -g root -m 0755 "$dir"
    install -o root -g root -m 0644 "$file" "$dir/$id.pub"
    info "trusts the bundle signing key $id ($dir/$id.pub)"
  done
  if ! compgen -G "$dir/*.pub" >/dev/null; then
    warn "no bundle signing key (--bundle-key FILE): model bundles cannot be installed from USB until one is in $dir"
  fi
}

install_units() {
  local u
  for u in "${UNITS[@]}"; do
    install -m 0644 "$ROOT/systemd/$u" "$UNIT_DIR/$u"
  done
  if systemd_running; then systemctl daemon-reload; fi
  systemctl enable --quiet "${ENABLE_UNITS[@]}"
  info "enabled ${ENABLE_UNITS[*]}"
}

do_install() {
  local wheel="" clinic_key="" apt=1 image_mode=0 bundle_keys=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --wheel) [[ $# -ge 2 ]] || die "--wheel needs a path"; wheel="$2"; shift 2 ;;
      --clinic-key) [[ $# -ge 2 ]] || die "--clinic-key needs a file"; clinic_key="$(realpath "$2")"; shift 2 ;;
      --bundle-key) [[ $# -ge 2 ]] || die "--bundle-key needs a file"; bundle_keys+=("$(realpath "$2")"); shift 2 ;;
      --no-apt) apt=0; shift ;;
      --image) image_mode=1; shift ;;
      *) die "unknown install option '$1' (see $0 --help)" ;;
    esac
  done
  require_root install
  preflight "$image_mode"
  if [[ "$apt" == 1 ]]; then install_packages; fi
  ensure_user
  ensure_dirs
  copy_share
  ensure_venv
  install_app "$wheel"
  write_config
  install_keys "$clinic_key" "$image_mode"
  install_bundle_keys "${bundle_keys[@]}"
  install_units
  install_usb_rule
  if [[ "$image_mode" == 0 ]] && systemd_running; then
    systemctl restart skinscan-poweroff.path skinscan.service
    info "started skinscan.service; follow it with: journalctl -u skinscan -f"
  fi
  info "done"
}

do_uninstall() {
  require_root uninstall
  local u
  if systemd_running; then
    systemctl disable --now "${ENABLE_UNITS[@]}" 2>/dev/null || true
  else
    systemctl disable "${ENABLE_UNITS[@]}" 2>/dev/null || true
  fi
  for u in "${UNITS[@]}"; do rm -f "$UNIT_DIR/$u"; done
  rm -f "$POLKIT_RULES_DIR/$USB_RULE"
  if systemd_running; then systemctl daemon-reload; fi
  rm -rf "$VENV" "$SHARE"
  rmdir "$PREFIX" 2>/dev/null || true
  rm -f "$ETC_DIR/config.toml"
  rm -rf "$ETC_DIR/bundle-keys"
  rmdir "$ETC_DIR" 2>/dev/null || true
  if getent passwd "$SERVICE_USER" >/dev/null; then userdel "$SERVICE_USER" 2>/dev/null || true; fi
  getent group "$SERVICE_USER" >/dev/null && { groupdel "$SERVICE_USER" 2>/dev/null || true; }
  if [[ -d "$DATA_DIR" ]]; then
    info "kept the scan records and keys in $DATA_DIR (delete them yourself if you really mean to)"
  fi
  info "uninstalled"
}

main() {
  local action="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$action" in
    install) do_install "$@" ;;
    uninstall) do_uninstall ;;
    render-config)
      [[ $# -eq 1 ]] || die "usage: $0 render-config DEFAULT_TOML"
      render_config "$1" ;;
    write-share)
      [[ $# -eq 1 ]] || die "usage: $0 write-share DEST"
      write_share "$1" ;;
    check)
      local image_mode=0
      [[ "${1:-}" == "--image" ]] && image_mode=1
      preflight "$image_mode"
      info "platform checks passed" ;;
    -h|--help|help) usage ;;
    "") usage; exit 2 ;;
    *) die "unknown action '$action' (install, uninstall, check)" ;;
  esac
}

main "$@"
