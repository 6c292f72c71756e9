"""The fake machine's device mapper and md RAID, with fake `cryptsetup`, `mdadm` and `lvm` programs that drive it.

The kernel side (`DeviceMapper`, composed into FakeKernel as `kernel.dm`) keeps mapped devices (`dm-N`, major 253,
with /sys/block/dm-N/dm/{name,uuid} as drivers/md/dm-sysfs.c shows them) and md arrays (`mdN`, major 9, and
/proc/mdstat in the layout of drivers/md/md.c md_seq_show()). The programs check what the real tools need in an
initramfs without udev (the modules loaded, DM_DISABLE_UDEV=1 / udev_sync=0, a passphrase or key on stdin) and
fail with the real tools' exit codes otherwise.

Describing storage in a test:

    from mpinit.testing import dm
    root = m.filesystem("ext4", uuid=..., files={...})
    m.add_disk("vda", dm.luks(m, root, passphrase="secret", uuid="..."))      # a LUKS container holding root
    a, b = dm.raid1(m, "0a1b...:...", dm.lvm_pv(m, "vg0", {"root": root, "usr": usr}))  # RAID1 members
    m.add_disk("vdb", a); m.add_disk("vdc", b)
    dm.install_tools(m)                                                        # /sbin/cryptsetup, mdadm, lvm

Honest simplifications: the "encryption" is a registry (the container's bytes are a real LUKS header plus a tag;
the plaintext is the image you gave); md members carry a real md 1.2 superblock and physical volumes a real LVM2
label (so the agent's probes say linux_raid_member / LVM2_member, as blkid does for real members) plus a small
marker the fake tools read instead of the rest of the metadata; only what the agent calls is implemented
(cryptsetup open; mdadm --assemble --scan, --stop; lvm vgchange/lvchange -ay). A device taken by an array or a
mapping is listed in /sys/class/block/<it>/holders/ (bd_link_disk_holder() in the real kernel).
"""

from __future__ import annotations

import struct
import zlib

from . import images
from .kernel import Device

DM_MAJOR = 253          # a dynamic major (devices.txt fixes none for device-mapper); Debian's kernels get 253
MD_MAJOR = 9            # devices.txt: 9 block = Metadisk (RAID) devices
MD_MAGIC = b"FAKE-MD-MEMBER\0\0"
PV_MAGIC = b"FAKE-LVM2-PV\0\0\0\0"
_TAG = 4096             # where the marker sits (past every superblock the probes read at 0..2 KiB; LUKS2 has
                        # its secondary header at 16 KiB)
_MD_SB = 4096           # md metadata 1.2: the superblock 4 KiB from the start (mdadm super1.c)
_MD_TAG = _MD_SB + 2048  # the fake marker of a member: past the superblock's 256 bytes and its device roles
_MEMBER_MIN = 2 << 20   # libblkid looks for RAID members only on devices above 1440 KiB (probe_more._tiny)


