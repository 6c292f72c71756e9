"""Unified Kernel Images: systemd-boot's EFI stub + os-release + command line + uname + initramfs + kernel, one PE.

The UAPI group's "Unified Kernel Image" specification (uapi-group/specifications, specs/unified_kernel_image.md)
puts each resource in a PE/COFF section of the stub program: .osrel (os-release text), .cmdline (the kernel
command line), .uname (the kernel's `uname -r`), .initrd and .linux; systemd-stub(7) is the reference stub. We
use Debian's (`/usr/lib/systemd/boot/efi/linuxx64.efi.stub`, package systemd-boot-efi; linuxaa64 for arm64).

Why our own PE writer and not `objcopy --add-section --change-section-vma` (what ukify did before it grew its own
writer): the objcopy route needs the virtual addresses worked out by hand anyway (objcopy places new sections at
VMA 0 otherwise), and binutils' PE back end rewrites the whole file (it re-lays out the headers and sections and
recomputes fields from its own model of the image), so the result depends on the binutils version. Appending
sections is small and fully specified by the PE format: new section headers go in the room the stub leaves before
its first section's data (SizeOfHeaders), the data after the stub's last section, each section starting at the
next SectionAlignment boundary of the address space and FileAlignment boundary of the file, with SizeOfImage,
NumberOfSections, SizeOfInitializedData and the CheckSum updated. The output is checked by independent readers in
the tests (objdump -h, sbverify --list).

Signing (--sign-key/--sign-cert) is sbsign's (package sbsigntool), over the finished image; an encrypted key is
first decrypted by `openssl pkey` reading the password on its stdin (never argv) into a file in a private
temporary directory, removed afterwards.

Layout of the PE headers (Microsoft "PE Format" specification; include/linux/pe.h has the same structures):

    0x3c              e_lfanew: offset of "PE\\0\\0"
    +4                COFF header, 20 bytes: Machine, NumberOfSections (+2), ..., PointerToSymbolTable (+8),
                      SizeOfOptionalHeader (+16)
    +24               optional header: Magic (0x20b PE32+), SizeOfInitializedData (+8), SectionAlignment (+32),
                      FileAlignment (+36), SizeOfImage (+56), SizeOfHeaders (+60), CheckSum (+64),
                      NumberOfRvaAndSizes (+108, PE32+), data directories (+112: 8 bytes each; 4 = certificates)
    +24+SizeOfOptionalHeader   section table, 40 bytes a section
"""

import array
import os
import re
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import arch as archmod
from .atomic import atomic_path, check_output
from .runner import ToolError, find_tool, run

STUB_DIR = Path("/usr/lib/systemd/boot/efi")          # systemd-boot-efi
STUB_NAMES = {"x86_64": "linuxx64.efi.stub", "arm64": "linuxaa64.efi.stub"}
STUB_PACKAGE = "systemd-boot-efi"

# The order of the sections we add, as the UKI specification lists them (and ukify lays them out); .linux last.
SECTION_ORDER = (".osrel", ".cmdline", ".uname", ".initrd", ".linux")

# IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ: plain read-only data, what ukify gives every added section.
SECTION_FLAGS = 0x00000040 | 0x40000000

_PE32_PLUS = 0x20B
_SECTION_HEADER = struct.Struct("<8sIIIIIIHHI")   # Name, VirtualSize, VirtualAddress, SizeOfRawData,
                                                 # PointerToRawData, relocs, linenos, counts, Characteristics
_CERT_DIRECTORY = 4                               # IMAGE_DIRECTORY_ENTRY_SECURITY

# arch/x86/include/asm/setup.h COMMAND_LINE_SIZE 2048 (with the NUL); arm64's is 2048 too.
CMDLINE_MAX = 2047

# Documentation/arch/x86/boot.rst, the real-mode kernel header: "HdrS" at 0x202, the protocol version at 0x206,
# kernel_version at 0x20e (a pointer to the version string, less 0x200), xloadflags at 0x236 (protocol 2.12+),
# whose bit 3 XLF_EFI_HANDOVER_64 says the kernel has the 64-bit EFI handover entry systemd 252's x86 stub
# starts it through (src/boot/efi/linux_x86.c).
_XLF_EFI_HANDOVER_64 = 1 << 3

