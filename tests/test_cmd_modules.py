"""`mpinit modules`: listing the closure, --explain, bad input."""

import pytest

from mpinit import cli
from mpinit.cmd_modules import wanted_modules
from test_kmod_closure import fake_ko, make_tree


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path, {
        "kernel/drivers/virtio/virtio_ring.ko": fake_ko("virtio_ring"),
        "kernel/drivers/virtio/virtio.ko": fake_ko("virtio", ["virtio_ring"]),
        "kernel/drivers/block/virtio_blk.ko": fake_ko("virtio_blk", ["virtio", "virtio_ring"]),
        "kernel/fs/squashfs/squashfs.ko": fake_ko("squashfs"),
    }, builtin=["fs/ext4/ext4"])


def test_lists_closure_in_load_order(tree, capsys):
    assert cli.main(["modules", "--kernel-modules", str(tree), "--modules", "virtio-blk,ext4"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [l.split()[0] for l in lines[:4]] == ["virtio_ring", "virtio", "virtio_blk", "ext4"]
    assert "kernel/drivers/block/virtio_blk.ko  (depends: virtio,virtio_ring)" in lines[2]
    assert lines[3].endswith("(built in)")
    assert lines[-1].startswith("3 modules (1 built in), 0 firmware files") and "kernel 9.9.9-test" in lines[-1]
    assert err == ""


def test_default_set_warns_about_missing(tree, capsys):
    assert cli.main(["modules", "--kernel-modules", str(tree)]) == 0
    out, err = capsys.readouterr()
    assert "squashfs" in out and "virtio_blk" in out
    assert "mpinit: warning: ahci: not found in %s" % tree in err


def test_explain(tree, capsys):
    assert cli.main(["modules", "--kernel-modules", str(tree), "--modules", "virtio_blk",
                     "--explain", "virtio-ring"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("virtio_ring: in the image as /lib/modules/9.9.9-test/kernel/drivers/virtio/virtio_ring.ko")
    assert "pulled in by: virtio_ring <- virtio <- virtio_blk" in out
    assert cli.main(["modules", "--kernel-modules", str(tree), "--modules", "virtio_blk",
                     "--explain", "squashfs"]) == 1
    assert "squashfs: not in the closure" in capsys.readouterr().out


def test_bad_input(tree, tmp_path, capsys):
    assert cli.main(["modules", "--kernel-modules", str(tmp_path / "none")]) == 2
    assert "--kernel-modules %s: no such module directory" % (tmp_path / "none") in capsys.readouterr().err
    assert cli.main(["modules", "--kver", "0.0-none"]) == 2
    assert "--kver 0.0-none: no such module directory" in capsys.readouterr().err
    assert cli.main(["modules", "--kernel-modules", str(tree), "--modules", "nope", "--strict"]) == 2
    assert "mpinit: error: nope: not found in %s" % tree in capsys.readouterr().err
    assert cli.main(["modules", "--kernel-modules", str(tree), "--modules", ",,"]) == 2
    assert "--modules: no module names" in capsys.readouterr().err
    assert cli.main(["modules", "--kernel-modules", str(tree), "--modules", "../x.ko"]) == 2
    assert "not a module name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["modules", "--kernel-modules", str(tree), "--kver", "1"])  # mutually exclusive


def test_wanted_modules_expands_sets():
    assert wanted_modules(None, False)[:2] == ["virtio_blk", "virtio_scsi"]
    assert wanted_modules(None, True) == []
    got = wanted_modules("loop, generic-live ,zram", False)
    assert got[0] == "loop" and got[-1] == "zram" and got.count("loop") == 1 and "squashfs" in got
