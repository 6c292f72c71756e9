# Superblock and partition-table probes whose TYPE/UUID/LABEL/PARTUUID/PARTLABEL are what util-linux blkid prints.
#
#   probe(path_or_file, offset=0, size=None, sector=512, parts=None, windows=None) -> dict
#                                                      blkid `-p -o export` keys: TYPE, USAGE, UUID, LABEL, and where
#                                                      cheap VERSION, BLOCK_SIZE, SEC_TYPE, LABEL_FATBOOT, UUID_SUB,
#                                                      EXT_JOURNAL, LOGUUID, SUBSYSTEM; PTTYPE/PTUUID for a table
#                                                      (parts: receives the table's partitions; windows: see below)
#   partitions(path_or_file, offset=0, size=None, sector=512) -> [dict]
#       one dict per partition: PART_ENTRY_SCHEME ("gpt"/"dos"), PART_ENTRY_NUMBER (int, the kernel's partN),
#       PART_ENTRY_OFFSET / PART_ENTRY_SIZE (ints, in `sector` units), PART_ENTRY_TYPE, PARTUUID, PARTLABEL (GPT)
#
# Facts come from the on-disk formats and util-linux 2.38 libblkid's observable behaviour (tests/test_probe.py
# compares every key printed here with `blkid -p` on images made by the real mkfs tools):
#   - values: a label is cut at the first NUL and trailing whitespace is trimmed; an all-zero UUID is no UUID;
#   - FAT: LABEL is the volume-label entry of the root directory (even "NO NAME"), LABEL_FATBOOT the boot sector
#     label unless "NO NAME"; UUID is the serial as "%04X-%04X"; VERSION by cluster count (FAT12 < 4084 <= FAT16);
#   - iso9660: UUID from the modification date, else the creation date ("YYYY-MM-DD-HH-MM-SS-cc"); the Joliet
#     label (UTF-16BE) wins unless it equals the start of the primary label (Joliet holds only 16 characters);
#   - MBR PARTUUID "<signature %08x>-<partition number %02x>", GPT PARTUUID the lowercase unique GUID.
# Honest subsets: checksums blkid verifies (ext4 metadata_csum, xfs v5, exFAT boot region) are not verified. A
# label that is not valid UTF-8 (blkid passes its raw bytes) has its bytes >= 0x80 as U+DC80..U+DCFF (Python's
# surrogateescape form): `mpinit probe` prints blkid's bytes; on MicroPython such a label is its own odd string.
#
# MicroPython: preallocated buffers, readinto + struct.unpack_from on a memoryview; UTF-16 decoded by hand
# (MicroPython has no utf-16 codec).
#
# Reads (issue 14: a server or a USB hub shows hundreds of block devices, and under QEMU TCG every syscall costs
# tens of microseconds): a probe reads the device's first _HEAD bytes with one read and, when something looks at the
# end (md 0.90/1.0 superblocks, the GPT backup header), the last 64-128 KiB with a second; every prober's read
# inside those windows is a slice of them. Reads elsewhere (LUKS2 secondary headers past the head, a UDF anchor,
# FAT directories, NTFS records) go through a small scratch buffer, one seek + read each. A blank 1 MiB partition
# costs 3 reads (formerly 28), a GPT disk 8 (formerly 176, and its table was read a second time for blockdev).
import struct

from micropython import const

from . import syscalls as _sc   # only for the runtime's native crc32/crc32c (agent/native/crc.c)

_BUFSZ = const(2048)    # the largest single read a prober asks for (larger asks get None, as they always did)
_buf = bytearray(_BUFSZ)
_mv = memoryview(_buf)
# 128 KiB + 4 KiB: the btrfs superblock (64 KiB + 560), the iso9660/UDF volume descriptors from 32 KiB, the LUKS2
# secondary headers up to 128 KiB, the swap signatures (last 10 bytes of pages up to 64 KiB), a GPT's primary
# entries (LBA 2..33 with 512-byte sectors: 17 KiB) all fall inside. Measured in a TCG guest, where each last close
# of a block device drops its page cache (block/bdev.c blkdev_flush_mapping), so every probe reads cold: a blank
# 1 MiB partition took 1.1 ms of reads with this head and the LUKS2 offsets at 256 and 512 KiB, 1.4-1.9 ms with a
# 68 KiB head and three LUKS2 reads; the request count costs, not the bytes (4 KiB alone: 0.35 ms).
_HEAD = const(0x21000)
# md 1.0's superblock (4 KiB-aligned, 8 KiB from the end) and the GPT backup header (the last LBA, sectors up to
# 4 KiB) are within the last 12 KiB. md 0.90's, up to 128 KiB from the end, is one scratch read: copying 128 KiB
# costs more than that read under TCG.
_TAIL = const(0x3000)
_head = bytearray(_HEAD)
_hmv = memoryview(_head)
_tail = bytearray(_TAIL)
_tmv = memoryview(_tail)
_owner = [None, None]   # the _Dev whose head / tail the buffers hold
_zmv = memoryview(bytes(4096))

_WS = " \t\n\r\x0b\x0c"


def _fill(f, pos, mv, n):
    """Read up to n bytes at pos into mv; the count read (short at the end of a file)."""
    f.seek(pos)
    got = 0
    while got < n:
        r = f.readinto(mv[got:n])
        if not r:
            break
        got += r
    return got


