#!/usr/bin/env bash
# The deployment proven on real aarch64 binaries, under qemu-user emulation:
#
#   1. an arm64 Debian bookworm userland (debootstrap, cached as a tarball);
#   2. the real pi-gen stage (hardware/image/stage-skinscan) applied to it the way
#      pi-gen does: prerun.sh, NN-packages-nr, NN-run.sh on the host, NN-run-chroot.sh;
#   3. the app on aarch64: `skinscan run --backend sim --headless --script ...`, and
#      the prediction on fixed images compared with x86 within int8 tolerances;
#   4. a systemd-nspawn boot: skinscan.service reaches READY, survives a watchdog
#      period, and the container powers off through skinscan-poweroff.path.
#
# Run as root from the repository (CI calls it from .ci/run):
#   hardware/ci/arm64_check.sh
# Environment:
#   SKINSCAN_CI_CACHE      cache folder (default /var/cache/skinscan-ci)
#   SKINSCAN_CI_KEEP=1     keep the work folder for inspection
#   SKINSCAN_CI_ARTIFACTS  copy screenshots, journals and JSON here
#   SKINSCAN_CI_MIRROR     Debian mirror (default http://deb.debian.org/debian)
#   SKINSCAN_CI_BUNDLE     a model bundle folder to test instead of the shipped one
set -eEuo pipefail
# No silent exits: name the command that failed.
trap 'echo "arm64: FAIL: line $LINENO: $BASH_COMMAND exited with $?" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${SKINSCAN_CI_CACHE:-/var/cache/skinscan-ci}"
MIRROR="${SKINSCAN_CI_MIRROR:-http://deb.debian.org/debian}"
KEEP="${SKINSCAN_CI_KEEP:-0}"
ARTIFACTS="${SKINSCAN_CI_ARTIFACTS:-}"
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-numpy,systemd,ca-certificates
# Substages that need the Raspberry Pi archive, unreachable here.
SKIP_SUBSTAGES=(00-rpi-archive)
# A cached base older than this is rebuilt, so its package lists stay fresh.
CACHE_MAX_DAYS=14
BOOT_TIMEOUT=900
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

T0=$(date +%s)
WORK=""
ROOTFS=""

