"""Kernel modules for the image: our own dependency closure from each module's ELF `.modinfo`, and the table the
agent reads at boot (its format is documented at the top of agent/mpinit_agent/kmod.py, the one place).

We do not call depmod: an unpacked kernel package has no modules.dep, and `.modinfo` already holds what depmod
would derive (`depends=` is written by modpost from the same symbol resolution, see scripts/mod/modpost.c).
tests/test_kmod_closure.py checks the result against `modprobe --show-depends` on a depmod'ed copy of a real tree.
"""

from __future__ import annotations

import gzip
import json
import lzma
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

# The agent's own rules, so host and agent agree on names and alias globs: normalize() ('-' == '_' in module
# names, kmod modname_normalize), normalize_alias() (kmod alias_normalize), glob_match() (fnmatch(3), flags 0).
from mpinit_agent.kmod import glob_match, normalize, normalize_alias

# A default set fit for booting unknown PCs and VMs from a live medium. Names as the kernel calls the modules
# (modinfo name=, so "usb_storage", not the file name "usb-storage.ko"); a name missing from a kernel (the
# Debian cloud kernel has no USB, AHCI or MMC at all) is a warning, and a built-in one is simply satisfied.
MODULE_SETS = {
    "generic-live": [
        # block devices: VMs, SATA/IDE, NVMe, USB sticks, SD cards, SCSI disks and CD-ROMs
        "virtio_blk", "virtio_scsi", "virtio_pci", "ahci", "ata_piix", "nvme", "usb_storage", "uas",
        "sd_mod", "sr_mod", "xhci_pci", "ehci_pci", "ohci_pci", "mmc_block", "sdhci_pci",
        # a keyboard for the rescue REPL
        "usbhid", "hid_generic",
        # the live stack: image, overlay, loop, and the media filesystems with vfat's codepages: nls_cp437 is
        # FAT's default codepage, nls_ascii its default iocharset in Debian's kernels
        # (CONFIG_FAT_DEFAULT_IOCHARSET="ascii"; without it a vfat mount fails with EINVAL)
        "squashfs", "overlay", "loop", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8", "isofs",
        "ext4", "exfat",
        # EROFS live images (Fedora 42+, archiso's airootfs.erofs); sticks formatted NTFS (the kernel's ntfs3
        # driver) and UDF discs and images (DVDs, UDF bridge ISOs)
        "erofs", "ntfs3", "udf",
    ],
    # Network boot (agent net.py): Ethernet drivers for VMs, clouds and common PCs; coldplug loads the one the
    # machine has. Debian's cloud kernel ships only the VM/cloud ones (virtio_net, vmxnet3, hv_netvsc,
    # xen-netfront, ena, gve); names a kernel lacks are skipped with a warning (--strict refuses them).
    "generic-net": [
        "virtio_pci", "virtio_net", "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "r8169", "tg3", "bnx2",
        "8139cp", "8139too", "pcnet32", "vmxnet3", "hv_netvsc", "xen_netfront", "ena", "gve",
        # USB Ethernet adapters
        "usbnet", "cdc_ether", "r8152", "ax88179_178a",
    ],
}

TABLE_FORMAT = "mpinit-modules 1"

# fnmatch(3) special characters: an alias's literal prefix ends at the first of them (kmod matches aliases with
# fnmatch(pattern, modalias, 0) in libkmod-index.c).
_GLOB_CHARS = "*?[\\"


class ModuleError(Exception):
    """A module cannot be resolved or read; the message names the module and the tree searched."""


def literal_prefix(pattern: str) -> str:
    """The part of an alias pattern before its first glob character: the agent's index key."""
    for i, c in enumerate(pattern):
        if c in _GLOB_CHARS:
            return pattern[:i]
    return pattern