# The initramfs forms the kernel unpacks (init/initramfs.c, lib/decompress.c): newc cpio, or compressed.
_INITRD_MAGICS = (b"070701", b"070702", b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"\x02\x21\x4c\x18",
                  b"BZh", b"\x5d\x00\x00", b"\x89LZO")

_OS_RELEASE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UkiError(Exception):
    """Bad input for a UKI (the stub, the kernel, the initramfs, the command line, a key); the message names it."""


def _align(n, a):
    return (n + a - 1) // a * a


# --- the PE reader/writer ---------------------------------------------------------------------------------------

@dataclass
class Section:
    name: str
    vsize: int
    vaddr: int
    raw_size: int
    raw_ptr: int
    flags: int


@dataclass
class PeImage:
    """The parts of a PE32+ image's headers the writer needs (offsets are file offsets)."""
    coff: int                 # the COFF header (after "PE\0\0")
    opt: int                  # the optional header
    opt_size: int
    section_table: int
    section_alignment: int
    file_alignment: int
    size_of_headers: int
    sections: list = field(default_factory=list)

    def section(self, name):
        for s in self.sections:
            if s.name == name:
                return s
        return None


def parse_pe(data, what="stub"):
    """PeImage of PE32+ bytes (at least the headers); UkiError naming `what` when they are not one."""
    def bad(msg):
        return UkiError("%s: %s" % (what, msg))

    if len(data) < 0x40 or data[:2] != b"MZ":
        raise bad("not a PE image (no 'MZ' at offset 0)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if pe + 24 > len(data) or data[pe:pe + 4] != b"PE\0\0":
        raise bad("not a PE image (no 'PE\\0\\0' at e_lfanew 0x%x)" % pe)
    coff = pe + 4
    nsect, = struct.unpack_from("<H", data, coff + 2)
    opt_size, = struct.unpack_from("<H", data, coff + 16)
    opt = coff + 20
    if opt + opt_size > len(data) or opt_size < 112:
        raise bad("truncated optional header")
    magic, = struct.unpack_from("<H", data, opt)
    if magic != _PE32_PLUS:
        raise bad("optional header magic 0x%x, not PE32+ (0x20b)" % magic)
    sa, fa = struct.unpack_from("<II", data, opt + 32)
    size_of_headers, = struct.unpack_from("<I", data, opt + 60)
    if not sa or not fa or sa & (sa - 1) or fa & (fa - 1):
        raise bad("SectionAlignment 0x%x / FileAlignment 0x%x are not powers of two" % (sa, fa))
    table = opt + opt_size
    if table + nsect * _SECTION_HEADER.size > len(data):
        raise bad("truncated section table")
    img = PeImage(coff, opt, opt_size, table, sa, fa, size_of_headers)
    for i in range(nsect):
        name, vsize, vaddr, raw_size, raw_ptr, _, _, _, _, flags = _SECTION_HEADER.unpack_from(
            data, table + i * _SECTION_HEADER.size)
        img.sections.append(Section(name.rstrip(b"\0").decode("ascii", "replace"), vsize, vaddr, raw_size,
                                    raw_ptr, flags))
    return img


def pe_checksum(path, checksum_offset):
    """The PE CheckSum of a file (the algorithm of imagehlp's CheckSumMappedFile): the 16-bit little-endian words
    summed with end-around carry, the CheckSum field itself counted as zero, plus the file length."""
    total = 0
    size = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)   # even-sized, so words never straddle two chunks
            if not chunk:
                break
            if size <= checksum_offset < size + len(chunk):
                i = checksum_offset - size
                chunk = chunk[:i] + b"\0\0\0\0" + chunk[i + 4:]
            size += len(chunk)
            if len(chunk) % 2:
                chunk += b"\0"
            words = array.array("H")
            words.frombytes(chunk)
            if sys.byteorder == "big":
                words.byteswap()
            total += sum(words)
            total = (total & 0xFFFFFFFF) + (total >> 32)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + size) & 0xFFFFFFFF


