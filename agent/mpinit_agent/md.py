# Software RAID (mdadm) and LVM with the real tools, when mdadm / lvm were packed into the image: what the
# DIY-initramfs guide does by hand (`mdadm --assemble --scan`, `vgchange -ay`) and dracut does with rd.md.uuid=,
# rd.lvm.vg=, rd.lvm.lv=. storage.py calls these from the devices stage's wait loop, in the order md -> LUKS ->
# LVM (-> LUKS on LVM).
#
# What the real tools need in an initramfs without udev (why a plain `mdadm --assemble --scan` exits 1 and
# `lvm vgchange -ay` exits 5 there):
#   - the md driver and the RAID personalities: nothing triggers md_mod/raid1 (md arrays have no modalias; the
#     kernel would request_module("md-level-1") through the missing /sbin/modprobe), so they are loaded here when
#     assembly is asked for. Without md_mod there is no /proc/mdstat and mdadm gives up.
#   - a config: without /etc/mdadm/mdadm.conf mdadm's auto-assembly only takes arrays whose homehost is this
#     host (mdadm.conf(5) HOMEHOST, AUTO), and an initramfs has no hostname, so arrays made elsewhere were skipped.
#     The image's own mdadm.conf is used when packed; otherwise one is written at run time with
#     "DEVICE partitions containers", "HOMEHOST <ignore>", "AUTO +all" (mdadm.conf(5)).
#   - /run/mdadm for mdadm's map file (mdadm(8) MAP_DIR), /run/lvm and /run/lock/lvm for lvm's state and locks.
#   - lvm waits for udev to make nodes unless told otherwise: activation{udev_sync=0 udev_rules=0} makes
#     libdevmapper create nodes itself, devices{obtain_device_list_from_udev=0} scans /dev instead of asking udev's
#     database (lvm.conf(5)); monitoring=0 because there is no dmeventd. devmapper.sync_nodes() then makes the
#     /dev/mapper and /dev/<vg>/<lv> links udev would have made.
# Degraded arrays: assembly runs with --no-degraded while members may still appear; once storage.py decides to
# stop waiting (md_degraded_after_ms()), inactive arrays are stopped and assembled again with --run, and every
# array running with members missing is announced on the console.
# When the tools run at all: mdadm only when a probed device is an md member (TYPE=linux_raid_member; with
# rd.md.uuid= one of those arrays) that no array holds yet, lvm only when a physical volume (TYPE=LVM2_member) is
# not yet in use (dracut's 64-lvm.rules also run lvm only for ID_FS_TYPE=LVM2_member). With rd.lvm.vg=/rd.lvm.lv=
# and no PV seen after md_degraded_after_ms() of waiting, lvm also runs blind (once per device set, until one
# activation succeeded), in case it knows a PV our probe does not. A member or PV taken by an array or a mapping shows its holder in /sys/class/block/<dev>/holders
# (bd_link_disk_holder(), block/holder.c), so an assembly or activation that worked is never run again, and a
# boot without RAID or LVM runs neither tool (no "mdadm: No arrays found" on every LUKS boot).
from micropython import const

from . import fsutil, log, proc

MD_MODULES = ("md_mod", "raid1", "raid0", "raid10", "raid456", "linear")
DM_MODULES = ("dm_mod",)
LVM_MODULES = ("dm_mod", "dm_snapshot", "dm_mirror", "dm_raid", "dm_thin_pool", "dm_zero")

MDADM_CONF_IMAGE = ("/etc/mdadm/mdadm.conf", "/etc/mdadm.conf")
MDADM_CONF_RUN = "/run/mpinit/mdadm.conf"
MDSTAT = "/proc/mdstat"

# lvm.conf(5) settings for an initramfs without udev (see above), given with --config on every call.
LVM_CONFIG = ("devices{obtain_device_list_from_udev=0} "
              "activation{udev_sync=0 udev_rules=0 verify_udev_operations=0 monitoring=0}")

_DEGRADED_WAIT_MS = const(5000)  # how long members may take to appear before a degraded array is started


def load_modules(ctx, names):
    """Load the shipped ones of names (kmod.Modules.load_shipped). Returns those loaded now."""
    from . import kmod

    try:
        return kmod.of(ctx).load_shipped(names)
    except (OSError, ValueError) as e:  # a broken module table: the modules stage has reported it
        log.warning("devices: modules %s: %s" % (", ".join(names), e))
        return []


