"""mpinit.kernelhooks: pack.conf, the installed scripts run as the package manager runs them (against a scratch
root with a fake module tree), and `mpinit install-hooks` / `kernel-hook`. The boot of an image built by the hook
is tests/e2e/test_kernel_hooks.py."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import cli, kernelhooks as kh

KVER = "6.1.0-99-test"


def test_parse_conf_lists_values_flags():
    conf = kh.parse_conf("# c\n\nmodules = generic-live, btrfs\nmodules = nvme\nbinaries = /sbin/e2fsck /sbin/blkid\n"
                         "cmdline = rootwait quiet\nluks = yes\nlvm = no\ncompress=zstd\nadd = /etc/a:/etc/b\n")
    assert conf.lists == {"modules": ["generic-live", "btrfs", "nvme"], "binaries": ["/sbin/e2fsck", "/sbin/blkid"],
                          "add": ["/etc/a:/etc/b"]}
    assert conf.values == {"cmdline": "rootwait quiet", "compress": "zstd"}
    assert conf.flags == {"luks": True, "lvm": False}


@pytest.mark.parametrize("text, match", [
    ("modules generic-live\n", "pack.conf line 1: 'modules generic-live' is not `key = value`"),
    ("# x\nmodule = a\n", "pack.conf line 2: unknown key 'module' (known: add, binaries,"),
    ("cmdline = a\ncmdline = b\n", "line 2: cmdline given a second time"),
    ("luks = maybe\n", "line 1: luks = 'maybe': expected yes or no"),
    ("modules = ,\n", "line 1: modules has no value"),
    ("cmdline =\n", "line 1: cmdline has no value"),
    ("add = /etc/x\n", "add = '/etc/x': expected SRC:DEST"),
])
def test_parse_conf_errors(text, match):
    with pytest.raises(kh.HookError, match=match.replace("(", r"\(").replace(")", r"\)")):
        kh.parse_conf(text, "pack.conf")


def test_parse_conf_only_raises_hookerror():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.text(alphabet=st.sampled_from("modulesbinaryluk=#, \n:/-yesno\t"), max_size=200))
    def check(text):
        try:
            kh.parse_conf(text)
        except kh.HookError:
            pass

    check()


def test_default_conf_parses():
    assert kh.parse_conf(kh.DEFAULT_CONF).lists == {"modules": ["generic-live"]}


def test_pack_argv_with_and_without_root():
    conf = kh.parse_conf("modules = a,b\nbinaries = /sbin/e2fsck\nhooks = /etc/mpinit/hooks/h.py\n"
                         "crypttab = /etc/crypttab\ncmdline = rootwait\nluks = yes\nmdadm = no\n")
    assert kh.pack_argv(conf, KVER) == [
        "-o", "/boot/initrd.img-" + KVER, "--kernel-modules", "/lib/modules/" + KVER, "--modules", "a,b",
        "--binary", "/sbin/e2fsck", "--hook", "/etc/mpinit/hooks/h.py", "--cmdline", "rootwait",
        "--crypttab", "/etc/crypttab", "--luks"]
    assert kh.pack_argv(conf, KVER, "/srv/r") == [
        "-o", "/srv/r/boot/initrd.img-" + KVER, "--kernel-modules", "/srv/r/lib/modules/" + KVER,
        "--modules", "a,b", "--add", "/srv/r/sbin/e2fsck:/sbin/e2fsck", "--hook", "/srv/r/etc/mpinit/hooks/h.py",
        "--cmdline", "rootwait", "--crypttab", "/srv/r/etc/crypttab", "--luks"]


def test_bad_kernel_versions():
    for bad in ("", "../x", "a/b", "..", "-rf"):
        with pytest.raises(kh.HookError, match="not a kernel release"):
            kh.check_kver(bad)


@pytest.fixture
def scratch(tmp_path):
    """A scratch root with the hooks installed, a fake (empty) module tree for KVER and /boot."""
    root = tmp_path / "root"
    root.mkdir()
    mpinit = Path(sys.executable).parent / "mpinit"
    if not mpinit.exists():
        pytest.skip("no mpinit console script beside %s" % sys.executable)
    kh.install(root, mpinit)
    (root / "lib" / "modules" / KVER).mkdir(parents=True)
    (root / "boot").mkdir()
    return root


def init_binary():
    """A static x86_64 ELF to stand in for the runtime: busybox-static's."""
    require_tools("busybox")
    from mpinit import liveroot

    return str(liveroot.busybox_path())


def run_script(root, rel, *args, **env):
    e = dict(os.environ, MPINIT_HOOK_ROOT=str(root))
    e.update(env)
    return subprocess.run([str(root / rel)] + list(args), env=e, capture_output=True, text=True)


def test_install_writes_scripts_and_default_conf(scratch):
    for rel in (kh.POSTINST, kh.POSTRM, kh.INSTALL_PLUGIN):
        mode = (scratch / rel).stat().st_mode
        assert stat.S_IMODE(mode) == 0o755, rel
        text = (scratch / rel).read_text()
        assert text.startswith("#!/bin/sh\n") and str(Path(sys.executable).parent / "mpinit") in text
        subprocess.run(["sh", "-n", str(scratch / rel)], check=True)     # the shell parses it
    assert (scratch / kh.CONF).read_text() == kh.DEFAULT_CONF


