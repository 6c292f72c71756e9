"""`mpinit netboot-tree` (mpinit.netboot, mpinit.cmd_netboot): the tree's files, its configs' command line, the
atomic output and the refusals. Checked with independent tools where there are some (sha256sum -c, cmp against
Debian's files); the tree's boot is the PXE e2e (tests/e2e/test_pxe.py)."""

import hashlib
import os
import subprocess

import pytest

from conftest import require_tools
from mpinit import cli, liveimage, netboot
from mpinit.netboot import NetbootError, build_tree


def _kernel(path):
    # Documentation/x86/boot.rst: "HdrS" at 0x202 marks a bzImage; the rest does not matter to the tree.
    data = bytearray(4096)
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    k = _kernel(src / "vmlinuz-x")
    i = src / "initrd-x.img"
    i.write_bytes(b"070701" + b"\0" * 500)
    sq = src / "root.squashfs"
    sq.write_bytes(b"hsqs" + os.urandom(100000))
    return k, i, sq


def _need_loaders():
    if not netboot.PXELINUX_0.is_file() or not netboot.LDLINUX_C32.is_file():
        pytest.skip("PXELINUX missing (Debian packages pxelinux, syslinux-common)")
    if not liveimage.GRUB_EFI_DIR.is_dir():
        pytest.skip("GRUB EFI modules missing (Debian package grub-efi-amd64-bin)")
    require_tools("grub-mkimage")


def test_tree_layout_and_files(inputs, tmp_path):
    _need_loaders()
    k, i, sq = inputs
    out = tmp_path / "tree"
    tree = build_tree(out, k, i, sq, url_base="http://boot.example.lan:8080/live-images/")
    assert sorted(tree.files) == sorted([
        "README.txt", "bootx64.efi", "grub/grub.cfg", "initrd.img", "ldlinux.c32", "live/filesystem.squashfs",
        "live/filesystem.squashfs.sha256", "pxelinux.0", "pxelinux.cfg/default", "vmlinuz"])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(tree.files)
    assert (out / "vmlinuz").read_bytes() == k.read_bytes()
    assert (out / "initrd.img").read_bytes() == i.read_bytes()
    assert (out / "live/filesystem.squashfs").read_bytes() == sq.read_bytes()
    assert (out / "pxelinux.0").read_bytes() == netboot.PXELINUX_0.read_bytes()
    assert (out / "ldlinux.c32").read_bytes() == netboot.LDLINUX_C32.read_bytes()
    efi = (out / "bootx64.efi").read_bytes()
    assert efi[:2] == b"MZ"  # a PE/COFF image (UEFI specification 2.1.1)
    pe = int.from_bytes(efi[0x3C:0x40], "little")
    assert efi[pe:pe + 4] == b"PE\0\0"
    assert int.from_bytes(efi[pe + 4:pe + 6], "little") == 0x8664  # IMAGE_FILE_MACHINE_AMD64
    # The tree is world-readable (a web or TFTP server under its own user serves it) and nothing is left beside.
    for p in [out] + list(out.rglob("*")):
        assert (p.stat().st_mode & 0o777) == (0o755 if p.is_dir() else 0o644), p
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in", "tree"]


def test_sha256_file_checks_with_sha256sum(inputs, tmp_path):
    _need_loaders()
    require_tools("sha256sum")
    k, i, sq = inputs
    tree = build_tree(tmp_path / "tree", k, i, sq)
    assert tree.sha256 == hashlib.sha256(sq.read_bytes()).hexdigest()
    subprocess.run(["sha256sum", "--quiet", "-c", "filesystem.squashfs.sha256"], cwd=tmp_path / "tree" / "live",
                   check=True)


def test_both_loaders_boot_the_same_command_line(inputs, tmp_path):
    _need_loaders()
    k, i, sq = inputs
    tree = build_tree(tmp_path / "tree", k, i, sq, url_base="http://10.1.2.3", append="console=ttyS0 quiet")
    line = "root=live:http://10.1.2.3/live/filesystem.squashfs ip=dhcp console=ttyS0 quiet"
    assert tree.cmdline == line
    pxe = (tmp_path / "tree/pxelinux.cfg/default").read_text()
    assert "  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n  IPAPPEND 2\n" % line in pxe
    assert "DEFAULT live" in pxe and "TIMEOUT 0" in pxe
    grub = (tmp_path / "tree/grub/grub.cfg").read_text()
    assert "  linux /vmlinuz %s $bootif\n  initrd /initrd.img\n" % line in grub
    # $bootif: BOOTIF=01-<mac with dashes> from GRUB's $net_default_mac, set before the menu entry.
    assert grub.index('set bootif="BOOTIF=01-$m1-$m2-$m3-$m4-$m5-$m6"') < grub.index("menuentry")
    assert '"$net_default_mac"' in grub
    readme = (tmp_path / "tree/README.txt").read_text()
    assert line in readme and tree.sha256 in readme and "pxelinux.0" in readme and "bootx64.efi" in readme


def test_pin_puts_the_digest_on_the_command_line(inputs, tmp_path):
    _need_loaders()
    k, i, sq = inputs
    tree = build_tree(tmp_path / "tree", k, i, sq, pin=True)
    digest = hashlib.sha256(sq.read_bytes()).hexdigest()
    assert tree.cmdline.endswith(" rd.live.sha256=" + digest)
    assert tree.cmdline.startswith("root=live:http://10.0.2.100/live/filesystem.squashfs ip=dhcp ")
    assert ("rd.live.sha256=" + digest) in (tmp_path / "tree/pxelinux.cfg/default").read_text()
    with pytest.raises(NetbootError, match="rd.live.sha256= of its own"):
        build_tree(tmp_path / "t2", k, i, sq, pin=True, append="rd.live.sha256=00")