log() { echo "arm64: [$(( $(date +%s) - T0 ))s] $*"; }
die() { echo "arm64: FAIL: $*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [[ -n "$ROOTFS" ]]; then leave_chroot "$ROOTFS"; fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    leave_chroot "$WORK/base"
    if [[ "$KEEP" == 1 ]]; then
      echo "arm64: work folder kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}

# --- 1. the arm64 userland -----------------------------------------------------

check_host() {
  [[ $EUID -eq 0 ]] || die "run as root (debootstrap, chroot and systemd-nspawn need it)"
  local tool missing=()
  for tool in debootstrap update-binfmts systemd-nspawn journalctl zstd shellcheck; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P || -x /usr/bin/qemu-aarch64-static ]] \
    || missing+=(qemu-aarch64-static)
  [[ ${#missing[@]} -eq 0 ]] || die "missing ${missing[*]}: apt-get install qemu-user-static" \
    "binfmt-support debootstrap systemd-container zstd shellcheck (./setup.sh installs them)"
  if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || die "binfmt handler qemu-aarch64 is not enabled (update-binfmts --enable qemu-aarch64)"
  # The F flag makes the kernel open the interpreter at registration: chroots need no copy.
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || die "qemu-aarch64's binfmt entry lacks the F (fix binary) flag; reinstall qemu-user-static"
}

in_chroot() {
  # Runs a command in $1 with a clean environment. /proc and /dev/pts (apt wants a pty)
  # are mounted, never /sys: LiteRT 2.2 and 2.3 crash in cpuinfo parsing under qemu
  # 7.2 when /sys is there.
  local root="$1"; shift
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mkdir -p "$root/dev/pts"
  mountpoint -q "$root/dev/pts" || mount --bind /dev/pts "$root/dev/pts"
  chroot "$root" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb \
    DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CACHE_DIR=/var/cache/skinscan-pip "$@"
}

leave_chroot() {
  local root="$1" m
  for m in dev/pts proc; do
    if mountpoint -q "$root/$m"; then umount -l "$root/$m"; fi
  done
}

base_rootfs() {
  # The cached base is debootstrap's rootfs plus what pi-gen's stage0 provides and the
  # stages rely on: trusted CAs, including the host's extra roots (for pip behind a
  # proxy), added with update-ca-certificates inside (minutes under emulation, so cached).
  local key tarball base="$WORK/base" cas=()
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cas=(/usr/local/share/ca-certificates/*.crt)
  fi
  key="$( { echo "$SUITE $INCLUDE $MIRROR v2"; cat "${cas[@]}" /dev/null; } | sha256sum | cut -c1-12)"
  tarball="$CACHE/rootfs-$SUITE-arm64-$key.tar.zst"
  mkdir -p "$CACHE"
  find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-arm64-*.tar.zst" -mtime +"$CACHE_MAX_DAYS" -delete
  if [[ -f "$tarball" ]]; then
    log "base rootfs from the cache $tarball"
    mkdir -p "$base"
    tar --zstd -xpf "$tarball" --numeric-owner -C "$base"
  else
    log "debootstrap --arch=arm64 --variant=minbase $SUITE (not cached yet: 4-8 minutes)"
    nice -n 10 debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" \
      "$SUITE" "$base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -f "$base"/var/cache/apt/archives/*.deb
    if [[ ${#cas[@]} -gt 0 ]]; then
      log "adding the host's ${#cas[@]} extra CA certificate(s): update-ca-certificates (arm64)"
      cp "${cas[@]}" "$base/usr/local/share/ca-certificates/"
      in_chroot "$base" update-ca-certificates >/dev/null 2>&1 \
        || die "update-ca-certificates failed in the arm64 rootfs"
      leave_chroot "$base"
    fi
    tar --zstd -cpf "$tarball.tmp" --numeric-owner -C "$base" . && mv "$tarball.tmp" "$tarball"
    log "cached $tarball ($(du -h "$tarball" | cut -f1))"
  fi
  cp -L /etc/resolv.conf "$base/etc/resolv.conf"
  log "apt-get update (arm64)"
  in_chroot "$base" apt-get update -qq >/dev/null || die "apt-get update failed in the arm64 rootfs"
  leave_chroot "$base"
}

# --- 2. the pi-gen stage ---------------------------------------------------------

# pi-gen's helpers, with the same contract: copy_previous copies the previous stage's
# rootfs, on_chroot runs its stdin (or arguments) with bash in the rootfs.
copy_previous() {
  [[ -d "${PREV_ROOTFS_DIR}" ]] || { echo "Previous stage rootfs not found" >&2; return 1; }
  mkdir -p "${ROOTFS_DIR}"
  cp -a "${PREV_ROOTFS_DIR}/." "${ROOTFS_DIR}/"
}
on_chroot() { in_chroot "${ROOTFS_DIR}" /bin/bash -e; }

package_list() { sed -e 's/#.*//' "$1" | tr -s '[:space:]' ' '; }

run_sub_stage() {
  local sub="$1" i pkgs
  pushd "$sub" >/dev/null
  for i in $(seq -w 0 99); do
    if [[ -f "$i-debconf" ]]; then
      on_chroot <<<"debconf-set-selections <<'SELEOF'
$(cat "$i-debconf")
SELEOF"
    fi
    if [[ -f "$i-packages-nr" ]]; then
      pkgs="$(package_list "$i-packages-nr")"
      log "  $(basename "$sub")/$i-packages-nr: $pkgs"
      [[ -z "${pkgs// }" ]] || on_chroot <<<"apt-get install --no-install-recommends -y -qq $pkgs >/dev/null"
    fi
    if [[ -f "$i-packages" ]]; then
      pkgs="$(package_list "$i-packages")"
      log "  $(basename "$sub")/$i-packages: $pkgs"
      [[ -z "${pkgs// }" ]] || on_chroot <<<"apt-get install -y -qq $pkgs >/dev/null"
    fi
    [[ -d "$i-patches" ]] && die "$sub/$i-patches: quilt patches are not emulated here"
    if [[ -x "$i-run.sh" ]]; then
      log "  $(basename "$sub")/$i-run.sh (host)"
      "./$i-run.sh"
    fi
    if [[ -f "$i-run-chroot.sh" ]]; then
      log "  $(basename "$sub")/$i-run-chroot.sh (chroot)"
      on_chroot <"$i-run-chroot.sh"
    fi
  done
  popd >/dev/null
}

run_stage() {
  local stage="$WORK/stage-skinscan" sub name skip
  log "assembling the stage (wheel built from this tree)"
  "$ROOT/hardware/image/assemble.sh" "$stage" >"$WORK/assemble.log" 2>&1 \
    || { cat "$WORK/assemble.log" >&2; die "assemble.sh failed"; }
  export STAGE_DIR="$stage" STAGE_WORK_DIR="$WORK/work-stage"
  export PREV_ROOTFS_DIR="$WORK/base" ROOTFS_DIR="$WORK/work-stage/rootfs"
  export IMG_NAME=skinscan USE_QEMU=0
  export -f copy_previous on_chroot in_chroot
  export CHROOT_PATH
  ROOTFS="$ROOTFS_DIR"
  pushd "$stage" >/dev/null
  [[ -x prerun.sh ]] || die "the stage has no executable prerun.sh"
  log "stage: prerun.sh"
  ./prerun.sh
  [[ -f EXPORT_IMAGE ]] || die "the stage has no EXPORT_IMAGE"
  for sub in "$stage"/*/; do
    sub="${sub%/}"
    name="$(basename "$sub")"
    [[ -f "$sub/SKIP" ]] && continue
    skip=0
    for s in "${SKIP_SUBSTAGES[@]}"; do [[ "$name" == "$s" ]] && skip=1; done
    if [[ "$skip" == 1 ]]; then
      log "stage: SKIPPED $name: $(package_list "$sub/00-packages-nr")- from the Raspberry Pi" \
        "archive, unreachable here (a real Pi or pi-gen build installs them)"
      continue
    fi
    log "stage: $name"
    run_sub_stage "$sub"
  done
  popd >/dev/null
  # What the stage must have left behind.
  [[ -x "$ROOTFS/opt/skinscan/venv/bin/skinscan" ]] || die "the stage did not install the app"
  [[ -L "$ROOTFS/etc/systemd/system/multi-user.target.wants/skinscan.service" ]] \
    || die "the stage did not enable skinscan.service"
  [[ -f "$ROOTFS/etc/skinscan/config.toml" ]] || die "the stage wrote no /etc/skinscan/config.toml"
  [[ ! -e "$ROOTFS/var/lib/skinscan/device.key" ]] || die "the image contains a device key"
  [[ "$(stat -c %a "$ROOTFS/var/lib/skinscan")" == 700 ]] || die "/var/lib/skinscan is not 0700"
  in_chroot "$ROOTFS" id skinscan
  log "stage applied cleanly"
}

# --- 3. the app on aarch64 -------------------------------------------------------

app_check() {
  local ci="$ROOTFS/tmp/ci" bundle_arg=() x86_bundle_arg=() x86_py="$ROOT/.venv/bin/python"
  [[ -x "$x86_py" ]] || die "no x86 venv at $ROOT/.venv (run ./setup.sh first)"
  mkdir -p "$ci/images"
  # Fixed images: deterministic phantoms, written by the x86 side, and the first few
  # real HAM10000 images when ../shared has them.
  "$x86_py" - "$ci/images" <<'EOF'
import sys
import cv2
from device.phantoms import make_phantom
for seed in (1, 2, 3, 4):
    image = make_phantom(seed).image
    cv2.imwrite(f"{sys.argv[1]}/phantom{seed}.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
EOF
  local ham=("$ROOT"/../shared/data/ham10000/images/ISIC_*.jpg)
  if [[ -f "${ham[0]}" ]]; then
    cp "${ham[@]:0:4}" "$ci/images/"
  fi
  if [[ -n "${SKINSCAN_CI_BUNDLE:-}" ]]; then
    [[ -f "$SKINSCAN_CI_BUNDLE/manifest.json" ]] || die "SKINSCAN_CI_BUNDLE has no manifest.json"
    BUNDLE_NOTE="$SKINSCAN_CI_BUNDLE (SKINSCAN_CI_BUNDLE)"
    mkdir -p "$ci/bundle"
    cp -r "$SKINSCAN_CI_BUNDLE/." "$ci/bundle/"
    bundle_arg=(--bundle /tmp/ci/bundle)
    x86_bundle_arg=(--bundle "$ci/bundle")
  elif [[ -f "$ROOT/device/models/default/manifest.json" ]]; then
    BUNDLE_NOTE="the shipped bundle device/models/default"
  else
    # The trained model has not landed yet: use the tiny test bundle (same contract).
    BUNDLE_NOTE="the tiny test bundle (no shipped bundle in device/models/default yet)"
    "$x86_py" - "$ci/bundle" "$ROOT/tests" <<'EOF'
import sys
sys.path.insert(0, sys.argv[2])
from bundle_factory import make_bundle
make_bundle(sys.argv[1])
EOF
    bundle_arg=(--bundle /tmp/ci/bundle)
    x86_bundle_arg=(--bundle "$ci/bundle")
  fi
  log "app: bundle is $BUNDLE_NOTE"
  cp "$ROOT/hardware/ci/predict.py" "$ci/"

  local images=()
  mapfile -t images < <(cd "$ci/images" && ls)
  log "app: x86 prediction on ${#images[@]} fixed images"
  (cd "$ROOT" && "$x86_py" "$ROOT/hardware/ci/predict.py" run "${x86_bundle_arg[@]}" \
    --out "$WORK/x86.json" "${images[@]/#/$ci/images/}") >"$WORK/x86.log" 2>&1 \
    || { cat "$WORK/x86.log" >&2; die "x86 prediction failed"; }
  log "app: aarch64 prediction (emulated)"
  in_chroot "$ROOTFS" /opt/skinscan/venv/bin/python /tmp/ci/predict.py run "${bundle_arg[@]}" \
    --out /tmp/ci/arm64.json "${images[@]/#//tmp/ci/images/}" >"$WORK/arm64.log" 2>&1 \
    || { cat "$WORK/arm64.log" >&2; die "aarch64 prediction failed"; }
  grep -hE '^(x86_64|aarch64):' "$WORK/x86.log" "$WORK/arm64.log" | sed 's/^/arm64:   /' || true
  python3 "$ROOT/hardware/ci/predict.py" compare "$WORK/x86.json" "$ci/arm64.json" \
    >"$WORK/compare.txt" 2>&1 || true
  sed 's/^/arm64:   /' "$WORK/compare.txt"
  grep -q '^predictions agree' "$WORK/compare.txt" || die "aarch64 and x86 predictions differ"
  grep -q '"machine": "aarch64"' "$ci/arm64.json" || die "the 'aarch64' run was not aarch64"

  log "app: skinscan run --backend sim --headless --script on aarch64"
  in_chroot "$ROOTFS" /usr/bin/env SKINSCAN_DATA_DIR=/tmp/ci/data \
    /opt/skinscan/venv/bin/skinscan run --backend sim --headless "${bundle_arg[@]}" \
    --images /tmp/ci/images --screenshots /tmp/ci/screens \
    --script "wait 2, capture, wait 4, toggle, wait 1, save, wait 1" --frames 400 \
    >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log" >&2; die "skinscan run failed on aarch64"; }
  local n
  n="$(find "$ci/screens" -name '*.png' | wc -l)"
  [[ "$n" -ge 2 ]] || { cat "$WORK/run.log" >&2; die "skinscan run wrote $n screens"; }
  sed 's/^/arm64:   /' "$WORK/run.log" | tail -n 5
  log "app: $n screens written on aarch64"
}

# --- 4. boot -----------------------------------------------------------------------

boot_check() {
  local journal="$ROOTFS/var/log/journal" rc=0 ready started_at
  rm -rf "$journal" "$ROOTFS/etc/machine-id"
  mkdir -p "$journal"
  systemd-machine-id-setup --root="$ROOTFS" >/dev/null
  # The CI's own parts: sim backend (no camera or panel here), a longer start timeout
  # for emulation, and a unit that runs once skinscan.service has started.
  mkdir -p "$ROOTFS/etc/systemd/system/skinscan.service.d"
  cat >"$ROOTFS/etc/systemd/system/skinscan.service.d/50-ci.conf" <<'EOF'
# CI only (hardware/ci/arm64_check.sh): no camera or panel in the container, and
# everything runs far slower under qemu-user.
[Service]
Environment=SKINSCAN_BACKEND=sim
Environment=SDL_VIDEODRIVER=dummy
TimeoutStartSec=600
# qemu-user cannot emulate the rtnetlink calls systemd makes to bring up "lo" in a
# new network namespace (it fails with EIO, status 225/NETWORK). A real Pi can, so
# the shipped unit keeps PrivateNetwork=yes; everything else is tested as shipped.
PrivateNetwork=no
EOF
  mkdir -p "$ROOTFS/etc/systemd/system/skinscan-poweroff.service.d"
  cat >"$ROOTFS/etc/systemd/system/skinscan-poweroff.service.d/50-ci.conf" <<'EOF'
# CI only: see skinscan.service.d/50-ci.conf (qemu-user and network namespaces).
[Service]
PrivateNetwork=no
EOF
  if [[ -d "$ROOTFS/tmp/ci/bundle" ]]; then
    mkdir -p "$ROOTFS/opt/skinscan/ci-bundle"
    cp -r "$ROOTFS/tmp/ci/bundle/." "$ROOTFS/opt/skinscan/ci-bundle/"
    printf '\n[model]\nbundle = "/opt/skinscan/ci-bundle"\n' >>"$ROOTFS/etc/skinscan/config.toml"
  fi
  cat >"$ROOTFS/usr/local/sbin/skinscan-ci-check" <<'EOF'
#!/bin/sh
# Ordered after skinscan.service, so this starts once the service is READY (or failed).
state="$(systemctl is-active skinscan.service)"
echo "ci-check: skinscan.service is $state after start"
if [ "$state" != active ]; then
  echo "ci-check: FAILED to start; powering off"
  systemctl poweroff
  exit 1
fi
pid="$(systemctl show -p MainPID --value skinscan.service)"
echo "ci-check: sandbox of the app (pid $pid):" $(grep -E '^(Uid|NoNewPrivs|CapBnd|CapEff|Seccomp):' "/proc/$pid/status" | tr -s '\t' ' ')
# Outlive one WatchdogSec: a missing WATCHDOG=1 ping would kill the service meanwhile.
sleep 45
echo "ci-check: after 45 s skinscan.service is $(systemctl is-active skinscan.service)," \
  "NRestarts=$(systemctl show -p NRestarts --value skinscan.service)"
# Power off the way the app's shutdown does: the service user creates the request file.
runuser -u skinscan -- /usr/bin/touch /run/skinscan/poweroff \
  && echo "ci-check: power-off requested as user skinscan"
sleep 90
echo "ci-check: FALLBACK power-off: skinscan-poweroff.path did not act"
systemctl poweroff
EOF
  chmod 755 "$ROOTFS/usr/local/sbin/skinscan-ci-check"
  cat >"$ROOTFS/etc/systemd/system/skinscan-ci-check.service" <<'EOF'
[Unit]
Description=CI: check skinscan.service, then request power-off as the app does
Wants=skinscan.service
After=skinscan.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/skinscan-ci-check

[Install]
WantedBy=multi-user.target
EOF
  in_chroot "$ROOTFS" systemctl enable --quiet skinscan-ci-check.service
  leave_chroot "$ROOTFS"

  log "boot: systemd-nspawn -b (emulated systemd; up to ${BOOT_TIMEOUT}s)"
  # nspawn always mounts /sys. An empty /sys/devices/system/cpu makes LiteRT's cpuinfo
  # fall back as it does in the plain chroot, instead of crashing on the host's CPU list.
  timeout --kill-after=30 "$BOOT_TIMEOUT" systemd-nspawn --register=no --keep-unit --quiet \
    --link-journal=no --console=pipe --tmpfs=/sys/devices/system/cpu -b -D "$ROOTFS" \
    </dev/null >"$WORK/boot.log" 2>&1 || rc=$?
  local jc=(journalctl --directory="$journal" --no-pager -q)
  "${jc[@]}" -o short-monotonic >"$WORK/journal.txt" 2>&1 || true
  if [[ "$rc" != 0 ]]; then
    tail -n 40 "$WORK/boot.log" >&2
    grep -E 'skinscan|ci-check' "$WORK/journal.txt" | tail -n 40 >&2 || true
    die "the container did not power off cleanly (systemd-nspawn exit $rc)"
  fi
  # 39f53479... is systemd's "unit started" message: for Type=notify it is logged
  # only once READY=1 has arrived.
  ready="$("${jc[@]}" -o short-monotonic MESSAGE_ID=39f53479d3a045ac8e11786248231fbf \
    UNIT=skinscan.service JOB_RESULT=done)"
  [[ -n "$ready" ]] || { grep -E 'skinscan' "$WORK/journal.txt" | tail -n 40 >&2; \
    die "skinscan.service never reached READY"; }
  # 7d4958e8...: "Starting ...", logged when the start job begins.
  echo "arm64:   start: $("${jc[@]}" -o short-monotonic MESSAGE_ID=7d4958e842da4a758f6c1cdc7b36dcc5 \
    UNIT=skinscan.service | head -n 1)"
  echo "arm64:   READY: $ready"
  started_at="$("${jc[@]}" -o cat _SYSTEMD_UNIT=skinscan.service | grep -m1 -i 'backend' || true)"
  [[ -n "$started_at" ]] && echo "arm64:   app: $started_at"
  "${jc[@]}" -o cat _SYSTEMD_UNIT=skinscan-ci-check.service | sed 's/^/arm64:   /'
  "${jc[@]}" -o cat _SYSTEMD_UNIT=skinscan-ci-check.service | grep -q 'after 45 s skinscan.service is active, NRestarts=0' \
    || die "skinscan.service did not stay up through a watchdog period"
  if grep -q 'FALLBACK' "$WORK/journal.txt"; then die "power-off needed the fallback"; fi
  "${jc[@]}" -o short-monotonic MESSAGE_ID=39f53479d3a045ac8e11786248231fbf \
    UNIT=skinscan-poweroff.service | grep -q . || die "skinscan-poweroff.service never ran"
  if grep -qiE 'skinscan.service: (Watchdog timeout|Failed with result)' "$WORK/journal.txt"; then
    die "skinscan.service failed or hit its watchdog"
  fi
  echo "arm64:   power-off: $("${jc[@]}" -o cat MESSAGE_ID=39f53479d3a045ac8e11786248231fbf UNIT=skinscan-poweroff.service | head -n 1)"
  log "boot: READY reached and powered off through skinscan-poweroff.path"
}

report_security() {
  local unit
  for unit in skinscan.service skinscan-poweroff.service; do
    echo "arm64: systemd-analyze security --offline=yes $unit:" \
      "$(systemd-analyze security --offline=yes --no-pager "$ROOT/systemd/$unit" 2>&1 | tail -n 1)"
  done
}

main() {
  check_host
  report_security
  WORK="$(mktemp -d /var/tmp/skinscan-arm64.XXXXXX)"
  trap cleanup EXIT
  local t
  t=$(date +%s); base_rootfs; local t_base=$(( $(date +%s) - t ))
  t=$(date +%s); run_stage; local t_stage=$(( $(date +%s) - t ))
  t=$(date +%s); app_check; local t_app=$(( $(date +%s) - t ))
  t=$(date +%s); boot_check; local t_boot=$(( $(date +%s) - t ))
  if [[ -n "$ARTIFACTS" ]]; then
    mkdir -p "$ARTIFACTS"
    cp -r "$ROOTFS/tmp/ci/screens" "$ROOTFS/tmp/ci/arm64.json" "$WORK/x86.json" \
      "$WORK/compare.txt" "$WORK/journal.txt" "$WORK/boot.log" "$ARTIFACTS/" 2>/dev/null || true
  fi
  echo "arm64: timings: base rootfs ${t_base}s, stage ${t_stage}s, app ${t_app}s, boot ${t_boot}s," \
    "total $(( $(date +%s) - T0 ))s"
  echo "arm64: PASS (bundle: $BUNDLE_NOTE)"
}

main "$@"