class _Dev:
    """A window [offset, offset+size) of an open file, read through the shared buffers."""

    def __init__(self, f, offset, size, sector=512, windows=True):
        self.f = f
        self.base = offset
        self.size = size
        self.sector = sector
        self.windows = windows  # False: every read exactly where a prober looks (see probe())
        self.hlen = 0       # bytes of the head window read (valid while _owner[0] is self)
        self.tpos = -1      # where the tail window starts (-1: no tail window: size unknown or within the head)
        self.tlen = 0
        self._blank = None
        if size is not None and size > _HEAD:
            self.tpos = size - _TAIL
            if self.tpos < _HEAD:
                self.tpos = _HEAD

    def read(self, off, n):
        """n bytes at off as a memoryview (valid until the next probe of another device for a window, until the
        next read for the scratch buffer), or None if short."""
        if off < 0 or n > _BUFSZ or (self.size is not None and off + n > self.size):
            return None
        end = off + n
        if not self.windows:
            pass
        elif end <= _HEAD:
            if _owner[0] is not self:
                lim = _HEAD if self.size is None or self.size > _HEAD else self.size
                _owner[0] = None
                self.hlen = _fill(self.f, self.base, _hmv, lim)
                _owner[0] = self
            if end <= self.hlen:
                return _hmv[off:end]
        elif 0 <= self.tpos <= off:
            if _owner[1] is not self:
                _owner[1] = None
                self.tlen = _fill(self.f, self.base + self.tpos, _tmv, self.size - self.tpos)
                _owner[1] = self
            if end - self.tpos <= self.tlen:
                return _tmv[off - self.tpos:end - self.tpos]
        if _fill(self.f, self.base + off, _mv, n) < n:
            return None
        return _mv[:n]

    def bytes(self, off, n):
        m = self.read(off, n)
        return None if m is None else bytes(m)

    def blank(self):
        """True when the whole head window is zeros (a blank device or partition, or one wiped with wipefs): no
        signature but an md superblock at the end or a LUKS2 secondary header past 64 KiB can be there."""
        if self._blank is None:
            self._blank = self.windows and self._zeros()
        return self._blank

    def _zeros(self):
        if self.read(0, 1) is None:
            return False
        lim = _HEAD if self.size is None or self.size > _HEAD else self.size
        return self.hlen == lim and _zero(_hmv[:lim])

    def head(self, off, n):
        """[off, off+n) as a view of the head window when it lies inside it (any n), else None."""
        if not self.windows or off < 0 or off + n > _HEAD or self.read(0, 1) is None or off + n > self.hlen:
            return None
        return _hmv[off:off + n]


def _zero(m):
    """True when the memoryview m holds only zero bytes: its first 4 KiB are, and each next power-of-two span
    equals all before it. 7 compares in C for 132 KiB, not 33 (Python's per-compare cost dominates under TCG)."""
    lim = len(m)
    n = lim if lim < 4096 else 4096
    if m[0:n] != _zmv[:n]:
        return False
    while n < lim:
        k = lim - n if lim - n < n else n
        if m[n:n + k] != m[0:k]:
            return False
        n += k
    return True


def _size_of(f):
    try:
        end = f.seek(0, 2)
    except OSError:
        return None
    if end is None:  # file objects whose seek returns nothing
        end = f.tell()
    return end


def _open(path_or_file):
    if isinstance(path_or_file, str):
        return open(path_or_file, "rb"), True
    return path_or_file, False


# ---- value helpers (blkid's rules) ------------------------------------------------------------------------------


def _text(raw):
    """Bytes -> str, cut at NUL, trailing whitespace trimmed; None when empty."""
    raw = bytes(raw)
    i = raw.find(b"\x00")
    if i >= 0:
        raw = raw[:i]
    try:
        s = raw.decode("utf-8")
    except UnicodeError:
        # blkid passes a label's bytes through as they are (a FAT label in the DOS code page, say). Bytes >= 0x80
        # become U+DC80..U+DCFF, Python's "surrogateescape" form, so `mpinit probe` prints the very bytes blkid
        # prints (cmd_probe.escape encodes with surrogateescape) and no two different labels look the same.
        s = "".join([chr(b) if b < 0x80 else chr(0xDC00 + b) for b in raw])
    s = s.rstrip(_WS)
    return s or None


def _utf16(raw, big):
    """UTF-16 (LE or BE) bytes -> str, up to the first NUL unit, trailing whitespace trimmed; None when empty."""
    out = []
    n = len(raw) // 2
    i = 0
    while i < n:
        if big:
            u = (raw[2 * i] << 8) | raw[2 * i + 1]
        else:
            u = raw[2 * i] | (raw[2 * i + 1] << 8)
        i += 1
        if u == 0:
            break
        if 0xD800 <= u < 0xDC00 and i < n:
            if big:
                lo = (raw[2 * i] << 8) | raw[2 * i + 1]
            else:
                lo = raw[2 * i] | (raw[2 * i + 1] << 8)
            if 0xDC00 <= lo < 0xE000:
                i += 1
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
        out.append(chr(u))
    s = "".join(out).rstrip(_WS)
    return s or None


def _hex(raw):
    return bytes(raw).hex()


