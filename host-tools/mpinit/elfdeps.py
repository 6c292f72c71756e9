"""Shared-library closure of ELF programs, resolved on the host the way ld.so will in the image (like lddtree).

Read from the ELF itself (elf(5), the System V gABI): PT_INTERP (the program interpreter), and from PT_DYNAMIC
the DT_NEEDED, DT_RPATH, DT_RUNPATH strings in the DT_STRTAB string table (an address, mapped to a file offset
through the PT_LOAD segments). Search order per ld.so(8):
  1. DT_RPATH of the object and of the objects that loaded it, only when the object has no DT_RUNPATH;
  2. (LD_LIBRARY_PATH: ignored, it is the host's environment, not the image's);
  3. DT_RUNPATH of the object itself;
  4. the directories of /etc/ld.so.conf (what ld.so.cache is built from), `include` globs followed;
  5. the default directories /lib, /usr/lib (and /lib64, /usr/lib64 for 64-bit objects).
$ORIGIN (and ${ORIGIN}) is the directory of the object; $LIB is lib or lib64 by class; $PLATFORM is the
machine name. A candidate of another ELF class or machine is skipped, as ld.so does.
"""

from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
EM_NAMES = {3: "i686", 62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv64", 8: "mips", 21: "ppc64",
            22: "s390x"}


class ElfError(ValueError):
    """Not an ELF file, a truncated one, or a library that cannot be found; the message names the file."""


