"""Put directories and files into an exFAT filesystem image made by mkfs.exfat, without mounting it.

Debian has no userspace exFAT writer (exfatprogs makes, checks and labels filesystems; exfat-fuse needs a FUSE
mount), and the test media must be built without loop devices or mounts: so this module writes the few
structures needed, from Microsoft's exFAT specification (sections cited below):

- every new file and directory is one contiguous run of clusters marked in the allocation bitmap (7.1) and
  flagged NoFatChain in its stream extension entry (7.6.2), so the FAT itself is never touched;
- each entry set is a File directory entry (7.4), a Stream Extension entry (7.6) and File Name entries (7.7),
  with the set checksum (7.4.3, Figure 2) and the name hash over the up-cased name (7.6.4, Figure 4);
- the boot region is left alone, so its checksum stays valid.

Names are ASCII only (the up-case table then is a-z -> A-Z, which every mkfs.exfat table agrees on); directories
hold up to one cluster of entries. Enough for test media; `fsck.exfat -n` (exfatprogs) checks the result.

    add(image, {"/isos/live.iso": Path("live.iso"), "/README": b"text"})
"""

import struct
from pathlib import Path

_ENTRY = 32
_FILE, _STREAM, _NAME = 0x85, 0xC0, 0xC1
_BITMAP, _EOD = 0x81, 0x00
_ATTR_DIR, _ATTR_ARCHIVE = 0x10, 0x20
# 2025-01-01 00:00:00 as an exFAT timestamp (7.4.8: DOS date and time, year since 1980).
_STAMP = ((2025 - 1980) << 25) | (1 << 21) | (1 << 16)
_NAME_CHARS = 15          # characters per File Name entry (7.7.3)
_MAX_NAME = 255


class ExfatError(Exception):
    """The image or a name cannot be handled; the message names it."""


def _rot16(c, b):
    return ((((c & 1) << 15) | (c >> 1)) + b) & 0xFFFF


def set_checksum(entries):
    """7.4.3 SetChecksum over the whole entry set, the checksum field itself (bytes 2-3 of the first) skipped."""
    c = 0
    for i, b in enumerate(entries):
        if i in (2, 3):
            continue
        c = _rot16(c, b)
    return c


def name_hash(name):
    """7.6.4 NameHash over the up-cased name as UTF-16LE bytes."""
    c = 0
    for ch in name.upper():
        u = ord(ch)
        c = _rot16(c, u & 0xFF)
        c = _rot16(c, u >> 8)
    return c


