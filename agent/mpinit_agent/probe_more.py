# The probes for the less common signatures (issue 13), split from probe.py so the common filesystems stay in one
# small module: RAID and LVM members, BitLocker, hibernated swap, NTFS, UDF, f2fs and EROFS.
#
# Each prober takes probe.py's _Dev window and the output dict and returns True when its signature is there (the
# keys set), as probe.py's own probers do. What each one checks and prints follows util-linux 2.38 libblkid
# (libblkid/src/superblocks/<name>.c), which tests/test_probe_more.py compares with `blkid -p` on images made by
# the real tools (mkntfs, mkudffs, genisoimage -udf, mkfs.f2fs, mkfs.erofs, mkswap) and, where no tool can write
# the format to a plain file here (md, LVM, BitLocker), on headers built from the on-disk format in the test.
# Newer than 2.38 (util-linux 2.39+), and done here too because a corrupt superblock must not be mounted: the
# EROFS superblock CRC-32C and the f2fs superblock CRC-32 are verified when the filesystem says it has one.
import struct

from micropython import const

from .probe import _crc32_le, _crc32c, _crc_span, _set, _text, _tiny, _utf16, _uuid

_MD_RESERVED = const(0x10000)   # md 0.90: the superblock sits in the last 64 KiB-aligned 64 KiB (md_p.h)
_MD_MAGIC = const(0xA92B4EFC)   # MD_SB_MAGIC, include/uapi/linux/raid/md_p.h


# ---- Linux md RAID members (include/uapi/linux/raid/md_p.h: mdp_super_t for 0.90, mdp_superblock_1) -------------


def _md0(d, off):
    """A 0.90 superblock at off (either byte order, as the kernel's own format is host-endian)."""
    sb = d.read(off, 64)
    if sb is None:
        return False
    for e in ("<", ">"):
        magic, ma, mi, pa, _gv, u0, _ct, _lv, size = struct.unpack_from(e + "9I", sb, 0)
        if magic != _MD_MAGIC:
            continue
        u1, u2, u3 = struct.unpack_from(e + "3I", sb, 52)
        if mi < 90:
            u1 = u2 = u3 = 0    # before 0.90 only the first word of the set UUID exists
        size <<= 10             # KiB
        if d.size < size + _MD_RESERVED or off < size:
            return None         # too small for the array it claims: libblkid ignores it
        # libblkid prints the four words big-endian whatever the superblock's order (swab32 on LE).
        return "%u.%u.%u" % (ma, mi, pa), _uuid(struct.pack(">4I", u0, u1, u2, u3))
    return None


def _md1(d, off, out):
    sb = d.read(off, 256)
    if sb is None:
        return False
    magic, major = struct.unpack_from("<II", sb, 0)
    if magic != _MD_MAGIC or major != 1 or struct.unpack_from("<Q", sb, 144)[0] != off >> 9:
        return False
    _set(out, "UUID", _uuid(sb[16:32]))
    _set(out, "UUID_SUB", _uuid(sb[168:184]))   # device_uuid
    _set(out, "LABEL", _text(sb[32:64]))          # set_name, "host:name"
    return True


def md0_offset(size):
    """Where md 0.90's superblock sits on a member of size bytes: the last 64 KiB-aligned 64 KiB (md_p.h
    MD_NEW_SIZE_SECTORS)."""
    return (size & ~(_MD_RESERVED - 1)) - _MD_RESERVED


def linux_raid(d, out):
    size = d.size
    if size is None or _tiny(d):
        return False
    ver = None
    if size > _MD_RESERVED:
        r = _md0(d, md0_offset(size))
        if r:
            out["TYPE"] = "linux_raid_member"
            out["USAGE"] = "raid"
            out["VERSION"] = r[0]
            _set(out, "UUID", r[1])
            return True
        if _md1(d, (size & ~0xFFF) - 0x2000, out):
            ver = "1.0"     # at the end, 4 KiB aligned, 8 KiB from it
    if ver is None:
        if _md1(d, 0, out):
            ver = "1.1"
        elif _md1(d, 0x1000, out):
            ver = "1.2"
    if ver is None:
        out.clear()
        return False
    out["TYPE"] = "linux_raid_member"
    out["USAGE"] = "raid"
    out["VERSION"] = ver
    return True