def test_install_keeps_an_existing_conf_and_checks_it(tmp_path):
    root = tmp_path / "r"
    (root / "etc" / "mpinit").mkdir(parents=True)
    (root / kh.CONF).write_text("modules = nvme\n")
    kh.install(root, "/usr/bin/mpinit", log=lambda *a: None)
    assert (root / kh.CONF).read_text() == "modules = nvme\n"
    (root / kh.CONF).write_text("modules nvme\n")
    with pytest.raises(kh.HookError, match="pack.conf line 1"):
        kh.install(root, "/usr/bin/mpinit")
    with pytest.raises(kh.HookError, match="absolute path"):
        kh.install(root, "mpinit")


def test_script_quotes_the_mpinit_path(tmp_path):
    text = kh.scripts('/opt/we"ird $dir/mpinit')[kh.POSTINST]
    assert 'MPINIT="${MPINIT:-/opt/we\\"ird \\$dir/mpinit}"' in text


def test_postinst_builds_the_image_postrm_removes_it(scratch):
    init = init_binary()
    (scratch / kh.CONF).write_text("modules = generic-live\ncmdline = rootwait quiet\ninit = %s\n"
                                   "compress = none\n" % init)
    r = run_script(scratch, kh.POSTINST, KVER, "/boot/vmlinuz-" + KVER)
    assert r.returncode == 0, r.stdout + r.stderr
    img = scratch / "boot" / ("initrd.img-" + KVER)
    # everything on stderr (debconf may own the maintainer script's stdout)
    assert r.stdout == "" and "mpinit kernel-hook: mpinit pack -o %s --kernel-modules %s" % (
        img, scratch / "lib/modules" / KVER) in r.stderr
    from mpinit import cpio

    names = cpio.merged(cpio.read_image(img.read_bytes()))
    assert names["init"].data == Path(init).read_bytes()
    assert b"rootwait quiet" in names["etc/mpinit/config.json"].data
    # the previous image stays when a rebuild fails, and no temporary file is left
    before = img.read_bytes()
    (scratch / kh.CONF).write_text("modules = generic-live\ninit = %s\ncompress = bogus\n" % init)
    r = run_script(scratch, kh.POSTINST, KVER, "/boot/vmlinuz-" + KVER)
    assert r.returncode != 0 and "compress" in r.stderr
    assert img.read_bytes() == before
    assert sorted(p.name for p in (scratch / "boot").iterdir()) == [img.name]
    r = run_script(scratch, kh.POSTRM, KVER, "/boot/vmlinuz-" + KVER)
    assert r.returncode == 0 and not img.exists()


def test_missing_module_tree_or_conf(scratch):
    r = run_script(scratch, kh.POSTINST, "6.9.9-none", "/boot/vmlinuz")
    assert r.returncode == 2 and "modules are not installed" in r.stderr
    (scratch / kh.CONF).unlink()
    r = run_script(scratch, kh.POSTINST, KVER)
    assert r.returncode == 2 and "pack.conf: no such file" in r.stderr
    r = run_script(scratch, kh.POSTINST)
    assert r.returncode == 2 and "no kernel version given" in r.stderr


def test_hooks_without_mpinit_do_not_fail_the_package(scratch):
    for rel in (kh.POSTINST, kh.POSTRM):
        r = run_script(scratch, rel, KVER, "/boot/vmlinuz-" + KVER, MPINIT="/nonexistent/mpinit")
        assert r.returncode == 0 and "/nonexistent/mpinit not found" in r.stderr
    assert not (scratch / "boot" / ("initrd.img-" + KVER)).exists()


def test_kernel_install_plugin(scratch, tmp_path):
    init = init_binary()
    (scratch / kh.CONF).write_text("init = %s\ncompress = none\n" % init)
    staging = tmp_path / "staging"
    staging.mkdir()
    img = scratch / "boot" / ("initrd.img-" + KVER)
    r = run_script(scratch, kh.INSTALL_PLUGIN, "add", KVER, "/boot/efi/abc/" + KVER, "/boot/vmlinuz-" + KVER,
                   KERNEL_INSTALL_STAGING_AREA=str(staging))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (staging / "initrd").read_bytes() == img.read_bytes()
    r = run_script(scratch, kh.INSTALL_PLUGIN, "inspect", KVER)
    assert r.returncode == 0 and r.stdout == ""
    r = run_script(scratch, kh.INSTALL_PLUGIN, "remove", KVER, "/boot/efi/abc/" + KVER)
    assert r.returncode == 0 and not img.exists()


def test_cli_install_hooks(tmp_path, capsys):
    assert cli.main(["install-hooks", "--root", str(tmp_path), "--mpinit", "/usr/local/bin/mpinit"]) == 0
    assert "wrote %s" % (tmp_path / kh.POSTINST) in capsys.readouterr().out
    assert cli.main(["install-hooks", "--root", str(tmp_path / "none")]) == 2
    assert "--root %s: no such directory" % (tmp_path / "none") in capsys.readouterr().err
    assert cli.main(["kernel-hook", "add", "../etc", "--root", str(tmp_path)]) == 2
    assert "not a kernel release" in capsys.readouterr().err
