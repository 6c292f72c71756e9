# Kernel modules at boot: the precomputed module table, loading with dependencies, alias matching, coldplug.
#
# THE MODULE TABLE (contract.MODULES_TABLE_PATH), written by the host (mpinit.kmod.make_table), read here.
# One JSON object on one line, so MicroPython's C json module loads it in a single call and no text is parsed in
# Python at boot:
#
#   "format"    "mpinit-modules 1"                      anything else is refused (names the file)
#   "kver"      the kernel release the modules are for  (uname -r)
#   "modules"   [[name, path, depends, pre, post], ...]  in load order, dependencies first
#                 name    module name, normalized ("-" -> "_", as the kernel and kmod spell it)
#                 path    absolute in-image path of the uncompressed .ko
#                 depends direct hard dependencies (names; each is in "modules" or in "builtin")
#                 pre     softdep pre: names loaded before (failures ignored, as modprobe does)
#                 post    softdep post: names loaded after (failures ignored)
#   "aliases"   {literal_prefix: [[pattern, name], ...]} the shipped modules' alias= patterns (normalized like
#                 kmod's alias_normalize: "-" -> "_" outside [...]), keyed by the pattern's text before its first
#                 glob character; a modalias is looked up with one dict probe per distinct prefix length
#   "options"   {name: "p=v p2=v2"}                     modprobe.d `options` lines given to the host
#   "blacklist" [names]                                  modprobe.d `blacklist` lines
#   "builtin"   [names]                                  modules.builtin: treated as already loaded
#
# Why JSON, measured with MicroPython 1.25 (unix port, x86-64) on tables made from the Debian 6.1 cloud kernel:
#                                   json.loads(f.read())   json.load(f)   a line format split in Python
#   generic-live (26 mods, 13 kB)         0.5 ms               5 ms            3.5 ms
#   whole tree (1121 mods, 274 kB)        11 ms               114 ms           93 ms
# so the file is read whole and parsed by one json.loads() call (json.load() reads the stream a byte at a time).
# Nothing is read until the modules stage runs.
#
# THE INTERFACE (main.py and the rescue REPL call these):
#
#   m = Modules(table_path=contract.MODULES_TABLE_PATH)   nothing read yet
#   m.blacklist(names)                   module_blacklist= / rd.driver.blacklist= / config "blacklist": these
#                                        modules are never loaded, not even as a dependency (the kernel's
#                                        module_blacklist= refuses them too); a module that hard-depends on one
#                                        fails, a softdep on one is skipped
#   m.load(name, params=None) -> bool    load with dependencies; True when loaded, already loaded or built in;
#                                        a name not in the table is tried as an alias (all matches are loaded)
#   m.load_many(names, params_by_module=None) -> [names loaded]
#                                        params_by_module: {name: "p=v p2=v2"} from the cmdline's mod.param=v;
#                                        kept for later loads (dependencies, coldplug) too
#   m.coldplug(sys_devices="/sys/devices") -> [names loaded]
#                                        reads every device's modalias (device_modaliases(), or the walk of
#                                        /sys/devices without /sys/bus) and loads the matching shipped modules,
#                                        pass after pass while a pass loaded something; call it again later for
#                                        devices that appear late (a modalias already seen is not matched again)
#   m.match(modalias) -> [names]         the shipped modules whose aliases match (blacklisted ones left out)
#   m.loaded                             names loaded by us, in order (built-in ones not included)
#   m.failed                             [(name, error str)], in order
#   m.available()                        names in the table (for the REPL's lsmod/modprobe)
#   m.kver                               the table's kernel release (after the first call that reads the table)
#
#   Module functions (the host's mpinit.kmod uses the same ones, so both sides agree):
#   glob_match(pattern, s) -> bool       fnmatch(3) with flags 0;  normalize(name);  normalize_alias(alias)
#   device_modaliases(sysfs="/sys") -> [(device path, modalias)] or None without /sys/bus
#   modaliases(root="/sys/devices") -> [(device dir, modalias)]
#
# Blacklist semantics (what modprobe does): a modprobe.d `blacklist` (the table's) only stops loads through an
# alias, i.e. coldplug; asking for the module by name still loads it. Module parameters: the table's options
# first, then the cmdline's, then load()'s own params: the kernel's parse_args() keeps the last value given.
#
# A load succeeds when finit_module(2) succeeds or fails with EEXIST (already loaded: kernel/module/main.c
# add_unformed_module()), or when the name is in the built-in list.
import os