# ---- LVM2 physical volumes (lvm2 lib/format_text/layout.h: label_header + pv_header) ----------------------------

def _lvm_crc(data):
    # lvm2 lib/misc/crc.c calc_crc(INITIAL_CRC 0xf597a6cf, ...): the reflected CRC-32 (polynomial 0xEDB88320, its
    # table taken by nibbles there), no inversions.
    return _crc32_le(data, 0xF597A6CF)


# libblkid's magics for LVM2_member, in its order: "LVM2 001" at these offsets, each with the 1 KiB block holding it.
_LVM_MAGICS = ((0, 0x218), (0, 0x18), (1024, 0x18), (1024, 0x218))


def lvm2(d, out):
    if _tiny(d):
        return False
    base = None
    for kb, off in _LVM_MAGICS:
        m = d.bytes(kb + off, 8)
        if m == b"LVM2 001":
            base = kb
            break
    if base is None:
        return False
    # The label ("LABELONE") is at the start of the 1 KiB block or of its second sector (pvcreate: sector 1).
    sector = base >> 9
    lab = d.read(base, 512)
    if lab is None:
        return False
    if bytes(lab[0:8]) != b"LABELONE":
        sector += 1
        lab = d.read(base + 512, 512)
        if lab is None or bytes(lab[0:8]) != b"LABELONE":
            return False
    if struct.unpack_from("<Q", lab, 8)[0] != sector:
        return False
    if _lvm_crc(lab[20:512]) != struct.unpack_from("<I", lab, 16)[0]:
        return False   # the CRC covers the label from offset_xl to the end of its sector
    raw = bytes(lab[32:64])
    out["TYPE"] = "LVM2_member"
    out["USAGE"] = "raid"
    out["VERSION"] = "LVM2 001"
    if raw != bytes(32):
        # format_lvm_uuid(): dashes after characters 6, 10, 14, 18, 22 and 26; printed as a C string
        s = "".join([chr(c) for c in raw])
        s = "-".join([s[0:6], s[6:10], s[10:14], s[14:18], s[18:22], s[22:26], s[26:32]])
        cut = s.find("\x00")
        out["UUID"] = s if cut < 0 else s[:cut]
    return True


# ---- BitLocker (libbde "BitLocker Drive Encryption (BDE) format": volume header, FVE metadata block header) ------


def bitlocker(d, out):
    h = d.read(0, 512)
    if h is None:
        return False
    magic = bytes(h[0:11])
    if magic == b"\xeb\x52\x90-FVE-FS-":      # Vista: no FVE offset in the header
        out["TYPE"] = "BitLocker"
        out["USAGE"] = "crypto"
        return True
    if magic == b"\xeb\x58\x90-FVE-FS-":      # Windows 7 and later
        fve_off, = struct.unpack_from("<Q", h, 176)
        serial, = struct.unpack_from("<I", h, 67)
    elif magic == b"\xeb\x58\x90MSWIN4.1":    # BitLocker To Go (a FAT-looking header)
        fve_off, = struct.unpack_from("<Q", h, 440)
        serial = 0
    else:
        return False
    if not fve_off:
        return False
    fve = d.read(fve_off, 12)
    if fve is None or bytes(fve[0:8]) != b"-FVE-FS-":
        return False
    out["TYPE"] = "BitLocker"
    out["USAGE"] = "crypto"
    if serial:
        out["UUID"] = "%016d" % serial
    out["VERSION"] = "%d" % struct.unpack_from("<H", fve, 10)[0]
    return True


# ---- swap and hibernation images (linux/include/linux/swap.h union swap_header; kernel/power/swap.c) -------------

_PAGES = (0x1000, 0x2000, 0x4000, 0x8000, 0x10000)   # page sizes whose last 10 bytes may hold the signature
_TOI_MAGIC = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c"      # TuxOnIce's header at offset 0
_SUSPEND = {b"S1SUSPEND": "s1suspend", b"S2SUSPEND": "s2suspend", b"ULSUSPEND": "ulsuspend"}


