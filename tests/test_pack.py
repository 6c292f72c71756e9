"""`mpinit pack`: image contents, the config contract, modules, each compression, and bad inputs that must fail
cleanly (clear message naming the input, no output file left behind)."""

import json
import os
import stat as st
import subprocess

import pytest

from conftest import require_tools
from mpinit import cli, cpio
from mpinit_agent import contract

INIT = b"\x7fELF not really the runtime\n" * 50


@pytest.fixture
def init(tmp_path):
    p = tmp_path / "mpinit-init"
    p.write_bytes(INIT)
    return p


def pack(tmp_path, init, *args, out="initrd.img"):
    """Run `mpinit pack`; returns (exit status, {name: entry} of the image or None)."""
    output = tmp_path / out
    status = cli.main(["pack", "-o", str(output), "--init", str(init)] + [str(a) for a in args])
    if status != 0:
        return status, None
    return status, cpio.merged(cpio.read_image(output.read_bytes()))


def no_leftovers(tmp_path, out="initrd.img"):
    return not (tmp_path / out).exists() and not list(tmp_path.glob(".%s.*" % out))


def test_minimal_image_holds_the_contract(tmp_path, init, capsys):
    status, tree = pack(tmp_path, init)
    assert status == 0
    assert tree["init"].data == INIT and tree["init"].mode == st.S_IFREG | 0o755
    assert tree["dev/console"].mode == st.S_IFCHR | 0o600 and tree["dev/console"].rdev == (5, 1)
    assert tree["dev/null"].mode == st.S_IFCHR | 0o666 and tree["dev/null"].rdev == (1, 3)
    for d in contract.IMAGE_DIRS:
        assert tree[d.lstrip("/")].isdir(), d
    assert tree["tmp"].mode == st.S_IFDIR | 0o1777
    conf = contract.load_config(tree[contract.CONFIG_PATH.lstrip("/")].data.decode())
    assert conf == contract.load_config("")
    assert b"ID=mpinit" in tree[contract.INITRD_RELEASE.lstrip("/")].data
    assert all(e.uid == 0 and e.gid == 0 and e.mtime == 0 for e in tree.values())
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("mpinit: wrote %s: " % (tmp_path / "initrd.img")) and "gzip" in line
    assert " entries, 0 modules, " in line and line.endswith(" s")


def test_reproducible_and_source_date_epoch(tmp_path, init, monkeypatch):
    pack(tmp_path, init, out="a.img")
    pack(tmp_path, init, out="b.img")
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    _, tree = pack(tmp_path, init, out="c.img")
    assert {e.mtime for e in tree.values()} == {1700000000}


def test_config_cmdline_hook_and_inputs(tmp_path, init):
    cfg = tmp_path / "conf.json"
    cfg.write_text(json.dumps({"shell": False, "panic_s": 3, "cmdline": "quiet"}))
    hook = tmp_path / "net.py"
    hook.write_text("print('hook')\n")
    src = tmp_path / "overlay"
    (src / "etc").mkdir(parents=True)
    (src / "etc/motd").write_text("hi\n")
    os.symlink("motd", src / "etc/motd.link")
    lst = tmp_path / "extra.list"
    lst.write_text("dir /mnt 700 0 0\nslink /mnt/x /init 777 0 0\n")
    (tmp_path / "tool.sh").write_text("#!/bin/sh\n")
    status, tree = pack(tmp_path, init, "--config", cfg, "--cmdline", "rd.live.image console=ttyS0",
                        "--hook", hook, "--dir", src, "--list", lst, "--add", "%s:/usr/bin/tool" % (tmp_path /
                                                                                                   "tool.sh"))
    assert status == 0
    conf = json.loads(tree[contract.CONFIG_PATH.lstrip("/")].data)
    assert conf["shell"] is False and conf["panic_s"] == 3 and conf["cmdline"] == "rd.live.image console=ttyS0"
    assert tree[contract.HOOKS_DIR.lstrip("/") + "/net.py"].data == b"print('hook')\n"
    assert tree["etc/motd"].data == b"hi\n" and tree["etc/motd.link"].data == b"motd"
    assert tree["mnt"].mode == st.S_IFDIR | 0o700 and tree["mnt/x"].islnk()
    assert tree["usr/bin/tool"].data == b"#!/bin/sh\n"


