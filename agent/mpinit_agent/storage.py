# The storage stack between the disks and the root: md RAID -> LUKS -> LVM (-> LUKS on LVM), settled inside the
# devices stage's wait loop (main.devices_stage) every time the set of block devices changes.
#
#   stack = Stack(ctx)             what this boot asks for: mdadm/lvm packed and not switched off, LUKS targets
#   devices = stack.settle(devices, waited_ms, deadline_ms)
#                                  one round: md assembly, LUKS unlocks, LVM activation, repeated while a layer
#                                  made a new device (a LUKS container on an md array holding an LVM group takes
#                                  three turns); returns the devices rescanned. After md.md_degraded_after_ms() of
#                                  waiting, arrays left inactive for lack of a member are started degraded.
#   stack.report()                 lines for a failure report: what ran and what stayed locked
# Nothing here runs when nothing is asked: no tools packed, no crypttab, no LUKS parameters, no LUKS device.
from micropython import const

from . import contract, devmapper, fsutil

_ROUNDS = const(6)  # md, LUKS, LVM, LUKS on LVM, ... : more layers than any real stack has


class Stack:
    def __init__(self, ctx):
        from . import md

        self.ctx = ctx
        self.md = md.Assembler(ctx)
        self.luks = None
        if _luks_possible(ctx.opts):  # else luks.targets() is [] and a live boot never imports the LUKS code
            from . import luks

            self.luks = luks.Unlocker(ctx)
        self.active = self.md.wants_md() or self.md.wants_lvm() or bool(self.luks and self.luks.targets)

    def settle(self, devices, waited_ms=0, deadline_ms=None, rescan=None):
        """Bring every layer up to date with devices; returns the (possibly rescanned) devices."""
        if not self.active:
            return devices
        if rescan is None:
            from .main import scan_devices

            def rescan():
                return scan_devices(self.ctx)
        late = waited_ms >= self.md.md_degraded_after_ms(deadline_ms)
        degraded = self.md.wants_md() and not self.md.degraded_done and late and bool(self.md.inactive())
        for _ in range(_ROUNDS):
            changed = False
            # Each tool runs only for members it has not taken yet (md.free_members(), md.free_pvs()).
            if self.md.md_pass(devices, degraded):
                changed = True
                devices = rescan()
            degraded = False
            if self.luks is not None and self.luks.step(devices):
                changed = True
                devices = rescan()
            own = self._lvm_own() if self.md.wants_lvm() else ()
            if self.md.lvm_pass([d for d in devices if d.name not in own], late):
                changed = True
                devmapper.sync_nodes()
                devices = rescan()
            if not changed:
                break
        return devices

    def _lvm_own(self):
        """LVM's own logical volumes ("dm-N"): a new one is no reason to run vgchange again (asked by name, lvm
        runs again when the device set changes, until it succeeded)."""
        lvm_own = []
        m = devmapper.mapped()
        for name in m:
            if m[name][1].startswith("LVM-"):
                lvm_own.append(m[name][0])
        return lvm_own

    def report(self):
        out = []
        for argv, code in self.md.results[-6:]:
            out.append("%s: exit %d" % (" ".join(argv), code))
        inactive = self.md.inactive() if self.md.wants_md() else []
        if inactive:
            out.append("md arrays assembled but not started (members missing): %s" % ", ".join(inactive))
        if self.md.wants_lvm() and not [a for a, _ in self.md.results if a[0] == self.md.lvm]:
            out.append("lvm not run: no LVM physical volume (TYPE=LVM2_member) seen")
        if self.md.wants_md() and not self.md.results:
            out.append("mdadm not run: no md RAID member (TYPE=linux_raid_member) %sseen"
                       % ("of rd.md.uuid=%s " % ",".join(self.ctx.opts.md_uuids) if self.ctx.opts.md_uuids else ""))
        for t in (self.luks.missing() if self.luks is not None else ()):
            out.append("LUKS device not unlocked (not found): %s" % t.param)
        opts = self.ctx.opts
        if self.luks is None and opts.luks and opts.live is None and not _cryptsetup_packed():
            # The root may be inside one of them: say so (probing every device is fine once the boot failed).
            for d in self.ctx.devices or ():
                if d.info.get("TYPE") == "crypto_LUKS":
                    out.append("%s is a LUKS device but cryptsetup is not in the initramfs (pack it with: "
                               "mpinit pack --luks)" % d.path)
        return out


def _luks_possible(opts):
    """Whether luks.targets() can name anything: LUKS parameters, a baked-in crypttab, or a plain root with
    cryptsetup packed (dracut's default unlocks every LUKS device; an image without cryptsetup is dracut without
    its crypt module: nothing to unlock with); a live boot with none of these has no target."""
    if not opts.luks:
        return False
    if opts.cryptdevices or opts.luks_uuids or fsutil.exists(contract.CRYPTTAB_PATH):
        return True
    return opts.live is None and _cryptsetup_packed()


def _cryptsetup_packed():
    from . import proc

    return proc.find_tool("cryptsetup") is not None