def _uuid(raw):
    """16 bytes in textual order -> "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; None when all zero (blkid skips it)."""
    raw = bytes(raw)
    if raw == bytes(16):
        return None
    h = _hex(raw)
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def _guid(raw):
    """16 bytes of a GPT GUID (first three fields little-endian) -> lowercase text."""
    a, b, c = struct.unpack_from("<IHH", raw, 0)
    h = bytes(raw[8:16]).hex()
    return "%08x-%04x-%04x-%s-%s" % (a, b, c, h[0:4], h[4:16])


def _serial(raw):
    return "%02X%02X-%02X%02X" % (raw[3], raw[2], raw[1], raw[0])


def _set(out, key, value):
    if value is not None:
        out[key] = value


# ---- ext2/3/4 (linux/fs/ext4/ext4.h struct ext4_super_block, at 1024) --------------------------------------------

_EXT_HAS_JOURNAL = const(0x0004)         # compat
_EXT_JOURNAL_DEV = const(0x0008)         # incompat
_EXT_TEST_FILESYS = const(0x0004)        # s_flags
# Features ext2/ext3 drivers understand (libblkid ext.c): a feature outside these makes the filesystem ext4.
_EXT2_RO_SUPP = const(0x0007)            # sparse_super, large_file, btree_dir
_EXT2_INCOMPAT_SUPP = const(0x0012)      # filetype, meta_bg
_EXT3_INCOMPAT_SUPP = const(0x0016)      # filetype, recover, meta_bg


def _ext(d, out):
    sb = d.read(1024, 0x168)
    if sb is None or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        return False
    log_bs, = struct.unpack_from("<I", sb, 0x18)
    minor, = struct.unpack_from("<H", sb, 0x3E)
    rev, = struct.unpack_from("<I", sb, 0x4C)
    fc, fi, frc = struct.unpack_from("<III", sb, 0x5C)
    flags, = struct.unpack_from("<I", sb, 0x160)
    if fi & _EXT_JOURNAL_DEV:
        fstype = "jbd"
    elif frc & ~_EXT2_RO_SUPP or fi & ~_EXT3_INCOMPAT_SUPP:
        fstype = "ext4dev" if flags & _EXT_TEST_FILESYS else "ext4"
    elif fc & _EXT_HAS_JOURNAL:
        fstype = "ext3"
        out["SEC_TYPE"] = "ext2"
    elif fi & ~_EXT2_INCOMPAT_SUPP:
        fstype = "ext4dev" if flags & _EXT_TEST_FILESYS else "ext4"
    else:
        fstype = "ext2"
    out["TYPE"] = fstype
    out["USAGE"] = "other" if fstype == "jbd" else "filesystem"
    _set(out, "LABEL", _text(sb[0x78:0x88]))
    _set(out, "UUID", _uuid(sb[0x68:0x78]))
    if fstype == "jbd":
        _set(out, "LOGUUID", _uuid(sb[0x68:0x78]))
    if fc & _EXT_HAS_JOURNAL:
        _set(out, "EXT_JOURNAL", _uuid(sb[0xD0:0xE0]))
    out["VERSION"] = "%d.%d" % (rev, minor)
    if log_bs < 8:
        out["BLOCK_SIZE"] = str(1024 << log_bs)
    return True


# ---- FAT12/16/32 (Microsoft "FAT: General Overview of On-Disk Format") ------------------------------------------

_FAT12_MAX = const(0xFF4)     # libblkid's cluster-count limits
_FAT16_MAX = const(0xFFF4)
_FAT32_MAX = const(0x0FFFFFF6)


def _fat_geometry(d):
    """The boot sector's geometry when it is a valid FAT boot sector, else None.

    Returns (sector_size, reserved, fat_size_total, fat16_length, clusters, dir_entries, cluster_size)."""
    bs = d.read(0, 512)
    if bs is None:
        return None
    b = bytes(bs)
    magic = (b[0x52:0x57] == b"MSWIN" or b[0x52:0x5A] == b"FAT32   " or b[0x36:0x3B] == b"MSDOS"
             or b[0x36:0x3E] in (b"FAT16   ", b"FAT12   ", b"FAT     "))
    if not magic:
        # Only a weak magic (a jump instruction, or the 0x55AA signature alone): libblkid then also wants the
        # signature, and rules out the FAT-like pseudo boot sectors OS/2 tools put on JFS and HPFS.
        if b[510:512] != b"\x55\xaa" or b[0x36:0x3E] in (b"JFS     ", b"HPFS    "):
            return None
    sector, spc, reserved, fats, dir_entries, sectors16, media, fat16 = struct.unpack_from("<HBHBHHBH", b, 11)
    sectors32, fat32 = struct.unpack_from("<II", b, 32)
    if not fats or not reserved or not (media >= 0xF8 or media == 0xF0):
        return None
    if not spc or spc & (spc - 1):
        return None
    if sector < 512 or sector > 4096 or sector & (sector - 1):
        return None
    count = sectors16 or sectors32
    fat_len = fat16 or fat32
    fat_size = fat_len * fats
    dir_size = (dir_entries * 32 + sector - 1) // sector
    data = count - (reserved + fat_size + dir_size)
    if data < 0:
        return None  # C's unsigned arithmetic would wrap past every limit
    clusters = data // spc
    if not fat16 and fat32:
        limit = _FAT32_MAX
    else:
        limit = _FAT16_MAX if clusters > _FAT12_MAX else _FAT12_MAX
    if clusters > limit:
        return None
    return sector, reserved, fat_size, fat16, clusters, dir_entries, spc


