"""The cpio "newc" format (SVR4 portable ASCII, magic 070701): the format the kernel unpacks into its rootfs.

Format (kernel's Documentation/driver-api/early-userspace/buffer-format.rst, usr/gen_init_cpio.c, and
init/initramfs.c): each member is a 110-byte header of "070701" plus 13 eight-digit hex fields, the name with
its NUL (header + name padded to a multiple of 4), then the data padded to a multiple of 4. The archive ends with
a member named "TRAILER!!!". Several archives may follow each other, each optionally compressed, with NUL padding
between them (the kernel skips NULs in 4-byte steps).

The writer is byte-identical to GNU cpio 2.13 run as

    find . | LC_ALL=C sort | cpio -o -H newc --reproducible --owner 0:0

for the same entries in the same order (tests/test_cpio.py proves it). What that invocation does, read from GNU
cpio's src/copyout.c and src/util.c and checked against its output:
  - names are written as listed less a leading "./" ("." itself stays ".");
  - --reproducible = --ignore-devno (dev major/minor written as 0) + --renumber-inodes (inode numbers handed
    out 0, 1, 2, ... in the order the names are read; hardlinks share the number of the first one read);
  - the nlink field is the file's link count and a directory's is 2 + its subdirectories;
  - hardlinked files (nlink > 1) are deferred: when the last link is read, every earlier link is written with
    size 0 and then the last one with the data (links never completed are flushed the same way at the end);
  - the archive is padded with NULs to a multiple of the 512-byte I/O block.
One known difference, outside "the same tree": GNU cpio writes a file's st_nlink from the disk, so a file with
links outside the archived tree gets a count its archive never completes (and is written at the end); we count
the links the archive holds. The kernel ignores the count beyond "more than one" (init/initramfs.c
maybe_link()), and for a self-contained tree the two are the same.
"""

from __future__ import annotations

import itertools
import re
import stat as st
from dataclasses import dataclass, field

MAGIC = b"070701"
MAGIC_CRC = b"070702"  # same layout plus a checksum field: read, never written
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110
BLOCK = 512  # GNU cpio's default I/O block: the archive is padded to a multiple of it


class FormatError(ValueError):
    """A malformed archive; the message says where (byte offset) and what."""


@dataclass
class Entry:
    """One archive member. `name` has no leading "/" ("." is the root); `data` is the file content, or the target
    of a symlink. Entries whose `link` key is equal (not None) are hardlinks of each other."""

    name: str
    mode: int                      # full st_mode: file type | permission bits
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdev: tuple = (0, 0)           # (major, minor) for device nodes
    link: object = None            # hardlink group key
    ino: int = 0                   # filled in by the reader (as stored); the writer renumbers
    nlink: int = 0                 # filled in by the reader; the writer computes it
    source: str = ""               # where the entry came from (host path, list file:line) for messages

    @property
    def kind(self):
        return st.S_IFMT(self.mode)

    def isdir(self):
        return st.S_ISDIR(self.mode)

    def isreg(self):
        return st.S_ISREG(self.mode)

    def islnk(self):
        return st.S_ISLNK(self.mode)


