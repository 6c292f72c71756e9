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
#   m = Modules(table_path=contract.MODULES_TABLE_PATH, timeline=None)   nothing read yet; timeline: a list that
#                                        gets one {"module", "start_ms", "duration_ms", "result"} per
#                                        finit_module(2) call (the boot's timeline, main.Context.timeline)
#   m.blacklist(names)                   module_blacklist= / rd.driver.blacklist= / config "blacklist": these
#                                        modules are never loaded, not even as a dependency (the kernel's
#                                        module_blacklist= refuses them too); a module that hard-depends on one
#                                        fails, a softdep on one is skipped
#   m.load(name, params=None) -> bool    load with dependencies; True when loaded, already loaded or built in;
#                                        a name not in the table is tried as an alias (all matches are loaded)
#   m.load_shipped(names) -> [names loaded now]
#                                        the ones of names that the image ships and that are not loaded yet (a stage's
#                                        optional helpers: md personalities, dm targets, LUKS ciphers); others are
#                                        skipped quietly (built in, or not packed)
#   m.load_many(names, params_by_module=None) -> [names loaded]
#                                        params_by_module: {name: "p=v p2=v2"} from the cmdline's mod.param=v;
#                                        kept for later loads (dependencies, coldplug) too
#   m.coldplug(sys_devices="/sys/devices") -> [names loaded]
#                                        the first call reads every device's modalias (device_modaliases(), or the
#                                        walk of /sys/devices without /sys/bus) and loads the matching shipped
#                                        modules, the storage chain first (_rank()), slow legacy controllers held
#                                        back (m.defer, DEFERRED below: load_deferred() loads them); later calls,
#                                        and the rest of the first, load what the kernel's uevents announce
#                                        (uevent.Listener: a driver's probe adds children, a disk appears late),
#                                        so nothing is
#                                        re-read from sysfs. Without a uevent socket (or after the kernel dropped
#                                        events) every call re-reads sysfs, pass after pass while a pass loaded
#                                        something (a modalias already seen is not matched again).
#                                        Listening, drivers loaded this way get async_probe=1 (_async_ok()):
#                                        finit_module(2) returns without waiting for their probes
#                                        (kernel/module/main.c do_init_module() skips async_synchronize_full();
#                                        drivers/base/dd.c driver_allows_async_probing()), which then run while
#                                        we go on; the devices they bring are announced by uevents. Not for
#                                        drivers that name disks in probe order (vda/vdb, nvme0/nvme1, sda/sdb
#                                        behind AHCI/SAS): probed asynchronously, two of them could swap names.
#   m.defer                              True (the default; config "defer_slow", rd.mpinit.defer=): the first
#                                        coldplug pass does not load the drivers of slow legacy controllers
#                                        (_slow(): PCI IDE) but keeps them in m.deferred; see DEFERRED below
#   m.deferred                           [names] matched by coldplug and not loaded yet (empty once loaded)
#   m.load_deferred() -> [names loaded]  load them now (async_probe=1 as usual) and stop deferring: wait_event()
#                                        (the devices stage's wait), the devices stage when a live boot names no
#                                        device, the persistence search and a separate /usr not found on the
#                                        disks present, and the rescue REPL call it
#   m.start(names)                       queue modules (names or aliases, e.g. fs-squashfs) that a later stage
#                                        will need; wait_event() loads them while the boot waits for a device, so
#                                        their loading overlaps the disk's probe. Names the image lacks are
#                                        dropped quietly (a built-in driver, or a stage that will not need them)
#   m.wait_event(timeout_ms) -> bool     load the deferred controllers' drivers, then the queued modules (stopping
#                                        as soon as a uevent is ready), then sleep until a uevent is ready (True)
#                                        or the timeout passed: the devices stage's wait between scans
#   m.match(modalias) -> [names]         the shipped modules whose aliases match (blacklisted ones left out)
#   m.loaded                             names loaded by us, in order (built-in ones not included)
#   m.failed                             [(name, error str)], in order
#   m.absent                             [name]: coldplug loads whose init said ENODEV ("no such device": e.g.
#                                        aesni_intel on a CPU without AES-NI, arch/x86/crypto/aesni-intel_glue.c
#                                        aesni_init() -> -ENODEV); a device's modalias matched but the module has
#                                        nothing to drive, so it is not a failure (modprobe -b from udev ignores it
#                                        the same way). Asked for by name, ENODEV is a failure.
#   m.available()                        names in the table (for the REPL's lsmod/modprobe)
#   m.kver                               the table's kernel release (after the first call that reads the table)
#
#   of(ctx) -> Modules                   the boot's loader, ctx.modules, made on first use (a stage or the rescue
#                                        REPL may need one before or without the modules stage)
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
# DEFERRED: the legacy IDE controller of QEMU's and many real PCs' chipsets (PCI class 01 subclass 01: ata_piix,
# pata_*) costs about 280 ms under TCG before anything else progresses: libata + ata_piix load, then its port
# probe (async, but the only CPU is busy with it: measured 170 ms of IDE bus resets during which virtio_pci's own
# load made no progress). Most media and roots are on virtio, NVMe, AHCI or USB, so the first coldplug pass keeps
# the IDE drivers back: a boot whose device is present after the fast chain never pays for them. The moment anyone
# has to wait for a disk (wait_event(): the devices stage's wait, before the queued start() modules; the persistence
# search and a separate /usr not found on the disks present; a live boot that names no device and so searches them
# all; the rescue REPL, whose blkid() shows every disk), they load first, so a CD-ROM on IDE (QEMU's -cdrom on the
# pc machine), an md member, an LVM PV or a /usr disk behind IDE appears at the first wait without a poll interval
# lost. A later coldplug() alone does not load them: the network stage's carrier wait runs it for a late NIC. A side
# effect worth having: disks behind IDE always get their sdX names after those of the controllers probed in the
# first pass (AHCI, SAS: before, ata_piix's asynchronous probe raced AHCI's for sda). When nobody waited, the
# deferred drivers are never loaded in the initramfs: the real root's udev coldplugs them ("udevadm trigger"), as
# it does every device the initramfs did not need. rd.mpinit.defer=0 (or config "defer_slow": false) loads them in
# the first pass like any other driver.
#
# A load succeeds when finit_module(2) succeeds or fails with EEXIST (already loaded: kernel/module/main.c
# add_unformed_module()), or when the name is in the built-in list.
import os

