"""ELF library closure: compared with the system's ldd, and RPATH/RUNPATH/$ORIGIN on programs we compile."""

import re
import shutil
import subprocess

import pytest

from conftest import require_tools
from mpinit import elfdeps


def ldd(path):
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            found.add(m.group(1))
    return found


@pytest.mark.parametrize("program", ["/sbin/e2fsck", "/usr/bin/cpio", "/usr/bin/xz", "/usr/bin/zstd"])
def test_matches_ldd(program):
    require_tools("ldd")
    if not shutil.which(program):
        pytest.skip("%s not installed" % program)
    ours = elfdeps.Resolver().closure(program)
    assert len(ours) == len(set(ours))
    # ldd prints resolved names; ours are the names ld.so opens: compare real files
    import os

    assert {os.path.realpath(p) for p in ours} == {os.path.realpath(p) for p in ldd(program)}


def test_read_elf_fields():
    info = elfdeps.read_elf("/usr/bin/cpio")
    assert info.elf_class == 2 and info.interp and "libc.so.6" in info.needed
    assert elfdeps.read_elf(info.interp).soname.startswith("ld-linux")


def test_static_program_has_no_closure():
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.skip("busybox-static not installed")
    info = elfdeps.read_elf(busybox)
    if info.interp:
        pytest.skip("busybox here is dynamic")
    assert elfdeps.Resolver().closure(busybox) == []


def test_not_elf_and_truncated(tmp_path):
    p = tmp_path / "script"
    p.write_text("#!/bin/sh\n")
    with pytest.raises(elfdeps.ElfError, match="not an ELF"):
        elfdeps.read_elf(p)
    t = tmp_path / "trunc"
    t.write_bytes(open("/usr/bin/cpio", "rb").read()[:70])
    with pytest.raises(elfdeps.ElfError, match="truncated"):
        elfdeps.read_elf(t)


def _build(tmp_path, new_dtags):
    require_tools("gcc")
    lib = tmp_path / "opt" / "lib"
    lib.mkdir(parents=True)
    bindir = tmp_path / "opt" / "bin"
    bindir.mkdir()
    (tmp_path / "foo.c").write_text("int foo(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int foo(void); int main(void) { return foo() - 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", lib / "libfoo.so.1",
                    tmp_path / "foo.c"], check=True)
    dtags = "-Wl,--enable-new-dtags" if new_dtags else "-Wl,--disable-new-dtags"
    subprocess.run(["gcc", "-o", bindir / "prog", tmp_path / "main.c", "-L", lib, "-l:libfoo.so.1", dtags,
                    "-Wl,-rpath,$ORIGIN/../lib"], check=True)
    return bindir / "prog", lib / "libfoo.so.1"


@pytest.mark.parametrize("new_dtags", [True, False])
def test_origin_runpath_and_rpath(tmp_path, new_dtags):
    prog, libfoo = _build(tmp_path, new_dtags)
    info = elfdeps.read_elf(prog)
    assert (info.runpath if new_dtags else info.rpath) == ["$ORIGIN/../lib"]
    closure = elfdeps.Resolver().closure(str(prog))
    assert str(libfoo) in closure
    assert subprocess.run([prog]).returncode == 0  # and the program really runs with that library


def test_missing_library_named(tmp_path):
    prog, libfoo = _build(tmp_path, True)
    libfoo.unlink()
    with pytest.raises(elfdeps.ElfError, match="needs libfoo.so.1"):
        elfdeps.Resolver().closure(str(prog))


def test_ld_so_conf_includes(tmp_path):
    (tmp_path / "etc/ld.so.conf.d").mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text("# comment\n/opt/a\ninclude /etc/ld.so.conf.d/*.conf\n")
    (tmp_path / "etc/ld.so.conf.d/b.conf").write_text("/opt/b\n")
    (tmp_path / "etc/ld.so.conf.d/a.conf").write_text("/opt/c  # trailing\n")
    assert elfdeps.ld_so_conf_dirs(str(tmp_path)) == ["/opt/a", "/opt/c", "/opt/b"]


def test_ld_so_searches():
    for d in ("/lib", "/usr/lib/", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        assert elfdeps.ld_so_searches(d), d
    for d in ("/usr/local/lib", "/opt/lib", "/usr/lib/x86_64-linux-gnu/libfakeroot", "/usr/lib/python3"):
        assert not elfdeps.ld_so_searches(d), d


def test_library_only_in_ld_so_conf_is_flagged(tmp_path):
    """Found through ld.so.conf in a directory ld.so does not search by itself: the image (no ld.so.cache) would
    not load it, so the resolver records it; libc from a default directory is not recorded."""
    require_tools("gcc")
    lib = tmp_path / "opt" / "lib"
    lib.mkdir(parents=True)
    (tmp_path / "foo.c").write_text("int foo(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int foo(void); int main(void) { return foo() - 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", lib / "libfoo.so.1",
                    tmp_path / "foo.c"], check=True)
    subprocess.run(["gcc", "-o", tmp_path / "prog", tmp_path / "main.c", "-L", lib, "-l:libfoo.so.1"], check=True)
    r = elfdeps.Resolver(extra_dirs=[str(lib)])
    closure = r.closure(str(tmp_path / "prog"))
    assert str(lib / "libfoo.so.1") in closure
    assert r.cache_only == {str(lib / "libfoo.so.1"): str(lib)}
