"""mpinit.arch (which CPU a file is for, and the per-architecture facts) and what uses it: QEMU command lines,
`mpinit pack`'s cross-checks, the runtime path per architecture, live media refusing BIOS-only arm64 media; and
buildsys/arches.py, the build side's table."""

import gzip
import struct
import sys
from pathlib import Path

import pytest

from mpinit import arch, liveimage, paths, qemu
from mpinit.initramfs import PackError, PackOptions, build

ROOT = Path(__file__).resolve().parent.parent


def elf(machine, big_endian=False):
    """The first 64 bytes of a 64-bit ELF executable for `machine` (e_ident, e_type, e_machine)."""
    end = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes((2, 2 if big_endian else 1, 1)) + bytes(9)
    return ident + struct.pack(end + "HH", 2, machine) + bytes(44)


def arm64_image(path, gz=False):
    """Enough of an arm64 Image for the checks: the "ARM\\x64" magic at 0x38 (booting.rst's header)."""
    data = bytearray(0x1000)
    data[0x38:0x3C] = b"ARM\x64"
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return path


def bzimage(path):
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return path


def test_names_and_aliases():
    assert arch.get("arm64") is arch.get("aarch64") is arch.ARCHES["arm64"]
    assert arch.get("amd64") is arch.get("x86_64")
    with pytest.raises(arch.ArchError, match="riscv64"):
        arch.get("riscv64")


def test_elf_machine_both_byte_orders(tmp_path):
    assert arch.elf_machine(elf(183)) == 183
    assert arch.elf_machine(elf(183, big_endian=True)) == 183
    assert arch.elf_machine(b"#!/bin/sh\n" + bytes(60)) is None
    (tmp_path / "a").write_bytes(elf(183))
    assert arch.of_elf(tmp_path / "a").name == "arm64"
    (tmp_path / "r").write_bytes(elf(243))
    with pytest.raises(arch.ArchError, match="ELF machine 243"):
        arch.of_elf(tmp_path / "r")
    with pytest.raises(arch.ArchError, match="not an ELF file"):
        arch.of_elf(Path(__file__))


def test_kernel_images(tmp_path):
    assert arch.of_kernel(bzimage(tmp_path / "bz")).name == "x86_64"
    assert arch.of_kernel(arm64_image(tmp_path / "Image")).name == "arm64"
    assert arch.of_kernel(arm64_image(tmp_path / "Image.gz", gz=True)).name == "arm64"
    (tmp_path / "junk").write_bytes(b"\x1f\x8b not gzip at all")
    with pytest.raises(arch.ArchError, match="junk"):
        arch.of_kernel(tmp_path / "junk")
    (tmp_path / "text").write_bytes(b"hello" * 200)
    with pytest.raises(arch.ArchError, match="not a kernel image"):
        arch.of_kernel(tmp_path / "text")


def test_qemu_argv_for_arm64(tmp_path):
    k, i, d, c = arm64_image(tmp_path / "Image"), tmp_path / "i", tmp_path / "d.img", tmp_path / "c.iso"
    for f in (i, d, c):
        f.write_bytes(b"x")
    argv = qemu.qemu_argv(k, i, disks=[d], cdrom=c, append="quiet", qemu="q")   # the arch from the kernel
    assert argv[:5] == ["q", "-M", "virt", "-cpu", "max,pauth-impdef=on"]
    assert argv[argv.index("-append") + 1] == "quiet console=ttyAMA0"
    assert "if=ide" not in " ".join(argv)
    assert "scsi-cd,bus=scsi0.0,drive=cd0" in argv and "virtio-scsi-pci,id=scsi0" in argv
    x86 = qemu.qemu_argv(bzimage(tmp_path / "bz"), i, append="quiet", qemu="q")
    assert "-M" not in x86 and x86[x86.index("-append") + 1] == "quiet console=ttyS0"
    with pytest.raises(qemu.ToolError, match="sparc"):
        qemu.qemu_argv(k, i, qemu="q", arch="sparc")


def test_firmware_argv_arm64_is_uefi_only(tmp_path):
    iso = tmp_path / "c.iso"
    iso.write_bytes(b"x")
    with pytest.raises(qemu.ToolError, match="no BIOS"):
        qemu.firmware_argv(cdrom=iso, arch="arm64", qemu="q")
    code, varsf = tmp_path / "code.fd", tmp_path / "vars.fd"
    code.write_bytes(b"c")
    varsf.write_bytes(b"v")
    argv = qemu.firmware_argv(cdrom=iso, uefi=True, arch="arm64", qemu="q", ovmf_code=code, ovmf_vars=varsf)
    joined = " ".join(argv)
    assert "unit=0,readonly=on,file=%s" % code in joined and "unit=1,snapshot=on,file=%s" % varsf in joined
    assert "scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0" in argv and "-boot" not in argv
    assert arch.ARCHES["arm64"].efi_code == "/usr/share/AAVMF/AAVMF_CODE.fd"   # Debian's qemu-efi-aarch64


