"""Encrypted persistence on the fake machine (live-boot's persistence-encryption=): a LUKS volume holding the
labelled persistence filesystem is unlocked with a passphrase typed at a prompt that names the persistence volume,
mounted by its /dev/mapper name, and used; plain volumes count only with "none" (the default) listed; a volume
that stays locked means a boot without persistence, not a failed boot."""

import pytest

from mpinit.testing import dm
from mpinit_agent import cmdline, contract

P = contract.PERSIST_MOUNT
LIVE = "root=live:LABEL=MPLIVE rootdelay=1 persistence "
U = "6d70696e-6974-5045-5253-000000000001"   # the LUKS container's UUID
PASS = "persist me"


def machine(fake_machine, cmdline_text, encrypted=True, plain_too=False):
    m = fake_machine(cmdline=cmdline_text)
    m.add_module("dm_mod")
    m.add_module("dm_crypt", depends=("dm_mod",))
    squash = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n"), "etc/os-release": b"ID=demo\n"})
    parts = [m.partition(m.filesystem("vfat", label="MPLIVE", uuid="4D50-4C56",
                                      files={"live/filesystem.squashfs": squash}), partlabel="live")]
    inner = m.filesystem("ext4", label="persistence", size=8 << 20,
                         files={"persistence.conf": "/ union\n", "rw/etc/saved": "kept\n"})
    if encrypted:
        parts.append(m.partition(dm.luks(m, inner, passphrase=PASS, uuid=U), partlabel="crypt"))
    if plain_too or not encrypted:
        parts.append(m.partition(m.filesystem("ext4", label="persistence", size=8 << 20,
                                              files={"persistence.conf": "/ union\n", "rw/etc/saved": "plain\n"}),
                                 partlabel="plain"))
    m.add_disk("sda", parts, removable=True)
    dm.install_tools(m, mdadm=False, lvm=False)
    return m


def test_parameter_values():
    assert cmdline.parse("persistence").persist_encryption == ["none"]             # live-boot's default
    assert cmdline.parse("persistence persistence-encryption=none,luks").persist_encryption == ["none", "luks"]
    with pytest.raises(cmdline.CmdlineError, match="persistence-encryption=tpm"):
        cmdline.parse("persistence persistence-encryption=tpm")


def test_luks_persistence_is_unlocked_at_a_prompt_naming_it_and_used(fake_machine):
    m = machine(fake_machine, LIVE + "persistence-encryption=luks")
    m.console_input = ["wrong", PASS]
    r = m.boot()
    assert r.handed_off, r.console
    assert r.console.count("Enter passphrase for /dev/sda2 (luks-%s, persistence): " % U) == 2
    assert r.stdin_fed == [b"wrong", PASS.encode()] and PASS not in r.console
    assert r.mount_at(P)[:3] == ("/dev/mapper/luks-" + U, P, "ext4")   # the mapper name, not /dev/dm-0
    assert r.read("/etc/saved") == b"kept\n"                            # the encrypted upper is the root's


def test_by_default_a_luks_volume_is_left_alone(fake_machine):
    """persistence-encryption=none (the default): no prompt, no unlock; the boot goes on without persistence."""
    m = machine(fake_machine, LIVE)
    m.console_input = []
    r = m.boot()
    assert r.handed_off, r.console
    assert "Enter passphrase" not in r.console and r.stdin_fed == []
    assert r.mount_at(P) is None and "changes will NOT be kept" in r.console


def test_luks_only_skips_a_plain_volume(fake_machine):
    """persistence-encryption=luks without "none": a plain volume with the label does not count (live-boot)."""
    m = machine(fake_machine, LIVE + "persistence-encryption=luks", plain_too=True)
    m.console_input = [PASS]
    r = m.boot()
    assert r.handed_off, r.console
    assert r.read("/etc/saved") == b"kept\n"


def test_none_and_luks_take_a_plain_volume_without_asking(fake_machine):
    m = machine(fake_machine, LIVE + "persistence-encryption=luks,none", encrypted=False)
    m.console_input = []
    r = m.boot()
    assert r.handed_off, r.console
    assert r.read("/etc/saved") == b"plain\n" and r.mount_at(P)[0] == "/dev/sda2"


def test_a_volume_that_stays_locked_means_no_persistence_not_a_failed_boot(fake_machine):
    m = machine(fake_machine, LIVE + "persistence-encryption=luks")
    m.console_input = ["a", "b", "c"]
    r = m.boot()
    assert r.handed_off, r.console
    assert r.console.count("Enter passphrase for /dev/sda2") == 3
    assert r.mount_at(P) is None and "changes will NOT be kept" in r.console
    assert "could not unlock /dev/sda2" in "".join(r.kmsg)


def test_a_prompt_nobody_answers_times_out_with_rd_luks_timeout(fake_machine):
    m = machine(fake_machine, LIVE + "persistence-encryption=luks rd.luks.timeout=4")
    m.console_input = [m.SILENCE]
    r = m.boot()
    assert r.handed_off, r.console
    assert "Timed out waiting for the passphrase of /dev/sda2." in r.console
    assert r.mount_at(P) is None and r.uptime_ms >= 4000