def _swap_info(d, out, version):
    h = d.read(1024, 180)
    if h is None:
        return False
    if version == "1":
        v, last = struct.unpack_from("<II", h, 0)
        if (v != 1 and v != 0x01000000) or last == 0:
            return False
    # libblkid trusts label/UUID only when the padding after them is clean (old mkswap left garbage there).
    if h[44 + 128:44 + 136] == bytes(8):
        if h[28]:
            _set(out, "LABEL", _text(h[28:44]))
        _set(out, "UUID", _uuid(h[12:28]))
    out["VERSION"] = version
    return True


def swap(d, out):
    """swsuspend (a swap area holding a hibernation image: the kernel replaced SWAPSPACE2 with its own signature,
    kernel/power/swap.c HIBERNATE_SIG "S1SUSPEND") is probed before swap, as libblkid does."""
    if d.size is not None and d.size < 10 * 4096:
        return False            # both idinfos have minsz = 10 pages
    head = d.bytes(0, 8)
    if head is None:
        return False
    tails = []
    for page in _PAGES:
        t = d.bytes(page - 10, 10)
        if t is None:
            break
        tails.append(t)
    kind = version = None
    if head == _TOI_MAGIC:
        kind, version = "swsuspend", "tuxonice"
    else:
        for t in tails:
            if t[0:9] in _SUSPEND:
                kind, version = "swsuspend", _SUSPEND[t[0:9]]
            elif t == b"LINHIB0001":
                kind, version = "swsuspend", "linhib0001"
            if kind:
                break
    if kind is None:
        for t in tails:
            if t == b"SWAP-SPACE":
                out["TYPE"] = "swap"
                out["USAGE"] = "other"
                out["VERSION"] = "0"     # version 0 has no UUID or label
                return True
            if t == b"SWAPSPACE2":
                kind, version = "swap", "1"
                break
        if kind is None:
            return False
    if not _swap_info(d, out, version):
        out.clear()
        return False
    out["TYPE"] = kind
    out["USAGE"] = "other"
    return True


# ---- NTFS (boot sector: Microsoft "NTFS BPB"; $Volume's $VOLUME_NAME attribute, MFT record 3) -------------------

_NTFS_VOLUME_NAME = const(0x60)


def ntfs(d, out):
    bs = d.read(0, 84)
    if bs is None or bytes(bs[3:11]) != b"NTFS    ":
        return False
    sector, spc, reserved, fats, root_entries, sectors, _media, spf = struct.unpack_from("<HBHBHHBH", bs, 11)
    large, = struct.unpack_from("<I", bs, 32)
    nsec, mft, mftmirr = struct.unpack_from("<QQQ", bs, 40)
    cpm = bs[64]
    serial = bytes(bs[72:80])
    if sector < 256 or sector > 4096 or spc not in (1, 2, 4, 8, 16, 32, 64, 128) or sector * spc > 65536:
        return False
    if reserved or root_entries or sectors or spf or large or fats:
        return False        # fields NTFS leaves zero
    if cpm < 0xE1 or cpm > 0xF7:
        if cpm not in (1, 2, 4, 8, 16, 32, 64):
            return False
        rec = cpm * spc * sector
    else:
        rec = 1 << (256 - cpm)   # a negative count: 2^-n bytes
    clusters = nsec // spc
    if mft > clusters or mftmirr > clusters:
        return False
    off = mft * sector * spc
    size = d.size
    if size is not None and off + 4 * rec > size:
        return False
    m = d.read(off, 4)
    if m is None or bytes(m) != b"FILE":
        return False
    off += 3 * rec          # MFT record 3 is $Volume
    h = d.read(off, 32)
    if h is None or bytes(h[0:4]) != b"FILE":
        return False
    attr_off, = struct.unpack_from("<H", h, 20)
    allocated, = struct.unpack_from("<I", h, 28)
    label = None
    n = 0
    while attr_off < rec and attr_off <= allocated and n < 1024:
        n += 1
        a = d.read(off + attr_off, 24)
        if a is None:
            break
        atype, alen = struct.unpack_from("<II", a, 0)
        if not alen or atype == 0xFFFFFFFF:
            break
        if atype == _NTFS_VOLUME_NAME:
            vlen, voff = struct.unpack_from("<IH", a, 16)
            start = attr_off + voff
            vlen = min(vlen, 512, rec - start) if start < rec else 0
            v = d.bytes(off + start, vlen) if vlen > 0 else b""
            label = _utf16(v or b"", False)
            break
        attr_off += alen
    out["TYPE"] = "ntfs"
    out["USAGE"] = "filesystem"
    _set(out, "LABEL", label)
    if serial != bytes(8):
        out["UUID"] = "%016X" % struct.unpack("<Q", serial)[0]
    out["BLOCK_SIZE"] = str(sector)
    return True