def md_uuid(u):
    """An array UUID as mdadm writes it (8:8:8:8 hex), from that form or blkid's dashed form; ValueError."""
    h = ""
    for c in u.lower():
        if c in ":-. ":
            continue
        if not ("0" <= c <= "9" or "a" <= c <= "f"):
            raise ValueError("rd.md.uuid=%s: not an md UUID (32 hex digits)" % u)
        h += c
    if len(h) != 32:
        raise ValueError("rd.md.uuid=%s: not an md UUID (32 hex digits)" % u)
    return "%s:%s:%s:%s" % (h[0:8], h[8:16], h[16:24], h[24:32])


def mdadm_config():
    """The mdadm.conf to use: the image's own, else one written under /run (see the top of this file)."""
    for p in MDADM_CONF_IMAGE:
        if fsutil.isfile(p):
            return p
    if not fsutil.exists(MDADM_CONF_RUN):
        fsutil.makedirs(fsutil.dirname(MDADM_CONF_RUN))
        fsutil.write_atomic(MDADM_CONF_RUN, "# written by mpinit: assemble any array found, wherever it was made\n"
                            "DEVICE partitions containers\nHOMEHOST <ignore>\nAUTO +all\n")
    return MDADM_CONF_RUN


def parse_mdstat(text):
    """{"md127": (state, raid_disks, working)} from /proc/mdstat (drivers/md/md.c md_seq_show()): state is
    "active", "inactive" (assembled, not started) or "active (read-only)"...; raid_disks/working from the
    "[n/m]" status of arrays with redundancy, (0, 0) when the line has none (inactive arrays, raid0)."""
    out = {}
    cur = None
    for line in text.split("\n"):
        if line.startswith("md") and " : " in line:
            name, rest = line.split(" : ", 1)
            words = rest.split()
            state = words[0] if words else ""
            if len(words) > 1 and words[1] == "(read-only)":
                state += " (read-only)"
            cur = name.strip()
            out[cur] = (state, 0, 0)
        elif cur is not None and line.startswith(" ") and "[" in line and "/" in line:
            i = line.rfind("[", 0, line.rfind("/"))
            j = line.find("]", i)
            if i >= 0 and j > i:
                nm = line[i + 1:j].split("/")
                if len(nm) == 2 and nm[0].isdigit() and nm[1].isdigit():
                    out[cur] = (out[cur][0], int(nm[0]), int(nm[1]))
        elif not line.strip():
            cur = None
    return out


def _hex(u):
    return "".join([c for c in (u or "").lower() if c in "0123456789abcdef"])


def held(name):
    """True when something (an md array, a dm mapping) holds the block device name."""
    return len(fsutil.listdir("/sys/class/block/%s/holders" % name)) > 0


def free_members(devices, uuids=()):
    """Names of the probed md members no array holds yet; with uuids (rd.md.uuid=, any form), of those arrays."""
    want = [_hex(u) for u in uuids]
    out = []
    for d in devices:
        if d.info.get("TYPE") != "linux_raid_member":
            continue
        if want and _hex(d.info.get("UUID")) not in want:
            continue
        if not held(d.name):
            out.append(d.name)
    return out


def free_pvs(devices):
    """Names of the probed LVM physical volumes no mapping uses yet."""
    return [d.name for d in devices if d.info.get("TYPE") == "LVM2_member" and not held(d.name)]


def md_commands(opts, mdadm, conf, run_degraded):
    """argv lists for one assembly pass (pure, for tests)."""
    if not mdadm or not (opts.md_all or opts.md_uuids):
        return []
    base = [mdadm, "--assemble", "--scan", "--config=" + conf, "--run" if run_degraded else "--no-degraded"]
    if opts.md_uuids:
        return [base + ["--uuid=" + md_uuid(u)] for u in opts.md_uuids]
    return [base]


def lvm_commands(opts, lvm):
    """argv lists for one activation pass (pure, for tests): rd.lvm.lv= activates only those logical volumes
    (lvchange), else rd.lvm.vg= those groups, else every group; --sysinit: "activation ... during system init,
    before udev" (vgchange(8))."""
    if not lvm or not (opts.lvm_all or opts.lvm_vgs):
        return []
    cfg = ["--config", LVM_CONFIG]
    if opts.lvm_lvs:
        return [[lvm, "lvchange", "-ay", "--sysinit"] + cfg + list(opts.lvm_lvs)]
    return [[lvm, "vgchange", "-ay", "--sysinit"] + cfg + list(opts.lvm_vgs)]


def _run(argv, quiet_codes=()):
    log.info("devices: running %s" % " ".join(argv))
    try:
        code = proc.run(argv, ["PATH=/sbin:/usr/sbin:/bin:/usr/bin", "LC_ALL=C"])
    except OSError as e:
        log.warning("devices: %s: %r" % (argv[0], e))
        return -1
    if code != 0:
        if code in quiet_codes:
            log.info("devices: %s exited with %d" % (" ".join(argv), code))
        else:
            log.warning("devices: %s exited with %d" % (" ".join(argv), code))
    return code


