"""mpinit.uki: the PE section writer checked with independent readers (objdump, sbverify), the inputs' checks,
signing through sbsign with a key decrypted off argv, and `mpinit uki` / `live-image --uki` on the command line.
The firmware boots are tests/e2e/test_uki_boot.py."""

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import cli, uki

STUB = uki.STUB_DIR / uki.STUB_NAMES["x86_64"]
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")


def need_stub():
    if not STUB.is_file():
        pytest.skip("%s missing (Debian package systemd-boot-efi)" % STUB)


def fake_bzimage(path, version="6.1.0-99-test", size=70000, handover=True):
    """Bytes shaped like an x86 bzImage header (Documentation/arch/x86/boot.rst): 'MZ', 'HdrS' at 0x202, boot
    protocol 2.15 at 0x206, kernel_version at 0x20e (less 0x200), xloadflags at 0x236."""
    data = bytearray(os.urandom(size))
    data[0:2] = b"MZ"
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)
    text = (version + " (builder@example) #1 SMP\0").encode()
    data[0x3000:0x3000 + len(text)] = text
    struct.pack_into("<H", data, 0x20E, 0x3000 - 0x200)
    struct.pack_into("<H", data, 0x236, (1 << 3) | 1 if handover else 1)
    path.write_bytes(bytes(data))
    return path


def cpio_initrd(path, size=5000):
    path.write_bytes(b"070701" + os.urandom(size))
    return path


@pytest.fixture
def inputs(tmp_path):
    return fake_bzimage(tmp_path / "vmlinuz"), cpio_initrd(tmp_path / "initrd.img")


def objdump_sections(path):
    """[(name, size, vma, file offset)] as binutils' PE reader sees them."""
    out = subprocess.run(["objdump", "-h", str(path)], capture_output=True, text=True, check=True).stdout
    return [(m.group(1), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16))
            for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out, re.M)]


def test_checksum_matches_the_linker():
    """Our PE CheckSum of the stub as shipped is the one its linker stored."""
    need_stub()
    data = STUB.read_bytes()
    img = uki.parse_pe(data)
    stored, = struct.unpack_from("<I", data, img.opt + 64)
    assert stored and uki.pe_checksum(STUB, img.opt + 64) == stored


