"""mpinit.testing.systemd_root without building anything: the mirror lines taken from apt, the safety wrapper
around mmdebstrap, the files written into the tree, the cache key, and the refusals (not root, a host mount table
that changed)."""

import os
import subprocess

import pytest

from mpinit import arch as archmod
from mpinit.testing import systemd_root as sr

INDEXTARGETS = """http://mirror.example/debian/ bookworm main amd64 Debian
http://mirror.example/debian/ bookworm main arm64 Debian
http://mirror.example/debian/ bookworm-updates main amd64 Debian
http://mirror.example/debian-security/ bookworm-security main amd64 Debian
http://mirror.example/debian/ bookworm contrib amd64 Debian
http://other.example/repo/ stable main amd64 Other
http://mirror.example/debian/ bookworm main amd64 Debian
"""


def fake_apt(monkeypatch, indextargets, arch="amd64"):
    real = subprocess.run
    monkeypatch.setattr(archmod, "native", lambda: archmod.get(arch))

    def run(argv, **kw):
        if argv[:2] == ["apt-get", "indextargets"]:
            return subprocess.CompletedProcess(argv, 0, indextargets, "")
        return real(argv, **kw)
    monkeypatch.setattr(sr.subprocess, "run", run)


def test_mirror_lines_are_apt_s_debian_main_archives_for_this_architecture(monkeypatch):
    fake_apt(monkeypatch, INDEXTARGETS)
    lines = sr.mirror_lines()
    assert lines == ["deb http://mirror.example/debian/ bookworm main",
                     "deb http://mirror.example/debian/ bookworm-updates main",
                     "deb http://mirror.example/debian-security/ bookworm-security main"]
    assert sr.suite(lines) == "bookworm"


def test_no_debian_archive_configured_is_a_clear_error(monkeypatch):
    fake_apt(monkeypatch, "http://other.example/repo/ stable main amd64 Other\n")
    with pytest.raises(sr.RootError, match="no Debian main archive for amd64"):
        sr.mirror_lines()


def test_mmdebstrap_runs_in_a_private_mount_namespace():
    argv = sr.mmdebstrap_argv("/t/root", ["deb http://m/debian bookworm main"], "bookworm")
    i = argv.index("--")
    assert argv[1:i] == ["--mount", "--propagation", "private"] and argv[0].endswith("unshare")
    assert argv[i + 1].endswith("mmdebstrap") and "--mode=unshare" in argv and "--variant=essential" in argv
    assert "--include=systemd,systemd-sysv,udev" in argv
    assert argv[-3:] == ["bookworm", "/t/root", "deb http://m/debian bookworm main"]


def test_customise_writes_the_unit_the_script_and_the_links(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("old\n")
    sr.customise(tmp_path)
    script = tmp_path / "usr/local/sbin/mptest"
    assert os.stat(script).st_mode & 0o777 == 0o755
    text = script.read_text()
    assert "MPTEST-REPORT count=$n" in text and "systemctl --no-block poweroff" in text and sr.COUNT_FILE in text
    assert "ExecStart=/usr/local/sbin/mptest" in (tmp_path / "etc/systemd/system/mptest.service").read_text()
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/mptest.service"
    assert os.readlink(wants) == "/etc/systemd/system/mptest.service"
    assert os.readlink(tmp_path / "etc/systemd/system/getty.target") == "/dev/null"
    assert (tmp_path / "etc/hostname").read_text() == "mptest\n"
    assert len((tmp_path / "etc/machine-id").read_text().strip()) == 32
    sr.customise(tmp_path)  # again over an existing tree: links replaced, not an error


def test_the_script_counts_from_zero(tmp_path):
    # The test program's arithmetic on the host's sh, with its paths pointed into tmp_path and no poweroff.
    text = sr.MPTEST.replace(sr.COUNT_FILE, str(tmp_path / "var/lib/mptest/count"))
    text = text.replace("exec >/dev/console 2>&1", "").replace("exec systemctl --no-block poweroff", "true")
    text = text.replace("/proc/cmdline", "/dev/null")
    script = tmp_path / "mptest"
    script.write_text(text)
    outs = [subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert "MPTEST-REPORT count=0" in outs[0] and "MPTEST-REPORT count=1" in outs[1]


def test_the_key_follows_the_recipe(monkeypatch):
    k = sr.recipe_key("bookworm")
    assert k == sr.recipe_key("bookworm") and k != sr.recipe_key("trixie")
    monkeypatch.setattr(sr, "PACKAGES", sr.PACKAGES + ("e2fsprogs",))
    assert sr.recipe_key("bookworm") != k


def test_building_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(sr.os, "geteuid", lambda: 1000)
    with pytest.raises(sr.RootError, match="needs root"):
        sr.build(tmp_path)


def test_a_changed_host_mount_table_fails_the_build(monkeypatch, tmp_path):
    monkeypatch.setattr(sr.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sr, "find_tool", lambda name, package=None: "/usr/bin/" + name)
    fake_apt(monkeypatch, INDEXTARGETS)
    tables = iter(["1 0 0:1 / / rw - ext4 /dev/sda1 rw\n",
                   "1 0 0:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:2 / /proc rw - proc proc rw\n"])
    monkeypatch.setattr(sr, "_mountinfo", lambda: next(tables))
    monkeypatch.setattr(sr, "run", lambda argv, **kw: None)
    with pytest.raises(sr.RootError, match="mount table changed"):
        sr.build(tmp_path)
