"""The image's file tree in memory: entries by name, parents made on demand, host files and directories added.

Everything `mpinit pack` puts in an image goes through a Tree, which then yields the entries in GNU cpio's
`find . | LC_ALL=C sort` order for cpio.write_newc. Names are stored without a leading "/".
"""

from __future__ import annotations

import os
import stat as st
from pathlib import Path

from .cpio import Entry, sort_key

DIR_MODE = st.S_IFDIR | 0o755


class TreeError(ValueError):
    """A bad destination or source; the message names it."""


def source_date_epoch():
    """mtime for every entry: SOURCE_DATE_EPOCH (reproducible-builds.org spec) when set, else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return 0
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 0xFFFFFFFF:
        raise TreeError("SOURCE_DATE_EPOCH=%r is not a Unix time in newc's 32-bit range" % value)
    return n


def normalize(dest, what="destination"):
    """"/usr/bin/x", "usr//bin/./x" -> "usr/bin/x"; refuses "..", which could climb out of the image root, and
    the empty name. `what` names the input in the error."""
    parts = [p for p in str(dest).split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TreeError("%s %r: '..' is not allowed in an image path" % (what, dest))
    if not parts:
        raise TreeError("%s %r: names no file (the image root)" % (what, dest))
    if "\0" in dest:
        raise TreeError("%s %r: contains a NUL byte" % (what, dest))
    return "/".join(parts)


class Tree:
    def __init__(self, mtime=0):
        self.mtime = mtime
        self.entries = {}

    def __contains__(self, name):
        return normalize(name) in self.entries

    def __len__(self):
        return len(self.entries)

    def get(self, name):
        return self.entries.get(normalize(name))

    def lookup(self, path, _depth=0):
        """The entry `path` reaches in the image with symlinks followed (as the kernel's path walk would), or
        None when it does not exist there. 40 links at most, the kernel's MAXSYMLINKS (include/linux/namei.h)."""
        parts = str(path).split("/")
        cur = []
        for i, part in enumerate(parts):
            if part in ("", "."):
                continue
            if part == "..":
                cur = cur[:-1]
                continue
            cur.append(part)
            entry = self.entries.get("/".join(cur))
            if entry is None:
                return None
            if entry.islnk():
                if _depth >= 40:
                    return None
                target = os.fsdecode(entry.data)
                base = "" if target.startswith("/") else "/".join(cur[:-1])
                return self.lookup("/".join([base, target] + parts[i + 1:]), _depth + 1)
        return self.entries.get("/".join(cur)) if cur else None

    def _parents(self, name):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            have = self.entries.get(parent)
            if have is None:
                self.entries[parent] = Entry(parent, DIR_MODE, mtime=self.mtime, source="(parent directory)")
            elif not have.isdir():
                raise TreeError("%s: its parent %s is already in the image as a non-directory (from %s)"
                                % (name, parent, have.source or "?"))

    def add(self, entry):
        """Add or replace an entry (a directory added over a directory keeps the first; anything else over an
        existing name replaces it: later inputs win, as with the kernel's own unpacking)."""
        entry.name = normalize(entry.name)
        self._parents(entry.name)
        have = self.entries.get(entry.name)
        if have is not None and have.isdir():
            if entry.isdir():
                if have.source == "(parent directory)":
                    self.entries[entry.name] = entry
                return self.entries[entry.name]
            if any(n.startswith(entry.name + "/") for n in self.entries):
                raise TreeError("%s (from %s): is a directory with contents in the image"
                                % (entry.name, entry.source or "?"))
        self.entries[entry.name] = entry
        return entry

    def add_dir(self, name, mode=0o755, source=""):
        return self.add(Entry(name, st.S_IFDIR | (mode & 0o7777), mtime=self.mtime, source=source))

    def add_file(self, name, data, mode=0o644, source="", uid=0, gid=0):
        return self.add(Entry(name, st.S_IFREG | (mode & 0o7777), bytes(data), uid, gid, self.mtime,
                              source=source))

    def add_symlink(self, name, target, source=""):
        return self.add(Entry(name, st.S_IFLNK | 0o777, os.fsencode(target), mtime=self.mtime, source=source))

    def add_node(self, name, kind, major, minor, mode=0o600, source="", uid=0, gid=0):
        """kind: "c", "b", "p" (fifo) or "s" (socket)."""
        fmt = {"c": st.S_IFCHR, "b": st.S_IFBLK, "p": st.S_IFIFO, "s": st.S_IFSOCK}[kind]
        return self.add(Entry(name, fmt | (mode & 0o7777), uid=uid, gid=gid, mtime=self.mtime,
                              rdev=(major, minor), source=source))

    def add_host(self, src, dest, follow=True):
        """Add a host file, directory (recursively) or symlink at `dest`. With follow (the default for a named
        source) a symlink source is copied as what it points to; a dangling one is an error."""
        src = Path(src)
        dest = normalize(dest)
        try:
            info = os.stat(src) if follow else os.lstat(src)
        except FileNotFoundError:
            if os.path.islink(src):
                raise TreeError("source %s: dangling symlink (to %s)" % (src, os.readlink(src)))
            raise TreeError("source %s: no such file or directory" % src)
        except OSError as e:
            raise TreeError("source %s: %s" % (src, e.strerror))
        if st.S_ISDIR(info.st_mode):
            self.add_directory(src, dest)
        else:
            self._add_stat(src, dest, info, {})

    def add_directory(self, root, dest="", keep_mtime=False, keep_owner=False, include_root=False):
        """A host directory's contents under `dest` (CONFIG_INITRAMFS_SOURCE style): symlinks stay symlinks,
        device nodes and fifos become entries, hardlinks inside the tree stay hardlinks."""
        root = Path(root)
        if not root.is_dir():
            raise TreeError("source directory %s: not a directory" % root)
        links = {}
        dest = normalize(dest) if dest not in ("", "/", ".") else ""
        if include_root or dest:
            info = os.lstat(root)
            self._add_stat(root, dest or ".", info, links, keep_mtime, keep_owner)
        stack = [(root, dest)]
        while stack:
            directory, prefix = stack.pop()
            try:
                items = list(os.scandir(directory))
            except OSError as e:
                raise TreeError("source directory %s: %s" % (directory, e.strerror))
            for item in items:
                name = prefix + "/" + item.name if prefix else item.name
                info = item.stat(follow_symlinks=False)
                self._add_stat(Path(item.path), name, info, links, keep_mtime, keep_owner)
                if st.S_ISDIR(info.st_mode):
                    stack.append((Path(item.path), name))

    def _add_stat(self, path, name, info, links, keep_mtime=False, keep_owner=False):
        mode = info.st_mode
        mtime = int(info.st_mtime) if keep_mtime else self.mtime
        uid, gid = (info.st_uid, info.st_gid) if keep_owner else (0, 0)
        data = b""
        rdev = (0, 0)
        link = None
        if st.S_ISREG(mode):
            try:
                data = path.read_bytes()
            except OSError as e:
                raise TreeError("source %s: %s" % (path, e.strerror))
            if info.st_nlink > 1:
                link = links.setdefault((info.st_dev, info.st_ino), ("host", info.st_dev, info.st_ino))
        elif st.S_ISLNK(mode):
            data = os.fsencode(os.readlink(path))
        elif st.S_ISCHR(mode) or st.S_ISBLK(mode):
            rdev = (os.major(info.st_rdev), os.minor(info.st_rdev))
        elif not (st.S_ISDIR(mode) or st.S_ISFIFO(mode) or st.S_ISSOCK(mode)):
            raise TreeError("source %s: unsupported file type %o" % (path, st.S_IFMT(mode)))
        entry = Entry(name, mode, data, uid, gid, mtime, rdev, link, source=str(path))
        if name == ".":
            self.entries["."] = entry
            return entry
        return self.add(entry)

    def sorted_entries(self):
        """Entries in `find . | LC_ALL=C sort` order: parents before children, deterministic."""
        return [self.entries[n] for n in sorted(self.entries, key=sort_key)]
