"""Deployment scripts: shellcheck-clean, pi-gen's conventions, and clear refusals."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROVISION = ROOT / "hardware" / "pi" / "provision.sh"
STAGE = ROOT / "hardware" / "image" / "stage-skinscan"


def shell_scripts() -> list[Path]:
    """Every shell script of the project, whatever its name."""
    found = {ROOT / "setup.sh", ROOT / ".ci" / "run"}
    for path in (ROOT / "hardware").rglob("*"):
        if not path.is_file() or "work" in path.relative_to(ROOT).parts:
            continue
        if path.suffix == ".sh" or path.name in ("EXPORT_IMAGE",):
            found.add(path)
        elif path.suffix == "" and path.read_bytes().split(b"\n", 1)[0].startswith(b"#!/"):
            first_line = path.read_bytes().split(b"\n", 1)[0]
            if first_line.endswith((b"sh", b"bash", b"bash -e")):
                found.add(path)
    return sorted(found)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_every_shell_script_is_shellcheck_clean():
    scripts = shell_scripts()
    assert PROVISION in scripts and ROOT / ".ci" / "run" in scripts
    result = subprocess.run(
        ["shellcheck", "--shell=bash", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_scripts_stop_on_the_first_error():
    for script in shell_scripts():
        text = script.read_text()
        if script.name == "EXPORT_IMAGE":
            continue  # sourced by pi-gen, not run
        # pi-gen's own style ("#!/bin/bash -e") for the stage; strict mode elsewhere.
        strict = re.search(r"^set -(?=[a-zA-Z]*e)(?=[a-zA-Z]*u)[a-zA-Z]*o pipefail$", text, re.M)
        assert strict or text.startswith("#!/bin/bash -e"), script


def test_the_stage_follows_pi_gen_conventions():
    prerun = STAGE / "prerun.sh"
    assert os.access(prerun, os.X_OK) and "copy_previous" in prerun.read_text()
    assert (STAGE / "EXPORT_IMAGE").read_text().count("IMG_SUFFIX=") >= 1
    substages = sorted(p.name for p in STAGE.iterdir() if p.is_dir())
    assert substages == ["00-rpi-archive", "01-skinscan"]
    sub = STAGE / "01-skinscan"
    assert (sub / "00-packages-nr").is_file()
    assert os.access(sub / "01-run.sh", os.X_OK), "pi-gen only runs an executable NN-run.sh"
    assert "ROOTFS_DIR" in (sub / "01-run.sh").read_text()
    chroot_script = (sub / "02-run-chroot.sh").read_text()
    assert "provision.sh" in chroot_script and "--image" in chroot_script


def test_package_lists_name_only_packages():
    for path in STAGE.glob("*/*-packages-nr"):
        for line in path.read_text().splitlines():
            line = line.split("#")[0]
            for name in line.split():
                assert name.replace("-", "").replace(".", "").replace("+", "").isalnum(), name


@pytest.fixture
def fake_pi(tmp_path):
    """A sysroot of a 64-bit bookworm Pi, and a PATH whose dpkg reports its architecture."""
    sysroot = tmp_path / "root"
    (sysroot / "etc").mkdir(parents=True)
    (sysroot / "boot/firmware").mkdir(parents=True)
    (sysroot / "etc/os-release").write_text(
        'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
    )
    (sysroot / "boot/firmware/config.txt").write_text(
        "# For more options see config.txt(5)\ncamera_auto_detect=1\ndisplay_auto_detect=1\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dpkg = bin_dir / "dpkg"
    dpkg.write_text('#!/bin/sh\necho "${FAKE_ARCH:-arm64}"\n')
    dpkg.chmod(0o755)
    return sysroot, bin_dir


def run_check(fake_pi, arch="arm64", image=False):
    sysroot, bin_dir = fake_pi
    env = {
        **os.environ,
        "SKINSCAN_SYSROOT": str(sysroot),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_ARCH": arch,
    }
    args = [str(PROVISION), "check", *(["--image"] if image else [])]
    return subprocess.run(args, capture_output=True, text=True, env=env)


def test_a_64_bit_bookworm_pi_passes_the_checks(fake_pi):
    result = run_check(fake_pi)
    assert result.returncode == 0, result.stderr
    assert "platform checks passed" in result.stdout


@pytest.mark.parametrize("arch", ["armhf", "armel"])
def test_a_32_bit_os_is_refused_because_no_runtime_exists(fake_pi, arch):
    result = run_check(fake_pi, arch=arch)
    assert result.returncode == 1
    assert "32-bit" in result.stderr and "no inference runtime exists" in result.stderr
    assert "64-bit" in result.stderr  # says what to do instead


def test_raspbian_is_refused_as_32_bit(fake_pi):
    (fake_pi[0] / "etc/os-release").write_text("ID=raspbian\nVERSION_CODENAME=bookworm\n")
    result = run_check(fake_pi)
    assert result.returncode == 1
    assert "32-bit" in result.stderr


@pytest.mark.parametrize("codename", ["buster", "bullseye"])
def test_an_old_os_is_refused(fake_pi, codename):
    (fake_pi[0] / "etc/os-release").write_text(f"ID=debian\nVERSION_CODENAME={codename}\n")
    result = run_check(fake_pi)
    assert result.returncode == 1
    assert "too old" in result.stderr and "bookworm" in result.stderr


def test_trixie_is_accepted(fake_pi):
    (fake_pi[0] / "etc/os-release").write_text(
        'ID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'
    )
    assert run_check(fake_pi).returncode == 0


def test_a_disabled_camera_interface_is_refused(fake_pi):
    (fake_pi[0] / "boot/firmware/config.txt").write_text("camera_auto_detect=0\n")
    result = run_check(fake_pi)
    assert result.returncode == 1
    assert "camera interface is disabled" in result.stderr


def test_an_explicit_sensor_overlay_counts_as_an_enabled_camera(fake_pi):
    (fake_pi[0] / "boot/firmware/config.txt").write_text("camera_auto_detect=0\ndtoverlay=imx708\n")
    assert run_check(fake_pi).returncode == 0


def test_the_legacy_camera_stack_is_refused(fake_pi):
    (fake_pi[0] / "boot/firmware/config.txt").write_text("start_x=1\ngpu_mem=128\n")
    result = run_check(fake_pi)
    assert result.returncode == 1
    assert "legacy camera stack" in result.stderr


def test_a_missing_boot_config_is_an_error_on_a_pi_but_not_in_an_image_build(fake_pi):
    (fake_pi[0] / "boot/firmware/config.txt").unlink()
    assert run_check(fake_pi).returncode == 1
    assert run_check(fake_pi, image=True).returncode == 0


def test_install_refuses_to_run_without_root():
    if os.geteuid() == 0:
        pytest.skip("running as root")
    result = subprocess.run([str(PROVISION), "install"], capture_output=True, text=True)
    assert result.returncode == 1 and "run as root" in result.stderr


def test_an_unknown_action_is_an_error():
    result = subprocess.run([str(PROVISION), "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "unknown action 'frobnicate'" in result.stderr


def test_the_assembled_stage_carries_a_wheel_units_and_the_provisioning_script(tmp_path):
    dest = tmp_path / "stage"
    subprocess.run(
        [str(ROOT / "hardware/image/assemble.sh"), str(dest)], check=True, capture_output=True
    )
    share = dest / "01-skinscan/files/share"
    wheels = list((share / "dist").glob("skinscan-*.whl"))
    assert len(wheels) == 1
    assert os.access(share / "hardware/pi/provision.sh", os.X_OK)
    for unit in ("skinscan.service", "skinscan-poweroff.service", "skinscan-poweroff.path"):
        assert (share / "systemd" / unit).is_file()
    assert (share / "hardware/pi/constraints-bookworm.txt").read_text().count("numpy<2") == 1
    # The copied package lists are what provision.sh installs from on a device.
    assert (share / "hardware/image/stage-skinscan/01-skinscan/00-packages-nr").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="pi-gen's build.sh runs as root")
def test_one_command_image_build_hands_pi_gen_the_stage_and_a_complete_config(tmp_path):
    # A stand-in pi-gen checkout: its build.sh records what pi-gen would receive.
    pigen = tmp_path / "pi-gen"
    (pigen / "stage2").mkdir(parents=True)
    (pigen / "scripts").mkdir()
    (pigen / "scripts/common").write_text("BOOTSTRAP_ARGS+=(--arch arm64)\n")
    (pigen / "build.sh").write_text(
        "#!/bin/bash -e\n"
        '[ "$1" = -c ] && source "$2"\n'
        'echo "IMG_NAME=$IMG_NAME RELEASE=$RELEASE USER=$FIRST_USER_NAME PASS=$FIRST_USER_PASS"\n'
        'echo "STAGE_LIST=$STAGE_LIST"\n'
        'last="${STAGE_LIST##* }"; test -x "$last/prerun.sh"\n'
        'ls "$last"/01-skinscan/files/share/dist/\n'
    )
    (pigen / "build.sh").chmod(0o755)
    env = {**os.environ, "SKINSCAN_MAINT_PASSWORD": "not-a-real-one"}
    result = subprocess.run(
        [str(ROOT / "hardware/image/build.sh"), "--pi-gen", str(pigen)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "IMG_NAME=skinscan RELEASE=bookworm USER=maint PASS=not-a-real-one" in result.stdout
    assert f"STAGE_LIST=stage0 stage1 stage2 {pigen}/stage-skinscan" in result.stdout
    assert "skinscan-" in result.stdout and ".whl" in result.stdout
    assert (pigen / "stage2/SKIP_IMAGES").exists()
    # The config with the password is not left in the pi-gen folder.
    assert not (pigen / "config-skinscan").exists()


def test_image_build_refuses_a_32_bit_pi_gen_and_a_missing_password(tmp_path):
    pigen = tmp_path / "pi-gen"
    (pigen / "stage2").mkdir(parents=True)
    (pigen / "scripts").mkdir()
    (pigen / "scripts/common").write_text("BOOTSTRAP_ARGS+=(--arch armhf)\n")
    (pigen / "build.sh").write_text("#!/bin/bash\n")
    (pigen / "build.sh").chmod(0o755)
    build = [str(ROOT / "hardware/image/build.sh"), "--pi-gen", str(pigen)]
    env = {k: v for k, v in os.environ.items() if k != "SKINSCAN_MAINT_PASSWORD"}
    no_password = subprocess.run(build, capture_output=True, text=True, env=env)
    assert no_password.returncode == 1 and "SKINSCAN_MAINT_PASSWORD" in no_password.stderr
    env["SKINSCAN_MAINT_PASSWORD"] = "x"
    armhf = subprocess.run(build, capture_output=True, text=True, env=env)
    assert armhf.returncode == 1 and "32-bit" in armhf.stderr