from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc

_EEXIST = const(17)     # include/uapi/asm-generic/errno-base.h
_S_IFMT = const(0o170000)
_S_IFDIR = const(0o040000)
_S_IFREG = const(0o100000)
_S_IFLNK = const(0o120000)

_FORMAT = "mpinit-modules 1"
_LOADING = const(1)     # state of a module whose dependencies are being loaded (softdep cycles stop here)
_DONE = const(2)


# ---- alias glob matching: fnmatch(3) with flags 0, as kmod calls it (libkmod-index.c) -----------------------
# '*' matches any string ('/' and leading '.' included: no FNM_PATHNAME/FNM_PERIOD), '?' one character,
# '[...]' a set with ranges, negated by '!' or '^', ']' literal when first; '\\' quotes the next character.
# Honest subset: POSIX classes like [:alpha:] are not supported (kernel aliases never use them, see
# scripts/mod/file2alias.c, which only emits '*', '?' and [0-9A-F] style ranges).

def _bracket(pat, p, ch):
    """Match ch against the bracket expression at pat[p] == '['. Returns (matched, index after ']'), or
    (None, p) when there is no closing ']' (then '[' is an ordinary character)."""
    n = len(pat)
    j = p + 1
    negate = False
    if j < n and (pat[j] == "!" or pat[j] == "^"):
        negate = True
        j += 1
    matched = False
    first = True
    while j < n:
        c = pat[j]
        if c == "]" and not first:
            return (matched != negate, j + 1)
        first = False
        if c == "\\" and j + 1 < n:
            j += 1
            c = pat[j]
        if j + 2 < n and pat[j + 1] == "-" and pat[j + 2] != "]":
            hi = pat[j + 2]
            if hi == "\\" and j + 3 < n:
                j += 1
                hi = pat[j + 2]
            if c <= ch <= hi:
                matched = True
            j += 3
            continue
        if c == ch:
            matched = True
        j += 1
    return (None, p)


def glob_match(pat, s):
    """fnmatch(pat, s, 0) == 0: iterative, backtracking only to the last '*' (linear in practice)."""
    p = 0
    i = 0
    np = len(pat)
    ns = len(s)
    star_p = -1
    star_i = 0
    while i < ns:
        if p < np:
            c = pat[p]
            if c == "*":
                star_p = p
                star_i = i
                p += 1
                continue
            if c == "?":
                p += 1
                i += 1
                continue
            if c == "[":
                ok, nxt = _bracket(pat, p, s[i])
                if ok is not None:
                    if ok:
                        p = nxt
                        i += 1
                        continue
                    c = None  # no match here: backtrack below
            elif c == "\\" and p + 1 < np:
                p += 1
                c = pat[p]
            if c is not None and c == s[i]:
                p += 1
                i += 1
                continue
        if star_p < 0:
            return False
        star_i += 1
        i = star_i
        p = star_p + 1
    while p < np and pat[p] == "*":
        p += 1
    return p == np


def normalize(name):
    """Module names: '-' and '_' are the same (kmod modname_normalize)."""
    return name.replace("-", "_")


def normalize_alias(alias):
    """'-' to '_' outside [...], as kmod's alias_normalize() (libkmod-util.c) does before matching."""
    if "-" not in alias:
        return alias
    out = []
    in_bracket = False
    for c in alias:
        if in_bracket:
            if c == "]":
                in_bracket = False
        elif c == "[":
            in_bracket = True
        elif c == "-":
            c = "_"
        out.append(c)
    return "".join(out)


# ---- /sys/devices walk --------------------------------------------------------------------------------------