def test_user_inputs_over_base_or_generated_files_are_said(tmp_path, init, capsys):
    src = tmp_path / "tree"
    (src / "etc/mpinit").mkdir(parents=True)
    (src / "init").write_text("#!/bin/sh\n")
    (src / "etc/mpinit/config.json").write_text('{"shell": false}')
    status, tree = pack(tmp_path, init, "--dir", src)
    assert status == 0
    err = capsys.readouterr().err
    assert "warning: /init of the base image replaced by %s" % (src / "init") in err
    assert "warning: /etc/mpinit/config.json from %s is replaced by the one pack generates (use --config" % (
        src / "etc/mpinit/config.json") in err
    assert tree["init"].data == b"#!/bin/sh\n"  # a custom /init is allowed
    assert json.loads(tree["etc/mpinit/config.json"].data)["shell"] is True
    pack(tmp_path, init, out="plain.img")
    assert "warning" not in capsys.readouterr().err


def test_binary_brings_its_libraries(tmp_path, init):
    require_tools("ldd")
    status, tree = pack(tmp_path, init, "--binary", "/sbin/e2fsck")
    assert status == 0
    interp = [n for n in tree if "ld-linux" in n]
    assert interp and any(n.endswith("/libext2fs.so.2") for n in tree) and any(n.endswith("/libc.so.6")
                                                                              for n in tree)
    with open("/sbin/e2fsck", "rb") as f:
        assert tree["sbin/e2fsck"].data == f.read()


def test_binaries_run_inside_the_image(tmp_path, init):
    """The closure is complete: programs run chrooted into the extracted image, which holds nothing else of the
    host (no ld.so.cache: ld.so finds the libraries in its default directories, where the closure put them)."""
    require_tools("chroot")
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    programs = [p for p in ("/sbin/e2fsck", "/usr/bin/xz", "/usr/bin/zstd") if os.path.exists(p)]
    args = [a for p in programs for a in ("--binary", p)]
    assert pack(tmp_path, init, *args)[0] == 0
    root = tmp_path / "root"
    assert cli.main(["extract", str(tmp_path / "initrd.img"), str(root)]) == 0
    assert not (root / "etc/ld.so.cache").exists()
    for program in programs:
        flag = "-V" if program.endswith("e2fsck") else "--version"
        proc = subprocess.run(["chroot", str(root), program, flag], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/sbin:/bin"})
        assert proc.returncode == 0, (program, proc.stdout)


def test_library_ld_so_would_not_find_is_a_warning(tmp_path, init, capsys, monkeypatch):
    from mpinit import elfdeps

    require_tools("gcc")
    lib = tmp_path / "opt"
    lib.mkdir()
    (tmp_path / "foo.c").write_text("int foo(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int foo(void); int main(void) { return foo() - 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", lib / "libfoo.so.1",
                    tmp_path / "foo.c"], check=True)
    subprocess.run(["gcc", "-o", tmp_path / "prog", tmp_path / "main.c", "-L", lib, "-l:libfoo.so.1"], check=True)
    host_dirs = elfdeps.ld_so_conf_dirs("/")
    monkeypatch.setattr(elfdeps, "ld_so_conf_dirs", lambda root: host_dirs + [str(lib)])  # as if ld.so.conf had it
    status, tree = pack(tmp_path, init, "--add", "%s:/bin/prog" % (tmp_path / "prog"))
    assert status == 0 and (str(lib) + "/libfoo.so.1").lstrip("/") in tree
    assert "warning: %s/libfoo.so.1: found through /etc/ld.so.conf in %s" % (lib, lib) in capsys.readouterr().err


def test_script_without_its_interpreter_is_a_warning(tmp_path, init, capsys):
    script = tmp_path / "net.sh"
    script.write_text("#!/bin/sh -e\necho hi\n")
    status, tree = pack(tmp_path, init, "--add", "%s:/usr/bin/net" % script, out="a.img")
    assert status == 0 and tree["usr/bin/net"].data.startswith(b"#!/bin/sh")
    assert "warning: %s: a script for /bin/sh, which is not in the image" % script in capsys.readouterr().err
    busybox = tmp_path / "busybox"  # reached through symlinks in the image: /bin -> usr/bin, sh -> busybox
    busybox.write_bytes(b"not really busybox")
    lst = tmp_path / "l"
    lst.write_text("slink /bin usr/bin 777 0 0\nslink /usr/bin/sh busybox 777 0 0\n"
                   "file /usr/bin/busybox %s 755 0 0\n" % busybox)
    assert pack(tmp_path, init, "--list", lst, "--add", "%s:/usr/bin/net" % script, out="b.img")[0] == 0
    assert "warning" not in capsys.readouterr().err