def _header(ino, mode, uid, gid, nlink, mtime, size, rdev, name_b):
    namesize = len(name_b) + 1
    fields = (ino, mode, uid, gid, nlink, mtime, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    for value in fields:
        if not 0 <= value <= 0xFFFFFFFF:
            raise FormatError("%s: field value %d does not fit newc's 32 bits" % (name_b.decode(errors="replace"),
                                                                                 value))
    head = MAGIC + b"%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X" % fields + name_b + b"\0"
    return head + b"\0" * (-len(head) % 4)


def _nlinks(entries):
    """Link counts as a tree on disk has them: 2 + subdirectories for a directory, members per hardlink group."""
    subdirs = {}
    groups = {}
    for e in entries:
        if e.isdir() and e.name != ".":
            parent = e.name.rpartition("/")[0] or "."
            subdirs[parent] = subdirs.get(parent, 0) + 1
        if e.link is not None:
            groups[e.link] = groups.get(e.link, 0) + 1
    return subdirs, groups


def iter_newc(entries, *, block=BLOCK):
    """Yield the archive for `entries` (already in the wanted order, see sort_key) as bytes chunks."""
    entries = list(entries)
    subdirs, groups = _nlinks(entries)
    inodes = {}
    deferred = {}
    total = 0
    next_ino = 0

    def member(e, ino, nlink, data):
        head = _header(ino, e.mode, e.uid, e.gid, nlink, e.mtime, len(data), e.rdev,
                       e.name.encode("utf-8", "surrogateescape"))
        return head + data + b"\0" * (-len(data) % 4)

    for e in entries:
        key = ("link", e.link) if e.link is not None else ("entry", id(e))
        if key not in inodes:
            inodes[key] = next_ino
            next_ino += 1
        ino = inodes[key]
        if e.isdir():
            nlink = 2 + subdirs.get(e.name, 0)
        elif e.link is not None:
            nlink = groups[e.link]
        else:
            nlink = 1
        data = e.data if (e.isreg() or e.islnk()) else b""
        if e.link is not None and nlink > 1:
            pending = deferred.setdefault(e.link, [])
            if len(pending) + 1 < nlink:
                pending.append(e)
                continue
            for other in deferred.pop(e.link):
                chunk = member(other, ino, nlink, b"")
                total += len(chunk)
                yield chunk
        chunk = member(e, ino, nlink, data)
        total += len(chunk)
        yield chunk
    trailer = _header(0, 0, 0, 0, 1, 0, 0, (0, 0), TRAILER.encode())
    total += len(trailer)
    yield trailer
    if block and total % block:
        yield b"\0" * (-total % block)


def write_newc(entries, *, block=BLOCK):
    """The whole archive as bytes (see iter_newc)."""
    return b"".join(iter_newc(entries, block=block))


def sort_key(name):
    """`LC_ALL=C sort` order of `find .` output: byte order of "./name" ("." first, parents before children)."""
    return b"." if name == "." else b"./" + name.encode("utf-8", "surrogateescape")


# ---- reading ------------------------------------------------------------------------------------------------

def parse_newc(data, offset=0):
    """Parse one archive starting at `offset` up to and including its trailer.

    Returns (entries, end_offset). Hardlinked regular files (same dev and ino, nlink > 1) get a shared `link`
    key and the data of the member that carries it."""
    entries = []
    devs = []
    pos = offset
    view = memoryview(data)
    while True:
        head = bytes(view[pos:pos + HEADER_SIZE])
        if len(head) < HEADER_SIZE:
            raise FormatError("offset %d: archive ends inside a header (no TRAILER!!!)" % pos)
        magic = head[:6]
        if magic not in (MAGIC, MAGIC_CRC):
            raise FormatError("offset %d: bad cpio magic %r (only newc 070701/070702 is supported)" % (pos, magic))
        try:
            f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise FormatError("offset %d: header field is not hexadecimal" % pos)
        ino, mode, uid, gid, nlink, mtime, size, dmaj, dmin, rmaj, rmin, namesize, _check = f
        name_end = pos + HEADER_SIZE + namesize
        if namesize < 1 or name_end > len(data):
            raise FormatError("offset %d: name size %d runs past the end" % (pos, namesize))
        name = bytes(view[pos + HEADER_SIZE:name_end - 1]).decode("utf-8", "surrogateescape")
        pos = name_end + (-name_end % 4)
        if pos + size > len(data):
            raise FormatError("offset %d: %s: data of %d bytes runs past the end" % (pos, name, size))
        body = bytes(view[pos:pos + size])
        pos += size
        pos += -pos % 4
        if name == TRAILER:
            break
        entries.append(Entry(name=name, mode=mode, data=body, uid=uid, gid=gid, mtime=mtime, rdev=(rmaj, rmin),
                             ino=ino, nlink=nlink))
        devs.append((dmaj, dmin))
    _join_hardlinks(entries, devs, next(_archive_ids))
    return entries, pos


# Hardlinks as init/initramfs.c makes them: only regular files (do_name() calls maybe_link() for S_ISREG),
# matched on (dev major, dev minor, ino) (find_link()), and per archive: the kernel forgets its table at each
# TRAILER!!! (do_name() calls free_hash()) and every archive numbers its inodes from scratch, so the same ino
# in two concatenated archives is two different files. Each parsed archive gets its own number in the keys.
_archive_ids = itertools.count()


def _join_hardlinks(entries, devs, archive):
    groups = {}
    for e, dev in zip(entries, devs):
        if e.nlink > 1 and e.isreg():
            groups.setdefault((dev, e.ino), []).append(e)
    for (dev, ino), members in groups.items():
        if len(members) < 2:
            continue
        data = next((m.data for m in members if m.data), b"")
        for m in members:
            m.link = ("ino", archive, dev, ino)
            m.data = data


@dataclass
class Member:
    """One archive of a (possibly concatenated) initramfs image: where it starts, how it was compressed."""

    offset: int
    compression: str               # "none", "gzip", "xz", "zstd", "lz4", ...
    entries: list = field(default_factory=list)
    size: int = 0                  # bytes it takes in the image (compressed size when compressed)


_NON_NUL = re.compile(rb"[^\0]")


def read_image(data, _within=None):
    """Every archive in an initramfs image, in order, the way init/initramfs.c walks it: NUL padding skipped,
    an uncompressed newc archive parsed in place (early microcode), a compressed member unpacked and parsed
    (its payload may itself hold several archives, but no compressed stream: the kernel's flush_buffer() calls
    that "junk within compressed archive"). Raises FormatError naming the offset on garbage."""
    from . import compress

    members = []
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] == 0:  # padding: skip the whole run at once (images may be padded by megabytes)
            m = _NON_NUL.search(data, pos)
            pos = m.start() if m else n
            continue
        if data[pos:pos + 6] in (MAGIC, MAGIC_CRC):
            if pos & 3:  # init/initramfs.c unpack_to_rootfs() takes a '0' as a header only at (this_header & 3) == 0
                raise FormatError("offset %d: cpio archive not 4-byte aligned (the kernel would not unpack it)"
                                  % pos)
            entries, end = parse_newc(data, pos)
            members.append(Member(pos, "none", entries, end - pos))
            pos = end
            continue
        if _within is not None:
            raise FormatError("offset %d of the %s: junk within compressed archive (bytes %s; the kernel "
                              "unpacks only cpio archives and NUL padding there)"
                              % (pos, _within, bytes(data[pos:pos + 6]).hex()))
        method = compress.detect(data, pos)
        if method is None:
            raise FormatError("offset %d: neither a cpio archive nor a known compressed stream (bytes %s)"
                              % (pos, bytes(data[pos:pos + 6]).hex()))
        try:
            method, payload, end = compress.decompress(data, pos)
        except compress.CompressError as e:
            raise FormatError(str(e))
        inner = read_image(payload, "%s member at offset %d" % (method, pos))
        if not inner:
            raise FormatError("offset %d: %s stream holds no cpio archive" % (pos, method))
        entries = [e for m in inner for e in m.entries]
        members.append(Member(pos, method, entries, end - pos))
        pos = end
    return members


def merged(members):
    """The tree the kernel ends up with: later members' entries replace earlier ones of the same name."""
    out = {}
    for m in members:
        for e in m.entries:
            out[e.name] = e
    return out
