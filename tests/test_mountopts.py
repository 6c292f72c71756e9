"""mpinit_agent.mountopts: option strings into MS_* flags and a data string, as mount(8) splits them.

Runs under CPython pytest and under the built MicroPython (tests/mpy/run.py)."""

import pytest

from mpinit_agent import syscalls as sc
from mpinit_agent.mountopts import flags_str, mount_flags, split_options

MICROPYTHON = True


@pytest.mark.parametrize("opts, flags", [
    ("ro", "MS_RDONLY"), ("nosuid", "MS_NOSUID"), ("nodev", "MS_NODEV"), ("noexec", "MS_NOEXEC"),
    ("sync", "MS_SYNCHRONOUS"), ("remount", "MS_REMOUNT"), ("mand", "MS_MANDLOCK"), ("dirsync", "MS_DIRSYNC"),
    ("noatime", "MS_NOATIME"), ("nodiratime", "MS_NODIRATIME"), ("relatime", "MS_RELATIME"),
    ("strictatime", "MS_STRICTATIME"), ("lazytime", "MS_LAZYTIME"), ("bind", "MS_BIND"), ("move", "MS_MOVE"),
    ("silent", "MS_SILENT"), ("iversion", "MS_I_VERSION"), ("nosymfollow", "MS_NOSYMFOLLOW"),
    ("private", "MS_PRIVATE"), ("shared", "MS_SHARED"), ("slave", "MS_SLAVE"), ("unbindable", "MS_UNBINDABLE"),
])
def test_each_flag(opts, flags):
    assert mount_flags(opts) == (getattr(sc, flags), "")


@pytest.mark.parametrize("setter, clearer", [
    ("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"), ("sync", "async"),
    ("mand", "nomand"), ("noatime", "atime"), ("nodiratime", "diratime"), ("relatime", "norelatime"),
    ("strictatime", "nostrictatime"), ("lazytime", "nolazytime"), ("silent", "loud"),
    ("iversion", "noiversion"), ("nosymfollow", "symfollow"),
])
def test_inverse_options_clear_and_last_wins(setter, clearer):
    bit = mount_flags(setter)[0]
    assert bit != 0
    assert mount_flags(setter + "," + clearer) == (0, "")
    assert mount_flags(clearer + "," + setter) == (bit, "")
    assert mount_flags(clearer) == (0, "")


def test_recursive_variants():
    assert mount_flags("rbind") == (sc.MS_BIND | sc.MS_REC, "")
    assert mount_flags("rprivate") == (sc.MS_PRIVATE | sc.MS_REC, "")
    assert mount_flags("rslave") == (sc.MS_SLAVE | sc.MS_REC, "")
    assert mount_flags("rshared") == (sc.MS_SHARED | sc.MS_REC, "")
    assert mount_flags("runbindable") == (sc.MS_UNBINDABLE | sc.MS_REC, "")


def test_flags_and_data_split_in_order():
    flags, data = mount_flags("defaults,ro,noatime,errors=remount-ro,data=ordered,nosuid,commit=60")
    assert flags == sc.MS_RDONLY | sc.MS_NOATIME | sc.MS_NOSUID
    assert data == "errors=remount-ro,data=ordered,commit=60"


def test_run_style_tmpfs():
    assert mount_flags("nosuid,nodev,mode=0755,size=10%") == (sc.MS_NOSUID | sc.MS_NODEV, "mode=0755,size=10%")


def test_overlay_data_kept_whole():
    opts = "lowerdir=/run/a,upperdir=/run/cow/upper,workdir=/run/cow/work"
    assert mount_flags(opts) == (0, opts)


def test_fstab_only_options_dropped():
    flags, data = mount_flags("defaults,noauto,nofail,_netdev,user,users,owner,group,nouser,auto,"
                              "x-systemd.device-timeout=5,X-mount.mkdir,comment=systemd.automount,uid=1000")
    assert (flags, data) == (0, "uid=1000")


def test_empty_and_none():
    assert mount_flags("") == (0, "")
    assert mount_flags(None) == (0, "")
    assert mount_flags("defaults") == (0, "")
    assert mount_flags(",,ro,,") == (sc.MS_RDONLY, "")


def test_quoted_comma_stays_in_one_option():
    ctx = 'context="system_u:object_r:tmp_t:s0:c127,c456"'
    assert mount_flags("nodev," + ctx + ",ro") == (sc.MS_NODEV | sc.MS_RDONLY, ctx)
    assert split_options("a,\"b,c\",d") == ["a", '"b,c"', "d"]


def test_unterminated_quote_names_the_string():
    with pytest.raises(ValueError, match="unterminated"):
        mount_flags('context="abc,ro')


def test_flag_with_a_value_is_data():
    # libmount matches flag names exactly: "ro=1" is not "ro" and goes to the filesystem, which will refuse it.
    assert mount_flags("ro=1") == (0, "ro=1")


def test_flags_str():
    assert flags_str(0) == ""
    assert flags_str(sc.MS_RDONLY | sc.MS_NOATIME) == "noatime,ro"
    assert flags_str(sc.MS_BIND | sc.MS_REC) == "bind,rec"
    flags, _ = mount_flags("ro,nosuid,nodev,noexec,relatime")
    assert flags_str(flags) == "nodev,noexec,nosuid,relatime,ro"