from micropython import const

from . import contract, fsutil, kernlog, log
from . import syscalls as sc

_EEXIST = const(17)     # include/uapi/asm-generic/errno-base.h
_ENODEV = const(19)
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


# Subsystems of kernel infrastructure whose devices never have a modalias attribute, and whose device count grows
# with the machine (a memory block per 128 MiB, a node, a cpu per CPU): drivers/base/memory.c, node.c, cpu.c (the
# CPU modalias sits on the subsystem's root, read separately), container.c, kernel/time/clocksource.c,
# clockevents.c, kernel/events/core.c (event_source), kernel/workqueue.c, mm/memory-tiers.c. Measured on QEMU's
# pc machine: 24 of the 97 bus devices, none with a modalias.
_NO_MODALIAS = ("clockevents", "clocksource", "container", "cpu", "event_source", "memory", "memory_tiering", "node",
                "workqueue")


def device_modaliases(sysfs="/sys", classes=None):
    """Every device's modalias as [(device path, modalias)], read from the flat device lists rather than the deep
    /sys/devices tree: /sys/bus/*/devices/* and /sys/class/*/* (what `udevadm trigger --type=devices`
    enumerates; the modalias attribute comes from the bus or class: drivers/base/bus.c, class.c), plus the cpu
    subsystem's root device, which carries the CPU-feature modalias and is on neither list (drivers/base/cpu.c).
    That is a few hundred entries where /sys/devices holds thousands (power/, queue/, holders/, ...); the
    difference is what coldplug costs under a slow CPU. None when there is no /sys/bus (a minimal fake /sys):
    the caller walks /sys/devices instead.

    classes: None looks at every class; else only the classes named (a set). Measured on QEMU's pc machine under
    TCG: /sys/class held 108 devices, 2 of them with a modalias (input's "input:...", drivers/input/input.c, and
    dmi's "dmi:...", drivers/firmware/dmi-id.c: a class device's modalias comes from its class's own uevent and
    starts with the class's name), and trying them all cost 18-23 ms of the 40-50 ms walk. coldplug passes the
    classes its table has aliases for (Modules._alias_classes()): none for the generic-live set."""
    buses = fsutil.listdir(sysfs + "/bus")
    if not buses:
        return None
    dirs = [sysfs + "/bus/" + b + "/devices" for b in buses if b not in _NO_MODALIAS]
    dirs += [sysfs + "/class/" + c for c in fsutil.listdir(sysfs + "/class") if classes is None or c in classes]
    found = []
    for d in dirs:
        for name in fsutil.listdir(d):
            if name.startswith("device:") and d.endswith("/acpi/devices"):
                continue  # an ACPI node without IDs: no modalias (drivers/acpi/device_sysfs.c shows it for pnp.ids)
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

def of(ctx):
    """ctx.modules, made on first use."""
    m = getattr(ctx, "modules", None)
    if m is None:
        m = ctx.modules = Modules(timeline=getattr(ctx, "timeline", None))
    return m