def test_runtime_path_per_arch(monkeypatch, tmp_path):
    monkeypatch.delenv("MPINIT_RUNTIME", raising=False)
    monkeypatch.delenv("MPINIT_RUNTIME_ARM64", raising=False)
    monkeypatch.setenv("MPINIT_BUILD_DIR", str(tmp_path))
    monkeypatch.setattr(arch, "native", lambda: arch.ARCHES["x86_64"])
    assert paths.runtime() == paths.runtime("x86_64") == tmp_path / "mpinit-init"
    assert paths.runtime("arm64") == tmp_path / "arm64" / "mpinit-init"
    monkeypatch.setenv("MPINIT_RUNTIME_ARM64", "/x/init")
    assert paths.runtime("arm64") == Path("/x/init")


def _pack(tmp_path, init_bytes, **kw):
    init = tmp_path / "init"
    init.write_bytes(init_bytes)
    return build(PackOptions(init=init, **kw))


def test_pack_refuses_mixed_architectures(tmp_path):
    with pytest.raises(PackError, match=r"--init .* is an arm64 program, but the image is for x86_64"):
        _pack(tmp_path, elf(183), arch="x86_64")
    prog = tmp_path / "tool"
    prog.write_bytes(elf(62))
    with pytest.raises(PackError, match=r"tool is an x86_64 program, but the image is for arm64"):
        _pack(tmp_path, elf(183), binaries=[str(prog)])
    mods = tmp_path / "lib" / "modules" / "6.1"
    (mods / "kernel").mkdir(parents=True)
    (mods / "kernel" / "a.ko").write_bytes(elf(62))
    with pytest.raises(PackError, match=r"holds x86_64 modules, but /init .* is arm64"):
        _pack(tmp_path, elf(183), module_dir=mods)
    # An /init that is not ELF (a script) is not checked.
    assert _pack(tmp_path, b"#!/bin/sh\n", arch="arm64").image


def test_pack_picks_the_arm64_runtime_from_the_module_tree(tmp_path, monkeypatch):
    from mpinit import cli

    monkeypatch.setenv("MPINIT_BUILD_DIR", str(tmp_path))
    monkeypatch.delenv("MPINIT_RUNTIME_ARM64", raising=False)
    monkeypatch.setattr(arch, "native", lambda: arch.ARCHES["x86_64"])
    mods = tmp_path / "mods"
    (mods / "kernel").mkdir(parents=True)
    (mods / "kernel" / "a.ko").write_bytes(elf(183))
    ns = cli.build_parser().parse_args(["pack", "-o", str(tmp_path / "out"), "--kernel-modules", str(mods)])
    from mpinit.cmd_pack import options

    assert options(ns).init == tmp_path / "arm64" / "mpinit-init"


def test_arm64_live_media_need_uefi(tmp_path):
    k = arm64_image(tmp_path / "Image")
    i = tmp_path / "initrd"
    i.write_bytes(b"x")
    sq = tmp_path / "sq"
    sq.write_bytes(b"hsqs" + bytes(100))
    assert liveimage.check_inputs(k, i, sq).arch.name == "arm64"
    with pytest.raises(liveimage.LiveError, match="UEFI only: add --uefi"):
        liveimage.build_disk_image(k, i, sq, tmp_path / "out.img")
    with pytest.raises(liveimage.LiveError, match="UEFI only: add --uefi"):
        liveimage.build_iso(k, i, sq, tmp_path / "out.iso")
    assert not (tmp_path / "out.img").exists() and not (tmp_path / "out.iso").exists()
    assert "serial" not in liveimage.grub_cfg("root=x", serial=False)


# --- buildsys/arches.py ------------------------------------------------------------------------------------

@pytest.fixture
def arches():
    sys.path.insert(0, str(ROOT))
    try:
        from buildsys import arches as mod
        yield mod
    finally:
        sys.path.remove(str(ROOT))


def test_buildsys_arch_table_matches_the_host_tools(arches):
    for name, a in arches.ARCHES.items():
        assert a.elf_machine == arch.ARCHES[name].elf_machine and a.debian == arch.ARCHES[name].debian
    with pytest.raises(arches.BuildError, match="--arch sparc"):
        arches.get("sparc")


def test_buildsys_runtime_paths(arches, monkeypatch):
    monkeypatch.setattr(arches.platform, "machine", lambda: "x86_64")
    assert arches.runtime_path("x86_64") == arches.RUNTIME
    assert arches.runtime_path("arm64") == arches.BUILD / "arm64" / "mpinit-init"
    monkeypatch.setattr(arches.platform, "machine", lambda: "aarch64")
    assert arches.runtime_path("arm64") == arches.RUNTIME
    assert arches.runtime_path("x86_64") == arches.BUILD / "x86_64" / "mpinit-init"


def test_buildsys_kernel_headers_take_the_targets_asm(arches, tmp_path):
    target = Path("/usr/include/aarch64-linux-gnu/asm")
    if not (target / "unistd.h").exists():
        pytest.skip("linux-libc-dev:arm64 not installed")
    out = arches.kernel_headers("arm64", tmp_path / "kh")
    import os

    assert os.readlink(out / "asm") == str(target)


def test_buildsys_elf_machine(arches, tmp_path):
    (tmp_path / "a").write_bytes(elf(183))
    (tmp_path / "t").write_bytes(b"text")
    assert arches.elf_machine(tmp_path / "a") == 183
    assert arches.elf_machine(tmp_path / "t") is None