def _strip_symbols(data, img, what):
    """Drop a COFF symbol table (and its string table) from the end of `data`, as ukify does: an image file
    should have none (the PE format deprecates it for images), and Debian's stub keeps one after its sections,
    where our sections must go. Symbols are 18 bytes each; the string table after them starts with its own
    size, those 4 bytes included."""
    ptr, count = struct.unpack_from("<II", data, img.coff + 8)
    if not ptr:
        return
    end = ptr + 18 * count
    if end + 4 <= len(data):
        end += struct.unpack_from("<I", data, end)[0]
    if end != len(data):
        raise UkiError("%s: has a COFF symbol table that does not end the file (strip it first)" % what)
    del data[ptr:]
    struct.pack_into("<II", data, img.coff + 8, 0, 0)
    flags, = struct.unpack_from("<H", data, img.coff + 18)
    struct.pack_into("<H", data, img.coff + 18, flags | 0x0008)   # IMAGE_FILE_LOCAL_SYMS_STRIPPED


def add_sections(stub, sections, out):
    """Write `stub` (a PE32+ file) with `sections` appended to the path `out`.

    sections: [(name, bytes or Path)], in order. Returns the new PeImage (as parse_pe reads the output)."""
    stub = Path(stub)
    data = bytearray(stub.read_bytes())
    img = parse_pe(data, "stub %s" % stub)
    what = "stub %s" % stub
    _strip_symbols(data, img, what)
    ndirs, = struct.unpack_from("<I", data, img.opt + 108)
    if ndirs > _CERT_DIRECTORY and img.opt_size >= 112 + 8 * (_CERT_DIRECTORY + 1):
        cert_off, cert_size = struct.unpack_from("<II", data, img.opt + 112 + 8 * _CERT_DIRECTORY)
        if cert_size:
            raise UkiError("%s: is signed (a certificate table of %d bytes): use the unsigned stub and sign the "
                           "UKI (--sign-key/--sign-cert)" % (what, cert_size))
    for s in img.sections:
        if s.name in [n for n, _ in sections]:
            raise UkiError("%s: already has a %s section (is it a UKI already?)" % (what, s.name))
    raw_end = max([s.raw_ptr + s.raw_size for s in img.sections if s.raw_size] + [img.size_of_headers])
    if len(data) > _align(raw_end, img.file_alignment):
        raise UkiError("%s: %d bytes of data after its last section (a signature or debug data?)"
                       % (what, len(data) - raw_end))
    first_raw = min([s.raw_ptr for s in img.sections if s.raw_size] + [img.size_of_headers])
    table_end = img.section_table + (len(img.sections) + len(sections)) * _SECTION_HEADER.size
    if table_end > min(img.size_of_headers, first_raw):
        raise UkiError("%s: no room for %d more section headers before its first section (headers end at "
                       "0x%x)" % (what, len(sections), min(img.size_of_headers, first_raw)))

    sizes = []
    for name, src in sections:
        if len(name.encode()) > 8:
            raise UkiError("section name %r: longer than the 8 bytes a PE section name holds" % name)
        sizes.append(len(src) if isinstance(src, (bytes, bytearray)) else Path(src).stat().st_size)
    vaddr = _align(max(s.vaddr + max(s.vsize, s.raw_size) for s in img.sections), img.section_alignment)
    raw_ptr = _align(raw_end, img.file_alignment)
    data.extend(b"\0" * (raw_ptr - len(data)))
    headers = []
    added_init = 0
    for (name, _), size in zip(sections, sizes):
        raw_size = _align(size, img.file_alignment)
        headers.append(_SECTION_HEADER.pack(name.encode(), size, vaddr, raw_size, raw_ptr, 0, 0, 0, 0,
                                            SECTION_FLAGS))
        added_init += raw_size
        raw_ptr += raw_size
        vaddr = _align(vaddr + size, img.section_alignment)
    at = img.section_table + len(img.sections) * _SECTION_HEADER.size
    data[at:at + len(headers) * _SECTION_HEADER.size] = b"".join(headers)
    struct.pack_into("<H", data, img.coff + 2, len(img.sections) + len(sections))
    init_data, = struct.unpack_from("<I", data, img.opt + 8)
    struct.pack_into("<I", data, img.opt + 8, (init_data + added_init) & 0xFFFFFFFF)
    struct.pack_into("<I", data, img.opt + 56, vaddr)   # SizeOfImage: the end of the last section, aligned
    struct.pack_into("<I", data, img.opt + 64, 0)
    with open(out, "wb") as f:
        f.write(data)
        for (_, src), size in zip(sections, sizes):
            if isinstance(src, (bytes, bytearray)):
                f.write(src)
            else:
                with open(src, "rb") as s:
                    shutil.copyfileobj(s, f, 1 << 20)
            f.write(b"\0" * (_align(size, img.file_alignment) - size))
    checksum = pe_checksum(out, img.opt + 64)
    with open(out, "r+b") as f:
        f.seek(img.opt + 64)
        f.write(struct.pack("<I", checksum))
    with open(out, "rb") as f:
        return parse_pe(f.read(img.size_of_headers), "output %s" % out)