@dataclass
class ElfInfo:
    path: str
    elf_class: int          # 1 = 32-bit, 2 = 64-bit
    machine: int            # e_machine
    interp: str | None = None
    soname: str | None = None
    needed: list = field(default_factory=list)
    rpath: list = field(default_factory=list)
    runpath: list = field(default_factory=list)


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read_elf(path):
    """Parse the headers of the ELF file at `path` into an ElfInfo (no section headers needed)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ElfError("%s: %s" % (path, e.strerror))
    if data[:4] != b"\x7fELF":
        raise ElfError("%s: not an ELF file" % path)
    try:
        return _parse(data, str(path))
    except struct.error:
        raise ElfError("%s: truncated or corrupt ELF headers" % path)


def _parse(data, path):
    cls, endian = data[4], data[5]
    if cls not in (1, 2) or endian not in (1, 2):
        raise ElfError("%s: unknown ELF class %d / data encoding %d" % (path, cls, endian))
    e = "<" if endian == 1 else ">"
    if cls == 2:
        machine, = struct.unpack_from(e + "H", data, 18)
        phoff, = struct.unpack_from(e + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(e + "HH", data, 54)
        ph_fmt, dyn_fmt = e + "IIQQQQQQ", e + "qQ"
    else:
        machine, = struct.unpack_from(e + "H", data, 18)
        phoff, = struct.unpack_from(e + "I", data, 28)
        phentsize, phnum = struct.unpack_from(e + "HH", data, 42)
        ph_fmt, dyn_fmt = e + "IIIIIIII", e + "iI"
    info = ElfInfo(path, cls, machine)
    loads = []
    dynamic = None
    for i in range(phnum):
        raw = struct.unpack_from(ph_fmt, data, phoff + i * phentsize)
        if cls == 2:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = raw[:6]
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = raw[:5]
        if p_type == PT_INTERP:
            info.interp = data[p_offset:p_offset + p_filesz].split(b"\0", 1)[0].decode()
        elif p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return info  # static
    tags = []
    size = struct.calcsize(dyn_fmt)
    off, end = dynamic[0], dynamic[0] + dynamic[1]
    while off + size <= end:
        tag, val = struct.unpack_from(dyn_fmt, data, off)
        if tag == DT_NULL:
            break
        tags.append((tag, val))
        off += size
    strtab = next((v for t, v in tags if t == DT_STRTAB), None)
    if strtab is None:
        raise ElfError("%s: dynamic section without DT_STRTAB" % path)
    for vaddr, offset, filesz in loads:
        if vaddr <= strtab < vaddr + filesz:
            strtab_off = strtab - vaddr + offset
            break
    else:
        raise ElfError("%s: DT_STRTAB address %#x is in no PT_LOAD segment" % (path, strtab))

    def string(index):
        start = strtab_off + index
        return data[start:data.index(b"\0", start)].decode("utf-8", "surrogateescape")

    for tag, val in tags:
        if tag == DT_NEEDED:
            info.needed.append(string(val))
        elif tag == DT_SONAME:
            info.soname = string(val)
        elif tag == DT_RPATH:
            info.rpath += [p for p in string(val).split(":") if p]
        elif tag == DT_RUNPATH:
            info.runpath += [p for p in string(val).split(":") if p]
    return info


def ld_so_conf_dirs(root="/", conf="etc/ld.so.conf"):
    """Directories listed in ld.so.conf, `include` globs followed (relative to `root`), in order."""
    out = []
    seen = set()

    def read(path):
        if path in seen:
            return
        seen.add(path)
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include"):
                for pattern in line.split()[1:]:
                    if not pattern.startswith("/"):
                        pattern = os.path.join(os.path.dirname(path), pattern)
                    for inc in sorted(glob.glob(os.path.join(root, pattern.lstrip("/")))):
                        read(inc)
            elif line.startswith("hwcap"):
                continue
            else:
                out.append(line)

    read(os.path.join(root, conf))
    return out


def ld_so_searches(directory):
    """Whether glibc's ld.so looks in `directory` without ld.so.cache: its built-in system directories, /lib and
    /usr/lib (lib64 on some 64-bit systems) and, on Debian-style multiarch systems, /lib/<triplet> and
    /usr/lib/<triplet> (glibc's configure sets slibdir there). An approximation: the exact list is compiled into
    ld.so (`ld.so --help` prints it), but every distribution keeps its libc in one of these."""
    d = os.path.normpath(directory)
    if d in ("/lib", "/usr/lib", "/lib64", "/usr/lib64"):
        return True
    head, _, triplet = d.rpartition("/")
    return head in ("/lib", "/usr/lib") and triplet.count("-") >= 2 and "linux" in triplet


class Resolver:
    """Resolve programs' library closures against a host root (`/`, or a sysroot for tests)."""

    def __init__(self, root="/", extra_dirs=()):
        self.root = str(root)
        self.conf_dirs = list(extra_dirs) + ld_so_conf_dirs(self.root)
        self._cache = {}
        # Libraries found only through ld.so.conf in a directory ld.so does not search by itself: the image has
        # no ld.so.cache (ldconfig's output, the only way ld.so.conf reaches ld.so), so they would not load.
        self.cache_only = {}    # image path -> the ld.so.conf directory it was found in

    def _host(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _expand(self, entry, origin, info):
        lib = "lib64" if info.elf_class == 2 else "lib"
        for token, value in (("${ORIGIN}", origin), ("$ORIGIN", origin), ("${LIB}", lib), ("$LIB", lib),
                             ("${PLATFORM}", EM_NAMES.get(info.machine, "")),
                             ("$PLATFORM", EM_NAMES.get(info.machine, ""))):
            entry = entry.replace(token, value)
        return entry

    def _compatible(self, path, want):
        try:
            info = self._read(path)
        except ElfError:
            return False
        return info.elf_class == want.elf_class and info.machine == want.machine

    def _read(self, path):
        if path not in self._cache:
            self._cache[path] = read_elf(self._host(path))
        return self._cache[path]

    def _find(self, name, info, origin, rpaths):
        if "/" in name:
            return name if os.path.exists(self._host(name)) else None
        dirs = []  # (directory, found only through ld.so.conf)
        if not info.runpath:
            dirs += [(d, False) for d in rpaths]
        dirs += [(self._expand(d, origin, info), False) for d in info.runpath]
        dirs += [(d, True) for d in self.conf_dirs]
        defaults = ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] if info.elf_class == 2 else ["/lib", "/usr/lib"]
        dirs += [(d, False) for d in defaults]
        for d, from_conf in dirs:
            candidate = os.path.normpath(os.path.join(d, name))
            if os.path.isfile(self._host(candidate)) and self._compatible(candidate, info):
                if from_conf and not ld_so_searches(d):
                    self.cache_only[candidate] = d
                return candidate
        return None

    def closure(self, program):
        """Image paths (as ld.so opens them: interpreter first, then libraries breadth-first) of everything
        `program` (a path under root) needs to run. Raises ElfError naming a library found nowhere."""
        program = "/" + str(program).lstrip("/")
        top = self._read(program)
        out = []
        if top.interp:
            if not os.path.exists(self._host(top.interp)):
                raise ElfError("%s: its interpreter %s does not exist" % (program, top.interp))
            out.append(top.interp)
        queue = [(program, [])]
        seen = {program}
        # ld.so satisfies a DT_NEEDED name from an already loaded object with that soname (the interpreter is
        # always loaded: libc's need for ld-linux-*.so.2 is the interpreter, not a second copy elsewhere).
        loaded = {}
        if top.interp:
            loaded[os.path.basename(top.interp)] = top.interp
            soname = self._read(top.interp).soname
            if soname:
                loaded[soname] = top.interp
        while queue:
            path, inherited = queue.pop(0)
            info = self._read(path)
            origin = os.path.dirname(path)
            # DT_RPATH applies to the object's own lookups and to those of everything it loads.
            rpaths = [self._expand(d, origin, info) for d in info.rpath] + inherited
            for name in info.needed:
                found = loaded.get(name) or self._find(name, info, origin, rpaths)
                if found is None:
                    raise ElfError("%s: needs %s, found in none of its RPATH/RUNPATH, ld.so.conf or default "
                                   "directories under %s" % (path, name, self.root))
                if found not in seen:
                    seen.add(found)
                    loaded[self._read(found).soname or os.path.basename(found)] = found
                    if found != top.interp:
                        out.append(found)
                    queue.append((found, rpaths))
        return out
