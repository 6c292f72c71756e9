# Capture the machine for a bug report: one small file with what the agent saw and used, which the host turns back
# into a fake machine (`mpinit replay`, `fake_machine.from_capture`, docs/fake-machine.md).
#
#   capture(ctx, to=None, err=None, reason="rescue")   the REPL's capture(): collect, then write to the filesystem
#                                      `to` names (LABEL=..., UUID=..., /dev/...), or print on the console ("console",
#                                      or no target at all); never raises, prints what it did and the size
#   at(ctx, point, err=None)           rd.mpinit.capture=<target>@<point>: the captures asked for at this point (a
#                                      stage name: before that stage; "failure": on any failure), each point once
#   collect(ctx, err=None, reason) -> dict       the capture itself (FORMAT below)
#   encode(doc) -> bytes / decode(data) -> dict  JSON text; decode checks the format and version (CaptureError)
#   frame_lines(data) -> [str]  / unframe(text) -> bytes   the console form (FRAMING below)
#   load(data) -> dict                           a capture file or a console log holding the framed form
#
# FORMAT: one JSON object (a typical machine: 20-200 KiB). "format": "mpinit-capture"; "version": the writer's
# format version; "compat": the oldest reader version that can read it (a newer writer that only adds keys keeps
# compat at 1, so older readers load it and ignore the new keys). What it holds, and nothing else:
#   reason, stage, uptime_ms      why and when it was taken ("rescue", "failure", "at <stage>")
#   kernel {release, version, machine}, cmdline (/proc/cmdline), config (/etc/mpinit/config.json text or null)
#   modules_table (the image's module table text: names, aliases, dependencies), hooks (hook file NAMES only)
#   modules {loaded: /proc/modules names, failed: [[name, why]]}, modaliases [[sysfs device dir, modalias]]
#   memory {MemTotal, MemAvailable} (kB), mounts (/proc/mounts lines), timeline, kmsg (the agent's own lines)
#   failure {stage, message, param, tried, seen} or null
#   used {medium, medium_mount, image, image_size, root, new_root, inits}: where the boot found its image and root
#         and which init candidates exist in the new root (paths and sizes; never contents)
#   devices [{name, dev [major, minor], size (bytes), lbs, removable, ro, partition (number or null), start
#         (sectors), parent, partname, holders, sysdir, driver, module, probed (the blkid keys found),
#         ranges [[offset, base64 | length of zeros]], truncated}]: ranges are exactly the bytes probe.py reads
#         (partition tables and superblocks, recorded by re-running the probes through a recording file), capped
#         per device; file contents are never read. Labels and UUIDs are kept: they are what a boot looks for.
#         (The FAT prober's label search reads root-directory entries up to the label one: names, sizes and dates
#         of files in a FAT root directory can be in a capture; blkid reads the same.)
#
# FRAMING (the console form; survives a serial log with \r\n, prompts and kernel lines interleaved):
#   ==== BEGIN MPINIT CAPTURE v1 ====
#   MPC 00001 <base64 of 45 bytes> <crc32 of those bytes, seeded with the line number, 8 hex>
#   ...
#   ==== END MPINIT CAPTURE lines=<n> bytes=<n> crc=<crc32 of all bytes> ====
# Lines are under 80 columns; anything before "MPC " or "====" on a line (a prompt, a timestamp) is ignored, as
# are other lines. The kernel's console log level is lowered to 1 while the frame prints, so kernel messages do
# not cut lines. A reader names every missing or corrupt line.
#
# Writing to a filesystem: the target is found with the agent's own probes (blockdev), must hold a writable
# filesystem, is mounted read-write (nosuid,nodev,noexec) at CAPTURE_MOUNT unless already mounted read-write,
# the file is written as a temporary name, synced, renamed to mpinit-capture-<n>.json (the first free n), synced,
# and the filesystem unmounted again. Nothing is written to any other device. Every failure is a message.
from micropython import const

from . import fsutil, log
from . import syscalls as sc

FORMAT = "mpinit-capture"
VERSION = const(1)            # what this writer writes and the newest this reader reads
FRAME_VERSION = const(1)
CAPTURE_MOUNT = "/run/mpinit/capture"
FILE_PREFIX = "mpinit-capture-"

