#!/usr/bin/env bash
# Turn an official Raspberry Pi OS Lite (64-bit) image into a SkinScan image, without
# a Pi: the image is loop-mounted, setup.sh runs inside it (emulated with qemu-user on
# an x86 host), and the service is enabled for the first boot.
#
#   sudo hardware/pi/customize-image.sh IN.img[.xz] OUT.img [--grow MB] [--clinic-key FILE]
#
#   IN.img[.xz]        the downloaded Raspberry Pi OS Lite (64-bit) image; left untouched
#   OUT.img            the SkinScan image to write (replaced if it exists)
#   --grow MB          room added to the root filesystem for the app (default 2048)
#   --clinic-key FILE  the clinic's public key for sealed exports
#
# Needs root, internet (apt and PyPI), and on a non-ARM host: qemu-user-static and
# binfmt-support. The boot (FAT) partition is edited with mtools, so the host never
# has to mount vfat. The root partition is mounted and entered with chroot, with only
# /proc and /dev: LiteRT crashes under qemu-user 7.2 when /sys is there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GROW_MB=2048
CLINIC_KEY=""
LOOP=""
MNT=""

die() { echo "customize-image.sh: error: $*" >&2; exit 1; }
info() { echo "customize-image.sh: $*"; }
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

cleanup() {
  local rc=$?
  if [[ -n "$MNT" ]]; then
    local m
    for m in dev/pts dev proc; do
      mountpoint -q "$MNT/$m" && umount -l "$MNT/$m"
    done
    if [[ -f "$MNT/etc/resolv.conf.skinscan-orig" || -L "$MNT/etc/resolv.conf.skinscan-orig" ]]; then
      rm -f "$MNT/etc/resolv.conf"
      mv "$MNT/etc/resolv.conf.skinscan-orig" "$MNT/etc/resolv.conf"
    fi
    rm -f "$MNT/usr/sbin/policy-rc.d" "$MNT/boot/firmware/config.txt"
    rm -rf "$MNT/opt/skinscan/src"
    mountpoint -q "$MNT" && umount "$MNT"
    rmdir "$MNT" 2>/dev/null || true
  fi
  if [[ -n "$LOOP" ]]; then
    partx -d "$LOOP" 2>/dev/null || true
    losetup -d "$LOOP" 2>/dev/null || true
  fi
  exit "$rc"
}

partition_node() {
  # partx -a registers the partitions; without udev the device node may be missing.
  local loop="$1" n="$2" node="${1}p${2}" sysdev
  if [[ ! -b "$node" ]]; then
    sysdev="/sys/block/$(basename "$loop")/$(basename "$loop")p$n/dev"
    [[ -r "$sysdev" ]] || die "partition $n of $loop did not appear (partx -a failed?)"
    mknod "$node" b "$(cut -d: -f1 "$sysdev")" "$(cut -d: -f2 "$sysdev")"
  fi
  echo "$node"
}

