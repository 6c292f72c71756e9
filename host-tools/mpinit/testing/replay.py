"""A machine rebuilt from a capture (`capture()` in the rescue REPL, `rd.mpinit.capture=`; the format is
mpinit_agent.capture's): the kernel command line and release, the baked-in config, the image's module table, the
block devices with their sysfs facts and the bytes the probes read, the device modaliases and the RAM size become
a FakeMachine that boots the real agent, so a boot that failed on someone's hardware fails the same way here.

    m = machine_from_capture("mpinit-capture-1.json")     # or a serial log holding the framed console form
    result = m.boot()
    differences = compare(m.capture, result)               # [] when stage results and failure agree

`mpinit replay` (cmd_replay.py) and the fixture's `fake_machine.from_capture(path)` are built on this.

What a capture cannot give back, and what the replay does instead (each listed in `m.replay_notes` when it
applies): file contents are never captured, so a filesystem the probes found mounts empty, except for what the
capture recorded the boot used: the live image (a synthetic squashfs of the recorded size, up to 64 MiB) at its
path on the medium, and the init candidates that existed in the new root (empty executables). A device holds only
its first bytes (what the probes read, at least 2 MiB, at most 64 MiB); sysfs shows its real size, and a read
beyond those bytes is short. Loop devices are the agent's own and are left out. Times are the fake's virtual
clock, so stage durations differ; compare() ignores them.
"""

from __future__ import annotations

import errno as _errno
import hashlib
import json
import os
import re

from mpinit_agent import capture as _cap
from mpinit_agent import contract
from mpinit_agent.capture import CaptureError

from .machine import Executable, FakeMachine, FilesystemImage

REPLAY_LIMIT = 64 << 20     # bytes of a device the replay holds at most
FLOOR = 2 << 20             # ... and at least (a device above 1440 KiB must not look like a floppy to the probes)
IMAGE_LIMIT = 64 << 20      # the synthetic live image's size at most
# Probed TYPE -> the fake's filesystem kind that mount(2) of that TYPE accepts (kernel.BLOCK_FS).
_KIND = {"vfat": "vfat", "ext2": "ext2", "ext3": "ext2", "ext4": "ext4", "ext4dev": "ext4", "iso9660": "iso9660",
         "squashfs": "squashfs", "exfat": "exfat", "btrfs": "btrfs", "xfs": "xfs"}
_DURATION = re.compile(r"\d+(\.\d+)? ?(ms|s|MB/s|MiB/s)\b")


def read_capture(source, which=-1):
    """The checked capture dict from a path, bytes (a capture file or a log with the framed form) or a dict."""
    if isinstance(source, dict):
        return _cap.check(source)
    if isinstance(source, (bytes, bytearray, str)) and not (isinstance(source, str) and _looks_like_path(source)):
        return _cap.load(source if not isinstance(source, str) else source.encode(), which)
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaptureError("%s: %s" % (path, e.strerror or e)) from None
    try:
        return _cap.load(data, which)
    except CaptureError as e:
        raise CaptureError("%s: %s" % (path, e)) from None


def _looks_like_path(text):
    return "\n" not in text and not text.lstrip().startswith("{") and len(text) < 4096


def _table(doc, notes):
    text = doc["modules_table"]
    if not text:
        return None
    try:
        t = json.loads(text)
        if not isinstance(t, dict) or not isinstance(t.get("modules"), list):
            raise ValueError("no module list")
        return t
    except ValueError as e:
        notes.append("the captured module table is unreadable (%s): the replay ships it empty" % e)
        return None


def _range_len(rng):
    return rng[1] if isinstance(rng[1], int) else len(rng[1]) * 3 // 4


def _prefix(entry, notes):
    """The first bytes of a device as the replay holds them (zeros where nothing was read)."""
    size = entry["size"]
    ends = [r[0] + _range_len(r) for r in entry["ranges"] if r[0] + _range_len(r) <= REPLAY_LIMIT]
    want = min(size, max([FLOOR] + ends), REPLAY_LIMIT)
    buf = bytearray(want)
    dropped = []
    for i, rng in enumerate(entry["ranges"]):
        off = rng[0]
        if isinstance(rng[1], int):
            continue            # zeros: the buffer holds zeros already
        data = _cap.range_bytes(rng, "%s.ranges[%d]" % (entry["name"], i))
        if off >= want:
            dropped.append(off)
            continue
        k = min(len(data), want - off)
        buf[off:off + k] = data[:k]
        if k < len(data):
            dropped.append(off + k)
    if dropped:
        notes.append("%s: bytes read at offset %s lie beyond the replay's first %d MiB of the device: probes "
                     "that read there see a short device" % (entry["name"], ", ".join(str(o) for o in dropped),
                                                             want >> 20))
    if entry["truncated"]:
        notes.append("%s: the capture kept only part of what the probes read (the per-device cap)" % entry["name"])
    return bytes(buf)


def _init_files(used):
    return {p.lstrip("/"): Executable(b"#!replayed init\n") for p in used.get("inits") or () if p.strip("/")}