RANGE_CAP = const(131072)     # non-zero bytes recorded per device (a GPT's 16 KiB of entries + every superblock)
TOTAL_CAP = const(262144)     # ... over all devices: base64 + JSON of them must fit the agent's 2 MiB heap
KMSG_MAX = const(2000)        # the agent's log lines kept (the newest)
_MERGE_GAP = const(64)        # reads closer than this are recorded as one range
_ZBLOCK = const(512)          # zero runs are recorded by length, in blocks of this size
_LINE_BYTES = const(45)       # 45 bytes = 60 base64 characters: a frame line stays under 80 columns

# Filesystems a capture may be written to (the kernel's read-write drivers the agent mounts elsewhere too).
WRITABLE = ("vfat", "exfat", "ext2", "ext3", "ext4", "btrfs", "xfs")
_BEGIN = "==== BEGIN MPINIT CAPTURE v"
_END = "==== END MPINIT CAPTURE"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


class CaptureError(Exception):
    """A capture that cannot be read (or written): the message says what and where."""


# ---- small helpers ---------------------------------------------------------------------------------------------

def _crc(data, seed=0):
    from .probe import _crc32_fn

    return _crc32_fn(data, seed) & 0xFFFFFFFF


def _b64(data):
    import binascii

    return binascii.b2a_base64(data).decode().rstrip("\n")


def _unb64(text, what):
    """Strict base64 (MicroPython's a2b_base64 skips bad characters; a garbled line must not pass)."""
    import binascii

    if not isinstance(text, str) or len(text) % 4:
        raise CaptureError("%s: not base64" % what)
    for ch in text:
        if ch not in _B64:
            raise CaptureError("%s: not base64 (character %r)" % (what, ch))
    i = text.find("=")
    if i >= 0 and (i < len(text) - 2 or text[i:] not in ("=", "==")):
        raise CaptureError("%s: not base64 (padding)" % what)
    try:
        return binascii.a2b_base64(text)
    except (ValueError, TypeError):
        raise CaptureError("%s: not base64" % what)


def _read(path, default=None):
    return fsutil.read_text(path, "" if default is None else default)


def _resolve(base, target):
    """A sysfs symlink's target made absolute: target relative to the directory base."""
    comps = [] if target.startswith("/") else [c for c in base.split("/") if c]
    for c in target.split("/"):
        if not c or c == ".":
            continue
        if c == "..":
            if comps:
                comps.pop()
        else:
            comps.append(c)
    return "/" + "/".join(comps)


def _link(path):
    """Where a sysfs symlink points (absolute), or None."""
    try:
        return _resolve(fsutil.dirname(path), sc.readlink(path))
    except OSError:
        return None


def _sysrel(path):
    return path[5:] if path and path.startswith("/sys/") else path


# ---- what the probes read ---------------------------------------------------------------------------------------

class _Recorder:
    """A file object for probe.py that remembers every (offset, length) read through it."""

    def __init__(self, f):
        self.f = f
        self.pos = 0
        self.reads = []

    def seek(self, off, whence=0):
        r = self.f.seek(off, whence)
        self.pos = self.f.tell() if r is None else r
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, buf):
        n = self.f.readinto(buf)
        if n:
            self.reads.append((self.pos, n))
            self.pos += n
        return n

    def close(self):
        pass


def merge(reads, gap=_MERGE_GAP):
    """Sorted, merged [(offset, length)]: overlapping reads and reads less than gap apart become one range."""
    out = []
    for off, n in sorted(reads):
        if out and off <= out[-1][0] + out[-1][1] + gap:
            end = max(out[-1][0] + out[-1][1], off + n)
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((off, n))
    return out


def probe_ranges(path, sector=512, table=False, budget=RANGE_CAP):
    """([[offset, base64]], truncated) of exactly what probe.probe() (and probe.partitions() for a disk with a
    table) read from the device at path, at most budget bytes."""
    from . import probe

    with open(path, "rb") as f:
        rec = _Recorder(f)
        try:
            probe.probe(rec, sector=sector)
            if table:
                probe.partitions(rec, sector=sector)
        except OSError:
            pass  # a read error mid-probe: what was read so far is what the boot saw too
        out = []
        total = 0
        truncated = False
        for off, n in merge(rec.reads):
            if total + n > budget:
                n = budget - total
                truncated = True
            if n <= 0:
                break
            f.seek(off)
            data = f.read(n)
            if data:
                total += _segments(out, off, data)
        return out, truncated, total