class Assembler:
    """md and LVM for one boot: remembers what ran so each pass only does new work."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.mdadm = proc.find_tool("mdadm")
        self.lvm = proc.find_tool("lvm")
        self.md_seen = None      # the free md members the last md pass saw
        self.lvm_seen = None     # the free PVs (or, asked by name, the devices) the last lvm pass saw
        self.lvm_ok = False      # an activation asked by name (rd.lvm.vg=/lv=) exited 0
        self.degraded_done = False
        self.announced = []
        self.results = []        # [(argv, exit code)], for the failure report

    def wants_md(self):
        o = self.ctx.opts
        return bool(self.mdadm) and (o.md_all or bool(o.md_uuids))

    def wants_lvm(self):
        o = self.ctx.opts
        return bool(self.lvm) and (o.lvm_all or bool(o.lvm_vgs))

    def md_pass(self, devices, run_degraded=False):
        """Assemble arrays when md members no array holds appeared (or to start degraded ones). True when an array
        is new."""
        if not self.wants_md():
            return False
        degraded_now = run_degraded and not self.degraded_done
        key = sorted(free_members(devices, self.ctx.opts.md_uuids))
        if not degraded_now and (not key or key == self.md_seen):
            return False
        self.md_seen = key
        load_modules(self.ctx, MD_MODULES)
        fsutil.makedirs("/run/mdadm")
        before = parse_mdstat(fsutil.read_text(MDSTAT, ""))
        if run_degraded:
            self.degraded_done = True
            # An array left inactive by --no-degraded holds its members: stop it so --run can take them again.
            for name in before:
                if before[name][0] == "inactive":
                    self.results.append(([self.mdadm, "--stop", "/dev/" + name],
                                         _run([self.mdadm, "--stop", "/dev/" + name])))
        try:
            cmds = md_commands(self.ctx.opts, self.mdadm, mdadm_config(), run_degraded)
        except ValueError as e:
            from .failure import BootError

            raise BootError("devices", str(e), param="rd.md.uuid=")
        for argv in cmds:
            # mdadm(8): exit 1 when nothing was assembled (no array there, or only inactive ones), 2 for a
            # serious problem; both are normal while members are still appearing.
            self.results.append((argv, _run(argv, quiet_codes=(1, 2))))
        after = parse_mdstat(fsutil.read_text(MDSTAT, ""))
        self.announce_degraded(after)
        for name in after:
            if after[name][0] != "inactive" and (name not in before or before[name][0] == "inactive"):
                return True
        return False

    def inactive(self):
        st = parse_mdstat(fsutil.read_text(MDSTAT, ""))
        return [n for n in st if st[n][0] == "inactive"]

    def announce_degraded(self, st):
        for name in st:
            state, total, working = st[name]
            if state.startswith("active") and total and working < total and name not in self.announced:
                self.announced.append(name)
                msg = ("WARNING: RAID array /dev/%s started DEGRADED: %d of %d members (a disk is missing or "
                       "failed; the data has no redundancy until it is replaced: mdadm --add)"
                       % (name, working, total))
                log.warning("devices: " + msg)
                log.console("mpinit: " + msg)

    def lvm_pass(self, devices, blind=False):
        """Activate volume groups when a PV no mapping uses appeared (blind: asked by name and waited long
        enough: also when the device set changed, until an activation succeeded). True when a mapped device is
        new."""
        if not self.wants_lvm():
            return False
        key = sorted(free_pvs(devices))
        if not key and blind and self.ctx.opts.lvm_vgs and not self.lvm_ok:
            key = ["*"] + sorted([d.name for d in devices])
        if not key or key == self.lvm_seen:
            return False
        self.lvm_seen = key
        load_modules(self.ctx, LVM_MODULES)
        fsutil.makedirs("/run/lvm")
        fsutil.makedirs("/run/lock/lvm")
        from . import devmapper

        before = devmapper.mapped()
        for argv in lvm_commands(self.ctx.opts, self.lvm):
            # vgchange(8) exits 5 when a named group is not there (yet): a warning until the deadline.
            code = _run(argv, quiet_codes=(5,))
            self.results.append((argv, code))
            if code == 0:
                self.lvm_ok = True
        after = devmapper.mapped()
        return len(after) > len(before) or bool([n for n in after if n not in before])

    def md_degraded_after_ms(self, deadline):
        """How long to wait for missing members before starting arrays degraded: 5 s, or 2/3 of a shorter
        deadline (dracut starts degraded arrays after 2/3 of rd.retry)."""
        if deadline is None:
            return _DEGRADED_WAIT_MS
        return min(_DEGRADED_WAIT_MS, deadline * 2 // 3)