check_tools() {
  local tool missing=()
  for tool in losetup partx sfdisk e2fsck resize2fs mcopy mtype chroot; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [[ ${#missing[@]} -eq 0 ]] || die "missing ${missing[*]}: apt-get install fdisk e2fsprogs mtools"
  if [[ "$(uname -m)" != aarch64 ]]; then
    [[ -e /proc/sys/fs/binfmt_misc/status ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
      || die "cannot run arm64 programs here: apt-get install qemu-user-static binfmt-support"
  fi
}

main() {
  [[ $# -ge 1 && "$1" != -h && "$1" != --help ]] || { usage; exit 0; }
  [[ $# -ge 2 ]] || die "usage: $0 IN.img[.xz] OUT.img [--grow MB] [--clinic-key FILE]"
  local in="$1" out="$2"
  shift 2
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --grow) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--grow needs a size in MB"; GROW_MB="$2"; shift 2 ;;
      --clinic-key) [[ $# -ge 2 && -f "$2" ]] || die "--clinic-key needs an existing file"
        CLINIC_KEY="$(realpath "$2")"; shift 2 ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  [[ $EUID -eq 0 ]] || die "run as root (loop devices, mount and chroot need it)"
  [[ -f "$in" ]] || die "$in not found"
  [[ "$(realpath "$in")" != "$(realpath -m "$out")" ]] || die "OUT must differ from IN"
  check_tools
  trap cleanup EXIT

  info "writing $out from $in"
  case "$in" in
    *.xz) xz -dc "$in" >"$out" ;;
    *.zip) die "unzip the image first" ;;
    *) cp --sparse=always "$in" "$out" ;;
  esac
  info "growing the root partition by ${GROW_MB} MB"
  truncate -s "+${GROW_MB}M" "$out"
  echo ", +" | sfdisk --quiet --no-reread --no-tell-kernel -N 2 "$out" >/dev/null

  LOOP="$(losetup --find --show "$out")"
  partx -a "$LOOP" 2>/dev/null || partx -u "$LOOP"
  local boot rootp
  boot="$(partition_node "$LOOP" 1)"
  rootp="$(partition_node "$LOOP" 2)"
  e2fsck -fy "$rootp" >/dev/null || [[ $? -le 1 ]] || die "the root filesystem has errors e2fsck cannot fix"
  resize2fs "$rootp" >/dev/null 2>&1 || die "resize2fs failed"

  MNT="$(mktemp -d /tmp/skinscan-image.XXXXXX)"
  mount "$rootp" "$MNT"
  [[ -e "$MNT/lib/ld-linux-aarch64.so.1" ]] || die "$in is not a 64-bit (arm64) Raspberry Pi OS" \
    "image. SkinScan needs the 64-bit OS: no inference runtime exists for 32-bit ARM."

  # The boot partition: make sure the camera is enabled, and give provision.sh a copy
  # of config.txt to check (removed again on exit).
  local cfg
  cfg="$(mktemp)"
  mtype -i "$boot" ::config.txt >"$cfg" 2>/dev/null || die "no config.txt on the boot partition"
  if grep -qE '^camera_auto_detect=0' "$cfg"; then
    sed -i 's/^camera_auto_detect=0/camera_auto_detect=1/' "$cfg"
    mcopy -o -i "$boot" "$cfg" ::config.txt
    info "enabled the camera (camera_auto_detect=1) in config.txt"
  elif ! grep -qE '^camera_auto_detect=1|^dtoverlay=imx708' "$cfg"; then
    printf '\n[all]\ncamera_auto_detect=1\n' >>"$cfg"
    mcopy -o -i "$boot" "$cfg" ::config.txt
    info "added camera_auto_detect=1 to config.txt"
  fi
  install -D -m 0644 "$cfg" "$MNT/boot/firmware/config.txt"
  rm -f "$cfg"

  info "copying the SkinScan source into the image"
  mkdir -p "$MNT/opt/skinscan/src"
  git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -cf - | tar -C "$MNT/opt/skinscan/src" -xf -
  local args=(--image)
  if [[ -n "$CLINIC_KEY" ]]; then
    install -m 0644 "$CLINIC_KEY" "$MNT/opt/skinscan/src/clinic.pub"
    args+=(--clinic-key /opt/skinscan/src/clinic.pub)
  fi

  # Enter the image: /proc and /dev only, host DNS, and no service starts from apt.
  mount -t proc proc "$MNT/proc"
  mount --bind /dev "$MNT/dev"
  mount --bind /dev/pts "$MNT/dev/pts"
  if [[ -e "$MNT/etc/resolv.conf" || -L "$MNT/etc/resolv.conf" ]]; then
    mv "$MNT/etc/resolv.conf" "$MNT/etc/resolv.conf.skinscan-orig"
  fi
  cp -L /etc/resolv.conf "$MNT/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$MNT/usr/sbin/policy-rc.d"
  chmod 755 "$MNT/usr/sbin/policy-rc.d"

  # A package mirror or proxy the maintainer uses is passed on; nothing else from here.
  local pass=() v
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CERT http_proxy https_proxy no_proxy; do
    if [[ -n "${!v:-}" ]]; then pass+=("$v=${!v}"); fi
  done
  info "running setup.sh inside the image (emulated: 10-20 minutes)"
  chroot "$MNT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 SKINSCAN_FORCE_PI=1 "${pass[@]}" \
    /bin/bash -c 'cd /opt/skinscan/src && ./setup.sh "$@"' setup "${args[@]}" \
    || die "setup.sh failed inside the image"
  [[ -L "$MNT/etc/systemd/system/multi-user.target.wants/skinscan.service" ]] \
    || die "skinscan.service was not enabled"
  info "done: flash $out with Raspberry Pi Imager (or dd); the device key is made at first boot"
}

main "$@"