def read_section(path, name):
    """The bytes of section `name` of the PE file at `path` (VirtualSize bytes), or None."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        img = parse_pe(head, str(path))
        s = img.section(name)
        if s is None:
            return None
        f.seek(s.raw_ptr)
        return f.read(min(s.vsize, s.raw_size))


# --- the inputs -------------------------------------------------------------------------------------------------

def find_stub(arch="x86_64", stub=None):
    """The systemd-stub for `arch` (or the given file); UkiError naming the package when it is missing."""
    arch = archmod.get(arch)
    path = Path(stub) if stub else STUB_DIR / STUB_NAMES[arch.name]
    if not path.is_file():
        if stub:
            raise UkiError("--stub %s: no such file" % path)
        raise UkiError("%s: not found: install the Debian package %s (systemd's EFI stub)"
                       % (path, archmod.apt_name(STUB_PACKAGE, arch)))
    return path


def kernel_info(kernel):
    """(Arch, uname -r or None) of a kernel image; UkiError naming --kernel when it cannot go into a UKI."""
    kernel = Path(kernel)
    if not kernel.is_file() or kernel.stat().st_size == 0:
        raise UkiError("--kernel %s: %s" % (kernel, "empty file" if kernel.is_file() else "no such file"))
    try:
        arch = archmod.of_kernel(kernel)
    except archmod.ArchError:
        raise UkiError("--kernel %s: not an x86 bzImage (no 'HdrS' at 0x202) nor an arm64 Image" % kernel) from None
    with open(kernel, "rb") as f:
        head = f.read(0x10000)
    if arch.name != "x86_64":
        if head[:2] != b"MZ":
            raise UkiError("--kernel %s: not an EFI application (no 'MZ' header): the stub needs a kernel built "
                           "with CONFIG_EFI_STUB, uncompressed (Debian's arm64 vmlinuz is gzipped: gunzip it)"
                           % kernel)
        return arch, None
    if len(head) < 0x238:
        raise UkiError("--kernel %s: truncated (%d bytes, no complete boot header)" % (kernel, len(head)))
    version, = struct.unpack_from("<H", head, 0x206)
    xloadflags = struct.unpack_from("<H", head, 0x236)[0] if version >= 0x020C else 0
    if head[:2] != b"MZ" or not xloadflags & _XLF_EFI_HANDOVER_64:
        raise UkiError("--kernel %s: no 64-bit EFI handover entry (boot protocol %d.%02d, xloadflags 0x%x): "
                       "systemd's x86 stub starts the kernel through it (CONFIG_EFI_STUB, "
                       "CONFIG_EFI_HANDOVER_PROTOCOL)" % (kernel, version >> 8, version & 0xFF, xloadflags))
    uname = None
    ptr, = struct.unpack_from("<H", head, 0x20E)
    if ptr:
        end = head.find(b"\0", ptr + 0x200)
        text = head[ptr + 0x200:end if end >= 0 else None].decode("ascii", "replace")
        uname = text.split(" ", 1)[0] or None   # "6.1.0-41-cloud-amd64 (debian-kernel@...) #1 SMP ..."
    return arch, uname


def check_initrd(initrd):
    initrd = Path(initrd)
    if not initrd.is_file():
        raise UkiError("--initrd %s: no such file" % initrd)
    with open(initrd, "rb") as f:
        head = f.read(8)
    if not head:
        raise UkiError("--initrd %s: empty file" % initrd)
    if not any(head.startswith(m) for m in _INITRD_MAGICS):
        raise UkiError("--initrd %s: not an initramfs (neither a newc cpio archive nor a compressed one the "
                       "kernel unpacks)" % initrd)
    return initrd


def check_cmdline(cmdline):
    if "\n" in cmdline or "\r" in cmdline or "\0" in cmdline:
        raise UkiError("--cmdline %r: a kernel command line is one line of text" % cmdline)
    try:
        cmdline.encode("ascii")
    except UnicodeEncodeError:
        raise UkiError("--cmdline %r: only ASCII (the stub hands it to the kernel as such)" % cmdline) from None
    if len(cmdline) > CMDLINE_MAX:
        raise UkiError("--cmdline: %d bytes, the kernel takes at most %d" % (len(cmdline), CMDLINE_MAX))
    return cmdline.strip()


def check_os_release(text, what="--os-release"):
    """os-release(5) text: KEY=VALUE lines, comments and blank lines; returns it ending in a newline."""
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not sep or not _OS_RELEASE_KEY.match(key):
            raise UkiError("%s line %d: %r is not KEY=VALUE (os-release(5))" % (what, n, line[:80]))
    if "\0" in text:
        raise UkiError("%s: holds a NUL byte" % what)
    return text if text.endswith("\n") else text + "\n"


def default_os_release(uname=None):
    """The .osrel of a UKI that boots mpinit (what a boot menu shows, from PRETTY_NAME)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("mpinit")
    except PackageNotFoundError:
        ver = "0"
    pretty = "mpinit" + (" (%s)" % uname if uname else "")
    return 'NAME="mpinit"\nID=mpinit\nVERSION_ID="%s"\nPRETTY_NAME="%s"\n' % (ver, pretty)


