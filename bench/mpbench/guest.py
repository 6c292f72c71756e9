"""What every benchmark boot shares (bench/run.py, bench/mpbench/scale.py): the kernel command line and the QEMU
arguments of the -smp configurations."""

from __future__ import annotations

ROOT_SPEC = "root=live:LABEL=MPLIVE"
# The kernel command line of every boot, every side. printk.time=1: timestamps on every console line.
# printk.devkmsg=on: /dev/kmsg writes are otherwise rate-limited to a burst of 10 lines per 5 s per open file
# (kernel/printk/printk.c devkmsg_write(), Documentation/admin-guide/kernel-parameters.txt printk.devkmsg), which
# drops the agent's later lines, its hand-off line included. rd.shell=0: a failed boot of ours reboots
# (QEMU -no-reboot exits) instead of waiting in the REPL until the deadline; the peer powers off on failure.
CMDLINE = ROOT_SPEC + " printk.time=1 printk.devkmsg=on console=ttyS0 rd.shell=0"


def cmdline(spec=None):
    """CMDLINE, with root=live:<spec> instead of LABEL=MPLIVE when spec is given."""
    return CMDLINE if spec is None else CMDLINE.replace(ROOT_SPEC, "root=live:" + spec)


def common():
    """CMDLINE without its root= (for boots that name their own root, e.g. the network download)."""
    return " ".join(w for w in CMDLINE.split() if not w.startswith("root="))


def smp_args(cpus):
    """Extra QEMU arguments for `cpus` virtual CPUs. mpinit.qemu puts `-smp 1` on every command line; QEMU merges
    repeated -smp options (its "smp-opts" list is merge_lists, softmmu/vl.c), so a later `-smp 2` wins. Every boot
    checks the count the guest kernel brought up (parse.cpus), so a QEMU that did otherwise would be caught."""
    return [] if cpus == 1 else ["-smp", str(int(cpus))]