# ---- UDF (ECMA-167 parts 2 and 3; OSTA UDF 2.60) ----------------------------------------------------------------

_VSD_IDS = (b"BEA01", b"BOOT2", b"CD001", b"CDW02", b"TEA01")
_TAG_PVD = const(1)
_TAG_AVDP = const(2)
_TAG_LVD = const(6)
_TAG_TD = const(8)
_TAG_LVID = const(9)
_VD_SIZE = const(440)   # libblkid's struct volume_descriptor (the tag + the largest member, the LVD)


def _dstring(raw):
    """An ECMA-167 1/7.2.12 dstring (compression ID, characters, length byte last) -> str or None. Compression ID 8
    is 8-bit (Latin-1 in libblkid), 16 is UTF-16BE; anything else has no text."""
    cid = raw[0]
    clen = raw[-1]
    if clen > 0:
        clen -= 1
    if clen > len(raw) - 2:
        clen = len(raw) - 2
    c = bytes(raw[1:1 + clen])
    if cid == 8:
        i = c.find(b"\x00")
        if i >= 0:
            c = c[:i]
        s = "".join([chr(b) for b in c]).rstrip(" \t\n\r\x0b\x0c")
        return s or None
    if cid == 16:
        return _utf16(c, True)
    return None


def _utf8(u):
    """One code point as UTF-8 bytes, lone surrogates included (as libblkid's encoder writes them)."""
    if u < 0x80:
        return bytes([u])
    if u < 0x800:
        return bytes([0xC0 | (u >> 6), 0x80 | (u & 0x3F)])
    if u < 0x10000:
        return bytes([0xE0 | (u >> 12), 0x80 | ((u >> 6) & 0x3F), 0x80 | (u & 0x3F)])
    return bytes([0xF0 | (u >> 18), 0x80 | ((u >> 12) & 0x3F), 0x80 | ((u >> 6) & 0x3F), 0x80 | (u & 0x3F)])


def _udf_uuid(raw):
    """libblkid's UUID from the volume set identifier's first 16 characters (UDF 2.01 2.2.2.5: the first 8 are a
    hex time value): all 16 UTF-8 bytes hex -> them in lower case; the first 8 hex -> those + 4 bytes in hex;
    else the first 8 bytes in hex."""
    cid = raw[0]
    clen = raw[-1]
    if clen > 0:
        clen -= 1
    if clen > len(raw) - 2:
        clen = len(raw) - 2
    if cid not in (8, 16):
        return None
    c = bytes(raw[1:1 + clen])
    # Encode to UTF-8 into a 17-byte buffer as libblkid does: stop at a NUL or when the next character does not fit.
    buf = bytearray()
    i = 0
    while i < len(c):
        if cid == 8:
            u = c[i]
            i += 1
        else:
            if i + 1 >= len(c):
                break
            u = (c[i] << 8) | c[i + 1]
            i += 2
            if 0xD800 <= u <= 0xDBFF and i + 1 < len(c):
                lo = (c[i] << 8) | c[i + 1]
                if 0xDC00 <= lo <= 0xDFFF:
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                    i += 2
        if u == 0:
            break
        e = _utf8(u)
        if len(buf) + len(e) >= 17:
            break
        buf.extend(e)
    n = len(buf)
    if n < 8:
        return None
    b = bytes(buf) + bytes(16 - n) if n < 16 else bytes(buf[:16])
    hexd = b"0123456789abcdefABCDEF"
    pos = 16
    for k in range(16):
        if b[k] not in hexd:
            pos = k
            break
    if pos < 8:
        return "".join(["%02x" % x for x in b[0:8]])
    low = "".join([chr(x) for x in b[0:pos]]).lower()   # hex digits only: ASCII
    if pos < 16:
        return low[0:8] + "".join(["%02x" % x for x in b[8:12]])
    return low