class _Volume:
    def __init__(self, f):
        self.f = f
        bs = self._read(0, 512)
        if bs[3:11] != b"EXFAT   ":
            raise ExfatError("not an exFAT filesystem (no EXFAT boot signature)")
        (self.fat_off, _fat_len, self.heap_off, self.count, self.root) = struct.unpack_from("<IIIII", bs, 80)
        self.sector = 1 << bs[108]
        self.csize = self.sector << bs[109]
        self.bitmap_cluster = self.bitmap_len = None
        root = self._cluster_bytes(self.root)
        for i in range(0, len(root), _ENTRY):
            if root[i] == _BITMAP and not root[i + 1] & 1:   # the first FAT's bitmap
                self.bitmap_cluster, self.bitmap_len = struct.unpack_from("<IQ", root, i + 20)
                break
        if self.bitmap_cluster is None:
            raise ExfatError("no allocation bitmap entry in the root directory")
        self.bitmap = bytearray(self._read(self._offset(self.bitmap_cluster), self.bitmap_len))

    def _read(self, off, n):
        self.f.seek(off)
        data = self.f.read(n)
        if len(data) != n:
            raise ExfatError("truncated image (wanted %d bytes at %d)" % (n, off))
        return data

    def _write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def _offset(self, cluster):
        if not 2 <= cluster < self.count + 2:
            raise ExfatError("cluster %d outside the heap" % cluster)
        return self.heap_off * self.sector + (cluster - 2) * self.csize

    def _cluster_bytes(self, cluster):
        return self._read(self._offset(cluster), self.csize)

    def allocate(self, nbytes):
        """First cluster of a free contiguous run holding nbytes (0 for an empty file), marked used."""
        n = (nbytes + self.csize - 1) // self.csize
        if n == 0:
            return 0
        run = 0
        for i in range(self.count):
            if self.bitmap[i >> 3] & (1 << (i & 7)):
                run = 0
                continue
            run += 1
            if run == n:
                first = i - n + 1
                for k in range(first, first + n):
                    self.bitmap[k >> 3] |= 1 << (k & 7)
                return first + 2
        raise ExfatError("no room for %d bytes (%d contiguous clusters)" % (nbytes, n))

    def flush_bitmap(self):
        self._write(self._offset(self.bitmap_cluster), bytes(self.bitmap))

    def entries(self, dir_cluster):
        return bytearray(self._cluster_bytes(dir_cluster))

    def find(self, dir_cluster, name):
        """(first cluster, is_dir) of `name` in a directory, or None."""
        d = self.entries(dir_cluster)
        i = 0
        while i < len(d) and d[i] != _EOD:
            if d[i] == _FILE:
                count = d[i + 1]
                attrs, = struct.unpack_from("<H", d, i + 4)
                stream = i + _ENTRY
                nlen = d[stream + 3]
                first, = struct.unpack_from("<I", d, stream + 20)
                chars = []
                for k in range(count - 1):
                    e = stream + _ENTRY * (k + 1)
                    chars.append(d[e + 2:e + 32].decode("utf-16-le"))
                if "".join(chars)[:nlen].upper() == name.upper():
                    return first, bool(attrs & _ATTR_DIR)
                i += _ENTRY * (count + 1)
                continue
            i += _ENTRY
        return None

    def add_entry(self, dir_cluster, name, first, size, is_dir):
        if not name or len(name) > _MAX_NAME or any(ord(c) < 0x20 or ord(c) > 0x7E or c in '"*/:<>?\\|'
                                                    for c in name):
            raise ExfatError("name %r: only printable ASCII without \"*/:<>?\\| here" % name)
        nnames = (len(name) + _NAME_CHARS - 1) // _NAME_CHARS
        sec = bytearray(_ENTRY * (2 + nnames))
        sec[0] = _FILE
        sec[1] = 1 + nnames
        struct.pack_into("<H", sec, 4, _ATTR_DIR if is_dir else _ATTR_ARCHIVE)
        struct.pack_into("<III", sec, 8, _STAMP, _STAMP, _STAMP)
        s = _ENTRY
        sec[s] = _STREAM
        # GeneralSecondaryFlags: AllocationPossible (bit 0) when there is a cluster, NoFatChain (bit 1).
        sec[s + 1] = 0x03 if first else 0x00
        sec[s + 3] = len(name)
        struct.pack_into("<H", sec, s + 4, name_hash(name))
        struct.pack_into("<Q", sec, s + 8, size)            # ValidDataLength
        struct.pack_into("<IQ", sec, s + 20, first, size)   # FirstCluster, DataLength
        for k in range(nnames):
            e = _ENTRY * (2 + k)
            sec[e] = _NAME
            part = name[k * _NAME_CHARS:(k + 1) * _NAME_CHARS].encode("utf-16-le")
            sec[e + 2:e + 2 + len(part)] = part
        struct.pack_into("<H", sec, 2, set_checksum(sec))
        d = self.entries(dir_cluster)
        i = 0
        while i < len(d) and d[i] != _EOD:
            i += _ENTRY
        if i + len(sec) > len(d):
            raise ExfatError("directory at cluster %d is full (one cluster of entries here)" % dir_cluster)
        self._write(self._offset(dir_cluster) + i, bytes(sec))

    def write_data(self, first, data_or_path, size):
        off = self._offset(first)
        if isinstance(data_or_path, (bytes, bytearray)):
            self._write(off, bytes(data_or_path))
            return
        with open(data_or_path, "rb") as src:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):     # keep the image sparse
                    self._write(off, chunk)
                off += len(chunk)


def add(image, files):
    """Add files ({"/dir/name": host Path or bytes}) to the exFAT filesystem in `image` (a file, or a partition
    at offset 0 of it), creating directories on the way. Existing names are refused."""
    with open(image, "r+b") as f:
        vol = _Volume(f)
        dirs = {"": vol.root}
        for dest in sorted(files):
            parts = [p for p in dest.split("/") if p]
            if not parts:
                raise ExfatError("%r: not a file path" % dest)
            parent = ""
            cluster = vol.root
            for comp in parts[:-1]:
                here = parent + "/" + comp
                if here not in dirs:
                    found = vol.find(cluster, comp)
                    if found is None:
                        first = vol.allocate(vol.csize)
                        vol._write(vol._offset(first), bytes(vol.csize))
                        vol.add_entry(cluster, comp, first, vol.csize, True)
                        found = (first, True)
                    elif not found[1]:
                        raise ExfatError("%s: %s is a file" % (dest, here))
                    dirs[here] = found[0]
                parent = here
                cluster = dirs[here]
            if vol.find(cluster, parts[-1]) is not None:
                raise ExfatError("%s: exists already" % dest)
            src = files[dest]
            size = len(src) if isinstance(src, (bytes, bytearray)) else Path(src).stat().st_size
            first = vol.allocate(size)
            if first:
                vol.write_data(first, src, size)
            vol.add_entry(cluster, parts[-1], first, size, False)
        vol.flush_bitmap()