def _segments(out, off, data):
    """Append data at off to out as ranges, runs of all-zero 512-byte blocks as [offset, length] (most of what the
    probes read on an ordinary disk is zeros: unused superblock slots, the md areas at the end). Returns the number
    of bytes stored as base64."""
    n = len(data)
    stored = 0
    zero = bytes(_ZBLOCK)
    i = 0
    while i < n:
        j = i
        while j < n and data[j:j + _ZBLOCK] == zero[:min(_ZBLOCK, n - j)]:
            j += _ZBLOCK
        if j > i:
            j = min(j, n)
            out.append([off + i, j - i])
            i = j
            continue
        while j < n and data[j:j + _ZBLOCK] != zero[:min(_ZBLOCK, n - j)]:
            j += _ZBLOCK
        j = min(j, n)
        out.append([off + i, _b64(data[i:j])])
        stored += j - i
        i = j
    return stored


# ---- collecting -------------------------------------------------------------------------------------------------

def _device(d, budget):
    base = "/sys/class/block/" + d.name
    sysdir = _link(base)
    entry = {
        "name": d.name, "dev": [d.devno[0], d.devno[1]], "size": d.size, "lbs": d.sector,
        "removable": bool(d.removable), "ro": bool(d.ro), "partition": d.partn if d.is_partition else None,
        "start": None, "parent": d.parent, "partname": None, "holders": fsutil.listdir(base + "/holders"),
        "sysdir": _sysrel(sysdir), "driver": None, "module": None, "probed": dict(d.info), "ranges": [],
        "truncated": False,
    }
    if d.is_partition:
        try:
            entry["start"] = int(_read(base + "/start", "0"))
        except ValueError:
            pass
        for line in _read(base + "/uevent").split("\n"):
            if line.startswith("PARTNAME="):
                entry["partname"] = line[9:]
    elif sysdir:
        drv = _link(sysdir + "/device/driver")
        if drv:
            entry["driver"] = fsutil.basename(drv)
            mod = _link(drv + "/module")
            entry["module"] = fsutil.basename(mod) if mod else None
    used = 0
    if d.size and not d.name.startswith("loop"):
        # loop devices are the agent's own (the image); their bytes are an image's contents, never recorded.
        try:
            entry["ranges"], entry["truncated"], used = probe_ranges(
                d.path, d.sector, bool(d.info.get("PTTYPE")) and not d.is_partition, min(budget, RANGE_CAP))
        except OSError as e:
            entry["error"] = "cannot read %s: %s" % (d.path, e)
    return entry, used


def _modaliases():
    from . import kmod

    found = kmod.device_modaliases("/sys")
    if found is None:
        found = kmod.modaliases("/sys/devices")
    out = []
    seen = {}
    for path, alias in found:
        real = path
        if not path.startswith("/sys/devices"):
            real = _link(path) or path   # /sys/bus/*/devices/* and /sys/class/*/* are links into /sys/devices
        key = _sysrel(real)
        if key not in seen:
            seen[key] = True
            out.append([key, alias])
    return out


def _meminfo():
    out = {}
    for line in _read("/proc/meminfo").split("\n"):
        k = line.split(":")[0]
        if k in ("MemTotal", "MemAvailable"):
            try:
                out[k] = int(line.split()[1])
            except (IndexError, ValueError):
                pass
    return out


def agent_kmsg(path="/dev/kmsg"):
    """The agent's own lines ("mpinit: ...") from the kernel log, "[seconds] text" when timed, newest KMSG_MAX."""
    try:
        fd = sc.open(path, sc.O_RDONLY | sc.O_NONBLOCK | sc.O_CLOEXEC)
    except OSError:
        return []
    from . import kernlog

    out = []
    try:
        for rec in kernlog.records(fd):
            for line in rec.decode("utf-8", "replace").split("\n"):
                text = kmsg_text(line)
                if text is not None:
                    out.append(text)
                    if len(out) > KMSG_MAX:
                        out.pop(0)
    finally:
        sc.close(fd)
    return out