def udf(d, out):
    """UDF, including a UDF bridge disc (ISO 9660 + UDF), which libblkid reports as udf. The block size is the
    device's sector size, else (an image file) the first of 512..4096 whose anchor is at block 256."""
    sector = d.sector
    sizes = [sector]
    for s in (512, 1024, 2048, 4096):
        if s != sector:
            sizes.append(s)
    valid2048 = None
    bs = 0
    for s in sizes:
        vlen = s if s > 2048 else 2048
        found = False
        if vlen == 2048 and valid2048 is not None:
            if not valid2048:
                continue
            found = True
        if not found:
            b = 0
            while b < 64:
                v = d.read(0x8000 + b * vlen, 7)
                if v is None:
                    return False
                ident = bytes(v[1:6])
                if v[1] == 0:
                    break
                if ident in (b"NSR02", b"NSR03"):
                    found = True
                    break
                if ident not in _VSD_IDS:
                    break
                b += 1
            if vlen == 2048:
                valid2048 = found
            if not found:
                continue
        t = d.read(256 * s, 16)
        if t is None:
            return False
        if struct.unpack_from("<I", t, 12)[0] != 256:
            continue
        if struct.unpack_from("<H", t, 0)[0] == _TAG_AVDP:
            bs = s
            break
    if not bs:
        return False
    a = d.read(256 * bs + 16, 8)
    if a is None:
        return False
    length, loc = struct.unpack_from("<II", a, 0)
    count = length // bs
    label = uuid = None
    lvid_len = lvid_loc = 0
    rev = 0
    have_pvd = have_lvd = False
    b = 0
    while b < count and b < 256:   # a volume descriptor sequence is at least 16 sectors (ECMA-167 3/8.4.2)
        vd = d.read((loc + b) * bs, _VD_SIZE)
        if vd is None:
            return False
        tag, = struct.unpack_from("<H", vd, 0)
        if tag == 0 or struct.unpack_from("<I", vd, 12)[0] != loc + b or tag == _TAG_TD:
            break
        if tag == _TAG_PVD and not have_pvd:
            uuid = _udf_uuid(vd[72:200])
            have_pvd = uuid is not None
        elif tag == _TAG_LVD:
            if not (lvid_len and lvid_loc):
                if struct.unpack_from("<I", vd, 268)[0]:   # ECMA-167 3/10.6.12: no partition maps, no LVID
                    lvid_len, lvid_loc = struct.unpack_from("<II", vd, 432)
            if not rev:
                dom = bytes(vd[217:240])
                if dom[0:20] == b"*OSTA UDF Compliant\x00":
                    rev, = struct.unpack_from("<H", vd, 240)
            if not have_lvd:
                label = _dstring(vd[84:212])
                have_lvd = label is not None or vd[84] in (8, 16)
        if have_pvd and have_lvd and lvid_len and lvid_loc:
            break
        b += 1
    if lvid_loc and lvid_len >= _VD_SIZE:
        vd = d.read(lvid_loc * bs, 80)
        if vd is None:
            return False
        if (struct.unpack_from("<H", vd, 0)[0] == _TAG_LVID and struct.unpack_from("<I", vd, 12)[0] == lvid_loc
                and struct.unpack_from("<I", vd, 76)[0] >= 46):
            nparts, = struct.unpack_from("<I", vd, 72)
            iu = d.read(lvid_loc * bs + 80 + 8 * nparts, 46)
            if iu is None:
                return False
            # UDF 2.60 section 2: its minimum read revision is at most 2.50, and some writers put 2.50 in both LVIDIU
            # fields with 2.60 only in the LVD: libblkid 2.38 takes the largest of the LVD's revision and the
            # minimum read and write revisions.
            r, w = struct.unpack_from("<HH", iu, 40)
            r = r if r > w else w
            if r > rev:
                rev = r
    out["TYPE"] = "udf"
    out["USAGE"] = "filesystem"
    _set(out, "LABEL", label)
    _set(out, "UUID", uuid)
    if rev:
        out["VERSION"] = "%x.%02x" % (rev >> 8, rev & 0xFF)   # BCD, as 2.38 prints it
    out["BLOCK_SIZE"] = str(bs)
    return True


