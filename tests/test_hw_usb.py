"""The USB-stick seam: which block devices are offered, udisksctl's mount and release,
the simulator's folder, and the backend choice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from device.hw.usb import NoSticks, UsbError, UsbReadOnlyError, check_writable
from device.hw.usb_backends import make_usb
from device.hw.usb_folder import FolderStick
from device.hw.usb_udisks import UdisksSticks, sticks_from_lsblk


def disk(name, tran="usb", model="Cruzer Blade", children=(), **fields):
    return {"name": name, "type": "disk", "tran": tran, "rm": True, "hotplug": True,
            "fstype": None, "label": None, "model": model, "mountpoint": None, "size": 16_000,
            "children": list(children), **fields}  # fmt: skip


def part(name, fstype="vfat", label="KINGSTON", mountpoint=None):
    return {"name": name, "type": "part", "tran": None, "rm": True, "hotplug": True,
            "fstype": fstype, "label": label, "model": None, "mountpoint": mountpoint,
            "size": 15_000}  # fmt: skip


def test_a_usb_stick_partition_is_offered_by_its_label():
    (stick,) = sticks_from_lsblk({"blockdevices": [disk("/dev/sda", children=[part("/dev/sda1")])]})
    assert (stick.name, stick.device, stick.disk) == ("KINGSTON", "/dev/sda1", "/dev/sda")
    assert stick.mount_point is None and stick.size_bytes == 15_000


def test_an_unlabelled_stick_is_named_by_its_model_and_a_mounted_one_says_where():
    data = {"blockdevices": [disk("/dev/sdb", children=[
        part("/dev/sdb1", label=None, mountpoint="/media/skinscan/STICK")])]}  # fmt: skip
    (stick,) = sticks_from_lsblk(data)
    assert stick.name == "Cruzer Blade" and stick.mount_point == Path("/media/skinscan/STICK")


def test_the_system_disk_and_internal_cards_are_never_offered():
    system = [part("/dev/sda1", mountpoint="/boot/firmware"), part("/dev/sda2", "ext4", "rf", "/")]
    booted_from_usb = disk("/dev/sda", children=system)
    sd_card = disk("/dev/mmcblk0", tran=None, rm=False, hotplug=False,
                   children=[part("/dev/mmcblk0p1", mountpoint="/media/x")])  # fmt: skip
    swap_only = disk("/dev/sdc", children=[part("/dev/sdc1", fstype="swap")])
    data = {"blockdevices": [booted_from_usb, sd_card, swap_only]}
    assert sticks_from_lsblk(data) == []


def test_a_stick_without_partitions_and_old_lsblk_flags_are_understood():
    whole = disk("/dev/sdd", tran=None, rm="1", hotplug="1", fstype="exfat", label="CLINIC")
    (stick,) = sticks_from_lsblk({"blockdevices": [whole]})
    assert (stick.name, stick.device, stick.disk) == ("CLINIC", "/dev/sdd", "/dev/sdd")


def roots(tmp_path: Path) -> dict:
    """The test's folders count as removable mounts (a real stick is under /media)."""
    return {"removable_roots": (f"{tmp_path}/", str(tmp_path))}


class FakeSystem:
    """Canned answers for lsblk and udisksctl; a mount changes what lsblk says."""

    def __init__(self, mountpoint=None, unmount_rc=0, mount_rc=0, missing=False, at=None):
        self.mountpoint = mountpoint
        self.unmount_rc = unmount_rc
        self.mount_rc = mount_rc
        self.missing = missing
        self.at = at
        self.calls: list[list[str]] = []

    def __call__(self, args, **kwargs):
        assert kwargs.get("timeout") and kwargs.get("check") is False
        self.calls.append(args)
        if self.missing and args[0] == "udisksctl":
            raise FileNotFoundError(args[0])
        if args[0] == "lsblk":
            data = {"blockdevices": [disk("/dev/sda", children=[
                part("/dev/sda1", mountpoint=self.mountpoint)])]}  # fmt: skip
            return subprocess.CompletedProcess(args, 0, json.dumps(data), "")
        verb = args[1]
        if verb == "mount":
            if self.mount_rc:
                return subprocess.CompletedProcess(args, 1, "", "Error mounting: not authorized\n")
            self.mountpoint = str(self.at)
            return subprocess.CompletedProcess(args, 0, f"Mounted /dev/sda1 at {self.at}\n", "")
        if verb == "unmount":
            if self.unmount_rc:
                return subprocess.CompletedProcess(
                    args, 1, "", "Error unmounting: target is busy\n"
                )
            self.mountpoint = None
            return subprocess.CompletedProcess(args, 0, "", "")
        if verb == "power-off":
            return subprocess.CompletedProcess(args, 0, "", "")
        raise AssertionError(args)