def _fat_label(d, off, entries):
    """The volume-label entry's 11 name bytes in a directory of `entries` entries at off, else None."""
    i = 0
    while i < entries:
        e = d.read(off + 32 * i, 32)
        if e is None or e[0] == 0:
            return None
        attr = e[11]
        cl_hi, = struct.unpack_from("<H", e, 20)
        cl_lo, = struct.unpack_from("<H", e, 26)
        if e[0] != 0xE5 and not cl_hi and not cl_lo and attr & 0x3F != 0x0F and attr & 0x18 == 0x08:
            name = bytes(e[0:11])
            if name[0] == 0x05:
                # A first byte 0xE5 (a letter in several DOS code pages) is stored as 0x05, since 0xE5 marks a free
                # entry (Microsoft FAT specification, "DIR_Name[0]"); libblkid 2.38 puts 0xE5 back.
                name = b"\xe5" + name[1:]
            return name
        i += 1
    return None


def _vfat(d, out):
    g = _fat_geometry(d)
    if g is None:
        return False
    sector, reserved, fat_size, fat16, clusters, dir_entries, spc = g
    b = d.bytes(0, 512)
    vol = None
    if fat16:
        vol = _fat_label(d, (reserved + fat_size) * sector, dir_entries)
        boot = b[0x2B:0x36]
        serial = b[0x27:0x2B]
        out["SEC_TYPE"] = "msdos"
        version = "FAT12" if clusters < _FAT12_MAX else ("FAT16" if clusters < _FAT16_MAX else None)
    else:
        fat32_len, = struct.unpack_from("<I", b, 0x24)
        nxt, = struct.unpack_from("<I", b, 0x2C)
        fsinfo, = struct.unpack_from("<H", b, 0x30)
        boot = b[0x47:0x52]
        serial = b[0x43:0x47]
        version = "FAT32"
        entries = fat32_len * sector // 4
        loops = 99  # libblkid follows at most 100 clusters of the root directory
        while nxt and nxt < entries and loops:
            loops -= 1
            vol = _fat_label(d, (reserved + fat_size + (nxt - 2) * spc) * sector, spc * sector // 32)
            if vol is not None:
                break
            e = d.read(reserved * sector + nxt * 4, 4)
            if e is None:
                break
            nxt = struct.unpack_from("<I", e, 0)[0] & 0x0FFFFFFF
        if fsinfo:
            # FSInfo signatures (or all zero, as some formatters leave them): anything else is not FAT.
            s1 = d.bytes(fsinfo * sector, 4)
            s2 = d.bytes(fsinfo * sector + 484, 4)
            if s1 is None or s2 is None:
                return False
            if s1 not in (b"RRaA", b"RRdA", b"\x00\x00\x00\x00") or s2 not in (b"rrAa", b"\x00\x00\x00\x00"):
                return False
    out["TYPE"] = "vfat"
    out["USAGE"] = "filesystem"
    if vol is not None:
        _set(out, "LABEL", _text(vol))
    if boot != b"NO NAME    ":
        _set(out, "LABEL_FATBOOT", _text(boot))
    out["UUID"] = _serial(serial)
    _set(out, "VERSION", version)
    out["BLOCK_SIZE"] = str(sector)
    return True


# ---- exFAT (Microsoft exFAT specification: main boot sector, section 3.1; label entry 7.3) ----------------------


def _exfat(d, out):
    bs = d.read(0, 512)
    if bs is None or bytes(bs[3:11]) != b"EXFAT   ":
        return False
    b = bytes(bs)
    if b[510:512] != b"\x55\xaa" or b[0:3] != b"\xeb\x76\x90" or b[11:64] != bytes(53):
        return False
    fat_off, fat_len, heap, count, root, serial, rev = struct.unpack_from("<IIIIIIH", b, 80)
    bps, spcs, nfats = b[108], b[109], b[110]
    if bps < 9 or bps > 12 or spcs > 25 - bps or nfats not in (1, 2):
        return False
    csize = 1 << (bps + spcs)
    label = None
    cluster = root
    off = (heap << bps) + ((cluster - 2) << (bps + spcs))
    n = 0
    while n < 8 * 1024 * 1024 and 2 <= cluster <= 0x0FFFFFF6:  # libblkid's 256 MiB directory limit / 32
        e = d.read(off, 32)
        if e is None or e[0] == 0x00:
            break
        if e[0] == 0x83:
            count_chars = e[1]
            label = _utf16(bytes(e[2:2 + min(count_chars * 2, 22)]), False)
            break
        off += 32
        n += 1
        if off % csize == 0:
            nx = d.read((fat_off << bps) + cluster * 4, 4)
            if nx is None:
                break
            cluster, = struct.unpack_from("<I", nx, 0)
            off = (heap << bps) + ((cluster - 2) << (bps + spcs))
    out["TYPE"] = "exfat"
    out["USAGE"] = "filesystem"
    _set(out, "LABEL", label)
    out["UUID"] = _serial(b[100:104])
    out["VERSION"] = "%d.%d" % (rev >> 8, rev & 0xFF)
    out["BLOCK_SIZE"] = str(1 << bps)
    return True


# ---- iso9660 (ECMA-119 section 8.4; Joliet: Microsoft "Joliet Specification", 1995) ------------------------------


def _iso_date(raw):
    """A 17-byte ECMA-119 date as blkid's UUID "YYYY-MM-DD-HH-MM-SS-cc"; None when unset."""
    if raw[0:16] == b"0000000000000000" and raw[16] == 0:
        return None  # ECMA-119 8.4.26.1: all digits zero and offset zero means "not specified"
    t = "".join([chr(c) for c in raw[0:16]])
    s = "%s-%s-%s-%s-%s-%s-%s" % (t[0:4], t[4:6], t[6:8], t[8:10], t[10:12], t[12:14], t[14:16])
    i = s.find("\x00")
    if i >= 0:
        s = s[:i]  # libblkid formats the bytes into a C string: a NUL ends it
    return s or None


def _iso9660(d, out):
    pvd = d.read(0x8000, 884)
    if pvd is None:
        return False
    if bytes(pvd[9:14]) == b"CDROM":   # High Sierra, the pre-ISO format
        out["TYPE"] = "iso9660"
        out["USAGE"] = "filesystem"
        out["VERSION"] = "High Sierra"
        _set(out, "LABEL", _text(pvd[48:80]))
        return True
    if bytes(pvd[1:6]) != b"CD001":
        return False
    label = bytes(pvd[40:72])
    bsize, = struct.unpack_from("<H", pvd, 128)
    uuid = _iso_date(bytes(pvd[830:847])) or _iso_date(bytes(pvd[813:830]))
    out["TYPE"] = "iso9660"
    out["USAGE"] = "filesystem"
    _set(out, "UUID", uuid)
    if bsize:
        out["BLOCK_SIZE"] = str(bsize)
    chosen = _text(label)
    off = 0x8800
    i = 0
    while i < 16:
        vd = d.read(off, 128)
        if vd is None or vd[0] == 0xFF:
            break
        if vd[0] == 2 and bytes(vd[88:91]) in (b"%/@", b"%/C", b"%/E"):
            out["VERSION"] = "Joliet Extension"
            jol = bytes(vd[40:72])
            same = True
            for k in range(16):
                if jol[2 * k] != 0 or jol[2 * k + 1] != label[k]:
                    same = False
                    break
            if not same:
                chosen = _utf16(jol, True)
            break
        off += 2048
        i += 1
    _set(out, "LABEL", chosen)
    return True


# ---- squashfs (linux/fs/squashfs/squashfs_fs.h struct squashfs_super_block) --------------------------------------


def _squashfs(d, out):
    sb = d.read(0, 32)
    if sb is None or bytes(sb[0:4]) != b"hsqs":
        return False
    major, minor = struct.unpack_from("<HH", sb, 28)
    out["TYPE"] = "squashfs" if major >= 4 else "squashfs3"
    out["USAGE"] = "filesystem"
    out["VERSION"] = "%d.%d" % (major, minor)
    return True


# ---- xfs (fs/xfs/libxfs/xfs_format.h struct xfs_dsb) -------------------------------------------------------------


def _xfs(d, out):
    sb = d.read(0, 128)
    if sb is None or bytes(sb[0:4]) != b"XFSB":
        return False
    blocksize, dblocks = struct.unpack_from(">IQ", sb, 4)
    agblocks, agcount = struct.unpack_from(">II", sb, 84)
    sectsize, inodesize = struct.unpack_from(">HH", sb, 102)
    blocklog, sectlog, inodelog = sb[120], sb[121], sb[122]
    # The consistency checks xfs_repair and libblkid start with.
    if (not agcount or not dblocks or blocklog > 16 or sectlog > 15 or inodelog > 11
            or blocksize != 1 << blocklog or sectsize != 1 << sectlog or inodesize != 1 << inodelog):
        return False
    out["TYPE"] = "xfs"
    out["USAGE"] = "filesystem"
    if sb[108]:
        _set(out, "LABEL", _text(sb[108:120]))
    _set(out, "UUID", _uuid(sb[32:48]))
    out["BLOCK_SIZE"] = str(sectsize)
    return True


# ---- btrfs (include/uapi/linux/btrfs_tree.h struct btrfs_super_block, at 64 KiB) --------------------------------


def _btrfs(d, out):
    sb = d.read(0x10000, 560)
    if sb is None or bytes(sb[64:72]) != b"_BHRfS_M":
        return False
    sectorsize, = struct.unpack_from("<I", sb, 144)
    out["TYPE"] = "btrfs"
    out["USAGE"] = "filesystem"
    if sb[299]:
        _set(out, "LABEL", _text(sb[299:555]))
    _set(out, "UUID", _uuid(sb[32:48]))
    _set(out, "UUID_SUB", _uuid(sb[267:283]))   # dev_item.uuid (dev_item at 201, uuid at +66)
    if sectorsize:
        out["BLOCK_SIZE"] = str(sectorsize)
    return True


# ---- LUKS (LUKS1 On-Disk Format 1.2.3; LUKS2 On-Disk Format, binary header) --------------------------------------

# Where cryptsetup may put the secondary LUKS2 header (LUKS2 spec 2.2: offsets of 16 KiB to 4 MiB).
_LUKS2_SECONDARY = (0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000)


def _luks_hdr(d, off, magic):
    h = d.read(off, 256 + 8)
    if h is None or bytes(h[0:6]) != magic:
        return None
    version, = struct.unpack_from(">H", h, 6)
    if version == 2 and struct.unpack_from(">Q", h, 256)[0] != off:
        return None
    return version


def _luks(d, out):
    off = 0
    version = _luks_hdr(d, 0, b"LUKS\xba\xbe")
    if version is None:
        for off in _LUKS2_SECONDARY:
            version = _luks_hdr(d, off, b"SKUL\xba\xbe")
            if version == 2:
                break
            version = None
        if version is None:
            return False
    h = d.read(off, 256)
    out["TYPE"] = "crypto_LUKS"
    out["USAGE"] = "crypto"
    out["VERSION"] = str(version)
    _set(out, "UUID", _text(h[168:208]))
    if version == 2:
        if h[24]:
            _set(out, "LABEL", _text(h[24:72]))
        if h[208]:
            _set(out, "SUBSYSTEM", _text(h[208:256]))
    return True


# libblkid's order (superblocks.c idinfos): RAID members, LVM, crypto first, then filesystems. Each entry: (prober,
# kind) with kind 0 = a filesystem, 1 = one that may share the device with another (libblkid's
# BLKID_IDINFO_TOLERANT: udf and iso9660, a UDF bridge disc is both), 2 = a RAID/LVM member or crypto, which wins
# at once. The rarer probers live in probe_more.py.
_probers = None


def _prober_table():
    global _probers
    if _probers is None:
        from . import probe_more as m

        _probers = ((m.linux_raid, 2), (m.lvm2, 2), (_luks, 2), (m.bitlocker, 2),
                    (_vfat, 0), (m.swap, 0), (_xfs, 0), (_ext, 0), (m.udf, 1), (_iso9660, 1), (m.ntfs, 0),
                    (_squashfs, 0), (_btrfs, 0), (_exfat, 0), (m.f2fs, 0), (m.erofs, 0))
    return _probers


_TINY = const(1440 * 1024)   # libblkid: a device this small (a floppy) gets the first result, unchecked


def _tiny(d):
    # libblkid marks devices of at most 1440 KiB (floppies) tiny: the first result wins unchecked, and RAID and LVM
    # members are never looked for on them (probe_more.py).
    return d.size is not None and d.size <= _TINY


def _superblocks(d):
    """blkid's safe probe (superblocks.c superblocks_safeprobe): the first RAID/crypto signature wins; else every
    filesystem prober runs, and two signatures of which one is not tolerant are ambivalent: {} (blkid -p says
    "ambivalent result" and prints nothing), so such a device is never mounted by mistake."""
    first = None
    count = 0
    intolerant = 0
    out = {}
    tiny = _tiny(d)
    table = _prober_table()
    if d.blank():
        # Every other prober's magic (and an MBR's or a GPT's signature) lies in the head, all zeros here: only
        # the two that look past it can match (for a blank partition, 2 of 16 probers; blkid's answer is the same).
        table = ((table[0][0], 2), (_luks, 2))   # linux_raid, _luks
    for prober, kind in table:
        if not prober(d, out):
            out.clear()
            continue
        if kind == 2 or (tiny and first is None):
            return out
        count += 1
        if kind == 0:
            intolerant += 1
        if first is None:
            first = out
        out = {}
    if count > 1 and intolerant:
        return {}
    return first or {}


# ---- checksums (GPT; probe_more.py: LVM, f2fs, EROFS) ----------------------------------------------------------


_crc_tables = {}


def _crc_raw(data, crc, poly):
    """A reflected (LSB-first) CRC-32 with this polynomial over data, from crc, inverted neither before nor after:
    the kernel's crc32_le()/crc32c() (lib/crc32.c). Table-driven, each polynomial's table made on first use."""
    t = _crc_tables.get(poly)
    if t is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ poly if c & 1 else c >> 1
            t.append(c)
        _crc_tables[poly] = t
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _crc32_py(data, crc):
    # CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as zlib.crc32 computes it, for a MicroPython built
    # without binascii.crc32 (MICROPY_PY_BINASCII_CRC32).
    return _crc_raw(data, crc ^ 0xFFFFFFFF, 0xEDB88320) ^ 0xFFFFFFFF


try:
    from binascii import crc32 as _crc32_fn   # CPython (zlib's)
except ImportError:
    # The runtime's native CRC (agent/native/crc.c): the Python loop costs ~10 ms per GPT disk under QEMU TCG.
    _crc32_fn = getattr(_sc, "crc32", None) or _crc32_py


def _crc32_le(data, crc):
    """The raw CRC-32 (no inversions: the kernel's crc32_le(seed, ...), lvm2's calc_crc()) through zlib's, which
    inverts the seed before and the result after."""
    return _crc32_fn(data, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def _crc32c_py(data, crc):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), raw: the kernel's crc32c(seed, ...)."""
    return _crc_raw(data, crc, 0x82F63B78)


_crc32c = getattr(_sc, "crc32c", None) or _crc32c_py


def _crc_span(d, off, n, fn, crc):
    """fn's CRC (fn(data, crc) -> crc) continued from crc over n bytes at off, read in buffer-sized pieces; None if
    the device is short."""
    while n > 0:
        k = n if n < _BUFSZ else _BUFSZ
        m = d.read(off, k)
        if m is None:
            return None
        crc = fn(m, crc)
        off += k
        n -= k
    return crc


def _crc32(d, off, n):
    """CRC-32 (as GPT uses) of n bytes at off; None if short."""
    crc = _crc_span(d, off, n, _crc32_fn, 0)
    return None if crc is None else crc & 0xFFFFFFFF


# ---- partition tables ----------------------------------------------------------------------------------------------


def _gpt_header(d, lba, sector):
    h = d.read(lba * sector, 92)
    if h is None or bytes(h[0:8]) != b"EFI PART":
        return None
    hsize, = struct.unpack_from("<I", h, 12)
    if hsize < 92 or hsize > sector:
        return None
    hb = bytearray(d.read(lba * sector, hsize))
    want, = struct.unpack_from("<I", hb, 16)
    hb[16:20] = b"\x00\x00\x00\x00"
    if _crc32_fn(hb, 0) & 0xFFFFFFFF != want:
        return None
    my_lba, = struct.unpack_from("<Q", hb, 24)
    if my_lba != lba:
        return None
    guid = _guid(hb[56:72])
    entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", hb, 72)
    if esize < 128 or esize % 8 or count > 4096:
        return None
    if _crc32(d, entries_lba * sector, count * esize) != ecrc:
        return None
    return guid, entries_lba, count, esize


_ZERO16 = bytes(16)


def _pmbr(mbr):
    """True when the MBR holds a GPT protective (0xEE) entry."""
    for i in range(4):
        if mbr[446 + 16 * i + 4] == 0xEE:
            return True
    return False


def _gpt(d, sector, size):
    mbr = d.bytes(0, 512)
    if mbr is None or mbr[510:512] != b"\x55\xaa" or not _pmbr(mbr):
        return None
    hdr = _gpt_header(d, 1, sector)
    if hdr is None and size:
        hdr = _gpt_header(d, size // sector - 1, sector)  # the backup header in the last LBA
    if hdr is None:
        return None
    guid, entries_lba, count, esize = hdr
    parts = []
    start = entries_lba * sector
    arr = d.head(start, count * esize)   # the whole array at once when it is in the head window (the usual case)
    tried = arr is None
    for i in range(count):
        if arr is not None:
            e = arr[i * esize:i * esize + 128]
        else:
            e = d.read(start + i * esize, 128)
            if e is None:
                break
        if e[0:16] == _ZERO16:
            if not tried:
                # Tools fill the array from the start (sgdisk, parted, fdisk), so the first unused entry is usually
                # followed by nothing but unused ones: one check of the rest (a few compares in C) saves walking
                # the other ~124 entries in Python (1.5 ms a disk under TCG). Checked once: a sparse array walks.
                tried = True
                if _zero(arr[i * esize:]):
                    break
            continue   # unused entry; the kernel still numbers partitions by entry index
        first, last = struct.unpack_from("<QQ", e, 32)
        p = {"PART_ENTRY_SCHEME": "gpt", "PART_ENTRY_NUMBER": i + 1, "PART_ENTRY_OFFSET": first,
             "PART_ENTRY_SIZE": last - first + 1, "PART_ENTRY_TYPE": _guid(e[0:16]), "PARTUUID": _guid(e[16:32])}
        _set(p, "PARTLABEL", _utf16(bytes(e[56:128]), False))
        parts.append(p)
    return guid, parts


def _dos(d, sector):
    mbr = d.bytes(0, 512)
    if mbr is None or mbr[510:512] != b"\x55\xaa":
        return None
    if _fat_geometry(d) is not None:
        return None   # a FAT boot sector carries the same signature
    from . import probe_more

    # So does an NTFS boot sector (libblkid 2.38 partitions/dos.c rules it out the same way; not exFAT or BitLocker,
    # whose boot sectors blkid 2.38 reads as a table too).
    if probe_more.ntfs(d, {}):
        return None
    for i in range(4):
        if mbr[446 + 16 * i] not in (0, 0x80):
            return None
    if _pmbr(mbr):
        return None   # GPT's protective MBR: the GPT prober's business
    sig, = struct.unpack_from("<I", mbr, 440)
    ptuuid = "%08x" % sig if sig else None   # libblkid gives no PTUUID (nor PARTUUIDs) for a zero signature
    parts = []
    ext = None
    for i in range(4):
        boot, ptype, start, count = struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i)
        if not count:
            continue   # only an empty size hides an entry (block/partitions/msdos.c); type 0 still counts
        parts.append(_dos_part(ptuuid, i + 1, start, count, ptype, boot))
        if ptype in (0x05, 0x0F, 0x85) and ext is None:
            ext = start
    if ext is not None:
        # Logical partitions: a chain of extended boot records, each with the logical partition (relative to
        # itself) and the link to the next (relative to the extended partition), numbered from 5 (as Linux does).
        n = 5
        ebr = ext
        seen = 0
        while seen < 128:
            seen += 1
            rec = d.bytes(ebr * sector, 512)
            if rec is None or rec[510:512] != b"\x55\xaa":
                break
            boot, ptype, start, count = struct.unpack_from("<B3xB3xII", rec, 446)
            if count and ptype not in (0x05, 0x0F, 0x85):
                parts.append(_dos_part(ptuuid, n, ebr + start, count, ptype, boot))
                n += 1
            _b, ntype, nstart, _c = struct.unpack_from("<B3xB3xII", rec, 462)
            if ntype not in (0x05, 0x0F, 0x85) or not nstart:
                break
            ebr = ext + nstart
    return ptuuid, parts


def _dos_part(ptuuid, n, start, count, ptype, boot):
    p = {"PART_ENTRY_SCHEME": "dos", "PART_ENTRY_NUMBER": n, "PART_ENTRY_OFFSET": start,
         "PART_ENTRY_SIZE": count, "PART_ENTRY_TYPE": "0x%x" % ptype, "PART_ENTRY_FLAGS": "0x%x" % boot}
    if ptuuid:
        p["PARTUUID"] = "%s-%02x" % (ptuuid, n)
    return p


def _table(d, sector, size):
    """(PTTYPE, PTUUID, [partition dicts]) or None."""
    r = _gpt(d, sector, size)
    if r is not None:
        return "gpt", r[0], r[1]
    r = _dos(d, sector)
    if r is not None:
        return "dos", r[0], r[1]
    return None


# ---- public ------------------------------------------------------------------------------------------------------


def _window(f, offset, size, sector=512, windows=True):
    if size is None:
        total = _size_of(f)
        if total is not None:
            size = total - offset
    return _Dev(f, offset, size, sector, windows)


def probe(path_or_file, offset=0, size=None, sector=512, parts=None, windows=None):
    """blkid-style keys of the filesystem (and partition table) at offset of a device, image file or open file.

    sector: the device's logical block size (a GPT's LBA size). {} when nothing is recognised. OSError (with
    the path) when the device cannot be opened. parts: a list that receives partitions()'s dicts of the table
    found, so a disk's table is not read a second time (blockdev keeps them). windows: read the head (and the
    end) in one read each and skip 14 probers on a blank head (the default for a path, which probe opens itself);
    a caller's file object is read exactly where the probers look (capture.py records those ranges, and stores
    no more than the probes need), unless windows=True. Both give the same keys (tests/test_probe_fuzz.py)."""
    f, mine = _open(path_or_file)
    try:
        d = _window(f, offset, size, sector, mine if windows is None else windows)
        out = {} if d.size is not None and d.size <= 1024 else _superblocks(d)
        # A RAID member's partition table belongs to the array (RAID1 shows it on every member): libblkid ignores it.
        # A blank head has no MBR signature (0x55AA at 510), which both table probers want first.
        t = None if out.get("USAGE") == "raid" or d.blank() else _table(d, sector, d.size)
        if t is not None:
            out["PTTYPE"] = t[0]
            _set(out, "PTUUID", t[1])
            if parts is not None:
                parts.extend(t[2])
        return out
    finally:
        if mine:
            f.close()


def reads(size):
    """Where a probe of a device of size bytes reads first, as (offset, length) pairs: the head window, the LUKS2
    secondary headers and md 0.90's superblock past it, the tail window. A blank device's probe reads these and
    nothing else (a filesystem's probers may read more); blockdev queues them with readahead before the probe."""
    if size <= _HEAD:
        return ((0, size),)
    out = [(0, _HEAD)]
    for off in _LUKS2_SECONDARY:
        if off >= _HEAD and off + 4096 <= size:
            out.append((off, 4096))
    from .probe_more import md0_offset

    md = md0_offset(size)
    if md >= _HEAD:
        out.append((md, 4096))
    tail = size - _TAIL
    if tail < _HEAD:
        tail = _HEAD
    out.append((tail, size - tail))
    return out


def image_type(path_or_file, windows=None):
    """"squashfs" or "erofs" when a live image's superblock says so (the squashfs and EROFS probers alone), else
    None (also when both match: probe() calls that ambivalent). probe() of the same file runs all sixteen probers
    and reads the md and LUKS2 offsets too: four more cold reads through the medium's filesystem for signatures a
    live image never holds. OSError (with the path) when it cannot be opened; windows as for probe()."""
    f, mine = _open(path_or_file)
    try:
        d = _window(f, 0, None, 512, mine if windows is None else windows)
        found = None
        out = {}
        if _squashfs(d, out):
            found = out["TYPE"]
        from .probe_more import erofs

        if erofs(d, {}):
            found = None if found else "erofs"
        return found
    finally:
        if mine:
            f.close()


def partitions(path_or_file, offset=0, size=None, sector=512):
    """The partitions of a whole disk (or disk image) in table order, [] when it has no partition table."""
    f, mine = _open(path_or_file)
    try:
        d = _window(f, offset, size, windows=mine)
        t = _table(d, sector, d.size)
        return [] if t is None else t[2]
    finally:
        if mine:
            f.close()


def probe_partition(path_or_file, part, sector=512):
    """probe() of one partition of a disk image (a dict from partitions()), with its PARTUUID/PARTLABEL added."""
    f, mine = _open(path_or_file)
    try:
        out = probe(f, part["PART_ENTRY_OFFSET"] * sector, part["PART_ENTRY_SIZE"] * sector)
    finally:
        if mine:
            f.close()
    out.pop("PTTYPE", None)
    out.pop("PTUUID", None)
    _set(out, "PARTUUID", part.get("PARTUUID"))
    _set(out, "PARTLABEL", part.get("PARTLABEL"))
    return out
