#!/usr/bin/env bash
# Runs hardware/pi/customize-image.sh end to end on a stand-in for a Raspberry Pi OS
# Lite (64-bit) image, since the real one cannot be downloaded here:
#   - partition 1: FAT boot partition whose config.txt has the camera switched off;
#   - partition 2: ext4 with the arm64 bookworm rootfs that arm64_check.sh caches,
#     plus a local apt repository of empty stand-ins for the Raspberry Pi archive's
#     python3-picamera2 and python3-lgpio.
# Then checks the result: the camera switched on through mtools, the root partition
# grown, the app installed and the service enabled, no device key, no leftovers.
#
#   hardware/ci/customize_image_check.sh      (root; run arm64_check.sh once first)
#
# About 5-10 minutes (apt and pip under qemu-user). Not part of .ci/run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${SKINSCAN_CI_CACHE:-/var/cache/skinscan-ci}"
WORK=""
LOOP=""
CHECK_MNT=""

die() { echo "customize-check: FAIL: $*" >&2; exit 1; }
log() { echo "customize-check: $*"; }

cleanup() {
  local rc=$?
  if [[ -n "$CHECK_MNT" ]] && mountpoint -q "$CHECK_MNT"; then umount "$CHECK_MNT"; fi
  if [[ -n "$LOOP" ]]; then
    partx -d "$LOOP" 2>/dev/null || true
    losetup -d "$LOOP" 2>/dev/null || true
  fi
  if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}

stand_in_package() {
  local name="$1" dir="$WORK/pkg/$1"
  mkdir -p "$dir/DEBIAN"
  printf 'Package: %s\nVersion: 0.0~stand-in\nArchitecture: all\nMaintainer: SkinScan CI <ci@localhost>\nDescription: empty stand-in for the Raspberry Pi archive package\n' \
    "$name" >"$dir/DEBIAN/control"
  dpkg-deb --build --root-owner-group "$dir" "$WORK/root/var/local/rpi-stand-in/$name.deb" >/dev/null
}

main() {
  [[ $EUID -eq 0 ]] || die "run as root"
  local tarball
  tarball="$(find "$CACHE" -maxdepth 1 -name 'rootfs-bookworm-arm64-*.tar.zst' -printf '%T@ %p\n' \
    | sort -n | tail -n 1 | cut -d' ' -f2-)"
  [[ -n "$tarball" ]] || die "no cached arm64 rootfs in $CACHE: run hardware/ci/arm64_check.sh first"
  WORK="$(mktemp -d /var/tmp/skinscan-customize.XXXXXX)"
  trap cleanup EXIT

  log "building a stand-in Raspberry Pi OS Lite image"
  mkdir -p "$WORK/root"
  tar --zstd -xpf "$tarball" --numeric-owner -C "$WORK/root"
  mkdir -p "$WORK/root/var/local/rpi-stand-in" "$WORK/root/boot/firmware"
  stand_in_package python3-picamera2
  stand_in_package python3-lgpio
  (cd "$WORK/root/var/local/rpi-stand-in" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
  echo "deb [trusted=yes] file:/var/local/rpi-stand-in ./" \
    >"$WORK/root/etc/apt/sources.list.d/rpi-stand-in.list"
  printf '# stand-in config.txt\ncamera_auto_detect=0\ndisplay_auto_detect=1\n' >"$WORK/config.txt"
  truncate -s 64M "$WORK/boot.vfat"
  mkfs.vfat -n bootfs "$WORK/boot.vfat" >/dev/null
  mcopy -i "$WORK/boot.vfat" "$WORK/config.txt" ::config.txt
  local root_mb
  root_mb=$(( $(du -sm "$WORK/root" | cut -f1) + 300 ))
  mkfs.ext4 -q -L rootfs -d "$WORK/root" "$WORK/root.ext4" "${root_mb}M"
  rm -rf "$WORK/root"
  local img="$WORK/raspios-stand-in.img" boot_start=8192 root_start=$(( 8192 + 64 * 2048 ))
  truncate -s $(( root_start / 2048 + root_mb + 1 ))M "$img"
  printf 'label: dos\nstart=%s, size=64MiB, type=c\nstart=%s, type=83\n' "$boot_start" "$root_start" \
    | sfdisk --quiet "$img"
  dd if="$WORK/boot.vfat" of="$img" bs=512 seek="$boot_start" conv=notrunc status=none
  dd if="$WORK/root.ext4" of="$img" bs=512 seek="$root_start" conv=notrunc status=none
  rm -f "$WORK/boot.vfat" "$WORK/root.ext4"
  local size_before
  size_before="$(stat -c %s "$img")"

  log "running customize-image.sh"
  local t0=$SECONDS
  "$ROOT/hardware/pi/customize-image.sh" "$img" "$WORK/skinscan.img" --grow 1024 \
    || die "customize-image.sh failed"
  log "customize-image.sh took $(( SECONDS - t0 ))s"

  log "checking the result"
  [[ "$(stat -c %s "$WORK/skinscan.img")" -ge $(( size_before + 1024 * 1024 * 1024 )) ]] \
    || die "the image did not grow"
  LOOP="$(losetup --find --show "$WORK/skinscan.img")"
  partx -a "$LOOP" 2>/dev/null || partx -u "$LOOP"
  local p1="${LOOP}p1" p2="${LOOP}p2" sys
  for n in 1 2; do
    if [[ ! -b "${LOOP}p$n" ]]; then
      sys="/sys/block/$(basename "$LOOP")/$(basename "$LOOP")p$n/dev"
      mknod "${LOOP}p$n" b "$(cut -d: -f1 "$sys")" "$(cut -d: -f2 "$sys")"
    fi
  done
  mtype -i "$p1" ::config.txt | grep -q '^camera_auto_detect=1' \
    || die "config.txt still has the camera off"
  CHECK_MNT="$WORK/mnt"
  mkdir -p "$CHECK_MNT"
  mount -o ro "$p2" "$CHECK_MNT"
  local fs_mb
  fs_mb="$(df -m --output=size "$CHECK_MNT" | tail -n 1 | tr -d ' ')"
  [[ -x "$CHECK_MNT/opt/skinscan/venv/bin/skinscan" ]] || die "the app is not installed"
  [[ -L "$CHECK_MNT/etc/systemd/system/multi-user.target.wants/skinscan.service" ]] \
    || die "skinscan.service is not enabled"
  [[ -L "$CHECK_MNT/etc/systemd/system/multi-user.target.wants/skinscan-poweroff.path" ]] \
    || die "skinscan-poweroff.path is not enabled"
  [[ -f "$CHECK_MNT/etc/skinscan/config.toml" ]] || die "no /etc/skinscan/config.toml"
  [[ ! -e "$CHECK_MNT/var/lib/skinscan/device.key" ]] || die "the image holds a device key"
  [[ ! -e "$CHECK_MNT/opt/skinscan/src" ]] || die "the source copy was left in the image"
  [[ ! -e "$CHECK_MNT/boot/firmware/config.txt" ]] || die "the config.txt copy was left in the image"
  [[ ! -e "$CHECK_MNT/usr/sbin/policy-rc.d" ]] || die "policy-rc.d was left in the image"
  if compgen -G "$CHECK_MNT/opt/skinscan/venv/lib/python3*/site-packages/numpy-2*" >/dev/null; then
    die "numpy 2 in the venv of a bookworm image (its picamera2 needs numpy 1.24)"
  fi
  log "root filesystem ${fs_mb} MB after growing"
  log "PASS: customize-image.sh produced an enabled SkinScan image"
}

main "$@"
