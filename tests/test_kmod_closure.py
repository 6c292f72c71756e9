"""Host side of kernel modules (mpinit.kmod): .modinfo reading, the closure, the table, checked against kmod."""

import gzip
import json
import lzma
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import kmod

# ---- a synthetic module: the smallest ELF64 object with a .modinfo section ---------------------------------


def fake_ko(name, depends=(), softdep=None, aliases=(), firmware=(), big_endian=False, elf32=False):
    info = ["license=GPL", "name=%s" % name, "depends=%s" % ",".join(depends)]
    if softdep:
        info += ["softdep=%s" % s for s in ([softdep] if isinstance(softdep, str) else softdep)]
    info += ["alias=%s" % a for a in aliases] + ["firmware=%s" % f for f in firmware]
    modinfo = b"\0".join(i.encode() for i in info) + b"\0"
    shstr = b"\0.modinfo\0.shstrtab\0"
    e = ">" if big_endian else "<"
    if elf32:
        ehsize, shentsize, shdr_fmt = 52, 40, e + "IIIIIIIIII"
    else:
        ehsize, shentsize, shdr_fmt = 64, 64, e + "IIQQQQIIQQ"
    mi_off = ehsize
    str_off = mi_off + len(modinfo)
    shoff = str_off + len(shstr)
    shoff += -shoff % 8
    ident = b"\x7fELF" + bytes([1 if elf32 else 2, 2 if big_endian else 1, 1]) + bytes(9)
    if elf32:
        hdr = ident + struct.pack(e + "HHIIIIIHHHHHH", 1, 3, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 2)
    else:
        hdr = ident + struct.pack(e + "HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 2)
    assert len(hdr) == ehsize
    body = hdr + modinfo + shstr
    body += bytes(shoff - len(body))
    sections = [(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                (1, 1, 0, 0, mi_off, len(modinfo), 0, 0, 1, 0),
                (10, 3, 0, 0, str_off, len(shstr), 0, 0, 1, 0)]
    return body + b"".join(struct.pack(shdr_fmt, *s) for s in sections)


def make_tree(root, modules, builtin=(), builtin_modinfo=None, kver="9.9.9-test"):
    """modules: {relative path: fake_ko bytes}; returns the tree directory."""
    d = root / "lib" / "modules" / kver
    for rel, data in modules.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    d.mkdir(parents=True, exist_ok=True)
    (d / "modules.builtin").write_text("".join("kernel/%s.ko\n" % b for b in builtin))
    if builtin_modinfo:
        (d / "modules.builtin.modinfo").write_bytes(builtin_modinfo)
    return d


@pytest.fixture
def small_tree(tmp_path):
    return make_tree(tmp_path, {
        "kernel/drivers/virtio/virtio_ring.ko": fake_ko("virtio_ring"),
        "kernel/drivers/virtio/virtio.ko": fake_ko("virtio", ["virtio_ring"]),
        "kernel/drivers/block/virtio_blk.ko": fake_ko("virtio_blk", ["virtio", "virtio_ring"],
                                                      aliases=["virtio:d00000002v*"]),
        "kernel/fs/fat/fat.ko": fake_ko("fat"),
        "kernel/fs/fat/vfat.ko": fake_ko("vfat", ["fat"], softdep="pre: nls-cp437 post: crc-x",
                                         aliases=["fs-vfat"]),
        "kernel/fs/nls/nls_cp437.ko": fake_ko("nls_cp437", aliases=["nls-cp437"]),
        "kernel/crypto/crc_a.ko": fake_ko("crc_a", aliases=["crc-x"]),
        "kernel/crypto/crc_b.ko": fake_ko("crc_b", aliases=["crc-?"]),
        "kernel/net/wifi.ko": fake_ko("wifi", firmware=["vendor/fw.bin", "vendor/absent.bin", "../../etc/shadow"]),
        "kernel/fs/needs_ext4.ko": fake_ko("needs_ext4", ["ext4"]),
        "kernel/fs/broken_dep.ko": fake_ko("broken_dep", ["ghost"]),
    }, builtin=["fs/ext4/ext4"], builtin_modinfo=b"ext4.alias=fs-ext4\0ext4.license=GPL\0")


# ---- make_table ---------------------------------------------------------------------------------------------

def test_make_table_format():
    data = kmod.make_table("6.1.0", [
        {"name": "virtio-ring", "path": "/lib/modules/6.1.0/kernel/virtio_ring.ko", "depends": [],
         "softdep_pre": [], "softdep_post": [], "aliases": []},
        {"name": "virtio_blk", "path": "/lib/modules/6.1.0/kernel/virtio_blk.ko", "depends": ["virtio-ring"],
         "softdep_pre": ["a-b"], "softdep_post": [], "aliases": ["virtio:d00000002v*", "x-y[a-b]*"]},
    ], builtin=["ext4", "nvme-core"], options={"virtio-blk": "queue_depth=4"}, blacklist=["pcspkr"])
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    t = json.loads(data)
    assert t["format"] == "mpinit-modules 1" and t["kver"] == "6.1.0"
    assert t["modules"] == [
        ["virtio_ring", "/lib/modules/6.1.0/kernel/virtio_ring.ko", [], [], []],
        ["virtio_blk", "/lib/modules/6.1.0/kernel/virtio_blk.ko", ["virtio_ring"], ["a_b"], []],
    ]
    # aliases keyed by their literal prefix; '-' normalized outside brackets only (kmod alias_normalize)
    assert t["aliases"] == {"virtio:d00000002v": [["virtio:d00000002v*", "virtio_blk"]],
                            "x_y": [["x_y[a-b]*", "virtio_blk"]]}
    assert t["builtin"] == ["ext4", "nvme_core"]
    assert t["options"] == {"virtio_blk": "queue_depth=4"}
    assert t["blacklist"] == ["pcspkr"]


def test_make_table_is_deterministic():
    mods = [{"name": "m", "path": "/m.ko", "aliases": ["b*", "a*", "a?"]}]
    assert kmod.make_table("k", mods) == kmod.make_table("k", [dict(m) for m in mods])
    assert json.loads(kmod.make_table("k", mods))["aliases"] == {"a": [["a*", "m"], ["a?", "m"]], "b": [["b*", "m"]]}


@pytest.mark.parametrize("bad, msg", [
    ([{"name": "m"}], "lacks 'path'"),
    ([{"name": "m", "path": "lib/m.ko"}], "must be absolute"),
    ([{"name": "m", "path": "/a.ko"}, {"name": "m", "path": "/b.ko"}], "m listed twice"),
])
def test_make_table_rejects_bad_entries(bad, msg):
    with pytest.raises(kmod.ModuleError, match=msg):
        kmod.make_table("k", bad)


def test_literal_prefix_and_normalize_alias():
    assert kmod.literal_prefix("pci:v00001AF4d*sv*") == "pci:v00001AF4d"
    assert kmod.literal_prefix("usb:v05ACp021[0-9]d*") == "usb:v05ACp021"
    assert kmod.literal_prefix("*") == ""
    assert kmod.literal_prefix("fs-vfat") == "fs-vfat"
    assert kmod.normalize_alias("of:N*T*Cfsl,imx6q-pcie[a-z]-x") == "of:N*T*Cfsl,imx6q_pcie[a-z]_x"


# ---- .modinfo ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("elf32, big", [(False, False), (True, False), (False, True), (True, True)])
def test_elf_modinfo_all_classes(tmp_path, elf32, big):
    p = tmp_path / "m.ko"
    p.write_bytes(fake_ko("my-mod", ["a", "b-c"], softdep="x pre: p1 p2 post: q", aliases=["al*"],
                          firmware=["f.bin"], elf32=elf32, big_endian=big))
    info = kmod.module_info(p, "m.ko")
    assert info.name == "my_mod"
    assert info.depends == ["a", "b_c"]
    assert (info.softdep_pre, info.softdep_post) == (["p1", "p2"], ["q"])  # "x" before pre: ignored, as kmod
    assert info.aliases == ["al*"] and info.firmware == ["f.bin"]


def test_not_a_module(tmp_path):
    p = tmp_path / "x.ko"
    p.write_bytes(b"hello, not an ELF")
    with pytest.raises(kmod.ModuleError, match="x.ko: not an ELF"):
        kmod.module_info(p, "x.ko")
    p.write_bytes(fake_ko("m")[:80])
    with pytest.raises(kmod.ModuleError, match="x.ko: truncated ELF"):
        kmod.module_info(p, "x.ko")


def test_decompress_by_magic():
    ko = fake_ko("m")
    assert kmod.decompress(gzip.compress(ko), "m") == ko
    assert kmod.decompress(lzma.compress(ko, check=lzma.CHECK_CRC32), "m") == ko
    assert kmod.decompress(ko, "m") == ko
    with pytest.raises(kmod.ModuleError, match="m.ko.xz: corrupt"):
        kmod.decompress(lzma.compress(ko)[:40], "m.ko.xz")


# ---- closure on a synthetic tree --------------------------------------------------------------------------

def test_closure_order_deps_softdeps(small_tree):
    c = kmod.resolve(small_tree, ["virtio-blk", "vfat"], firmware_dirs=())
    # dependencies first; softdep pre before, post after; a softdep alias pulls every module it matches
    assert c.modules == ["virtio_ring", "virtio", "virtio_blk", "nls_cp437", "fat", "vfat", "crc_a", "crc_b"]
    assert c.warnings == []
    dests = [d for d, _ in c.files]
    assert dests[0] == "/lib/modules/9.9.9-test/kernel/drivers/virtio/virtio_ring.ko"
    assert dict(c.files)["/lib/modules/9.9.9-test/kernel/fs/fat/vfat.ko"] == \
        (small_tree / "kernel/fs/fat/vfat.ko").read_bytes()
    t = json.loads(c.table)
    rows = {r[0]: r for r in t["modules"]}
    assert [r[0] for r in t["modules"]] == c.modules
    assert rows["vfat"][2:] == [["fat"], ["nls_cp437"], ["crc_a", "crc_b"]]
    assert t["aliases"]["virtio:d00000002v"] == [["virtio:d00000002v*", "virtio_blk"]]
    assert t["builtin"] == ["ext4"]


def test_closure_by_alias_and_builtin(small_tree):
    c = kmod.resolve(small_tree, ["fs-vfat", "fs-ext4", "needs_ext4"], firmware_dirs=())
    assert "vfat" in c.modules and "ext4" not in c.modules
    assert c.builtin == ["ext4"]
    assert c.warnings == []
    assert "built into kernel" in c.explain("ext4")


def test_missing_module_warns_or_raises(small_tree):
    c = kmod.resolve(small_tree, ["nope", "broken_dep", "virtio_blk"], firmware_dirs=())
    assert "virtio_blk" in c.modules
    assert any(w.startswith("nope: not found in %s" % small_tree) for w in c.warnings)
    assert any(w.startswith("ghost (depends of broken_dep): not found") for w in c.warnings)
    with pytest.raises(kmod.ModuleError, match="nope: not found in .*9.9.9-test"):
        kmod.resolve(small_tree, ["nope"], strict=True, firmware_dirs=())
    with pytest.raises(kmod.ModuleError, match="ghost"):
        kmod.resolve(small_tree, ["broken_dep"], strict=True, firmware_dirs=())


def test_missing_softdep_is_only_a_warning_even_strict(tmp_path):
    tree = make_tree(tmp_path, {"a.ko": fake_ko("a", softdep="pre: nowhere")})
    c = kmod.resolve(tree, ["a"], strict=True, firmware_dirs=())
    assert c.modules == ["a"] and "nowhere (softdep pre of a)" in c.warnings[0]


def test_firmware(small_tree, tmp_path):
    fw = tmp_path / "fw"
    (fw / "vendor").mkdir(parents=True)
    (fw / "vendor" / "fw.bin.xz").write_bytes(lzma.compress(b"FIRMWARE", check=lzma.CHECK_CRC32))
    c = kmod.resolve(small_tree, ["wifi"], firmware_dirs=(fw,))
    assert dict(c.files)["/lib/firmware/vendor/fw.bin"] == b"FIRMWARE"
    assert c.warnings == ["firmware vendor/absent.bin (for wifi): not found in %s" % fw,
                          "firmware '../../etc/shadow' (for wifi): not a relative path, ignored"]
    assert [d for d, _ in c.files if d.startswith("/lib/firmware/")] == ["/lib/firmware/vendor/fw.bin"]


def test_explain(small_tree):
    c = kmod.resolve(small_tree, ["virtio_blk", "vfat"], firmware_dirs=())
    text = c.explain("virtio-ring")
    assert "in the image as /lib/modules/9.9.9-test/kernel/drivers/virtio/virtio_ring.ko" in text
    assert "depends of virtio" in text and "depends of virtio_blk" in text
    assert "pulled in by: virtio_ring <- virtio <- virtio_blk" in text
    assert "softdep post (alias crc-x) of vfat" in c.explain("crc_b")
    assert "requested" in c.explain("vfat") and "softdep pre: nls-cp437" in c.explain("vfat")
    assert "not in the closure" in c.explain("wifi")


def test_missing_tree(tmp_path):
    with pytest.raises(kmod.ModuleError, match="nowhere/6.0: module tree not found"):
        kmod.resolve(tmp_path / "nowhere" / "6.0", ["a"])


@pytest.mark.parametrize("suffix", [".ko.gz", ".ko.xz", ".ko.zst"])
def test_compressed_modules(tmp_path, suffix):
    tool = {".ko.gz": "gzip", ".ko.xz": "xz", ".ko.zst": "zstd"}[suffix]
    require_tools(tool)
    plain = {"kernel/a/dep.ko": fake_ko("dep"), "kernel/a/top-mod.ko": fake_ko("top_mod", ["dep"])}
    tree = make_tree(tmp_path, {})
    for rel, data in plain.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        args = {"gzip": ["gzip", "-n9"], "xz": ["xz", "--check=crc32"], "zstd": ["zstd", "-q", "--rm"]}[tool]
        subprocess.run(args + [str(p)], check=True)
        assert p.with_name(p.name[:-3] + suffix).exists()
    c = kmod.resolve(tree, ["top-mod"], firmware_dirs=())
    assert c.modules == ["dep", "top_mod"]
    assert c.files == [("/lib/modules/9.9.9-test/" + rel, data) for rel, data in plain.items()]


# ---- modprobe.d and host-only ------------------------------------------------------------------------------

def test_modprobe_d(tmp_path, small_tree):
    conf = tmp_path / "my.conf"
    conf.write_text("# comment\noptions virtio-blk queue_depth=4 \\\n   poll=1\noptions virtio_blk x=y\n"
                    "blacklist fat   # trailing comment\nalias foo bar\ninstall x /bin/true\n")
    options, blacklist = kmod.parse_modprobe_d([conf])
    assert options == {"virtio_blk": "queue_depth=4 poll=1 x=y"} and blacklist == ["fat"]
    t = json.loads(kmod.resolve(small_tree, ["vfat"], modprobe_d=[conf], firmware_dirs=()).table)
    assert t["options"] == options and t["blacklist"] == ["fat"]
    conf.write_text("options\n")
    with pytest.raises(kmod.ModuleError, match="my.conf:1: `options` needs a module name"):
        kmod.parse_modprobe_d([conf])
    conf.write_text("\n\nblacklist a b\n")
    with pytest.raises(kmod.ModuleError, match="my.conf:3: `blacklist` takes one"):
        kmod.parse_modprobe_d([conf])
    with pytest.raises(kmod.ModuleError, match="absent.conf: cannot read"):
        kmod.parse_modprobe_d([tmp_path / "absent.conf"])


def test_host_only(tmp_path, small_tree):
    sysfs = tmp_path / "sys"
    (sysfs / "module" / "virtio_blk").mkdir(parents=True)
    (sysfs / "module" / "e1000").mkdir(parents=True)
    for bus, dev, mod in (("virtio", "virtio0", "virtio_blk"), ("pci", "0000:00:03.0", "e1000")):
        drv = sysfs / "bus" / bus / "drivers" / mod
        drv.mkdir(parents=True)
        os.symlink("../../../../module/" + mod, drv / "module")
        d = sysfs / "bus" / bus / "devices" / dev
        d.mkdir(parents=True)
        os.symlink(os.path.relpath(drv, d), d / "driver")
    (sysfs / "bus" / "pci" / "devices" / "0000:00:1f.0").mkdir()  # no driver bound
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda1 / vfat rw 0 0\nproc /proc proc rw 0 0\n")
    found = kmod.host_modules(sysfs, mounts)
    assert found == {"virtio_blk": "driver of bus/virtio/devices/virtio0",
                     "e1000": "driver of bus/pci/devices/0000:00:03.0",
                     "fs-vfat": "filesystem vfat mounted on /", "fs-proc": "filesystem proc mounted on /proc"}
    c = kmod.resolve(small_tree, [], host_only=True, sysfs=sysfs, mounts=mounts, firmware_dirs=())
    # intersected with the tree: e1000 and proc are not in it, and that is no warning
    assert c.modules == ["nls_cp437", "fat", "vfat", "crc_a", "crc_b", "virtio_ring", "virtio", "virtio_blk"]
    assert c.warnings == []
    assert "host: filesystem vfat mounted on /" in c.explain("vfat")


# ---- the real Debian kernel against kmod's own tools ---------------------------------------------------------

# Modules beyond generic-live whose closures exercise deps, alias softdeps and nested softdeps.
OTHERS = ["btrfs", "xfs", "libcrc32c", "dm_crypt", "raid456", "nfsv4", "cifs", "virtio_net", "bridge", "ipv6",
          "nf_conntrack", "kvm_intel", "ceph", "zram", "tcp_bbr"]
# kmod applies only the first softdep entry of a module (libkmod-module.c kmod_module_get_softdeps: "find only
# the first command"); we apply all of them, so for modules with several softdep= entries ours is a superset.
MULTI_SOFTDEP = {"btrfs", "ksmbd"}


@pytest.fixture(scope="module")
def depmod_tree(debian_kernel, tmp_path_factory):
    """A depmod'ed copy of the Debian tree (symlinks to the real files), for modprobe --show-depends."""
    require_tools("depmod", "modprobe")
    base = tmp_path_factory.mktemp("depmod")
    dst = base / "lib" / "modules" / debian_kernel.kver
    shutil.copytree(debian_kernel.modules_dir, dst,
                    copy_function=lambda s, d: os.symlink(os.path.abspath(s), d))
    subprocess.run([shutil.which("depmod", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")),
                    "-b", str(base), debian_kernel.kver], check=True)
    return base


def _modprobe(base, kver, *args):
    modprobe = shutil.which("modprobe", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    return subprocess.run([modprobe, "-C", "/dev/null", "-d", str(base), "-S", kver] + list(args),
                          capture_output=True, text=True).stdout


def _kmod_files(base, kver, name):
    out = _modprobe(base, kver, "--show-depends", name)
    prefix = "%s/lib/modules/%s/" % (base, kver)
    return {line.split()[1][len(prefix):] for line in out.splitlines() if line.startswith("insmod ")}


@pytest.mark.tools
@pytest.mark.parametrize("name", kmod.MODULE_SETS["generic-live"] + OTHERS)
def test_closure_matches_modprobe(debian_kernel, depmod_tree, name):
    theirs = _kmod_files(depmod_tree, debian_kernel.kver, name)
    c = kmod.resolve(debian_kernel.modules_dir, [name], firmware_dirs=())
    ours = {c.infos[m].rel for m in c.modules}
    if name in MULTI_SOFTDEP:
        assert ours > theirs
    else:
        assert ours == theirs
    if not theirs:  # built in (nvme, ext4 in the cloud kernel) or absent (no USB in it): say so, ship nothing
        assert c.builtin == [kmod.normalize(name)] or c.warnings


@pytest.mark.tools
def test_generic_live_set_matches_modprobe(debian_kernel, depmod_tree):
    wanted = kmod.MODULE_SETS["generic-live"]
    theirs = set()
    for name in wanted:
        theirs |= _kmod_files(depmod_tree, debian_kernel.kver, name)
    c = kmod.resolve(debian_kernel.modules_dir, wanted, firmware_dirs=())
    assert {c.infos[m].rel for m in c.modules} == theirs
    assert "virtio_blk" in c.modules and "squashfs" in c.modules and "overlay" in c.modules
    # every dependency precedes its user in load order
    pos = {m: i for i, m in enumerate(c.modules)}
    for m in c.modules:
        for d in c.infos[m].depends:
            assert d in c.builtin or pos[d] < pos[m]
    # the table's aliases are depmod's modules.alias lines for the shipped modules
    t = json.loads(c.table)
    ours = sorted((p, n) for rows in t["aliases"].values() for p, n in rows)
    depmod_aliases = []
    for line in (depmod_tree / "lib/modules" / debian_kernel.kver / "modules.alias").read_text().splitlines():
        if line.startswith("alias "):
            _, pat, mod = line.split(None, 2)
            if kmod.normalize(mod) in pos:
                depmod_aliases.append((kmod.normalize_alias(pat), kmod.normalize(mod)))
    assert ours == sorted(depmod_aliases)
    # files are the tree's modules, byte for byte (the Debian tree is uncompressed)
    for dest, data in c.files[:3]:
        assert data == (debian_kernel.modules_dir / dest.split("/", 4)[4]).read_bytes()


@pytest.mark.tools
def test_compressed_real_modules(debian_kernel, tmp_path):
    require_tools("gzip", "xz", "zstd")
    src = debian_kernel.modules_dir
    tree = tmp_path / "lib" / "modules" / debian_kernel.kver
    plain = {}
    for i, (name, tool) in enumerate((("virtio_ring", ["gzip", "-n"]), ("virtio", ["xz", "--check=crc32"]),
                                      ("virtio_blk", ["zstd", "-q", "--rm"]))):
        rel = str(next(src.rglob(name + ".ko")).relative_to(src))
        dst = tree / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst)
        plain[rel] = (src / rel).read_bytes()
        subprocess.run(tool + [str(dst)], check=True)
    c = kmod.resolve(tree, ["virtio_blk"], firmware_dirs=())
    assert c.modules == ["virtio_ring", "virtio", "virtio_blk"]
    assert sorted(c.files) == sorted(("/lib/modules/%s/%s" % (debian_kernel.kver, r), d) for r, d in plain.items())


def test_damaged_module_elsewhere_is_a_warning(small_tree):
    (small_tree / "kernel" / "junk.ko").write_bytes(b"not an ELF")
    c = kmod.resolve(small_tree, ["fs-vfat"], firmware_dirs=())  # an alias lookup reads every module
    assert "vfat" in c.modules
    assert any("junk.ko: not an ELF object (skipped while searching aliases)" in w for w in c.warnings)
    with pytest.raises(kmod.ModuleError, match="junk.ko: not an ELF"):
        kmod.resolve(small_tree, ["junk"], firmware_dirs=())