def test_origin_program_moved_is_a_warning(tmp_path, init, capsys):
    require_tools("gcc")
    lib = tmp_path / "opt" / "lib"
    lib.mkdir(parents=True)
    (tmp_path / "opt" / "bin").mkdir()
    (tmp_path / "foo.c").write_text("int foo(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int foo(void); int main(void) { return foo() - 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", lib / "libfoo.so.1",
                    tmp_path / "foo.c"], check=True)
    prog = tmp_path / "opt" / "bin" / "prog"
    subprocess.run(["gcc", "-o", prog, tmp_path / "main.c", "-L", lib, "-l:libfoo.so.1",
                    "-Wl,-rpath,$ORIGIN/../lib"], check=True)
    assert pack(tmp_path, init, "--binary", prog, out="a.img")[0] == 0
    assert "warning" not in capsys.readouterr().err
    status, tree = pack(tmp_path, init, "--add", "%s:/usr/bin/prog" % prog, out="b.img")
    assert status == 0 and str(lib / "libfoo.so.1").lstrip("/") in tree
    assert "its RPATH/RUNPATH uses $ORIGIN, but it goes to /usr/bin/prog" in capsys.readouterr().err


def test_keymap(tmp_path, init):
    bmap = tmp_path / "us.bmap"
    bmap.write_bytes(b"bkeymap" + b"\x01" + bytes(255) + bytes(256))
    status, tree = pack(tmp_path, init, "--keymap", bmap)
    assert status == 0 and tree[contract.KEYMAP_PATH.lstrip("/")].data == bmap.read_bytes()


def test_early_microcode_first(tmp_path, init):
    early = tmp_path / "ucode.cpio"
    early.write_bytes(cpio.write_newc([cpio.Entry("kernel/x86/microcode/GenuineIntel.bin",
                                                  st.S_IFREG | 0o644, b"UCODE")]))
    assert pack(tmp_path, init, "--early", early)[0] == 0
    members = cpio.read_image((tmp_path / "initrd.img").read_bytes())
    assert [m.compression for m in members] == ["none", "gzip"]
    assert members[0].entries[0].data == b"UCODE"


@pytest.mark.parametrize("method, tool", [("gzip", ["gzip", "-dc"]), ("xz", ["xz", "-dc"]),
                                          ("zstd", ["zstd", "-dcq"]), ("lz4", ["lz4", "-dcq"]),
                                          ("none", ["cat"])])