def _entries(path):
    """(name, S_IFMT type) of a directory's entries without following symlinks: /sys/devices is a plain tree, but
    it holds links (subsystem, driver, firmware_node, ...) that would lead into loops."""
    try:
        ilist = os.ilistdir  # MicroPython: d_type from readdir(3), symlinks as S_IFLNK (extmod/vfs_posix.c)
    except AttributeError:
        ilist = None
    out = []
    try:
        if ilist is not None:
            for e in ilist(path):
                t = e[1]
                if not t:  # DT_UNKNOWN: ask lstat
                    try:
                        t = sc.lstat(path + "/" + e[0])[0]
                    except OSError:
                        continue
                out.append((e[0], t & _S_IFMT))
        else:
            for e in os.scandir(path):
                if e.is_symlink():
                    t = _S_IFLNK
                elif e.is_dir(follow_symlinks=False):
                    t = _S_IFDIR
                else:
                    t = _S_IFREG
                out.append((e.name, t))
    except OSError:
        pass  # a device that went away while we walked
    return out


def device_modaliases(sysfs="/sys"):
    """Every device's modalias as [(device path, modalias)], read from the flat device lists rather than the deep
    /sys/devices tree: /sys/bus/*/devices/* and /sys/class/*/* (what `udevadm trigger --type=devices`
    enumerates; the modalias attribute comes from the bus or class: drivers/base/bus.c, class.c), plus the cpu
    subsystem's root device, which carries the CPU-feature modalias and is on neither list (drivers/base/cpu.c).
    That is a few hundred entries where /sys/devices holds thousands (power/, queue/, holders/, ...); the
    difference is what coldplug costs under a slow CPU. None when there is no /sys/bus (a minimal fake /sys):
    the caller walks /sys/devices instead."""
    buses = fsutil.listdir(sysfs + "/bus")
    if not buses:
        return None
    dirs = [sysfs + "/bus/" + b + "/devices" for b in buses]
    dirs += [sysfs + "/class/" + c for c in fsutil.listdir(sysfs + "/class")]
    found = []
    for d in dirs:
        for name in fsutil.listdir(d):
            _read_modalias(d + "/" + name, found)
    _read_modalias(sysfs + "/devices/system/cpu", found)
    return found


def _read_modalias(dev, found):
    try:
        with open(dev + "/modalias") as f:
            text = f.read().strip()
    except OSError:
        return
    if text:
        found.append((dev, text))


def modaliases(root="/sys/devices"):
    """Every device's modalias under root, as [(device dir, modalias)], in directory order."""
    found = []
    stack = [root]
    while stack:
        d = stack.pop()
        subdirs = []
        for name, t in _entries(d):
            if t == _S_IFDIR:
                subdirs.append(d + "/" + name)
            elif t == _S_IFREG and name == "modalias":
                _read_modalias(d, found)
        subdirs.sort(reverse=True)
        stack.extend(subdirs)
    return found


# ---- the table and the loader -------------------------------------------------------------------------------