# ---- f2fs (include/linux/f2fs_fs.h struct f2fs_super_block, at 1 KiB) --------------------------------------------


def f2fs(d, out):
    sb = d.read(1024, 0x47C)
    if sb is None or bytes(sb[0:4]) != b"\x10\x20\xf5\xf2":
        return False
    major, minor = struct.unpack_from("<HH", sb, 4)
    if major == 1 and minor == 0:
        out["TYPE"] = "f2fs"    # 1.0's layout is not known: the type and nothing else (libblkid)
        out["USAGE"] = "filesystem"
        return True
    log_bs, = struct.unpack_from("<I", sb, 0x10)
    csum_off, = struct.unpack_from("<I", sb, 0x20)
    uuid = _uuid(sb[0x6C:0x7C])
    label = _utf16(bytes(sb[0x7C:0x47C]), False) if sb[0x7C] else None
    if csum_off:
        # f2fs_fs.h F2FS_SUPER_MAGIC as the seed, the CRC over the superblock up to the checksum field
        if csum_off > 3072:
            return False
        want = d.bytes(1024 + csum_off, 4)
        if want is None:
            return False
        crc = _crc_span(d, 1024, csum_off, _crc32_le, 0xF2F52010)
        if crc is None or crc != struct.unpack("<I", want)[0]:
            return False
    out["TYPE"] = "f2fs"
    out["USAGE"] = "filesystem"
    _set(out, "LABEL", label)
    _set(out, "UUID", uuid)
    out["VERSION"] = "%d.%d" % (major, minor)
    if log_bs < 32:
        out["BLOCK_SIZE"] = str(1 << log_bs)
    return True


# ---- EROFS (fs/erofs/erofs_fs.h struct erofs_super_block, at 1 KiB) ----------------------------------------------

_EROFS_FEATURE_SB_CSUM = const(1)


def erofs(d, out):
    sb = d.read(1024, 128)
    if sb is None or bytes(sb[0:4]) != b"\xe2\xe1\xf5\xe0":
        return False
    want, compat = struct.unpack_from("<II", sb, 4)
    bits = sb[12]
    if bits > 12:
        return False            # EROFS blocks are at most 4 KiB (libblkid; the kernel: PAGE_SIZE)
    uuid = _uuid(sb[48:64])
    label = _text(sb[64:80]) if sb[64] else None
    if compat & _EROFS_FEATURE_SB_CSUM:
        # fs/erofs/super.c erofs_superblock_csum_verify(): crc32c(~0, sb with checksum zeroed, block - 1024)
        n = (1 << bits) - 1024
        if n <= 0:
            return False
        # The checksum field (bytes 4-7) counts as zeros: the magic, four zero bytes, then the rest.
        crc = _crc_span(d, 1024, 4, _crc32c, 0xFFFFFFFF)
        if crc is not None:
            crc = _crc_span(d, 1032, n - 8, _crc32c, _crc32c(b"\x00\x00\x00\x00", crc))
        if crc is None or crc != want:
            return False
    out["TYPE"] = "erofs"
    out["USAGE"] = "filesystem"
    _set(out, "LABEL", label)
    _set(out, "UUID", uuid)
    out["BLOCK_SIZE"] = str(1 << bits)
    return True