class DeviceMapper:
    """Mapped devices and md arrays of one fake kernel."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.maps = {}          # name -> (Device, dm uuid, options)
        self.under = {}         # name -> [device names the mapping sits on] (their holders/ list it)
        self.arrays = {}        # "md127" -> {"uuid", "state", "total", "members": [names], "device"}
        self._next = 0

    # the kernel's view ----------------------------------------------------------------------------------------

    def sys_entries(self):
        e = {}
        devs = self.kernel.devices
        for name, (dev, uuid, _opts) in self.maps.items():
            e[dev.sysdir + "/dm/name"] = ("f", name + "\n")
            e[dev.sysdir + "/dm/uuid"] = ("f", uuid + "\n")
            for low in self.under.get(name, ()):
                if low in devs:
                    e[devs[low].sysdir + "/holders/" + dev.name] = ("d",)  # a link to the holder in the kernel
        for md, a in self.arrays.items():
            for low in a["members"]:
                if low and low in devs:
                    e[devs[low].sysdir + "/holders/" + md] = ("d",)
        return e

    def proc_entries(self):
        if not self.kernel._have("md_mod"):
            return {}
        lines = ["Personalities : %s" % " ".join("[%s]" % p for p in ("raid1",) if self.kernel._have(p))]
        for md, a in sorted(self.arrays.items()):
            members = " ".join("%s[%d]%s" % (n, i, "(S)" if a["state"] == "inactive" else "")
                               for i, n in enumerate(a["members"]) if n)
            if a["state"] == "inactive":
                lines.append("%s : inactive %s" % (md, members))
                lines.append("      %d blocks super 1.2" % (a["size"] // 1024))
            else:
                working = len([n for n in a["members"] if n])
                lines.append("%s : active raid1 %s" % (md, members))
                lines.append("      %d blocks super 1.2 [%d/%d] [%s]" % (
                    a["size"] // 1024, a["total"], working, "".join("U" if n else "_" for n in a["members"])))
            lines.append("")
        lines.append("unused devices: <none>")
        return {"mdstat": ("f", "\n".join(lines) + "\n")}

    def create(self, name, data, uuid, options=(), under=()):
        dev = Device("dm-%d" % self._next, data, DM_MAJOR, self._next, "devices/virtual/block/dm-%d" % self._next)
        self._next += 1
        self.kernel.devices[dev.name] = dev
        self.maps[name] = (dev, uuid, list(options))
        self.under[name] = list(under)
        self.kernel.refresh()
        return dev

    def held(self):
        """Device names taken by an array or a mapping."""
        out = set()
        for a in self.arrays.values():
            out.update(n for n in a["members"] if n)
        return out


# describing storage ---------------------------------------------------------------------------------------------

def _data(content):
    return content.data if hasattr(content, "data") else bytes(content)


def _registry(machine):
    if not hasattr(machine, "_dm_registry"):
        machine._dm_registry = {"luks": {}, "md": {}, "pv": {}, "opened": {}}
    return machine._dm_registry


def luks(machine, content, passphrase=None, keyfile=None, uuid=None, version=2, size=None):
    """Bytes of a LUKS container (a real LUKS1/LUKS2 header the probes read) whose plaintext is content. It opens
    with the passphrase (str) or the key file's bytes."""
    uuid = uuid or "%08x-0000-4000-8000-%012x" % (len(_registry(machine)["luks"]) + 1, 0x1234)
    inner = _data(content)
    hdr = images.filesystem("crypto_LUKS1" if version == 1 else "crypto_LUKS", uuid=uuid, size=size or 1 << 20)
    secrets = []
    if passphrase is not None:
        secrets.append(passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase))
    if keyfile is not None:
        secrets.append(bytes(keyfile))
    _registry(machine)["luks"][uuid.lower()] = {"inner": inner, "secrets": secrets, "version": version}
    return hdr


def raid1(machine, uuid, content, members=2):
    """The member disks' bytes of a RAID1 array (mdadm UUID, 32 hex digits in any grouping) holding content."""
    h = "".join(c for c in uuid.lower() if c in "0123456789abcdef")
    if len(h) != 32:
        raise ValueError("raid1: uuid %r: want 32 hex digits" % uuid)
    inner = _data(content)
    _registry(machine)["md"][h] = {"inner": inner, "total": members}
    out = []
    for i in range(members):
        blob = bytearray(max(len(inner) + 64 * 1024, _MEMBER_MIN))
        blob[_MD_SB:_MD_SB + 256] = _md_superblock(h, i)
        tag = MD_MAGIC + h.encode() + struct.pack("<I", i)
        blob[_MD_TAG:_MD_TAG + len(tag)] = tag
        out.append(bytes(blob))
    return out