def _rank(alias):
    """Coldplug order: the storage chain first, so its probes (the disk's, mostly waiting on I/O) overlap the
    rest of the loads: PCI mass-storage controllers (class 01, include/linux/pci_ids.h PCI_BASE_CLASS_STORAGE), the
    virtio bus (virtio_pci's children), SCSI, USB, other PCI devices, then the rest (CPU features, ACPI, platform
    devices)."""
    if alias.startswith("pci:"):
        return 0 if "bc01sc" in alias else 2
    if alias.startswith("virtio:") or alias.startswith("scsi:"):
        return 0
    if alias.startswith("usb:"):
        return 1
    return 3


def _slow(alias):
    """Is the device a slow legacy controller whose driver waits until a device is waited for (DEFERRED above)? PCI
    IDE: base class 01 (PCI_BASE_CLASS_STORAGE) subclass 01 (PCI_CLASS_STORAGE_IDE), include/linux/pci_ids.h; the
    modalias spells them "bc01sc01" (drivers/pci/pci-sysfs.c modalias_show())."""
    return alias.startswith("pci:") and "bc01sc01" in alias


def _async_ok(alias):
    """May the driver matched by this modalias probe asynchronously? Not when the order of its probes names disks:
    the virtio transport (PCI vendor 0x1af4, virtio_pci numbers virtioN in probe order) and virtio disks and SCSI
    (virtio_blk's vdX come from an index taken in its probe, drivers/block/virtio_blk.c), PCI mass storage (class
    01) other than IDE (subclass 01: ata_piix and friends, one legacy controller per machine), SCSI devices, MMC
    and NVMe. Everything else (IDE, USB host controllers, CPU features, platform devices) may: its devices are
    found by what they are, not by their number."""
    if alias.startswith("virtio:") or alias.startswith("scsi:") or alias.startswith("mmc:") \
            or alias.startswith("nvme"):
        return False
    if alias.startswith("pci:"):
        if alias.startswith("pci:v00001AF4"):
            return False
        i = alias.find("bc01sc")
        if i >= 0 and alias[i + 6:i + 8] != "01":
            return False
    return True