# --- signing ----------------------------------------------------------------------------------------------------

PASSWORD_ENV = "MPINIT_SIGN_KEY_PASSWORD"


def _is_encrypted(key_text):
    # PKCS#8 "BEGIN ENCRYPTED PRIVATE KEY", or the traditional form's "Proc-Type: 4,ENCRYPTED" (RFC 1421 4.6.1.1).
    return "ENCRYPTED" in key_text


def _key_password(key, password_file=None):
    if password_file:
        try:
            lines = Path(password_file).read_text().splitlines()
            return lines[0] if lines else ""
        except OSError as e:
            raise UkiError("--sign-key-password-file %s: %s" % (password_file, e.strerror)) from None
    if os.environ.get(PASSWORD_ENV) is not None:
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("password for %s: " % key)
    raise UkiError("--sign-key %s: is encrypted: give its password with --sign-key-password-file FILE or in $%s"
                   % (key, PASSWORD_ENV))


def _pubkey(argv, what, input=None):
    try:
        proc = run(argv, capture=True, echo=False, input=input)
    except ToolError as e:
        detail = str(e).split(": ", 1)[-1].strip().splitlines()   # openssl's own first line says why
        raise UkiError("%s: %s" % (what, detail[0] if detail else "openssl failed")) from None
    return proc.stdout