def test_sections_as_objdump_reads_them(inputs, tmp_path):
    require_tools("objdump")
    need_stub()
    kernel, initrd = inputs
    out = tmp_path / "linux.efi"
    r = uki.build(kernel, initrd, out, cmdline="root=UUID=1234 ro quiet")
    assert r.uname == "6.1.0-99-test" and not r.signed
    stub = objdump_sections(STUB)
    got = objdump_sections(out)
    assert got[:len(stub)] == stub                       # the stub's own sections untouched
    added = got[len(stub):]
    assert [a[0] for a in added] == [".osrel", ".cmdline", ".uname", ".initrd", ".linux"]
    img = uki.parse_pe(STUB.read_bytes())
    last = max(s.vaddr + max(s.vsize, s.raw_size) for s in img.sections)
    prev_end = 0
    for name, size, vma, off in added:
        assert vma % img.section_alignment == 0 and off % img.file_alignment == 0, name
        assert vma >= last and vma >= prev_end, name     # after the stub's last section, in order, no overlap
        prev_end = vma + size
    sizes = dict((a[0], a[1]) for a in added)
    assert sizes[".linux"] == kernel.stat().st_size and sizes[".initrd"] == initrd.stat().st_size
    assert uki.read_section(out, ".linux") == kernel.read_bytes()
    assert uki.read_section(out, ".initrd") == initrd.read_bytes()
    assert uki.read_section(out, ".cmdline") == b"root=UUID=1234 ro quiet"
    assert uki.read_section(out, ".uname") == b"6.1.0-99-test"
    assert b'PRETTY_NAME="mpinit (6.1.0-99-test)"' in uki.read_section(out, ".osrel")
    head = out.read_bytes()[:4096]
    new = uki.parse_pe(head)
    size_of_image, = struct.unpack_from("<I", head, new.opt + 56)
    assert size_of_image % img.section_alignment == 0 and size_of_image >= prev_end
    assert out.stat().st_size % img.file_alignment == 0
    stored, = struct.unpack_from("<I", head, new.opt + 64)
    assert stored == uki.pe_checksum(out, new.opt + 64)
    # objdump -p agrees on the header fields we changed
    p = subprocess.run(["objdump", "-p", str(out)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"SizeOfImage\s+0*%x\b" % size_of_image, p) and re.search(r"CheckSum\s+0*%x\b" % stored, p)


def test_sbverify_reads_it(inputs, tmp_path):
    require_tools("sbverify")
    need_stub()
    out = tmp_path / "linux.efi"
    uki.build(*inputs, out, cmdline="quiet")
    proc = subprocess.run(["sbverify", "--list", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0 and "No signature table present" in proc.stdout + proc.stderr


def test_uname_and_os_release_options(inputs, tmp_path):
    need_stub()
    out = tmp_path / "linux.efi"
    uki.build(*inputs, out, uname="", os_release="ID=debian\nPRETTY_NAME=\"Debian\"")
    assert uki.read_section(out, ".uname") is None
    assert uki.read_section(out, ".osrel") == b'ID=debian\nPRETTY_NAME="Debian"\n'


def _snakeoil_password(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("snakeoil\n")
    return pw


def test_signed_with_an_encrypted_key(inputs, tmp_path, monkeypatch):
    require_tools("sbsign", "sbverify", "openssl")
    need_stub()
    if not SNAKEOIL_KEY.exists():
        pytest.skip("%s missing (Debian package ovmf)" % SNAKEOIL_KEY)
    argvs = []
    real_run = uki.run

    def recording_run(argv, **kw):
        argvs.append([str(a) for a in argv])
        return real_run(argv, **kw)

    monkeypatch.setattr(uki, "run", recording_run)
    out = tmp_path / "signed.efi"
    r = uki.build(*inputs, out, cmdline="quiet", sign_key=SNAKEOIL_KEY, sign_cert=SNAKEOIL_CERT,
                  password_file=_snakeoil_password(tmp_path))
    assert r.signed
    proc = subprocess.run(["sbverify", "--cert", str(SNAKEOIL_CERT), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0 and "Signature verification OK" in proc.stdout + proc.stderr
    # the password is on no command line (only in openssl's stdin)
    assert argvs and not [a for argv in argvs for a in argv if a == "snakeoil" or a.endswith(":snakeoil")]
    assert any("stdin" in argv for argv in argvs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initrd.img", "pw", "signed.efi", "vmlinuz"]
    assert uki.read_section(out, ".cmdline") == b"quiet"


def test_password_from_the_environment(inputs, tmp_path, monkeypatch):
    require_tools("sbsign", "openssl")
    need_stub()
    if not SNAKEOIL_KEY.exists():
        pytest.skip("%s missing (Debian package ovmf)" % SNAKEOIL_KEY)
    monkeypatch.setenv(uki.PASSWORD_ENV, "snakeoil")
    assert uki.build(*inputs, tmp_path / "s.efi", sign_key=SNAKEOIL_KEY, sign_cert=SNAKEOIL_CERT).signed


@pytest.fixture(scope="module")
def own_key(tmp_path_factory):
    """Two self-signed certificates with unencrypted keys: a.key/a.pem, b.key/b.pem."""
    require_tools("openssl")
    d = tmp_path_factory.mktemp("keys")
    for name in ("a", "b"):
        subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
                        "-days", "1", "-keyout", str(d / (name + ".key")), "-out", str(d / (name + ".pem"))],
                       check=True, capture_output=True)
    return d


def _no_output(tmp_path, name):
    assert not (tmp_path / name).exists()
    assert not [p for p in tmp_path.rglob(".*") if p.name.startswith((".mpinit-uki", "." + name))]


@pytest.mark.parametrize("case, match", [
    ("mismatch", "does not belong to --sign-cert"),
    ("wrong-password", "cannot decrypt it"),
    ("no-password", "is encrypted: give its password"),
    ("cert-is-key", "not a PEM X.509 certificate"),
    ("key-is-cert", "not a PEM private key"),
    ("one-half", "--sign-key and --sign-cert go together"),
])
def test_bad_keys(inputs, tmp_path, own_key, monkeypatch, case, match):
    need_stub()
    monkeypatch.delenv(uki.PASSWORD_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    kw = {"mismatch": dict(sign_key=own_key / "a.key", sign_cert=own_key / "b.pem"),
          "wrong-password": dict(sign_key=SNAKEOIL_KEY, sign_cert=SNAKEOIL_CERT,
                                 password_file=own_key / "a.pem"),
          "no-password": dict(sign_key=SNAKEOIL_KEY, sign_cert=SNAKEOIL_CERT),
          "cert-is-key": dict(sign_key=own_key / "a.key", sign_cert=own_key / "a.key"),
          "key-is-cert": dict(sign_key=own_key / "a.pem", sign_cert=own_key / "a.pem"),
          "one-half": dict(sign_key=own_key / "a.key")}[case]
    if kw.get("sign_key") == SNAKEOIL_KEY and not SNAKEOIL_KEY.exists():
        pytest.skip("%s missing (Debian package ovmf)" % SNAKEOIL_KEY)
    with pytest.raises(uki.UkiError, match=re.escape(match)):
        uki.build(*inputs, tmp_path / "out.efi", **kw)
    _no_output(tmp_path, "out.efi")


def test_own_unencrypted_key_signs(inputs, tmp_path, own_key):
    require_tools("sbsign", "sbverify")
    need_stub()
    assert uki.build(*inputs, tmp_path / "o.efi", sign_key=own_key / "a.key", sign_cert=own_key / "a.pem").signed


def test_bad_inputs(inputs, tmp_path):
    need_stub()
    kernel, initrd = inputs
    out = tmp_path / "out.efi"
    with pytest.raises(uki.UkiError, match="--cmdline .*one line"):
        uki.build(kernel, initrd, out, cmdline="a\nb")
    with pytest.raises(uki.UkiError, match="at most 2047"):
        uki.build(kernel, initrd, out, cmdline="x" * 2048)
    with pytest.raises(uki.UkiError, match="--os-release line 2: 'oops' is not KEY=VALUE"):
        uki.build(kernel, initrd, out, os_release="ID=x\noops\n")
    with pytest.raises(uki.UkiError, match="--initrd .*: not an initramfs"):
        uki.build(kernel, kernel, out)
    with pytest.raises(uki.UkiError, match="--initrd .*: no such file"):
        uki.build(kernel, tmp_path / "nope", out)
    with pytest.raises(uki.UkiError, match="--kernel .*: not an x86 bzImage"):
        uki.build(initrd, initrd, out)
    old = fake_bzimage(tmp_path / "old", handover=False)
    with pytest.raises(uki.UkiError, match="no 64-bit EFI handover entry"):
        uki.build(old, initrd, out)
    with pytest.raises(uki.UkiError, match="--stub .*: no such file"):
        uki.build(kernel, initrd, out, stub=tmp_path / "nostub")
    with pytest.raises(uki.UkiError, match="-o .*: is a directory"):
        uki.build(kernel, initrd, tmp_path)
    _no_output(tmp_path, "out.efi")


def test_missing_stub_names_the_package(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(uki, "STUB_DIR", tmp_path / "nowhere")
    with pytest.raises(uki.UkiError, match="install the Debian package systemd-boot-efi"):
        uki.build(*inputs, tmp_path / "out.efi")


def _pe(nsect_room=0, signed=False, trailing=b""):
    """A minimal PE32+ image: 0x400 bytes of headers, then one .text section of 0x200 bytes; the section table is
    placed so that exactly `nsect_room` more section headers fit before the end of the headers."""
    opt_size, hdrs = 240, 0x400
    table = hdrs - (1 + nsect_room) * 40
    lfanew = table - opt_size - 24
    data = bytearray(hdrs + 0x200)
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, lfanew)
    data[lfanew:lfanew + 4] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", data, lfanew + 4, 0x8664, 1, 0, 0, 0, opt_size, 0x206)
    opt = lfanew + 24
    struct.pack_into("<H", data, opt, 0x20B)
    struct.pack_into("<II", data, opt + 32, 0x1000, 0x200)
    struct.pack_into("<II", data, opt + 56, 0x2000, hdrs)
    struct.pack_into("<I", data, opt + 108, 16)
    if signed:
        struct.pack_into("<II", data, opt + 112 + 8 * 4, len(data), 0x100)
    struct.pack_into("<8sIIIIIIHHI", data, table, b".text", 0x10, 0x1000, 0x200, hdrs, 0, 0, 0, 0, 0x60000020)
    return bytes(data) + trailing


@pytest.mark.parametrize("kind, match", [
    ("full", "no room for 5 more section headers"),
    ("signed", "is signed"),
    ("trailing", "bytes of data after its last section"),
    ("not-pe", "not a PE image"),
])
def test_bad_stubs(inputs, tmp_path, kind, match):
    stub = tmp_path / "stub.efi"
    stub.write_bytes({"full": _pe(nsect_room=4), "signed": _pe(5, signed=True), "trailing": _pe(5, trailing=b"x" * 600),
                      "not-pe": b"\x7fELF" + bytes(500)}[kind])
    with pytest.raises(uki.UkiError, match=match):
        uki.build(*inputs, tmp_path / "out.efi", stub=stub)
    _no_output(tmp_path, "out.efi")


def test_minimal_stub_with_exact_room(inputs, tmp_path):
    stub = tmp_path / "stub.efi"
    stub.write_bytes(_pe(nsect_room=5))
    out = tmp_path / "out.efi"
    uki.build(*inputs, out, stub=stub)
    img = uki.parse_pe(out.read_bytes())
    assert [s.name for s in img.sections] == [".text", ".osrel", ".cmdline", ".uname", ".initrd", ".linux"]
    assert img.sections[1].vaddr == 0x2000 and img.sections[1].raw_ptr == 0x600


def test_parse_pe_raises_only_ukierror():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    base = _pe(5)

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.binary(max_size=1200), st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)),
                                                         max_size=8))
    def check(blob, flips):
        for data in (blob, bytes(b if i not in dict(flips) else dict(flips)[i] for i, b in enumerate(base))):
            try:
                uki.parse_pe(data)
            except uki.UkiError:
                pass

    check()


def test_cli(inputs, tmp_path, capsys):
    need_stub()
    kernel, initrd = inputs
    osr = tmp_path / "os-release"
    osr.write_text("ID=mine\n")
    out = tmp_path / "x.efi"
    assert cli.main(["uki", "--kernel", str(kernel), "--initrd", str(initrd), "--cmdline", "root=LABEL=R ro",
                     "--os-release", str(osr), "-o", str(out)]) == 0
    assert "mpinit uki: wrote %s" % out in capsys.readouterr().out
    assert uki.read_section(out, ".osrel") == b"ID=mine\n"
    assert cli.main(["uki", "--kernel", str(kernel), "--initrd", str(tmp_path / "none"), "-o", str(out)]) == 2
    assert "--initrd %s: no such file" % (tmp_path / "none") in capsys.readouterr().err


def test_live_image_uki_needs_uefi(inputs, tmp_path, capsys):
    kernel, initrd = inputs
    argv = ["live-image", "--kernel", str(kernel), "--initrd", str(initrd), "--squashfs", str(initrd),
            "-o", str(tmp_path / "l.img")]
    assert cli.main(argv + ["--uki"]) == 2
    assert "--uki: the UKI is the UEFI boot loader: add --uefi" in capsys.readouterr().err
    assert cli.main(argv + ["--uefi", "--sign-key", str(kernel)]) == 2
    assert "add --uki" in capsys.readouterr().err