class Modules:
    def __init__(self, table_path=contract.MODULES_TABLE_PATH, timeline=None):
        self.table_path = table_path
        self.timeline = timeline if timeline is not None else []
        self.loaded = []
        self.failed = []
        self.absent = []
        self._events = None     # uevent.Listener once coldplug() has run (None: not tried, False: unavailable)
        self._queue = []        # start(): names to load while waiting
        self._scanned = False
        self.defer = True           # DEFERRED above; main.modules_stage sets it from config and rd.mpinit.defer=
        self.deferred = []          # names held back by the first pass
        self._deferred_alias = {}   # name -> the modalias that matched it (for _async_ok())
        self._class_keys = None     # _alias_classes(): (alias words, loose keys) of the table
        self.kernel_said = {}       # module -> the kernel's last log lines from its failed finit_module(2)
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

    def _load(self, name, extra=None, coldplug=False, async_probe=False):
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
        if async_probe and self._events and "async_probe" not in params:
            params = (params + " async_probe=1") if params else "async_probe=1"
        pos = kernlog.step()
        start = sc.uptime_ms()
        result = "loaded"
        try:
            sc.load_module(row[1], params)
        except OSError as e:
            err = e.args[0] if e.args else 0
            if err == _EEXIST:
                result = "already loaded"
            else:
                try:
                    what = sc.strerror(err)
                except Exception:
                    what = "errno %s" % err
                if err == _ENODEV and coldplug:
                    self._record(name, start, "no device (%s)" % what)
                    self._state[name] = "absent"
                    self.absent.append(name)
                    log.debug("module %s: %s (nothing for it to drive)" % (name, what))
                    return False
                self._record(name, start, "failed: %s" % what)
                said = kernlog.after(pos)
                if said:  # e.g. "virtio_blk: disagrees about version of symbol module_layout"
                    self.kernel_said[name] = said
                return self._fail(name, "%s: %s" % (row[1], what))
        self._record(name, start, result)
        self._state[name] = _DONE
        self.loaded.append(name)
        log.debug("loaded %s%s" % (name, (" " + params) if params else ""))
        for post in row[4]:
            if normalize(post) not in self._blocked:
                self._load(post)
        return True

    def _record(self, name, start, result):
        self.timeline.append({"module": name, "start_ms": start, "duration_ms": sc.uptime_ms() - start,
                              "result": result})

    def load_shipped(self, names):
        self._table()
        start = len(self.loaded)
        for n in names:
            if n in self._mods and self._state.get(n) is None:
                self._load(n)
        return self.loaded[start:]

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
        """Load the modules matching the devices' modaliases (see the interface above). Returns the names loaded
        by this call."""
        self._table()
        start = len(self.loaded)
        if not self._aliases:
            return []
        if self._events is None:
            from . import uevent

            ev = uevent.Listener()
            # Opened before the first scan: a device added between the scan and the first read is in the queue.
            self._events = ev if ev.open() else False
        if not self._events:
            while self._scan(sys_devices):  # passes while drivers bring new devices
                pass
            return self.loaded[start:]
        if not self._scanned or self._events.overflow:
            self._events.overflow = False
            self._scanned = True
            self._scan(sys_devices)
        while True:
            events = self._events.read()
            if not events:
                break
            for e in events:
                alias = e.get("MODALIAS")
                if alias and e.get("ACTION") == "add":
                    self._plug("/sys" + e.get("DEVPATH", ""), alias)
            if self._events.overflow:
                self._events.overflow = False
                self._scan(sys_devices)
        return self.loaded[start:]

    def announced(self):
        """Block devices announced by the uevents read so far: name -> the uevent's fields (uevent.Listener
        blocks), so blockdev.scan() need not read their sysfs uevent files; {} without a listener."""
        return self._events.blocks if self._events else {}

    def start(self, names):
        self._table()
        for name in names:
            n = normalize(name)
            if n in self._mods or n in self._builtin or self._match(name, False):
                self._queue.append(name)

    def load_deferred(self):
        """Load the drivers the first coldplug pass held back (DEFERRED above) and stop deferring. Returns the names
        loaded now ([] when nothing was deferred or this already ran)."""
        self.defer = False
        names = self.deferred
        if not names:
            return []
        self.deferred = []
        log.info("modules: loading the deferred %s" % ", ".join(names))
        self._table()
        start = len(self.loaded)
        for name in names:
            self._load(name, coldplug=True, async_probe=_async_ok(self._deferred_alias.get(name, "")))
        return self.loaded[start:]

    def wait_event(self, timeout_ms):
        """Load the deferred drivers, then what start() queued (a ready uevent interrupts: True), then wait until a
        uevent is ready (True) or timeout_ms passed (False); a plain sleep without a listener."""
        t0 = sc.uptime_ms()
        self.load_deferred()
        while self._queue:
            if self._events and self._events.wait(0):
                return True
            self._load_named(self._queue.pop(0))
        timeout_ms = max(0, timeout_ms - (sc.uptime_ms() - t0))
        if self._events:
            return self._events.wait(timeout_ms)
        sc.sleep_ms(timeout_ms)
        return False

    def _scan(self, sys_devices):
        """One pass over every device's modalias, storage chain first; True when it loaded something."""
        before = len(self.loaded)
        sysfs = sys_devices[:-len("/devices")] if sys_devices.endswith("/devices") else None
        found = device_modaliases(sysfs, self._alias_classes(sysfs)) if sysfs is not None else None
        if found is None:
            found = modaliases(sys_devices)
        found = [(_rank(alias), i, dev, alias) for i, (dev, alias) in enumerate(found)]
        found.sort()
        for _, _, dev, alias in found:
            self._plug(dev, alias)
        return len(self.loaded) != before

    def _alias_classes(self, sysfs):
        """The /sys/class names worth reading modaliases in (device_modaliases()): those some alias of the table
        can match, i.e. the first word of an alias key ("input" of "input:b0003..."), or a class name starting
        with a key that has no ':' and patterns with a glob after it (one like "inp*" could match "input:...")."""
        if self._class_keys is None:  # from the table, once: a scan without uevents runs pass after pass
            words = set()
            loose = []
            for key in self._aliases:
                i = key.find(":")
                if i > 0:
                    words.add(key[:i])
                    continue
                for pat, _ in self._aliases[key]:
                    if pat != key:
                        loose.append(key)
                        break
            self._class_keys = (words, loose)
        words, loose = self._class_keys
        out = set()
        for c in fsutil.listdir(sysfs + "/class"):
            if c in words:
                out.add(c)
                continue
            for key in loose:
                if c.startswith(key):
                    out.add(c)
                    break
        return out

    def _plug(self, dev, alias):
        if alias in self._seen:
            return
        self._seen.add(alias)
        slow = self.defer and _slow(alias)
        for name in self.match(alias):
            if self._state.get(name) is None:
                if slow:
                    if name not in self.deferred:
                        log.debug("coldplug: %s (%s) -> %s, deferred until a device is waited for"
                                  % (alias, dev, name))
                        self.deferred.append(name)
                        self._deferred_alias[name] = alias
                    continue
                log.debug("coldplug: %s (%s) -> %s" % (alias, dev, name))
            self._load(name, coldplug=True, async_probe=_async_ok(alias))
