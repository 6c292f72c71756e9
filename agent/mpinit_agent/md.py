# Software RAID and LVM before the root is looked for, when mdadm / lvm were packed into the image: what the
# DIY-initramfs guide does by hand (`mdadm --assemble --scan`, `lvm vgscan --mknodes; lvm vgchange -ay`) and dracut
# does with rd.md.uuid= / rd.lvm.vg=.
from . import log, proc


def commands(opts, mdadm, lvm):
    """The argv lists to run for these options and the tools found (None = not packed). Pure, for tests."""
    out = []
    if mdadm:
        if opts.md_uuids:
            for u in opts.md_uuids:
                out.append([mdadm, "--assemble", "--scan", "--uuid=" + u])
        elif opts.md_all:
            out.append([mdadm, "--assemble", "--scan"])
    if lvm and (opts.lvm_vgs or opts.lvm_all):
        # --sysinit: "activation ... during system init, before udev" (lvm vgchange(8)); --mknodes makes the
        # /dev/<vg>/<lv> nodes and links that udev would have made.
        out.append([lvm, "vgchange", "--sysinit", "-ay"] + list(opts.lvm_vgs))
        out.append([lvm, "vgscan", "--mknodes"])
    return out


def assemble(opts):
    """Run the commands; returns [(argv, exit code)]. Non-zero exits are warnings (mdadm exits 1 when there is
    no array at all, which is the common case on a machine without RAID)."""
    cmds = commands(opts, proc.find_tool("mdadm"), proc.find_tool("lvm"))
    results = []
    for argv in cmds:
        log.info("devices: running %s" % " ".join(argv))
        try:
            code = proc.run(argv)
        except OSError as e:
            code = -1
            log.warning("devices: %s: %r" % (argv[0], e))
        if code != 0:
            log.warning("devices: %s exited with %d" % (" ".join(argv), code))
        results.append((argv, code))
    return results