def _md_superblock(h, index):
    """The first 256 bytes of an md 1.2 superblock (struct mdp_superblock_1, include/uapi/linux/raid/md_p.h):
    magic, major_version 1, set_uuid, set_name, level 1, super_offset (in sectors: 8), device_uuid."""
    sb = bytearray(256)
    struct.pack_into("<II", sb, 0, 0xA92B4EFC, 1)
    sb[16:32] = bytes.fromhex(h)
    sb[32:44] = b"mpinit:fake"
    struct.pack_into("<i", sb, 72, 1)                       # level
    struct.pack_into("<Q", sb, 144, _MD_SB // 512)          # super_offset
    sb[168:184] = bytes.fromhex(h[16:] + h[:16])[::-1]      # device_uuid: anything unique per array
    struct.pack_into("<I", sb, 160, index)                  # dev_number
    return bytes(sb)


def _lvm_label(pv_uuid):
    """Sector 1 of a physical volume: label_header + pv_header (lvm2 lib/format_text/layout.h), its CRC the one
    of lvm2 lib/misc/crc.c (CRC-32, initial value 0xf597a6cf, no final inversion) over offset_xl to the end."""
    lab = bytearray(512)
    lab[0:8] = b"LABELONE"
    struct.pack_into("<QII", lab, 8, 1, 0, 32)              # sector_xl, crc_xl (below), offset_xl
    lab[24:32] = b"LVM2 001"
    lab[32:64] = pv_uuid.encode()
    crc = ~zlib.crc32(bytes(lab[20:]), ~0xF597A6CF & 0xFFFFFFFF) & 0xFFFFFFFF
    struct.pack_into("<I", lab, 16, crc)
    return bytes(lab)


def lvm_pv(machine, vg, lvs):
    """The bytes of a physical volume holding volume group vg with logical volumes {name: content}."""
    reg = _registry(machine)["pv"]
    reg[vg] = {name: _data(c) for name, c in lvs.items()}
    blob = bytearray(_MEMBER_MIN)
    blob[512:1024] = _lvm_label(("pv" + vg + "x" * 32)[:32])
    tag = PV_MAGIC + vg.encode() + b"\0"
    blob[_TAG:_TAG + len(tag)] = tag
    return bytes(blob)


def install_tools(machine, cryptsetup=True, mdadm=True, lvm=True):
    """The fake programs at /sbin/cryptsetup, /sbin/mdadm and /sbin/lvm."""
    if cryptsetup:
        machine.add_program("/sbin/cryptsetup", action=_cryptsetup)
    if mdadm:
        machine.add_program("/sbin/mdadm", action=_mdadm)
    if lvm:
        machine.add_program("/sbin/lvm", action=_lvm)


def luks_opened(machine):
    """{mapping name: options} of the containers cryptsetup opened (tests check --allow-discards)."""
    return dict(_registry(machine)["opened"])


# the programs ---------------------------------------------------------------------------------------------------

def _say(machine, text):
    machine._console_parts.append(text + "\n")


def _device_of(machine, path):
    """The kernel Device a /dev path names (symlinks such as /dev/mapper/x followed), or None."""
    k = machine.kernel
    try:
        real = k.fs.resolve_path(k._p(path))
    except OSError:
        return None
    return k.devices.get(real.rsplit("/", 1)[-1])


def _env(env):
    if env is None:
        return {}
    if isinstance(env, dict):
        return dict(env)
    return dict(e.split("=", 1) for e in env if "=" in e)


def _cryptsetup(machine, argv, env, stdin):
    k = machine.kernel
    args = argv[1:]
    if not args or args[0] != "open" or "--key-file=-" not in args:
        _say(machine, "cryptsetup (fake): only `open ... --key-file=-` is implemented: %r" % (argv,))
        return 1
    pos = [a for a in args[1:] if not a.startswith("-") and a != "luks"]
    if len(pos) != 2:
        _say(machine, "cryptsetup (fake): want <device> <name>: %r" % (argv,))
        return 1
    path, name = pos
    if _env(env).get("DM_DISABLE_UDEV") != "1":
        # libdevmapper would wait for a udev that never answers: the real boot hangs here.
        _say(machine, "cryptsetup (fake): udev sync not disabled (DM_DISABLE_UDEV=1 missing): would hang")
        return 1
    if not (k._have("dm_mod") and k._have("dm_crypt")):
        _say(machine, "device-mapper: reload ioctl on %s failed: No such device (dm_crypt not loaded)" % name)
        return 1
    dev = _device_of(machine, path)
    if dev is None:
        _say(machine, "Device %s does not exist or access denied." % path)
        return 4
    hdr = dev.data[:256]
    if hdr[:6] != b"LUKS\xba\xbe":
        _say(machine, "Device %s is not a valid LUKS device." % path)
        return 1
    uuid = hdr[168:208].split(b"\0")[0].decode().lower()
    entry = _registry(machine)["luks"].get(uuid)
    if name in k.dm.maps:
        _say(machine, "Device %s already exists." % name)
        return 5
    if entry is None or stdin is None or bytes(stdin) not in entry["secrets"]:
        _say(machine, "No key available with this passphrase.")
        return 2
    opts = ["allow-discards"] if "--allow-discards" in args else []
    if "--readonly" in args:
        opts.append("readonly")
    k.dm.create(name, entry["inner"], "CRYPT-LUKS%d-%s-%s" % (entry["version"], uuid.replace("-", ""), name), opts,
                under=[dev.name])
    _registry(machine)["opened"][name] = opts
    return 0


def _md_members(machine):
    k = machine.kernel
    held = k.dm.held()
    found = {}
    for name, dev in k.devices.items():
        tag = dev.data[_MD_TAG:_MD_TAG + len(MD_MAGIC) + 36]
        if tag[:len(MD_MAGIC)] == MD_MAGIC and name not in held:
            h = tag[len(MD_MAGIC):len(MD_MAGIC) + 32].decode()
            idx = struct.unpack("<I", tag[len(MD_MAGIC) + 32:])[0]
            found.setdefault(h, {})[idx] = name
    return found


def _mdadm(machine, argv, env, stdin=None):
    k = machine.kernel
    args = argv[1:]
    if not k._have("md_mod"):
        _say(machine, "mdadm: cannot open /proc/mdstat (md_mod not loaded)")  # what the real one hits first
        return 1
    if args[:1] == ["--stop"]:
        md = args[1].rsplit("/", 1)[-1]
        a = k.dm.arrays.get(md)
        if a is None:
            _say(machine, "mdadm: error opening %s: No such file or directory" % args[1])
            return 1
        if a["device"] is not None and any(m.device is a["device"] for m in k.mounts):
            return 1
        if a["device"] is not None:
            del k.devices[a["device"].name]
        del k.dm.arrays[md]
        k.refresh()
        _say(machine, "mdadm: stopped %s" % args[1])
        return 0
    if "--assemble" not in args or "--scan" not in args:
        _say(machine, "mdadm (fake): only --assemble --scan and --stop are implemented: %r" % (argv,))
        return 2
    want = None
    for a in args:
        if a.startswith("--uuid="):
            want = "".join(c for c in a[7:].lower() if c in "0123456789abcdef")
    if not k._have("raid1"):
        _say(machine, "md: personality for level 1 is not loaded!")
        return 1
    started = 0
    reg = _registry(machine)["md"]
    active = {a["uuid"] for a in k.dm.arrays.values()}
    for h, members in sorted(_md_members(machine).items()):
        if (want is not None and h != want) or h not in reg or h in active:
            continue
        total = reg[h]["total"]
        if len(members) < total and "--no-degraded" in args:
            state = "inactive"
            _say(machine, "mdadm: /dev/md/0 assembled from %d drive(s) - need all %d to start it" % (
                len(members), total))
        else:
            state = "active"
        md = "md%d" % (127 - len(k.dm.arrays))
        names = [members.get(i) for i in range(total)]
        dev = None
        if state == "active":
            dev = Device(md, reg[h]["inner"], MD_MAJOR, int(md[2:]), "devices/virtual/block/" + md)
            k.devices[md] = dev
            started += 1
            _say(machine, "mdadm: /dev/md/0 has been started with %d drive(s) (out of %d)." % (len(members), total))
        k.dm.arrays[md] = {"uuid": h, "state": state, "total": total, "members": names, "device": dev,
                           "size": len(reg[h]["inner"])}
        k.refresh()
    return 0 if started else 1


def _lvm_config_ok(args, env):
    cfg = " ".join(args[i + 1] for i, a in enumerate(args) if a == "--config" and i + 1 < len(args))
    return "udev_sync=0" in cfg.replace(" ", "") or _env(env).get("DM_DISABLE_UDEV") == "1"


def _lvm(machine, argv, env, stdin=None):
    k = machine.kernel
    args = argv[1:]
    if not args or args[0] not in ("vgchange", "lvchange") or "-ay" not in args:
        _say(machine, "lvm (fake): only vgchange/lvchange -ay are implemented: %r" % (argv,))
        return 3
    if not _lvm_config_ok(args, env):
        _say(machine, "lvm (fake): udev sync left on without udev: would wait for udev forever")
        return 5
    if not k._have("dm_mod"):
        _say(machine, "/proc/misc: No entry for device-mapper found (dm_mod not loaded)")
        return 5
    names = [a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] != "--config"]
    reg = _registry(machine)["pv"]
    present = {}
    for dev in list(k.devices.values()):
        tag = dev.data[_TAG:_TAG + len(PV_MAGIC) + 128]
        if tag[:len(PV_MAGIC)] == PV_MAGIC:
            vg = tag[len(PV_MAGIC):].split(b"\0")[0].decode()
            present[vg] = dev
    if args[0] == "vgchange":
        wanted = [(vg, None) for vg in names] or [(vg, None) for vg in sorted(present)]
    else:
        wanted = [tuple(n.split("/", 1)) for n in names]
    code = 0
    for vg, lv in wanted:
        if vg not in present or vg not in reg:
            _say(machine, "  Volume group \"%s\" not found" % vg)
            code = 5
            continue
        for name, data in sorted(reg[vg].items()):
            if lv is not None and name != lv:
                continue
            mapping = "%s-%s" % (vg.replace("-", "--"), name.replace("-", "--"))
            if mapping not in k.dm.maps:
                k.dm.create(mapping, data, "LVM-%s%s" % (vg.ljust(32, "x")[:32], name.ljust(32, "y")[:32]),
                            under=[present[vg].name])
        _say(machine, "  logical volume(s) in volume group \"%s\" now active" % vg)
    return code
