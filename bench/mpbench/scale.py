#!/usr/bin/env python3
"""Scale bench (issue 14): the devices and medium stages with N disks of 4 partitions each, the medium last.

    build/venv/bin/python bench/mpbench/scale.py [--scale 1,8,32] [--runs 1] [--no-peer]

Every boot has N virtio-blk disks: N-1 filler disks (sparse 8 MiB files, a GPT of 4 empty 1 MiB partitions made
with sgdisk: nothing on them for a probe to recognise, so every probe reads and rejects) and, last, a copy of the
e2e "gpt-vfat" medium (root=live:LABEL=MPLIVE). The filler disks hang off PCI-PCI bridges: the pc machine's bus 0
has 32 slots, two of them taken by the host bridge and the PIIX3 (and QEMU refuses a 33rd device), so 32 disks
plus the chipset do not fit there; a `pci-bridge` (hw/pci-bridge/pci_bridge_dev.c) gives 31 more slots each, and
the guest kernel enumerates it like any PCI-PCI bridge (no driver needed). All disks sit behind bridges, 30 each.
Figures, from the serial console: our devices and medium stages ("mpinit: <stage>: ... (<n> ms)" timeline
lines), time in /init (printk "Run /init" -> the hand-off line); with the busybox script (bench/peer/init.sh),
its time in /init and its "wait for the medium" phase (the "modules: done" -> "medium:" lines). Per-device cost:
the least-squares slope of the devices + medium stages over the number of block devices (N disks * 5 devices).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from mpbench import guest, parse, peer  # noqa: E402
from mpbench.report import scale_lines  # noqa: E402

_PER_BRIDGE = 30        # slots 1..30 of a pci-bridge (slot 0 left alone)


def say(msg):
    print("scale: %s" % msg, flush=True)


def filler_disk(path: Path):
    """A sparse 8 MiB disk with a GPT of 4 x 1 MiB partitions (sgdisk on a plain file: no kernel device)."""
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(8 << 20)
    # -o: a new empty GPT first (a blank file has none to add partitions to). No -q: with it this sgdisk (1.0.x)
    # wrote no partitions at all.
    argv = ["sgdisk", "-o"]
    for i in range(1, 5):
        argv += ["-n", "%d:0:+1M" % i, "-c", "%d:part%d" % (i, i)]
    subprocess.run(argv + [str(tmp)], check=True, stdout=subprocess.DEVNULL)
    tmp.rename(path)
    return path


def disk_args(fillers, medium):
    """QEMU arguments: every disk behind pci-bridges, the medium last. Linux scans all of bus 0 before the buses
    behind its bridges (drivers/pci/probe.c pci_scan_child_bus_extend()), so a disk on bus 0 would be vda."""
    args = []
    bridges = 0
    disks = [("f%d" % i, f) for i, f in enumerate(fillers)] + [("medium", medium)]
    for i, (ident, path) in enumerate(disks):
        if i % _PER_BRIDGE == 0:
            bridges += 1
            args += ["-device", "pci-bridge,id=br%d,chassis_nr=%d,shpc=off" % (bridges, bridges)]
        # addr= is the slot in hex (QEMU's PCI address syntax "slot[.function]").
        args += ["-drive", "file=%s,if=none,id=%s,format=raw,snapshot=on" % (str(path).replace(",", ",,"), ident),
                 "-device", "virtio-blk-pci,drive=%s,bus=br%d,addr=%x" % (ident, bridges, i % _PER_BRIDGE + 1)]
    return args


def boot(kernel, image, extra, log_path, timeout, memory, spec=None):
    from mpinit import qemu

    append = guest.cmdline(spec)
    return qemu.boot(kernel.vmlinuz, image, disks=[], append=append, memory_mb=memory, timeout_s=timeout,
                     marker=parse.MARKER, log_path=log_path, echo=False, extra_args=extra)


def figures(side, out):
    got = {}
    handoff = parse.OURS_HANDOFF if side == "ours" else parse.PEER_HANDOFF
    try:
        got["in_init_ms"] = round(parse.time_in_init(out, handoff, side) * 1000)
    except parse.ParseError as e:
        got["error"] = str(e)
    if side == "ours":
        for stage, ms in parse.stage_times(out, ("devices", "medium")).items():
            got[stage + "_ms"] = ms
        import re

        m = re.search(r"mpinit: devices: .*?\((\d+) block devices", out)
        if m:
            got["block_devices"] = int(m.group(1))
        beyond = parse.beyond_kernel_ms(out)
        if beyond is not None:
            got["beyond_kernel_ms"] = beyond
    else:
        ph = parse.phase_times(out, "peer", side)
        if "wait for the medium" in ph:
            got["wait_medium_ms"] = ph["wait for the medium"]
    return got


def main(argv=None):
    args = parse_args(argv)
    rows = measure(args)
    print()
    print("\n".join(scale_lines(rows)))
    return 0 if all(g["ok"] for g in rows) else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/mpbench/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="1,8,32", help="numbers of disks, comma-separated (default 1,8,32)")
    p.add_argument("--runs", type=int, default=1, help="boots per side and scale (default 1)")
    p.add_argument("--no-peer", action="store_true", help="do not boot the busybox script")
    p.add_argument("--spec", help="our root=live: spec instead of LABEL=MPLIVE (e.g. /dev/vdb1 or "
                                  "PARTLABEL=x, to split the probes' cost from the scan's); implies --no-peer "
                                  "(the busybox script knows LABEL= only)")
    p.add_argument("--hook", type=Path, action="append", default=[],
                   help="pack this hook file into our image (profiling: e.g. a before_devices hook that times "
                        "the scan and the probes in the guest); repeatable")
    p.add_argument("--timeout", type=int, default=300, help="seconds per boot")
    p.add_argument("--memory", type=int, default=768, help="guest memory in MiB")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "bench-scale")
    args = p.parse_args(argv)
    try:
        scales = [int(s) for s in args.scale.split(",") if s.strip()]
    except ValueError:
        p.error("--scale %r: comma-separated numbers of disks" % args.scale)
    if not scales or min(scales) < 1 or max(scales) > 120:
        p.error("--scale %r: each between 1 and 120 disks" % args.scale)
    if shutil.which("sgdisk") is None:
        p.error("sgdisk not found (Debian package gdisk)")
    args.scales = scales
    return args


def measure(args):
    """Every scale of args.scales booted args.runs times per side (the order of the sides alternates per run);
    returns the rows, one dict per boot (figures() plus side, disks, ok, devices: the scale's block devices)."""
    scales = args.scales
    from mpinit import atomic, compress, kernel as kmod_kernel, kmod, media
    from mpinit.initramfs import build, expand_modules, PackOptions
    from mpinit.liveroot import busybox_path
    from mpinit.paths import runtime

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    kernel = kmod_kernel.ensure()
    method = compress.DEFAULT
    ours = work / "ours.img"
    atomic.write_bytes(ours, build(PackOptions(init=runtime(), module_dir=kernel.modules_dir,
                                               compression=method, hooks=list(args.hook))).image)
    images = {"ours": ours}
    if args.spec is not None:
        args.no_peer = True
    if not args.no_peer:
        closure = kmod.resolve(kernel.modules_dir, expand_modules(["generic-live"]))
        images["peer"] = work / "peer.img"
        atomic.write_bytes(images["peer"], peer.build(busybox_path(), closure, method).image)
    medium = work / "gpt-vfat.img"
    if not medium.exists():
        shutil.copyfile(media.ensure("gpt-vfat").path, medium)
    fillers = [filler_disk(work / ("filler-%03d.img" % i)) for i in range(max(scales) - 1)]
    rows = []
    for n in scales:
        extra = disk_args(fillers[:n - 1], medium)
        for r in range(args.runs):
            for side in (list(images) if r % 2 == 0 else list(images)[::-1]):
                log = work / ("%s-%d-%d.log" % (side, n, r))
                res = boot(kernel, images[side], extra, log, args.timeout, args.memory, args.spec)
                got = figures(side, res.output)
                got.update(side=side, disks=n, ok=res.ok)
                rows.append(got)
                say("%s %d disks: %s" % (side, n, got))
    # The block device count of a scale, from our devices stage line (the kernel's count, the same for both sides).
    count = {}
    for g in rows:
        if "block_devices" in g:
            count[g["disks"]] = g["block_devices"]
    for g in rows:
        g["devices"] = count.get(g["disks"], 5 * g["disks"])
    return rows


if __name__ == "__main__":
    sys.exit(main())