def test_udisks_mounts_a_stick_writes_there_and_releases_it(tmp_path):
    system = FakeSystem(at=tmp_path)
    sticks = UdisksSticks(**roots(tmp_path), run_command=system)
    (stick,) = sticks.find()
    assert sticks.mount(stick) == tmp_path
    assert ["udisksctl", "mount", "--block-device", "/dev/sda1", "--no-user-interaction"] in (
        system.calls
    )
    sticks.release(stick)
    verbs = [c[1] for c in system.calls if c[0] == "udisksctl"]
    assert verbs == ["mount", "unmount", "power-off"]
    assert system.calls[-1][-2] == "/dev/sda"  # the whole disk is powered off
    assert system.mountpoint is None


def test_a_stick_mounted_already_is_used_where_it_is(tmp_path):
    system = FakeSystem(mountpoint=str(tmp_path))
    sticks = UdisksSticks(**roots(tmp_path), run_command=system)
    (stick,) = sticks.find()
    assert sticks.mount(stick) == tmp_path
    assert not any(c[:2] == ["udisksctl", "mount"] for c in system.calls)


def test_a_busy_stick_is_not_said_to_be_removable(tmp_path):
    system = FakeSystem(mountpoint=str(tmp_path), unmount_rc=1)
    sticks = UdisksSticks(**roots(tmp_path), run_command=system)
    (stick,) = sticks.find()
    with pytest.raises(UsbError, match="target is busy"):
        sticks.release(stick)
    assert not any(c[:2] == ["udisksctl", "power-off"] for c in system.calls)


def test_mount_refusals_and_a_missing_udisks_are_usb_errors(tmp_path):
    sticks = UdisksSticks(**roots(tmp_path), run_command=FakeSystem(mount_rc=1, at=tmp_path))
    (stick,) = sticks.find()
    with pytest.raises(UsbError, match="not authorized"):
        sticks.mount(stick)
    sticks = UdisksSticks(**roots(tmp_path), run_command=FakeSystem(missing=True, at=tmp_path))
    with pytest.raises(UsbError, match="udisks2"):
        sticks.mount(sticks.find()[0])


def test_no_lsblk_means_no_sticks_not_a_crash():
    def missing(args, **kwargs):
        raise FileNotFoundError(args[0])

    def failing(args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "lsblk: failed")

    assert UdisksSticks(run_command=missing).find() == []
    assert UdisksSticks(run_command=failing).find() == []


def test_a_folder_stands_for_a_stick_while_it_exists(tmp_path):
    folder = tmp_path / "STICK"
    sticks = FolderStick(folder)
    assert sticks.find() == []
    folder.mkdir()
    (stick,) = sticks.find()
    assert stick.name == "STICK" and sticks.mount(stick) == folder
    sticks.release(stick)
    assert sticks.released == 1
    folder.rmdir()
    with pytest.raises(UsbError, match="gone"):
        sticks.mount(stick)


def test_an_unwritable_mount_is_a_read_only_error(tmp_path):
    with pytest.raises(UsbReadOnlyError):
        check_writable(tmp_path / "not-there")
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the write test leaves nothing behind


def test_the_backend_is_chosen_by_name(tmp_path):
    assert isinstance(make_usb("folder", tmp_path), FolderStick)
    assert isinstance(make_usb("udisks"), UdisksSticks)
    none = make_usb("none")
    assert isinstance(none, NoSticks) and none.find() == []
    with pytest.raises(UsbError):
        make_usb("folder")
    with pytest.raises(UsbError, match="unknown"):
        make_usb("floppy")


def test_the_polkit_rule_lets_the_service_user_mount_removable_sticks_and_nothing_more():
    import re

    root = Path(__file__).resolve().parents[1]
    rule = (root / "systemd" / "50-skinscan-usb.rules").read_text()
    code = "\n".join(line for line in rule.splitlines() if not line.lstrip().startswith("//"))
    actions = set(re.findall(r'"(org\.freedesktop\.udisks2\.[a-z-]+)"', code))
    base = {"filesystem-mount", "power-off-drive", "eject-media"}
    expected = {f"org.freedesktop.udisks2.{a}{s}" for a in base for s in ("", "-other-seat")}
    assert actions == expected
    assert 'subject.user == "skinscan"' in code and "polkit.Result.YES" in code
    provision = (root / "hardware" / "pi" / "provision.sh").read_text()
    assert "USB_RULE=50-skinscan-usb.rules" in provision and "install_usb_rule" in provision
    packages = (root / "hardware/image/stage-skinscan/01-skinscan/00-packages-nr").read_text()
    assert "udisks2" in packages.split() and "polkitd" in packages.split()