def kmsg_text(line):
    """One kernel log line ("prio,seq,usec,flags;text" from /dev/kmsg, or "<prio>text" as written) -> the agent's
    line with its time, or None for anybody else's line."""
    semi = line.find(";")
    stamp = ""
    if semi > 0 and line[0] in "0123456789":
        fields = line[:semi].split(",")
        text = line[semi + 1:]
        try:
            usec = int(fields[2])
            stamp = "[%5d.%06d] " % (usec // 1000000, usec % 1000000)
        except (IndexError, ValueError):
            pass
    elif line.startswith("<") and line.find(">") > 0:
        text = line[line.find(">") + 1:]
    else:
        text = line
    if not text.startswith("mpinit: "):
        return None
    return stamp + text


def _used(ctx):
    opts = getattr(ctx, "opts", None)
    medium = getattr(ctx, "medium_dev", None)
    root = getattr(ctx, "root_dev", None)
    new_root = getattr(ctx, "new_root", None)
    out = {"medium": medium.path if medium is not None else None, "medium_mount": getattr(ctx, "medium", None),
           "image": getattr(ctx, "image", None), "image_size": getattr(ctx, "image_size", 0) or 0,
           "root": root.path if root is not None else None, "new_root": new_root, "inits": []}
    mounted = False
    for line in _read("/proc/mounts").split("\n"):
        f = line.split(" ")
        if len(f) > 2 and f[1] == new_root:
            mounted = True
    if mounted:
        from . import handoff

        wanted = opts.init if opts is not None and opts.init else None
        for c in [wanted] if wanted else handoff.KERNEL_INITS:
            if handoff.check_executable(new_root, c) is None:
                out["inits"].append(c)
    return out


def collect(ctx, err=None, reason="rescue", devices=None):
    """The capture of this machine now (FORMAT at the top); devices: blockdev.scan() when the caller has none."""
    from . import blockdev, contract

    try:
        uname = sc.uname()
    except OSError:
        uname = ("", "", "", "", "")
    doc = {
        "format": FORMAT, "version": VERSION, "compat": 1, "reason": reason,
        "stage": getattr(ctx, "stage", None), "uptime_ms": sc.uptime_ms(),
        "kernel": {"release": uname[2], "version": uname[3], "machine": uname[4]},
        "cmdline": _read("/proc/cmdline"),
        "config": fsutil.read_text(contract.CONFIG_PATH, "") or None,
        "modules_table": fsutil.read_text(contract.MODULES_TABLE_PATH, "") or None,
        "hooks": [n for n in fsutil.listdir(contract.HOOKS_DIR) if n.endswith(".py")],
        "modules": {"loaded": [], "failed": []},
        "modaliases": _modaliases(),
        "memory": _meminfo(),
        "mounts": [line for line in _read("/proc/mounts").split("\n") if line],
        "timeline": list(getattr(ctx, "timeline", None) or []),
        "kmsg": agent_kmsg(),
        "failure": None,
        "used": _used(ctx),
        "devices": [],
    }
    for line in _read("/proc/modules").split("\n"):
        if line:
            doc["modules"]["loaded"].append(line.split(" ")[0])
    m = getattr(ctx, "modules", None)
    if m is not None:
        doc["modules"]["failed"] = [[n, why] for n, why in m.failed]
    if err is not None:
        doc["failure"] = {"stage": err.stage, "message": err.message, "param": err.param, "tried": list(err.tried),
                          "seen": list(err.seen)}
    budget = TOTAL_CAP
    for d in (blockdev.scan() if devices is None else devices):
        entry, used = _device(d, budget)
        budget -= used
        doc["devices"].append(entry)
    return doc


def encode(doc):
    import json

    return json.dumps(doc).encode()


# ---- reading (the host's replay; MicroPython-compatible so the format lives in one place) --------------------------

_TYPES = {
    "reason": (str,), "stage": (str, type(None)), "uptime_ms": (int,), "kernel": (dict,), "cmdline": (str,),
    "config": (str, type(None)), "modules_table": (str, type(None)), "hooks": (list,), "modules": (dict,),
    "modaliases": (list,), "memory": (dict,), "mounts": (list,), "timeline": (list,), "kmsg": (list,),
    "failure": (dict, type(None)), "used": (dict,), "devices": (list,),
}
_DEVICE_TYPES = {
    "name": (str,), "dev": (list,), "size": (int,), "lbs": (int,), "removable": (bool,), "ro": (bool,),
    "partition": (int, type(None)), "start": (int, type(None)), "parent": (str, type(None)),
    "partname": (str, type(None)), "holders": (list,), "sysdir": (str, type(None)), "driver": (str, type(None)),
    "module": (str, type(None)), "probed": (dict,), "ranges": (list,), "truncated": (bool,),
}


def _want(value, types, what):
    # bool is an int subclass: an int field must not take true/false
    if isinstance(value, bool) and bool not in types:
        raise CaptureError("%s: want %s, not %r" % (what, "/".join([t.__name__ for t in types]), value))
    for t in types:
        if isinstance(value, t):
            return value
    raise CaptureError("%s: want %s, not %r" % (what, "/".join([t.__name__ for t in types]), value))


def _strings(value, what):
    _want(value, (list,), what)
    for i in range(len(value)):
        _want(value[i], (str,), "%s[%d]" % (what, i))
    return value


def check(doc):
    """doc if it is a capture this reader can use; CaptureError naming the first bad field otherwise."""
    _want(doc, (dict,), "capture")
    if doc.get("format") != FORMAT:
        raise CaptureError("not an mpinit capture (format %r, want %r)" % (doc.get("format"), FORMAT))
    version = _want(doc.get("version"), (int,), "capture version")
    compat = doc.get("compat", version)
    _want(compat, (int,), "capture compat")
    if compat > VERSION:
        raise CaptureError("capture format version %d (readable from version %d on) is newer than this mpinit "
                           "reads (version %d): update mpinit" % (version, compat, VERSION))
    if version < 1:
        raise CaptureError("capture format version %d: no mpinit wrote that" % version)
    for key in _TYPES:
        if key not in doc:
            raise CaptureError("capture: %r missing" % key)
        _want(doc[key], _TYPES[key], "capture %r" % key)
    for key in ("hooks", "mounts", "kmsg"):
        _strings(doc[key], key)
    for i in range(len(doc["modaliases"])):
        pair = _want(doc["modaliases"][i], (list,), "modaliases[%d]" % i)
        if len(pair) != 2:
            raise CaptureError("modaliases[%d]: want a device and its modalias" % i)
        _strings(pair, "modaliases[%d]" % i)
    mods = doc["modules"]
    _strings(_want(mods.get("loaded", []), (list,), "modules.loaded"), "modules.loaded")
    for i, f in enumerate(_want(mods.get("failed", []), (list,), "modules.failed")):
        _want(f, (list,), "modules.failed[%d]" % i)
        if len(f) != 2:
            raise CaptureError("modules.failed[%d]: want [name, why]" % i)
        _strings(f, "modules.failed[%d]" % i)
    for k in doc["memory"]:
        _want(doc["memory"][k], (int,), "memory.%s" % k)
    for k in doc["kernel"]:
        _want(doc["kernel"][k], (str,), "kernel.%s" % k)
    for i, t in enumerate(doc["timeline"]):
        _want(t, (dict,), "timeline[%d]" % i)
        if "module" in t:  # a module load's entry (kmod.Modules timeline): {module, start_ms, duration_ms, result}
            _want(t.get("module"), (str,), "timeline[%d].module" % i)
        else:
            _want(t.get("stage"), (str,), "timeline[%d].stage" % i)
        _want(t.get("result"), (str,), "timeline[%d].result" % i)
    fl = doc["failure"]
    if fl is not None:
        _want(fl.get("stage"), (str,), "failure.stage")
        _want(fl.get("message"), (str,), "failure.message")
        _want(fl.get("param"), (str, type(None)), "failure.param")
        _strings(fl.get("tried", []), "failure.tried")
        _strings(fl.get("seen", []), "failure.seen")
    used = doc["used"]
    for k in ("medium", "medium_mount", "image", "root", "new_root"):
        _want(used.get(k), (str, type(None)), "used.%s" % k)
    _want(used.get("image_size", 0), (int,), "used.image_size")
    _strings(used.get("inits", []), "used.inits")
    names = {}
    for i, d in enumerate(doc["devices"]):
        what = "devices[%d]" % i
        _want(d, (dict,), what)
        for key in _DEVICE_TYPES:
            if key not in d:
                raise CaptureError("%s: %r missing" % (what, key))
            _want(d[key], _DEVICE_TYPES[key], "%s.%s" % (what, key))
        name = d["name"]
        if not name or "/" in name or name in (".", "..") or name in names:
            raise CaptureError("%s: bad or repeated device name %r" % (what, name))
        names[name] = True
        if len(d["dev"]) != 2 or not all([isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 20
                                          for x in d["dev"]]):
            raise CaptureError("%s.dev: want two numbers, major and minor, not %r" % (what, d["dev"]))
        if d["size"] < 0 or d["lbs"] < 512 or d["lbs"] & (d["lbs"] - 1):
            raise CaptureError("%s: size %d / logical block size %d" % (what, d["size"], d["lbs"]))
        _strings(d["holders"], what + ".holders")
        for k in d["probed"]:
            _want(d["probed"][k], (str, int), "%s.probed.%s" % (what, k))
        for j, r in enumerate(d["ranges"]):
            rw = "%s.ranges[%d]" % (what, j)
            _want(r, (list,), rw)
            if len(r) != 2:
                raise CaptureError("%s: want [offset, base64]" % rw)
            off = _want(r[0], (int,), rw + " offset")
            if off < 0:
                raise CaptureError("%s: negative offset" % rw)
            if isinstance(r[1], int) and not isinstance(r[1], bool):
                if r[1] < 0:
                    raise CaptureError("%s: negative length" % rw)
            else:
                _want(r[1], (str,), rw + " bytes")
    return doc


def decode(data):
    """A capture file's bytes -> the checked dict (CaptureError for anything else)."""
    import json

    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeError:
            raise CaptureError("capture: not UTF-8 text")
    try:
        doc = json.loads(data)
    except (ValueError, RuntimeError) as e:   # JSONDecodeError; RecursionError (a RuntimeError) on deep nesting
        raise CaptureError("capture: not JSON (%s)" % e)
    return check(doc)


def range_bytes(rng, what="range"):
    """The bytes of one checked range: base64 text, or a length of zeros."""
    if isinstance(rng[1], int):
        return bytes(rng[1])
    return _unb64(rng[1], what)


# ---- the console form ---------------------------------------------------------------------------------------------

def frame_lines(data):
    """The framed, checksummed text lines of data (FRAMING at the top)."""
    lines = ["%s%d ====" % (_BEGIN, FRAME_VERSION)]
    n = len(data)
    count = (n + _LINE_BYTES - 1) // _LINE_BYTES
    total = 0
    mv = memoryview(data)
    for i in range(count):
        chunk = bytes(mv[i * _LINE_BYTES:(i + 1) * _LINE_BYTES])
        total = _crc(chunk, total)
        lines.append("MPC %05d %s %08x" % (i + 1, _b64(chunk), _crc(chunk, i + 1)))
    lines.append("%s lines=%d bytes=%d crc=%08x ====" % (_END, count, n, total))
    return lines


def _ranges_text(nums):
    out = []
    for n in nums:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join([("%d" % a) if a == b else ("%d-%d" % (a, b)) for a, b in out])


def _field(words, key):
    for w in words:
        if w.startswith(key + "="):
            v = w[len(key) + 1:]
            return v
    return None


def unframe(text, which=-1):
    """The bytes of a framed capture found in text (a console/serial log: str or bytes). which: the index among the
    complete captures in the log (-1: the last). CaptureError names what is missing or corrupt."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    blocks = []
    cur = None
    for raw in text.replace("\r", "\n").split("\n"):
        b = raw.find(_BEGIN)
        if b >= 0:
            ver = raw[b + len(_BEGIN):].split(" ")[0]
            cur = {"version": ver, "lines": {}, "bad": {}, "end": None}
            blocks.append(cur)
            continue
        if cur is None:
            continue
        e = raw.find(_END)
        if e >= 0:
            cur["end"] = raw[e + len(_END):].split()
            cur = None
            continue
        m = raw.find("MPC ")
        if m < 0:
            continue
        words = raw[m:].split()
        if len(words) < 4 or not words[1].isdigit():
            continue
        seq = int(words[1])
        try:
            chunk = _unb64(words[2], "line %d" % seq)
            if len(words[3]) != 8 or int(words[3], 16) != _crc(chunk, seq):
                raise CaptureError("checksum")
        except (CaptureError, ValueError):
            if seq not in cur["lines"]:
                cur["bad"][seq] = True
            continue
        cur["lines"][seq] = chunk
        cur["bad"].pop(seq, None)
    if not blocks:
        raise CaptureError("no framed capture (a '%s...' line) in the text" % _BEGIN)
    done = [b for b in blocks if b["end"] is not None]
    if not done:
        b = blocks[-1]
        got = sorted(b["lines"])
        raise CaptureError("the framed capture has no END line: the log is cut short after line %d "
                           "(%d lines read)" % (got[-1] if got else 0, len(got)))
    try:
        b = done[which]
    except IndexError:
        raise CaptureError("capture %d asked for, the log holds %d complete ones" % (which, len(done)))
    if b["version"] != "%d" % FRAME_VERSION:
        raise CaptureError("framed capture v%s: this mpinit reads v%d frames" % (b["version"], FRAME_VERSION))
    try:
        count = int(_field(b["end"], "lines"))
        size = int(_field(b["end"], "bytes"))
        crc = int(_field(b["end"], "crc"), 16)
    except (TypeError, ValueError):
        raise CaptureError("framed capture: END line garbled: %s" % " ".join(b["end"]))
    bad = sorted([n for n in b["bad"] if 1 <= n <= count])
    missing = [n for n in range(1, count + 1) if n not in b["lines"] and n not in b["bad"]]
    if bad or missing:
        parts = []
        if bad:
            parts.append("line%s %s corrupt (checksum)" % ("s" if len(bad) > 1 else "", _ranges_text(bad)))
        if missing:
            parts.append("line%s %s missing" % ("s" if len(missing) > 1 else "", _ranges_text(missing)))
        raise CaptureError("framed capture of %d lines: %s; capture again" % (count, ", ".join(parts)))
    data = b"".join([b["lines"][n] for n in range(1, count + 1)])
    if len(data) != size or _crc(data) != crc:
        raise CaptureError("framed capture: %d bytes with crc %08x, the END line says %d bytes crc %08x"
                           % (len(data), _crc(data), size, crc))
    return data


def load(data, which=-1):
    """A capture from a file's bytes: the JSON file itself, or a log holding the framed console form."""
    if isinstance(data, str):
        data = data.encode()
    head = bytes(data[:4096]).lstrip()
    if head.startswith(b"{"):
        return decode(data)
    return decode(unframe(data, which))


# ---- writing ----------------------------------------------------------------------------------------------------

def print_framed(data):
    """The console form on the console, with the kernel's console log level lowered meanwhile."""
    saved = fsutil.read_text("/proc/sys/kernel/printk", "")
    if saved:
        try:
            fsutil.write_text("/proc/sys/kernel/printk", "1")
        except OSError:
            saved = ""
    try:
        for line in frame_lines(data):
            print(line)
    finally:
        if saved:
            try:
                fsutil.write_text("/proc/sys/kernel/printk", saved.split()[0])
            except OSError:
                pass


def _mounted(path):
    """(mount point, options) of the first mount of device path in /proc/mounts, or None."""
    for line in _read("/proc/mounts").split("\n"):
        f = line.split(" ")
        if len(f) > 3 and f[0] == path:
            return f[1], f[3]
    return None


def _free_name(top):
    n = 1
    while fsutil.exists("%s/%s%d.json" % (top, FILE_PREFIX, n)):
        n += 1
    return "%s%d.json" % (FILE_PREFIX, n)


def write_to(ctx, spec, data, devices=None):
    """Write data onto the filesystem spec names (among devices, else a fresh blockdev.scan()). Returns (device
    path, file name); CaptureError otherwise."""
    import os

    from . import blockdev
    from .failure import oserror_text
    from .medium import mount_dev

    if devices is None:
        devices = blockdev.scan()
    try:
        dev = blockdev.find(spec, devices)
    except ValueError as e:
        raise CaptureError(str(e))
    if dev is None:
        raise CaptureError("no device %s (block devices: %s)" % (spec, ", ".join(
            ["%s %s" % (d.path, d.info.get("LABEL") or d.info.get("TYPE") or "-") for d in devices]) or "none"))
    fstype = dev.info.get("TYPE")
    if fstype not in WRITABLE:
        raise CaptureError("%s (%s) holds %s, not a filesystem a capture is written to (%s)"
                           % (spec, dev.path, fstype or "nothing recognised", ", ".join(WRITABLE)))
    if dev.ro:
        raise CaptureError("%s (%s) is a read-only device" % (spec, dev.path))
    where = _mounted(dev.path)
    mine = False
    if where is not None:
        if "rw" not in where[1].split(","):
            raise CaptureError("%s (%s) is mounted read-only at %s: a capture would need it read-write"
                               % (spec, dev.path, where[0]))
        top = where[0]
    else:
        top = CAPTURE_MOUNT
        try:
            mount_dev(ctx, dev, top, sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        except OSError as e:
            raise CaptureError("mounting %s (%s) read-write at %s: %s" % (spec, dev.path, top, oserror_text(e)))
        mine = True
    name = _free_name(top)
    tmp = "%s/.%s.tmp" % (top, name)
    try:
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            sc.sync()
            os.rename(tmp, top + "/" + name)
            sc.sync()
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise CaptureError("writing %s on %s (%s): %s" % (name, spec, dev.path, oserror_text(e)))
    finally:
        if mine:
            try:
                sc.umount(top)
            except OSError as e:
                log.warning("capture: umount %s: %s" % (top, oserror_text(e)))
    return dev.path, name


def capture(ctx, to=None, err=None, reason="rescue"):
    """Collect and write (or print) a capture; never raises. Returns the bytes written, or None on failure."""
    if to is None:
        opts = getattr(ctx, "opts", None)
        for target, _point in (getattr(opts, "capture", None) or []):
            if target != "console":
                to = target
                break
    to = to or "console"
    devices = None
    try:
        from . import blockdev

        devices = blockdev.scan()  # once, for what is collected and for finding the target
        data = encode(collect(ctx, err, reason, devices))
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - a capture must never take the boot down
        from .failure import oserror_text

        why = oserror_text(e) if isinstance(e, OSError) else "%s: %s" % (type(e).__name__, e)
        log.error("capture: failed to collect: %s" % why)
        log.console("mpinit: capture failed: %s" % why)
        return None
    from .blockdev import human

    size = len(data)
    if to == "console":
        log.console("mpinit: capture: %d bytes (%s); the framed text follows (mpinit replay LOGFILE reads it)"
                    % (size, human(size)))
        print_framed(data)
        log.info("capture: %d bytes printed on the console" % size)
        return size
    try:
        path, name = write_to(ctx, to, data, devices)
    except CaptureError as e:
        log.error("capture: %s" % e)
        log.console("mpinit: capture not written: %s" % e)
        return None
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001
        log.error("capture: %s: %s" % (type(e).__name__, e))
        log.console("mpinit: capture not written: %s: %s" % (type(e).__name__, e))
        return None
    msg = "capture: %d bytes (%s) written to %s (%s) as %s" % (size, human(size), to, path, name)
    log.info(msg)
    log.console("mpinit: " + msg)
    return size


def at(ctx, point, err=None):
    """The rd.mpinit.capture= entries for point (a stage name, or "failure"), each point once per boot."""
    opts = getattr(ctx, "opts", None)
    wanted = [t for t, p in (getattr(opts, "capture", None) or []) if p == point]
    if not wanted:
        return
    done = getattr(ctx, "captured", None)
    if done is None:
        done = ctx.captured = []
    if point in done:
        return
    done.append(point)
    reason = "failure" if point == "failure" else "at %s" % point
    for target in wanted:
        capture(ctx, target, err, reason)