def make_table(kver, modules, builtin=(), options=None, blacklist=()) -> bytes:
    """The agent's module table (JSON, see agent/mpinit_agent/kmod.py for the format) as bytes.

    `modules`: dicts {name, path (in-image path of the .ko), depends, softdep_pre, softdep_post, aliases}, in load
    order (dependencies first). Names are normalized (`-` -> `_`); deps and softdeps name other modules of the list
    or built-in ones. `options`: {module: "p=v p2=v2"}; `blacklist`: names; `builtin`: names of built-in modules.
    Output is deterministic (sorted keys, aliases sorted) so that images are reproducible."""
    options = options or {}
    rows = []
    seen = set()
    aliases = {}
    for m in modules:
        try:
            name = normalize(m["name"])
            path = m["path"]
        except KeyError as e:
            raise ModuleError("module table entry %r lacks %s" % (m, e)) from None
        if name in seen:
            raise ModuleError("module table: %s listed twice" % name)
        if not isinstance(path, str) or not path.startswith("/"):
            raise ModuleError("module table: %s: path must be absolute in the image, not %r" % (name, path))
        seen.add(name)
        rows.append([name, path,
                     [normalize(d) for d in m.get("depends", ())],
                     [normalize(d) for d in m.get("softdep_pre", ())],
                     [normalize(d) for d in m.get("softdep_post", ())]])
        for a in m.get("aliases", ()):
            pat = normalize_alias(a)
            aliases.setdefault(literal_prefix(pat), []).append([pat, name])
    for key in aliases:
        aliases[key].sort()
    table = {
        "format": TABLE_FORMAT,
        "kver": kver,
        "modules": rows,
        "aliases": aliases,
        "options": {normalize(k): v for k, v in options.items()},
        "blacklist": sorted({normalize(b) for b in blacklist}),
        "builtin": sorted({normalize(b) for b in builtin}),
    }
    return (json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n").encode()


# ---- reading modules ------------------------------------------------------------------------------------------

# Suffixes a module file may have; kmod accepts the same (libkmod-file.c).
MODULE_SUFFIXES = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")


def _zstd_decompress(data: bytes, what) -> bytes:
    try:
        import zstandard
    except ImportError:
        from .runner import ToolError, find_tool, run

        try:
            proc = run([find_tool("zstd", "zstd"), "-dcq"], echo=False, capture=True, input=data)
        except ToolError as e:
            raise ModuleError("%s: cannot decompress zstd: %s" % (what, e)) from None
        return proc.stdout
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def decompress(data: bytes, what) -> bytes:
    """Data of a .ko/.ko.gz/.ko.xz/.ko.zst (or firmware) file, by its magic rather than its name."""
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ModuleError("%s: corrupt compressed data: %s" % (what, e)) from None
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return _zstd_decompress(data, what)
    return data


def read_module(path: Path) -> bytes:
    try:
        return decompress(path.read_bytes(), path)
    except OSError as e:
        raise ModuleError("%s: cannot read: %s" % (path, e.strerror)) from None


def elf_section(data, name: bytes, what):
    """The bytes of the named section of an ELF object (32/64-bit, either byte order); None when absent."""
    if data[:4] != b"\x7fELF":
        raise ModuleError("%s: not an ELF object" % what)
    cls, enc = data[4], data[5]
    if cls not in (1, 2) or enc not in (1, 2):
        raise ModuleError("%s: unknown ELF class/encoding %d/%d" % (what, cls, enc))
    e = "<" if enc == 1 else ">"
    try:
        if cls == 2:  # Elf64_Ehdr: e_shoff at 0x28, e_shentsize/e_shnum/e_shstrndx at 0x3a (elf(5))
            shoff, = struct.unpack_from(e + "Q", data, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3a)
            shdr = e + "IIQQQQIIQQ"  # name type flags addr offset size link info addralign entsize
        else:
            shoff, = struct.unpack_from(e + "I", data, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x2e)
            shdr = e + "IIIIIIIIII"

        def section(i):
            f = struct.unpack_from(shdr, data, shoff + i * shentsize)
            return f[0], f[4], f[5]  # sh_name, sh_offset, sh_size

        _, stroff, strsize = section(shstrndx)
        strtab = bytes(data[stroff:stroff + strsize])
        for i in range(shnum):
            nameoff, off, size = section(i)
            end = strtab.find(b"\0", nameoff)
            if strtab[nameoff:end] == name:
                if off + size > len(data):
                    raise ModuleError("%s: section %s runs past the end of the file" % (what, name.decode()))
                return bytes(data[off:off + size])
    except struct.error:
        raise ModuleError("%s: truncated ELF headers" % what) from None
    return None


@dataclass
class ModInfo:
    """What a module's .modinfo says (include/linux/module.h MODULE_INFO, written by modpost)."""
    name: str
    file: Path                       # in the tree
    rel: str                         # path relative to the tree, compression suffix removed (".../x.ko")
    depends: list = field(default_factory=list)
    softdep_pre: list = field(default_factory=list)
    softdep_post: list = field(default_factory=list)
    aliases: list = field(default_factory=list)
    firmware: list = field(default_factory=list)


def parse_softdep(value: str):
    """`pre: a b post: c` -> (["a", "b"], ["c"]); words before any `pre:`/`post:` are ignored, as kmod does
    (libkmod-config.c kmod_config_add_softdep)."""
    pre, post, mode = [], [], None
    for word in value.split():
        if word == "pre:":
            mode = pre
        elif word == "post:":
            mode = post
        elif mode is not None:
            mode.append(word)
    return pre, post


def parse_modinfo(raw: bytes, file: Path, rel: str) -> ModInfo:
    info = ModInfo(name="", file=file, rel=rel)
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if not sep:
            continue
        if key == "name":
            info.name = normalize(value)
        elif key == "depends":
            info.depends.extend(normalize(d) for d in value.split(",") if d)
        elif key == "softdep":
            # Several softdep= values are all kept (kmod itself applies only the first config entry).
            pre, post = parse_softdep(value)
            info.softdep_pre.extend(pre)
            info.softdep_post.extend(post)
        elif key == "alias":
            info.aliases.append(value)
        elif key == "firmware":
            info.firmware.append(value)
    if not info.name:  # modules before modpost wrote name= (pre-3.x): the file name is the module name
        info.name = normalize(file.name.split(".ko")[0])
    return info


def module_info(file: Path, rel: str) -> ModInfo:
    """Read .modinfo cheaply: an uncompressed module is mapped, so only the pages of its headers are touched."""
    if file.name.endswith(".ko"):
        try:
            with open(file, "rb") as f:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    raw = elf_section(m, b".modinfo", file)
        except (OSError, ValueError) as e:
            raise ModuleError("%s: cannot read: %s" % (file, e)) from None
    else:
        raw = elf_section(read_module(file), b".modinfo", file)
    if raw is None:
        raise ModuleError("%s: no .modinfo section: not a kernel module" % file)
    return parse_modinfo(raw, file, rel)


class Tree:
    """A module tree (/lib/modules/<kver> or an unpacked kernel package): files by name, .modinfo on demand."""

    def __init__(self, module_dir):
        self.dir = Path(module_dir)
        if not self.dir.is_dir():
            raise ModuleError("%s: module tree not found (not a directory)" % self.dir)
        self.kver = self.dir.name
        self.files = {}   # name -> (file, rel)
        for root, dirs, names in os.walk(self.dir):
            dirs.sort()
            for n in sorted(names):
                for suf in MODULE_SUFFIXES:
                    if n.endswith(suf):
                        file = Path(root) / n
                        rel = str(file.relative_to(self.dir))[: -len(suf)] + ".ko"
                        self.files.setdefault(normalize(n[: -len(suf)]), (file, rel))
                        break
        self._info = {}
        self._alias_index = None
        self.errors = []
        self.builtin, self.builtin_aliases = self._read_builtin()

    def _read_builtin(self):
        names, aliases = set(), {}
        lst = self.dir / "modules.builtin"
        if lst.exists():
            for line in lst.read_text().splitlines():
                line = line.strip()
                if line:
                    names.add(normalize(line.rsplit("/", 1)[-1].split(".ko")[0]))
        mi = self.dir / "modules.builtin.modinfo"
        if mi.exists():  # "<module>.<key>=<value>\0" records (since Linux 5.2, scripts/link-vmlinux.sh)
            for item in mi.read_bytes().split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                mod, dot, k = key.partition(".")
                if sep and dot and k == "alias":
                    aliases.setdefault(normalize_alias(value), set()).add(normalize(mod))
        return names, aliases

    def info(self, name) -> ModInfo:
        if name not in self._info:
            file, rel = self.files[name]
            self._info[name] = module_info(file, rel)
        return self._info[name]

    def _aliases(self):
        if self._alias_index is None:
            idx = []
            for name in self.files:
                try:
                    aliases = self.info(name).aliases
                except ModuleError as e:  # a damaged module nobody asked for must not block every alias lookup
                    self.errors.append("%s (skipped while searching aliases)" % e)
                    continue
                for a in aliases:
                    idx.append((normalize_alias(a), name))
            self._alias_index = idx
        return self._alias_index

    def lookup(self, wanted):
        """What a name asked for resolves to, in kmod's lookup order (libkmod-module.c
        kmod_module_new_from_lookup): a module file by name, an alias of modules in the tree, a built-in module
        by name, an alias of built-in ones. Returns (kind, [names]) with kind "module", "builtin" or "alias"; (None, [])
        when found nowhere. Aliases match with the kernel's fnmatch rules (the agent's glob_match)."""
        n = normalize(wanted)
        if n in self.files:
            return "module", [n]
        key = normalize_alias(wanted)
        hits = sorted({name for pat, name in self._aliases() if glob_match(pat, key)})
        if hits:
            return "alias", hits
        if n in self.builtin:
            return "builtin", [n]
        for pat, mods in self.builtin_aliases.items():
            if glob_match(pat, key):
                return "builtin", sorted(mods)
        return None, []


# ---- modprobe.d and the host's devices ------------------------------------------------------------------------

def parse_modprobe_d(paths):
    """`options NAME params...` and `blacklist NAME` from modprobe.d(5) files -> (options, blacklist).

    Several options lines for one module are joined in order. Other commands (alias, install, remove, softdep)
    are not carried into the image. A malformed line raises ModuleError naming the file and line."""
    options, blacklist = {}, []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ModuleError("%s: cannot read modprobe.d file: %s" % (path, e.strerror)) from None
        logical, start = "", 0
        for no, line in enumerate(text.splitlines(), 1):
            if not logical:
                start = no
            if line.endswith("\\"):  # continuation (modprobe.d(5))
                logical += line[:-1] + " "
                continue
            logical += line
            words = logical.split("#", 1)[0].split()
            logical = ""
            if not words:
                continue
            cmd = words[0]
            if cmd == "options":
                if len(words) < 2:
                    raise ModuleError("%s:%d: `options` needs a module name" % (path, start))
                name = normalize(words[1])
                params = " ".join(words[2:])
                if params:
                    options[name] = (options[name] + " " + params) if name in options else params
            elif cmd == "blacklist":
                if len(words) != 2:
                    raise ModuleError("%s:%d: `blacklist` takes one module name" % (path, start))
                blacklist.append(normalize(words[1]))
    return options, blacklist


def host_modules(sysfs=Path("/sys"), mounts=Path("/proc/self/mounts")):
    """The modules this machine needs, by a rule that is cheap and explainable:

    1. the module of every driver bound to a device (`/sys/bus/*/devices/*/driver` -> the driver's `module` link,
       the same link udev and lsmod's "Used by" rely on), and
    2. for each filesystem type mounted (`/proc/self/mounts`), the alias `fs-<type>` (request_module("fs-%s") in
       fs/filesystems.c), so a root on ext4/btrfs/xfs gets its filesystem even though no device is bound to it.

    Returns {name: reason}. Names are as the kernel has them; the caller intersects them with a module tree."""
    found = {}
    bus = Path(sysfs) / "bus"
    for dev in sorted(bus.glob("*/devices/*")):
        link = dev / "driver" / "module"
        try:
            target = os.readlink(link)
        except OSError:
            continue
        found.setdefault(normalize(target.rsplit("/", 1)[-1]), "driver of %s" % dev.relative_to(sysfs))
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        f = line.split()
        if len(f) >= 3:
            found.setdefault("fs-" + f[2], "filesystem %s mounted on %s" % (f[2], f[1]))
    return found


# ---- the closure ----------------------------------------------------------------------------------------------

@dataclass
class Closure:
    kver: str
    module_dir: Path
    modules: list = field(default_factory=list)     # names in load order, dependencies first
    files: list = field(default_factory=list)       # (dest path in the image, bytes)
    table: bytes = b""
    warnings: list = field(default_factory=list)
    builtin: list = field(default_factory=list)     # names asked for (directly or as deps) that are built in
    infos: dict = field(default_factory=dict)       # name -> ModInfo of the shipped modules
    why: dict = field(default_factory=dict)         # name -> [(puller or None, how)]
    firmware: dict = field(default_factory=dict)    # firmware name -> dest or None when not found

    def explain(self, name) -> str:
        n = normalize(name)
        lines = []
        if n in self.infos:
            info = self.infos[n]
            lines.append("%s: in the image as %s" % (n, "/lib/modules/%s/%s" % (self.kver, info.rel)))
        elif n in self.builtin:
            lines.append("%s: built into kernel %s (satisfied, not shipped)" % (n, self.kver))
        else:
            return "%s: not in the closure for %s" % (n, self.module_dir)
        for puller, how in self.why.get(n, ()):
            lines.append("  %s" % (how if puller is None else "%s of %s" % (how, puller)))
        chain, cur, seen = [], n, set()
        while cur not in seen:  # one path from a requested module down to this one
            seen.add(cur)
            pulls = [p for p, _ in self.why.get(cur, ()) if p is not None]
            if not pulls or any(p is None for p, _ in self.why.get(cur, ())):
                break
            cur = pulls[0]
            chain.append(cur)
        if chain:
            lines.append("  pulled in by: %s" % " <- ".join([n] + chain))
        if n in self.infos:
            info = self.infos[n]
            for label, vals in (("depends", info.depends), ("softdep pre", info.softdep_pre),
                                ("softdep post", info.softdep_post), ("firmware", info.firmware)):
                if vals:
                    lines.append("  %s: %s" % (label, ", ".join(vals)))
            if info.aliases:
                lines.append("  aliases: %d (e.g. %s)" % (len(info.aliases), info.aliases[0]))
        return "\n".join(lines)


def _find_firmware(name, dirs):
    for d in dirs:
        for suffix in ("", ".zst", ".xz"):  # the kernel's fw loader tries these (CONFIG_FW_LOADER_COMPRESS_*)
            p = Path(d) / (name + suffix)
            if p.is_file():
                return p
    return None


def resolve(module_dir, wanted, *, host_only=False, strict=False, firmware_dirs=(Path("/lib/firmware"),),
            modprobe_d=(), sysfs=Path("/sys"), mounts=Path("/proc/self/mounts")) -> Closure:
    """The closure of `wanted` (names or aliases) in module_dir: dependencies (.modinfo depends=), softdeps
    (pre: and post:, resolved like kmod resolves them: a name, else every module with a matching alias), and
    firmware. Built-in modules are satisfied. A name found nowhere is a warning (ModuleError when strict; a
    softdep found nowhere is only ever a warning, as modprobe ignores it). host_only adds host_modules(sysfs,
    mounts) intersected with the tree. modprobe_d: files whose options/blacklist lines go into the table."""
    tree = Tree(module_dir)
    c = Closure(kver=tree.kver, module_dir=tree.dir)
    options, blacklist = parse_modprobe_d(modprobe_d)
    state = {}

    def note(name, puller, how):
        c.why.setdefault(name, [])
        if (puller, how) not in c.why[name]:
            c.why[name].append((puller, how))

    def missing(what, hard):
        msg = "%s: not found in %s (no such module, alias or built-in)" % (what, tree.dir)
        if strict and hard:
            raise ModuleError(msg)
        c.warnings.append(msg)

    def visit(name):
        if name in state:
            return
        state[name] = "visiting"
        info = tree.info(name)
        c.infos[name] = info
        for pre in info.softdep_pre:
            pull(pre, name, "softdep pre", hard=False)
        for dep in info.depends:
            pull(dep, name, "depends", hard=True)
        c.modules.append(name)
        for post in info.softdep_post:
            pull(post, name, "softdep post", hard=False)
        state[name] = "done"

    def pull(what, puller, how, hard):
        kind, names = tree.lookup(what)
        if kind is None:
            missing(what if puller is None else "%s (%s of %s)" % (what, how, puller), hard)
            return []
        if kind == "alias":
            how = "%s (alias %s)" % (how, what)
        for n in names:
            note(n, puller, how)
            if kind == "builtin":
                if n not in c.builtin:
                    c.builtin.append(n)
            else:
                visit(n)
        return names

    for w in wanted:
        pull(w, None, "requested", hard=True)
    if host_only:
        for w, reason in sorted(host_modules(sysfs, mounts).items()):
            kind, names = tree.lookup(w)
            if kind is not None:  # intersected with the tree: a host module this kernel lacks is not an error
                pull(w, None, "host: %s" % reason, hard=False)

    # modules and firmware, with the agent's view of them
    known = set(c.modules) | set(c.builtin)

    def shipped(names):
        """Dependency words (names or softdep aliases) as the shipped or built-in module names they resolve to."""
        out = []
        for w in names:
            for n in tree.lookup(w)[1]:
                if n in known and n not in out:
                    out.append(n)
        return out

    rows = []
    for name in c.modules:
        info = c.infos[name]
        dest = "/lib/modules/%s/%s" % (tree.kver, info.rel)
        data = read_module(info.file)  # decompressed: the agent's finit_module() needs no kernel decompressor
        elf_section(data, b".modinfo", info.file)  # a damaged module fails here, not at boot
        c.files.append((dest, data))
        rows.append({"name": name, "path": dest, "depends": shipped(info.depends),
                     "softdep_pre": shipped(info.softdep_pre), "softdep_post": shipped(info.softdep_post),
                     "aliases": info.aliases})
        for fw in info.firmware:
            if fw in c.firmware:
                continue
            if fw.startswith("/") or ".." in fw.split("/"):  # never read or place outside the firmware dirs
                c.firmware[fw] = None
                c.warnings.append("firmware %r (for %s): not a relative path, ignored" % (fw, name))
                continue
            src = _find_firmware(fw, firmware_dirs)
            if src is None:
                c.firmware[fw] = None
                c.warnings.append("firmware %s (for %s): not found in %s"
                                  % (fw, name, ", ".join(str(d) for d in firmware_dirs)))
                continue
            try:
                fwdata = decompress(src.read_bytes(), src)
            except OSError as e:
                raise ModuleError("%s: cannot read firmware: %s" % (src, e.strerror)) from None
            c.firmware[fw] = "/lib/firmware/" + fw
            c.files.append(("/lib/firmware/" + fw, fwdata))
    c.warnings.extend(tree.errors)
    c.table = make_table(tree.kver, rows, builtin=sorted(tree.builtin), options=options, blacklist=blacklist)
    return c