class Modules:
    def __init__(self, table_path=contract.MODULES_TABLE_PATH):
        self.table_path = table_path
        self.loaded = []
        self.failed = []
        self.params = {}
        self._blocked = set()
        self._state = {}
        self._seen = set()
        self._mods = None
        self.kver = ""

    def _table(self):
        if self._mods is not None:
            return
        import json

        try:
            with open(self.table_path) as f:
                t = json.loads(f.read())
        except OSError as e:
            # No table: an image without modules (a kernel with everything built in). Every load then fails with
            # a message, and coldplug finds nothing to load.
            log.info("no module table at %s (%s)" % (self.table_path, e))
            t = {"format": _FORMAT, "modules": [], "aliases": {}}
        except ValueError as e:
            raise ValueError("%s: not a module table: %s" % (self.table_path, e))
        if not isinstance(t, dict) or t.get("format") != _FORMAT:
            raise ValueError("%s: not a module table of format %r" % (self.table_path, _FORMAT))
        mods = {}
        for row in t.get("modules", ()):
            mods[row[0]] = row
        self._mods = mods
        self.kver = t.get("kver", "")
        self._aliases = t.get("aliases", {})
        lens = {}
        for key in self._aliases:
            lens[len(key)] = True
        self._lens = sorted(lens)
        self._options = t.get("options", {})
        self._alias_blacklist = set(t.get("blacklist", ()))
        self._builtin = set(t.get("builtin", ()))

    def available(self):
        self._table()
        return sorted(self._mods)

    def blacklist(self, names):
        for n in names:
            self._blocked.add(normalize(n))

    def _params_for(self, name, extra):
        parts = []
        for p in (self._options.get(name), self.params.get(name), extra):
            if p:
                parts.append(p)
        return " ".join(parts)

    def _fail(self, name, why):
        self._state[name] = why
        self.failed.append((name, why))
        log.warning("module %s: %s" % (name, why))
        return False

    def load(self, name, params=None):
        self._table()
        return self._load_named(name, params)

    def _load_named(self, name, extra=None):
        """A name asked for by a person (cmdline modules=, config, the REPL): a module of the table, else an alias
        (e.g. fs-vfat, crc32c) loads every module it matches, as modprobe does; a modprobe.d blacklist does not
        apply to such a request (modprobe applies it only with -b, which udev passes and the kernel does not)."""
        n = normalize(name)
        if n in self._mods or n in self._builtin or n in self._blocked:
            return self._load(n, extra)
        names = self._match(name, False)
        if not names:
            return self._load(n, extra)  # fails, naming the table
        ok = True
        for m in names:
            log.debug("%s is an alias of %s" % (name, m))
            if not self._load(m, extra):
                ok = False
        return ok

    def _load(self, name, extra=None):
        st = self._state.get(name)
        if st is not None:
            return st == _DONE or st == _LOADING  # done, or a softdep cycle back to a module being loaded
        if name in self._blocked:
            return self._fail(name, "blacklisted (module_blacklist=)")
        if name in self._builtin:
            self._state[name] = _DONE
            return True
        row = self._mods.get(name)
        if row is None:
            return self._fail(name, "not in the image's module table %s" % self.table_path)
        self._state[name] = _LOADING
        for pre in row[3]:
            if normalize(pre) not in self._blocked:
                self._load(pre)
        for dep in row[2]:
            if not self._load(dep):
                return self._fail(name, "dependency %s not loaded" % dep)
        params = self._params_for(name, extra)
        try:
            sc.load_module(row[1], params)
        except OSError as e:
            err = e.args[0] if e.args else 0
            if err != _EEXIST:
                try:
                    what = sc.strerror(err)
                except Exception:
                    what = "errno %s" % err
                return self._fail(name, "%s: %s" % (row[1], what))
        self._state[name] = _DONE
        self.loaded.append(name)
        log.debug("loaded %s%s" % (name, (" " + params) if params else ""))
        for post in row[4]:
            if normalize(post) not in self._blocked:
                self._load(post)
        return True

    def load_many(self, names, params_by_module=None):
        self._table()
        if params_by_module:
            for k in params_by_module:
                self.params[normalize(k)] = params_by_module[k]
        start = len(self.loaded)
        for n in names:
            self._load_named(n)
        return self.loaded[start:]

    def match(self, modalias):
        self._table()
        return self._match(modalias, True)

    def _match(self, modalias, use_blacklist):
        s = normalize_alias(modalias)
        out = []
        idx = self._aliases
        n = len(s)
        for ln in self._lens:
            if ln > n:
                break
            cands = idx.get(s[:ln])
            if not cands:
                continue
            for pat, name in cands:
                if name in out or name in self._blocked or (use_blacklist and name in self._alias_blacklist):
                    continue
                if glob_match(pat, s):
                    out.append(name)
        return out

    def coldplug(self, sys_devices="/sys/devices"):
        """Load the modules matching every device's modalias; passes repeat while a pass loaded something,
        because a driver that binds creates its children at once (virtio_pci's probe registers the virtio
        devices that virtio_blk serves), so a storage chain is complete when this returns."""
        self._table()
        start = len(self.loaded)
        if not self._aliases:
            return []
        sysfs = sys_devices[:-len("/devices")] if sys_devices.endswith("/devices") else None
        while True:
            before = len(self.loaded)
            found = device_modaliases(sysfs) if sysfs is not None else None
            if found is None:
                found = modaliases(sys_devices)
            for dev, alias in found:
                if alias in self._seen:
                    continue
                self._seen.add(alias)
                for name in self.match(alias):
                    if self._state.get(name) is None:
                        log.debug("coldplug: %s (%s) -> %s" % (alias, dev, name))
                    self._load(name)
            if len(self.loaded) == before:
                return self.loaded[start:]