def _image_files(m, used, dev_path, notes):
    """Files a captured device's filesystem holds in the replay: the live image / the init, when the boot used
    this device for them."""
    files = {}
    image = used.get("image")
    mnt = used.get("medium_mount")
    inits = _init_files(used)
    if image and mnt and used.get("medium") == dev_path and image.startswith(mnt.rstrip("/") + "/"):
        size = used.get("image_size") or (1 << 20)
        if size > IMAGE_LIMIT:
            notes.append("the live image (%d MiB) is replayed as a %d MiB squashfs" % (size >> 20, 1))
            size = 1 << 20
        size = max(size, 4096)
        files[image[len(mnt.rstrip("/")) + 1:]] = m.squashfs(inits, size=size - size % 4096 or 4096)
    if image == dev_path or used.get("root") == dev_path:
        files.update(inits)
    return files


def machine_from_capture(source, cmdline=None, hooks=(), fs=None, keep_capture=False, which=-1):
    """A FakeMachine rebuilt from a capture (a path, bytes, or a loaded dict). cmdline: instead of the captured
    one; hooks: [(file name, source)] or hook file paths to install; keep_capture: leave rd.mpinit.capture= on the
    command line (dropped by default: the replay would capture itself). m.capture is the capture, m.replay_notes
    what the replay had to do differently."""
    doc = read_capture(source, which)
    notes = []
    if cmdline is None:
        words = doc["cmdline"].split()
        kept = [w for w in words if keep_capture or not w.startswith("rd.mpinit.capture=")]
        if len(kept) != len(words):
            notes.append("rd.mpinit.capture= left out of the replay's command line")
        cmdline = " ".join(kept)
    table = _table(doc, notes)
    builtin = list(table.get("builtin", ())) if table else list(FakeMachine.DEFAULT_BUILTIN)
    mem_kb = doc["memory"].get("MemTotal") or 1 << 20
    m = FakeMachine(cmdline=cmdline, ram_mb=max(1, mem_kb // 1024), config=doc["config"],
                    kver=doc["kernel"].get("release") or "6.1.0-fake", builtin=builtin, fs=fs)
    m.capture = doc
    m.replay_notes = notes
    shipped = {}
    if table:
        aliases = {}
        for rows in (table.get("aliases") or {}).values():
            for pat, name in rows:
                aliases.setdefault(name, []).append(pat)
        options = table.get("options") or {}
        for row in table["modules"]:
            name, path, deps, pre, post = row[:5]
            m.add_module(name, depends=deps, aliases=aliases.get(name, ()), softdep_pre=pre, softdep_post=post,
                         path=path, options=options.get(name))
            shipped[name] = path
        if table.get("blacklist"):
            notes.append("the module table's blacklist (%s) is not replayed" % ", ".join(table["blacklist"]))
    _failed_modules(m, doc, shipped, notes)
    for devpath, alias in doc["modaliases"]:
        if devpath.startswith("devices/") and ".." not in devpath.split("/"):
            m.sys_files[devpath + "/modalias"] = ("f", alias + "\n")
    _devices(m, doc, shipped, notes)
    for hook in hooks:
        if isinstance(hook, (tuple, list)):
            m.add_hook(hook[0], hook[1])
        else:
            with open(hook, encoding="utf-8") as f:
                m.add_hook(os.path.basename(hook), f.read())
    given = {h[0] if isinstance(h, (tuple, list)) else os.path.basename(h) for h in hooks}
    missing = [h for h in doc["hooks"] if h not in given]
    if missing:
        notes.append("the captured image had hooks %s (their code is not in a capture: pass them with --hook)"
                     % ", ".join(missing))
    return m


def _errno_of(text):
    """The errno whose strerror ends a module failure ("path: No such device"), or None."""
    tail = text.rsplit(": ", 1)[-1].strip().lower()
    for num in range(1, 134):
        if os.strerror(num).lower() == tail:
            return num
    return None


def _failed_modules(m, doc, shipped, notes):
    for name, why in doc["modules"].get("failed", ()):
        path = shipped.get(name)
        if path is None or not why.startswith(path + ": "):
            continue        # blacklisted, missing from the table, a failed dependency: the replay does the same
        num = _errno_of(why)
        if num is None:
            num = _errno.ENODEV
            notes.append("module %s failed with %r: replayed as ENODEV" % (name, why))
        m.fail("load_module", num, when=lambda p, params="", _want=path: p == _want)


def _devices(m, doc, shipped, notes):
    from .kernel import Device

    entries = [d for d in doc["devices"] if not d["name"].startswith("loop")]
    if len(entries) != len(doc["devices"]):
        notes.append("loop devices (the agent's own) left out")
    disks = [d for d in entries if d["partition"] is None]
    names = {d["name"] for d in disks}
    parts = {}
    for d in entries:
        if d["partition"] is not None:
            if d["parent"] in names:
                parts.setdefault(d["parent"], []).append(d)
            else:
                notes.append("%s: partition of %r, which the capture lacks: left out" % (d["name"], d["parent"]))
    used = doc["used"]
    for disk in disks:
        data = _prefix(disk, notes)
        pdatas = [(p, _prefix(p, notes)) for p in parts.get(disk["name"], ())]
        module = disk["module"] if disk["module"] in shipped else None
        m.add_disk(disk["name"], data, removable=disk["removable"], driver=module, ro=disk["ro"])
        fake = m._disks[-1]
        sysdir = disk["sysdir"] or ("%s/block/%s" % (fake.devdir, disk["name"]))
        if not sysdir.startswith("devices/") or ".." in sysdir.split("/"):
            sysdir = "%s/block/%s" % (fake.devdir, disk["name"])
        fake.devdir = sysdir.rsplit("/block/", 1)[0] if "/block/" in sysdir else fake.devdir
        m.sys_files[sysdir + "/queue/logical_block_size"] = ("f", "%d\n" % disk["lbs"])
        fake.replayed = _maker(Device, disk, data, sysdir, pdatas)
        for entry, blob in [(disk, data)] + pdatas:
            kind = _KIND.get(entry["probed"].get("TYPE"))
            if kind is None:
                continue
            files = _image_files(m, used, "/dev/" + entry["name"], notes)
            img = FilesystemImage(kind, blob, files, label=entry["probed"].get("LABEL"),
                                  uuid=entry["probed"].get("UUID"))
            m._images[hashlib.sha256(blob).digest()] = img
    if used.get("image") and not used.get("inits"):
        notes.append("the capture was taken before the new root was mounted: the replayed image holds no init "
                     "(rd.mpinit.capture=...@handoff captures what a hand-off needs)")


def _maker(Device, disk, data, sysdir, pdatas):
    def build():
        d = Device(disk["name"], data, disk["dev"][0], disk["dev"][1], sysdir, removable=disk["removable"],
                   ro=disk["ro"])
        d.size = disk["size"]
        out = [d]
        for p, pdata in pdatas:
            pd = Device(p["name"], pdata, p["dev"][0], p["dev"][1], "%s/%s" % (sysdir, p["name"]), disk=d,
                        partno=p["partition"], ro=p["ro"], partlabel=p["partname"], start=(p["start"] or 0) * 512)
            pd.size = p["size"]
            out.append(pd)
        return out
    return build


# ---- comparing a replay with its capture ---------------------------------------------------------------------------

def normalize(result_text):
    """A stage result without its durations and rates (the replay's clock is virtual)."""
    return _DURATION.sub("<t>", result_text)


def replay_timeline(result):
    """The timeline the replayed agent wrote (at its failure or hand-off), [] when there is none."""
    for path in (contract.TIMELINE_PATH,):
        try:
            return json.loads(result.read(path))
        except (OSError, ValueError, KeyError):
            continue
    return []


def failure_lines(console):
    """The first failure report printed on a console ("mpinit: boot failed in stage ..." at the start of a line, and
    its indented lines). On a real console the same lines also come through the kernel log ("[  3.2] mpinit: ...",
    interleaved with the printed ones): those are skipped."""
    lines = console.replace("\r", "").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("mpinit: boot failed in stage"):
            out = [line]
            for more in lines[i + 1:]:
                if more.startswith("[") and "] " in more:
                    continue        # a kernel log line between the printed ones
                if not more.startswith("  "):
                    break
                out.append(more)
            return out
    return []


def compare(doc, result):
    """Differences between a capture and its replay: stage by stage (results without durations) for every stage
    the capture recorded, and the failure report. [] when they agree."""
    from mpinit_agent.failure import BootError

    diffs = []
    # Stages only: module loads ({"module": ...} entries) differ in order and count with the machine's timing.
    rep = [e for e in replay_timeline(result) if "stage" in e]
    for i, entry in enumerate([e for e in doc["timeline"] if "stage" in e]):
        want = normalize(entry["result"])
        if i >= len(rep):
            diffs.append("stage %s: the capture says %r, the replay never finished it" % (entry["stage"], want))
            continue
        got = rep[i]
        if got.get("stage") != entry["stage"] or normalize(got.get("result", "")) != want:
            diffs.append("stage %s: the capture says %r, the replay %s: %r"
                         % (entry["stage"], want, got.get("stage"), normalize(got.get("result", ""))))
    fl = doc["failure"]
    if fl is not None:
        want = BootError(fl["stage"], fl["message"], param=fl.get("param"), tried=fl.get("tried"),
                         seen=fl.get("seen")).lines()
        got = failure_lines(result.console)[:len(want)]
        if [normalize(x) for x in got] != [normalize(x) for x in want]:
            diffs.append("failure report differs:\n  capture: %s\n  replay:  %s"
                         % ("\n           ".join(want), "\n           ".join(got) or "(no failure)"))
    return diffs


def timeline_text(entries):
    rows = ["%-12s %8s  %s" % ("stage", "ms", "result")]
    for e in entries:
        if "stage" in e:  # module loads are left out: one line per stage
            rows.append("%-12s %8s  %s" % (e.get("stage"), e.get("duration_ms", ""), e.get("result")))
    return "\n".join(rows)