def test_an_ip_of_the_users_replaces_ip_dhcp():
    line = netboot.cmdline("http://h", "ip=10.0.0.5::10.0.0.1:255.255.255.0:box:eth0:off")
    assert line == "root=live:http://h/live/filesystem.squashfs ip=10.0.0.5::10.0.0.1:255.255.255.0:box:eth0:off"
    assert "ip=dhcp" not in line


def test_no_uefi_leaves_grub_out(inputs, tmp_path):
    _need_loaders()
    k, i, sq = inputs
    tree = build_tree(tmp_path / "tree", k, i, sq, uefi=False)
    assert "bootx64.efi" not in tree.files and not (tmp_path / "tree/grub").exists()
    assert "bootx64.efi" not in (tmp_path / "tree/README.txt").read_text()


def test_an_empty_output_directory_is_used_a_full_one_refused(inputs, tmp_path):
    _need_loaders()
    k, i, sq = inputs
    out = tmp_path / "tree"
    out.mkdir()
    build_tree(out, k, i, sq, uefi=False)
    assert (out / "pxelinux.0").is_file()
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(NetbootError, match="exists and is not empty"):
        build_tree(out, k, i, sq)
    assert sorted(p.name for p in out.rglob("*")) == before
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NetbootError, match="exists and is not a directory"):
        build_tree(f, k, i, sq)
    with pytest.raises(NetbootError, match="does not exist"):
        build_tree(tmp_path / "no" / "tree", k, i, sq)


def test_a_failure_midway_leaves_nothing(inputs, tmp_path, monkeypatch):
    _need_loaders()
    k, i, sq = inputs

    def boom(out):
        raise RuntimeError("grub-mkimage died")

    monkeypatch.setattr(netboot, "make_grub_net_efi", boom)
    with pytest.raises(RuntimeError, match="grub-mkimage died"):
        build_tree(tmp_path / "tree", k, i, sq)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in"]   # no tree, no temporary directory


@pytest.mark.parametrize("flag", ["kernel", "initrd", "squashfs"])
def test_missing_inputs_are_named(inputs, tmp_path, flag):
    k, i, sq = inputs
    args = dict(kernel=k, initrd=i, squashfs=sq)
    args[flag] = tmp_path / ("missing-" + flag)
    with pytest.raises(NetbootError, match="--%s .*missing-%s: no such file" % (flag, flag)):
        build_tree(tmp_path / "tree", **args)
    assert not (tmp_path / "tree").exists()


def test_inputs_of_the_wrong_kind_are_refused(inputs, tmp_path):
    k, i, sq = inputs
    with pytest.raises(NetbootError, match="--kernel .*not an x86 bzImage"):
        build_tree(tmp_path / "tree", i, i, sq)
    with pytest.raises(NetbootError, match="--squashfs .*not a squashfs image"):
        build_tree(tmp_path / "tree", k, i, i)


@pytest.mark.parametrize("url,msg", [
    ("https://h/x", "must be an http:// URL"),
    ("ftp://h", "must be an http:// URL"),
    ("http://", "must be an http:// URL"),
    ("http:///x", "no host"),
    ("http://h/a b", "cannot carry"),
    ("http://h/a\"b", "cannot carry"),
    ("http://h/$x", "cannot carry"),
    ("http://h/\u00e9", "cannot carry"),
])
def test_bad_url_bases_are_refused(url, msg):
    with pytest.raises(NetbootError, match=msg):
        netboot.check_url_base(url)


def test_append_is_checked():
    with pytest.raises(Exception, match="root= of its own"):
        netboot.cmdline("http://h", "root=/dev/sda1")
    with pytest.raises(Exception, match="at most 2047"):
        netboot.cmdline("http://h", "x" * 2100)


def test_cli_writes_the_tree_and_reports_usage_errors(inputs, tmp_path, capsys):
    _need_loaders()
    k, i, sq = inputs
    base = ["netboot-tree", "--kernel", str(k), "--initrd", str(i), "--squashfs", str(sq)]
    assert cli.main(base + ["-o", str(tmp_path / "t"), "--append", "console=ttyS0", "--pin-sha256"]) == 0
    out = capsys.readouterr().out
    assert "wrote %s" % (tmp_path / "t") in out and "rd.live.sha256=" in out and "--url-base not given" in out
    assert cli.main(base + ["-o", str(tmp_path / "t")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main(base + ["-o", str(tmp_path / "u"), "--url-base", "https://x"]) == 2
    assert "--url-base 'https://x'" in capsys.readouterr().err
    assert cli.main(["netboot-tree", "-o", str(tmp_path / "v"), "--kernel", str(tmp_path / "nok"),
                     "--initrd", str(i), "--squashfs", str(sq)]) == 2
    assert "--kernel %s: no such file" % (tmp_path / "nok") in capsys.readouterr().err


def test_a_missing_loader_names_its_debian_package(inputs, tmp_path, monkeypatch):
    from mpinit.runner import ToolError

    k, i, sq = inputs
    monkeypatch.setattr(netboot, "PXELINUX_0", tmp_path / "gone" / "pxelinux.0")
    with pytest.raises(ToolError, match="pxelinux.0: not found \\(Debian package pxelinux\\)"):
        build_tree(tmp_path / "tree", k, i, sq)
    assert not (tmp_path / "tree").exists()