def test_each_compression_unpacked_by_system_tools(tmp_path, init, method, tool):
    require_tools(tool[0], "cpio")
    assert pack(tmp_path, init, "--compress", method)[0] == 0
    raw = subprocess.run(tool, stdin=open(tmp_path / "initrd.img", "rb"), stdout=subprocess.PIPE,
                         check=True).stdout
    names = subprocess.run(["cpio", "-t", "--quiet"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    assert {"init", "dev/console", "dev/null", "etc/mpinit/config.json"} <= set(names.decode().split())


def test_gnu_cpio_and_bsdcpio_list_what_we_read(tmp_path, init):
    """A full image (programs with libraries, a list with device nodes and hardlinks): both independent readers
    list exactly the entries our reader finds."""
    require_tools("cpio", "bsdcpio")
    (tmp_path / "data").write_bytes(b"x" * 5000)
    lst = tmp_path / "l"
    lst.write_text("nod /dev/sda 660 0 6 b 8 0\npipe /run/fifo 600 0 0\nfile /a %s 644 0 0 /b /c\n"
                   % (tmp_path / "data"))
    assert pack(tmp_path, init, "--list", lst, "--binary", "/usr/bin/xz", "--compress", "none")[0] == 0
    data = (tmp_path / "initrd.img").read_bytes()
    ours = sorted(e.name for m in cpio.read_image(data) for e in m.entries)
    for tool in (["cpio", "-t", "--quiet"], ["bsdcpio", "-t", "--quiet"]):
        out = subprocess.run(tool, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout
        assert sorted(out.decode().split("\n")[:-1]) == ours, tool


# ---- kernel modules (the Debian cloud kernel) --------------------------------------------------------------

def test_generic_live_modules_debian_kernel(tmp_path, init, debian_kernel, capsys):
    kmod = pytest.importorskip("mpinit.kmod")
    status, tree = pack(tmp_path, init, "--kernel-modules", debian_kernel.modules_dir,
                        "--kernel-config", debian_kernel.config)
    assert status == 0
    closure = kmod.resolve(debian_kernel.modules_dir, kmod.MODULE_SETS["generic-live"])
    # everything the closure holds is in the image, byte for byte, and nothing else under /lib/modules
    assert {d.lstrip("/"): data for d, data in closure.files} == {
        n: e.data for n, e in tree.items() if n.startswith("lib/modules/") and e.isreg()}
    prefix = "lib/modules/%s/" % debian_kernel.kver
    shipped = {n.rsplit("/", 1)[-1] for n in tree if n.startswith(prefix) and n.endswith(".ko")}
    # the live stack and the virtio disk are modules in Debian's cloud kernel (ext4 is built in there)
    for name in ("virtio_blk.ko", "squashfs.ko", "overlay.ko", "loop.ko", "isofs.ko"):
        assert name in shipped
    assert tree[contract.MODULES_TABLE_PATH.lstrip("/")].data == closure.table
    assert all(tree[n].data[:4] == b"\x7fELF" for n in tree if n.endswith(".ko"))  # decompressed
    captured = capsys.readouterr()
    assert " %d modules, " % len(closure.modules) in captured.out.strip().splitlines()[-1]
    assert "warning: ahci: not found" in captured.err  # no SATA in the cloud kernel: named, not fatal
    assert "warning: ntfs3: not found" in captured.err  # nor NTFS3 (CONFIG_NTFS3_FS unset): a missing set member


def test_missing_module_strict_fails_cleanly(tmp_path, init, debian_kernel, capsys):
    pytest.importorskip("mpinit.kmod")
    status, _ = pack(tmp_path, init, "--kernel-modules", debian_kernel.modules_dir, "--modules",
                     "squashfs,no_such_module_xyz", "--strict")
    err = capsys.readouterr().err
    assert status == 2 and "no_such_module_xyz" in err and str(debian_kernel.modules_dir) in err
    assert no_leftovers(tmp_path)


def test_missing_module_warns_without_strict(tmp_path, init, debian_kernel, capsys):
    pytest.importorskip("mpinit.kmod")
    status, tree = pack(tmp_path, init, "--kernel-modules", debian_kernel.modules_dir, "--modules",
                        "squashfs,no_such_module_xyz")
    assert status == 0 and any(n.endswith("/squashfs.ko") for n in tree)
    assert "warning: no_such_module_xyz" in capsys.readouterr().err


def test_config_modules_are_shipped(tmp_path, init, debian_kernel, capsys):
    """The config's "modules" (loaded by the agent at boot) come with their dependencies even when --modules
    does not name them; without a module tree pack says they cannot be shipped."""
    pytest.importorskip("mpinit.kmod")
    cfg = tmp_path / "c.json"
    cfg.write_text('{"modules": ["xfs"]}')
    status, tree = pack(tmp_path, init, "--kernel-modules", debian_kernel.modules_dir, "--modules", "squashfs",
                        "--config", cfg, out="a.img")
    assert status == 0
    shipped = {n.rsplit("/", 1)[-1] for n in tree if n.endswith(".ko")}
    assert {"squashfs.ko", "xfs.ko"} <= shipped
    assert json.loads(tree[contract.CONFIG_PATH.lstrip("/")].data)["modules"] == ["xfs"]
    capsys.readouterr()
    assert pack(tmp_path, init, "--config", cfg, out="b.img")[0] == 0
    assert 'config "modules" (xfs): no module tree given' in capsys.readouterr().err
    cfg.write_text('{"modules": ["no_such_module_xyz"]}')
    _bad(tmp_path, init, capsys, "--kernel-modules", debian_kernel.modules_dir, "--modules", "squashfs",
         "--config", cfg, "--strict", match="no_such_module_xyz")


# ---- bad inputs: clear error naming the input, nothing left behind -----------------------------------------

def _bad(tmp_path, init, capsys, *args, match):
    status, _ = pack(tmp_path, init, *args)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("mpinit: error: ") and match in err, err
    assert no_leftovers(tmp_path)


def test_bad_compression(tmp_path, init, capsys):
    _bad(tmp_path, init, capsys, "--compress", "brotli", match="unknown compression 'brotli'")


def test_compression_kernel_cannot_unpack(tmp_path, init, capsys):
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_BLK_DEV_INITRD=y\nCONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n")
    _bad(tmp_path, init, capsys, "--compress", "zstd", "--kernel-config", cfg, match="CONFIG_RD_ZSTD")


def test_list_syntax_error(tmp_path, init, capsys):
    lst = tmp_path / "bad.list"
    lst.write_text("dir /a 755 0 0\nfile /b\n")
    _bad(tmp_path, init, capsys, "--list", lst, match="%s:2: file takes 5 fields" % lst)


def test_dotdot_destination(tmp_path, init, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    _bad(tmp_path, init, capsys, "--add", "%s:/usr/../../etc/x" % f, match="'..' is not allowed")


def test_dangling_symlink_source(tmp_path, init, capsys):
    os.symlink("/nonexistent/target", tmp_path / "dangling")
    _bad(tmp_path, init, capsys, "--add", "%s:/x" % (tmp_path / "dangling"), match="dangling symlink")


def test_missing_source_and_init(tmp_path, init, capsys):
    _bad(tmp_path, init, capsys, "--add", "%s:/x" % (tmp_path / "nope"), match="nope: no such file")
    status = cli.main(["pack", "-o", str(tmp_path / "initrd.img"), "--init", str(tmp_path / "no-init")])
    assert status == 2 and "--init %s" % (tmp_path / "no-init") in capsys.readouterr().err
    assert no_leftovers(tmp_path)


def test_bad_config(tmp_path, init, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"shell": "yes"}')
    _bad(tmp_path, init, capsys, "--config", cfg, match="%s: 'shell' must be bool" % cfg)
    cfg.write_text('{"nope": 1}')
    _bad(tmp_path, init, capsys, "--config", cfg, match="unknown key 'nope'")
    cfg.write_text('{oops')
    _bad(tmp_path, init, capsys, "--config", cfg, match="not valid JSON")


def test_bad_hook_and_keymap(tmp_path, init, capsys):
    hook = tmp_path / "h.py"
    hook.write_text("def broken(:\n")
    _bad(tmp_path, init, capsys, "--hook", hook, match="h.py:1: syntax error")
    txt = tmp_path / "h.sh"
    txt.write_text("echo\n")
    _bad(tmp_path, init, capsys, "--hook", txt, match="*.py")
    km = tmp_path / "k.bmap"
    km.write_bytes(b"bkeymap" + b"\x01" + bytes(255))
    _bad(tmp_path, init, capsys, "--keymap", km, match="k.bmap")


def test_modules_without_tree_and_missing_tree(tmp_path, init, capsys):
    _bad(tmp_path, init, capsys, "--modules", "squashfs", match="--modules needs a module tree")
    _bad(tmp_path, init, capsys, "--host-only", match="--host-only needs a module tree")
    pytest.importorskip("mpinit.kmod")
    _bad(tmp_path, init, capsys, "--kernel-modules", tmp_path / "nomods", match="nomods: not a directory")
    _bad(tmp_path, init, capsys, "--kver", "../etc", match="--kver")


def test_output_in_missing_directory_or_a_directory(tmp_path, init, capsys):
    out = tmp_path / "no" / "initrd.img"
    assert cli.main(["pack", "-o", str(out), "--init", str(init)]) == 2
    assert "mpinit: error: -o %s: directory %s does not exist\n" % (out, out.parent) == capsys.readouterr().err
    assert cli.main(["pack", "-o", str(tmp_path), "--init", str(init)]) == 2
    assert "-o %s: is a directory" % tmp_path in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mpinit-init"]


def test_failure_keeps_previous_output(tmp_path, init, capsys):
    assert pack(tmp_path, init)[0] == 0
    before = (tmp_path / "initrd.img").read_bytes()
    assert pack(tmp_path, init, "--compress", "nope")[0] == 2
    assert (tmp_path / "initrd.img").read_bytes() == before
    assert not list(tmp_path.glob(".initrd.img.*"))