def prepare_key(key, cert, workdir, password_file=None):
    """(key path sbsign can read without a prompt, cert path). An encrypted key is decrypted into `workdir`
    (which must be private) by openssl reading the password on stdin; the key must match the certificate."""
    key, cert = Path(key), Path(cert)
    for flag, p in (("--sign-key", key), ("--sign-cert", cert)):
        if not p.is_file():
            raise UkiError("%s %s: no such file" % (flag, p))
    openssl = find_tool("openssl", "openssl")
    cert_pub = _pubkey([openssl, "x509", "-in", cert, "-noout", "-pubkey"],
                       "--sign-cert %s: not a PEM X.509 certificate" % cert)
    try:
        text = key.read_text(errors="replace")
    except OSError as e:
        raise UkiError("--sign-key %s: %s" % (key, e.strerror)) from None
    if "PRIVATE KEY" not in text:
        raise UkiError("--sign-key %s: not a PEM private key (no 'PRIVATE KEY' block)" % key)
    plain = key
    if _is_encrypted(text):
        password = _key_password(key, password_file)
        plain = Path(workdir) / "key.pem"
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        _pubkey([openssl, "pkey", "-in", key, "-passin", "stdin", "-out", plain],
                "--sign-key %s: cannot decrypt it (wrong password?)" % key, input=(password + "\n").encode())
    key_pub = _pubkey([openssl, "pkey", "-in", plain, "-pubout", "-passin", "pass:"],
                      "--sign-key %s: not a private key openssl reads" % key)
    if key_pub.strip() != cert_pub.strip():
        raise UkiError("--sign-key %s does not belong to --sign-cert %s (their public keys differ)" % (key, cert))
    return plain, cert


def sign(unsigned, out, key, cert):
    """sbsign `unsigned` into `out` and check the signature with sbverify."""
    sbsign = find_tool("sbsign", "sbsigntool")
    run([sbsign, "--key", key, "--cert", cert, "--output", out, unsigned], capture=True)
    sbverify = find_tool("sbverify", "sbsigntool")
    run([sbverify, "--cert", cert, out], capture=True)


# --- the UKI ----------------------------------------------------------------------------------------------------

@dataclass
class UkiResult:
    path: Path
    arch: str
    uname: str | None
    sections: list     # [(name, size)] of the sections we added
    signed: bool


def build(kernel, initrd, output, cmdline="", os_release=None, uname=None, stub=None, sign_key=None,
          sign_cert=None, password_file=None):
    """Write the UKI to `output` atomically; returns a UkiResult.

    os_release: the .osrel text (default: default_os_release()); uname: the .uname text (default: the kernel's
    version string, x86 only; "" leaves .uname out); sign_key/sign_cert: sign with sbsign (both or neither)."""
    output = Path(output)
    if bool(sign_key) != bool(sign_cert):
        raise UkiError("--sign-key and --sign-cert go together")
    check_output(output, UkiError)
    arch, found_uname = kernel_info(kernel)
    stub_path = find_stub(arch, stub)
    initrd = check_initrd(initrd)
    cmdline = check_cmdline(cmdline)
    if uname is None:
        uname = found_uname
    os_release = check_os_release(os_release) if os_release is not None else default_os_release(uname)
    sections = [(".osrel", os_release.encode()), (".cmdline", cmdline.encode())]
    if uname:
        sections.append((".uname", uname.encode()))
    sections += [(".initrd", initrd), (".linux", Path(kernel))]
    assert [n for n, _ in sections] == [n for n in SECTION_ORDER if n in dict(sections)]
    with tempfile.TemporaryDirectory(prefix=".mpinit-uki.", dir=output.parent if str(output.parent) else ".") \
            as td:
        os.chmod(td, 0o700)
        key = cert = None
        if sign_key:
            key, cert = prepare_key(sign_key, sign_cert, td, password_file)
        with atomic_path(output) as tmp:
            if key:
                unsigned = Path(td) / "unsigned.efi"
                add_sections(stub_path, sections, unsigned)
                sign(unsigned, tmp, key, cert)
            else:
                add_sections(stub_path, sections, tmp)
    sizes = [(n, len(s) if isinstance(s, bytes) else Path(s).stat().st_size) for n, s in sections]
    return UkiResult(output, arch.name, uname, sizes, bool(sign_key))
