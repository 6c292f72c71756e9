"""`mpinit pack --luks / --mdadm / --lvm / --crypttab` (mpinit.storagekit): the tools with their libraries, the
dm/md/crypto modules of the real Debian kernel, /etc/crypttab checked by the agent's own parser, and bad input
failing cleanly (a message naming the input, no output left behind)."""

import pytest

from conftest import require_tools
from mpinit import storagekit
from test_pack import init, pack  # noqa: F401 (the fake /init fixture and the `mpinit pack` runner)


def names(tree):
    return set(tree)


def test_luks_mdadm_lvm_with_the_debian_kernel(tmp_path, init, debian_kernel):
    require_tools("cryptsetup", "mdadm", "lvm")
    status, tree = pack(tmp_path, init, "--kernel-modules", debian_kernel.modules_dir, "--modules", "virtio_blk",
                        "--luks", "--mdadm", "--lvm")
    assert status == 0
    files = names(tree)
    for prog in ("cryptsetup", "mdadm", "lvm"):
        assert any(f.endswith("sbin/" + prog) for f in files), prog
    assert any("libcryptsetup.so" in f for f in files) and any("libdevmapper.so" in f for f in files)
    mods = {f.rsplit("/", 1)[-1] for f in files if f.endswith(".ko")}
    for m in ("dm-crypt.ko", "dm-mod.ko", "af_alg.ko", "algif_skcipher.ko", "algif_hash.ko", "xts.ko",
              "raid1.ko", "md-mod.ko", "virtio_blk.ko"):
        assert m in mods, m


def test_crypttab_is_checked_and_baked_in(tmp_path, init):
    ct = tmp_path / "crypttab"
    ct.write_text("cryptroot UUID=6d70696e-6974-4c55-4b53-000000000002 none luks,discard\n")
    status, tree = pack(tmp_path, init, "--crypttab", ct)
    assert status == 0 and tree["etc/crypttab"].data == ct.read_bytes()


@pytest.mark.parametrize("text, words", [
    ("cryptroot\n", "line 1"),
    ("swap /dev/sda3 /dev/urandom swap\n", "mpinit unlocks LUKS only (not swap)"),
])
def test_bad_crypttab_is_refused_naming_file_and_line(tmp_path, init, capsys, text, words):
    ct = tmp_path / "crypttab"
    ct.write_text(text)
    status, _ = pack(tmp_path, init, "--crypttab", ct)
    err = capsys.readouterr().err
    assert status != 0 and "--crypttab %s" % ct in err and words in err
    assert not (tmp_path / "initrd.img").exists()


def test_missing_crypttab_file(tmp_path, init, capsys):
    status, _ = pack(tmp_path, init, "--crypttab", tmp_path / "nope")
    assert status != 0 and "No such file" in capsys.readouterr().err


def test_a_missing_tool_names_its_package(monkeypatch, tmp_path):
    from mpinit import runner
    from mpinit.initramfs import PackOptions

    monkeypatch.setattr(runner.shutil, "which", lambda *a, **k: None)
    with pytest.raises(storagekit.KitError, match="--mdadm: mdadm is not installed on this machine "
                                                 r"\(Debian package mdadm\)"):
        storagekit.expand(PackOptions(init=tmp_path / "init", mdadm=True))


def test_without_a_module_tree_the_kit_warns(tmp_path, init, capsys):
    require_tools("cryptsetup")
    status, tree = pack(tmp_path, init, "--luks")
    assert status == 0 and any(f.endswith("sbin/cryptsetup") for f in tree)
    assert "--luks: no module tree given" in capsys.readouterr().err
