#!/usr/bin/env python3
"""Benchmark mpinit against a busybox-script init (issue 7), side by side, and write bench/RESULTS.md + a chart.

    build/venv/bin/python bench/run.py [--runs N] [--quick]      (or: python3 build.py bench [-- args])

Both initramfs images are built here from the same kernel (mpinit.kernel.ensure(): the Debian cloud kernel) and
the same module set (the generic-live closure, mpinit.kmod) with the same compression; both boot the same media
in the same QEMU configuration (mpinit.qemu.boot: TCG, one CPU, same memory, same disk, the same kernel command
line; only the -initrd differs), in alternating order (the order of the sides rotates each round). A third side,
the C floor (bench/cinit/cinit.c, issue 14), boots the plain live boot with the peer's module list and the medium's
device path baked in: what the same work costs with no search and no interpreter.
Figures, all read from the serial console with printk timestamps (bench/mpbench/parse.py says which lines):
  time to the live root     uptime= of the live root's marker line
  ..., host clock           host wall time, first kernel console line -> marker line (bench/mpbench/hostclock.py:
                            the guest's clock misses its TSC calibration in some boots; parse.calibration())
  time in /init             kernel "Run /init" line -> the init's hand-off line
  PID 1 peak memory         VmHWM before the hand-off (ours: the agent's hand-off line; peer: grep)
  toram throughput          a medium with a --toram-mb image: our progress line vs the peer's timed `cp`
  initramfs size            runtime+agent alone; with the modules; vs the peer with the same modules
  pack time (host)          `mpinit pack` (CLI, wall clock) vs `find | cpio -o -H newc | gzip -9` of the same tree
  -smp 2                    the plain boots' time figures again with two vCPUs (same images, medium, command line)
  unpack cost               `Run /init` printk time of our image per compressor (gzip, zstd -19, xz)
  scale                     bench/mpbench/scale.py: 1, 8, 32 disks; our devices + medium stages, both time in /init
Nothing is invented: a figure a side did not produce is reported as not measured, with the reason.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from mpbench import medium as toram_medium  # noqa: E402
from mpbench import cinit, guest, hostclock, netfetch, parse, peer, report, scale  # noqa: E402
from mpbench.report import Metric, ModeMatched, Target  # noqa: E402

MARKER = "MPINIT-LIVE-OK"
CMDLINE = guest.CMDLINE  # bench/mpbench/guest.py says why each parameter

class BenchError(Exception):
    """Bad input or a missing prerequisite; the message names it."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="boots per side for the boot figures (default 5)")
    p.add_argument("--toram-runs", type=int, help="boots per side with toram (default: --runs)")
    p.add_argument("--pack-runs", type=int, help="timed packs per side (default: --runs)")
    p.add_argument("--quick", action="store_true", help="smoke run: one of everything, a 64 MiB toram image")
    p.add_argument("--toram-mb", type=int, help="size of the toram image in MiB (default 256; --quick: 64)")
    p.add_argument("--net-runs", type=int, help="boots per side downloading the image over HTTP (default: --runs)")
    p.add_argument("--net-mb", type=int, help="size of the downloaded image in MiB (default 256; --quick: 64)")
    p.add_argument("--smp2-runs", type=int, help="plain boots per side with -smp 2 (default: --runs; 0: none)")
    p.add_argument("--scale", default=None, metavar="N,N,...",
                   help="numbers of disks of the scale bench (default 1,8,32; --quick: 1,8)")
    p.add_argument("--scale-runs", type=int, help="scale-bench boots per side and number of disks (default 3; "
                                                  "--quick: 1; 0: no scale bench)")
    p.add_argument("--unpack-runs", type=int, help="boots of our image per compressor for the kernel's unpack "
                                                   "cost (default 2; --quick: 1; 0: none)")
    p.add_argument("--memory", type=int, default=768, help="guest memory in MiB, every boot (default 768)")
    p.add_argument("--timeout", type=int, default=180, help="seconds per boot before QEMU is killed")
    p.add_argument("--compress", default=None, help="compression of both images (default: mpinit pack's)")
    p.add_argument("--runtime", type=Path, help="the /init binary (default: build/mpinit-init)")
    p.add_argument("--work", type=Path, help="work directory (default: build/bench)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="report to write")
    p.add_argument("--chart", type=Path, default=HERE / "results.svg", help="chart to write")
    p.add_argument("--no-boot", action="store_true", help="images and pack times only (no QEMU)")
    p.add_argument("--ours-preload", metavar="A,B,...", default="",
                   help="workaround: modules our booted image ships in addition to generic-live and loads at the "
                        "modules stage (config \"modules\"), e.g. vfat,nls_ascii for an agent that does not load "
                        "filesystem modules itself; the report says so")
    p.add_argument("--only", choices=("ours", "peer", "floor"), help="boot one side only (development; the report is "
                                                            "then incomplete)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]  # `python3 build.py bench -- --runs 3` passes the "--" on
    args = p.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.runs = 1
    if args.toram_mb is None:
        args.toram_mb = 64 if args.quick else 256
    if args.net_mb is None:
        args.net_mb = 64 if args.quick else 256
    for name in ("toram_runs", "pack_runs", "net_runs", "smp2_runs"):
        if getattr(args, name) is None:
            setattr(args, name, args.runs)
    if args.scale is None:
        args.scale = "1,8" if args.quick else "1,8,32"
    if args.scale_runs is None:
        # 3: the median of 3 passes over one boot whose kernel probed its 32 disks slowly (host noise: 3.6 against
        # 4.4 s of the modules stage in two boots of one run); of 2 it is their mean.
        args.scale_runs = 1 if args.quick else 3
    if args.unpack_runs is None:
        args.unpack_runs = 1 if args.quick else 2
    try:
        args.scales = [int(w) for w in args.scale.split(",") if w.strip()]
    except ValueError:
        args.scales = []
    if not args.scales or min(args.scales) < 1 or max(args.scales) > 120:
        p.error("--scale %s: comma-separated numbers of disks, each 1 to 120" % args.scale)
    for name in ("runs", "toram_runs", "pack_runs", "net_runs", "smp2_runs", "scale_runs", "unpack_runs"):
        if getattr(args, name) < 0:
            p.error("--%s %d: must not be negative" % (name.replace("_", "-"), getattr(args, name)))
    if args.memory < 128:
        p.error("--memory %d: at least 128 MiB" % args.memory)
    if args.toram_mb < 8:
        p.error("--toram-mb %d: at least 8 MiB" % args.toram_mb)
    if args.net_mb < 8:
        p.error("--net-mb %d: at least 8 MiB" % args.net_mb)
    if args.compress is not None:
        from mpinit import compress

        try:
            compress.parse_spec(args.compress)
        except compress.CompressError as e:
            p.error("--compress: %s" % e)
    return args


def _default_runtime():
    from mpinit.paths import runtime

    return runtime()


def say(msg):
    print("bench: %s" % msg, flush=True)


# --- images ------------------------------------------------------------------------------------------------

def build_images(args, kernel, work, metrics, failures):
    """Our images (alone, with modules, booted = with modules, and the preload config if asked for) and the peer's;
    size figures.
    Returns {"ours": path or None, "peer": path or None, "closure": ..., "ours_mods": path}."""
    from mpinit import atomic, compress, kmod
    from mpinit.initramfs import PackError, PackOptions, build, expand_modules
    from mpinit.paths import runtime
    from mpinit.liveroot import busybox_path

    method = args.compress or compress.DEFAULT
    init = args.runtime or runtime()
    out = {"ours": None, "peer": None, "ours_mods": None, "closure": None, "method": method, "init": init,
           "ours_default": None}
    closure = kmod.resolve(kernel.modules_dir, expand_modules(["generic-live"]))
    out["closure"] = closure
    size_alone = Metric("size_alone", "initramfs: runtime + agent alone", "KiB",
                        note="ours: `mpinit pack` without modules (the /init binary, config, dirs); busybox: "
                             "static busybox + the script + applet links, no modules. %s." % method)
    size_mods = Metric("size_modules", "initramfs: with the generic-live modules", "KiB",
                       target=Target("ratio", 0.4, "<= 0.4x busybox"),
                       note="%d modules (the generic-live closure for %s), uncompressed .ko in both images, "
                            "same compression (%s)." % (len(closure.modules), kernel.kver, method))
    metrics += [size_alone, size_mods]
    sizes = {}   # compression spec -> (ours alone, ours with modules, peer alone, peer with modules), bytes
    if method == "gzip":
        # issue 14: "runtime + agent alone <= 300 KB gzipped" (10^3 B, as the other sizes)
        size_alone.target = Target("abs", 300000 / 1024, "mpinit <= 300 KB (300,000 B) gzipped")
    try:
        alone = build(PackOptions(init=init, compression=method))
        mods = build(PackOptions(init=init, module_dir=kernel.modules_dir, compression=method))
        size_alone.ours.append(len(alone.image) / 1024)
        size_mods.ours.append(len(mods.image) / 1024)
        out["ours_mods"] = work / "ours-modules.img"
        atomic.write_bytes(out["ours_mods"], mods.image)
        preload = [m for m in args.ours_preload.split(",") if m.strip()]
        config = None
        if preload:
            import json

            config = work / "ours-preload-config.json"
            config.write_text(json.dumps({"modules": preload}))
        booted = build(PackOptions(init=init, module_dir=kernel.modules_dir, compression=method,
                                   modules=(["generic-live"] + preload) if preload else None,
                                   config_file=config))
        out["ours"] = work / "ours.img"
        atomic.write_bytes(out["ours"], booted.image)
        if preload:
            plain = build(PackOptions(init=init, module_dir=kernel.modules_dir, compression=method))
            out["ours_default"] = work / "ours-default.img"
            atomic.write_bytes(out["ours_default"], plain.image)
        say("ours: alone %d B, with modules %d B, booted %d B"
            % (len(alone.image), len(mods.image), len(booted.image)))
    except (PackError, OSError) as e:
        msg = "mpinit pack failed: %s" % e
        failures.append("ours: " + msg)
        size_alone.ours_failures.append(msg)
        size_mods.ours_failures.append(msg)
    bb = busybox_path()
    p_alone = peer.build(bb, None, method)
    p_mods = peer.build(bb, closure, method)
    size_alone.peer.append(len(p_alone.image) / 1024)
    size_mods.peer.append(len(p_mods.image) / 1024)
    out["peer"] = work / "peer.img"
    atomic.write_bytes(out["peer"], p_mods.image)
    say("peer: alone %d B, with modules %d B" % (len(p_alone.image), len(p_mods.image)))
    sizes[method] = (len(alone.image) if out["ours_mods"] else None, len(mods.image) if out["ours_mods"] else None,
                     len(p_alone.image), len(p_mods.image))
    size_by_compressor(args, kernel, closure, init, method, work, out, sizes, metrics, failures)
    out["sizes"] = sizes
    out["floor"] = None
    try:
        from mpinit import media

        binary = cinit.build_binary(work)
        c_mods = cinit.build(binary, closure, media.ensure("gpt-vfat"), method)  # boot_medium()'s medium
        out["floor"] = work / "cinit.img"
        atomic.write_bytes(out["floor"], c_mods.image)
        say("C floor: binary %d B, image with modules %d B" % (c_mods.binary_size, len(c_mods.image)))
    except (cinit.CinitError, OSError) as e:
        failures.append("C floor: %s" % e)
        say("C floor not built: %s" % e)
    return out


# The other compressors of the size figures: the strongest settings of the two the kernel unpacks best (issue 14:
# the 0.4x target with the generic-live modules; zstd -19 and xz as `mpinit pack --compress` takes them).
SIZE_COMPRESSORS = ("zstd:19", "xz")


def size_by_compressor(args, kernel, closure, init, method, work, out, sizes, metrics, failures):
    """Both sides' images (alone, with the generic-live modules) with each of SIZE_COMPRESSORS and uncompressed:
    one size row per compressor, sizes[spec] for the notes' arithmetic, and our image with the modules per
    compressor in out["unpack"] (the kernel's unpack cost, unpack_boots())."""
    from mpinit import atomic
    from mpinit.initramfs import PackError, PackOptions, build
    from mpinit.liveroot import busybox_path

    out["unpack"] = {method: out["ours_mods"]} if out["ours_mods"] else {}
    bb = busybox_path()
    for spec in SIZE_COMPRESSORS + ("none",):
        if spec == method:
            continue
        m = None
        if spec != "none":
            m = Metric("size_modules_" + spec.split(":")[0], "initramfs: with the generic-live modules, %s"
                       % spec.replace(":", " -"), "KiB", target=Target("ratio", 0.4, "<= 0.4x busybox"),
                       note="the same trees as the row above, compressed with %s on both sides (ours: `mpinit pack "
                            "--compress %s`; busybox: its cpio through the same compressor)." % (spec, spec))
            metrics.append(m)
        try:
            alone = build(PackOptions(init=init, compression=spec))
            mods = build(PackOptions(init=init, module_dir=kernel.modules_dir, compression=spec))
            p_alone = peer.build(bb, None, spec)
            p_mods = peer.build(bb, closure, spec)
        except (PackError, OSError) as e:
            failures.append("sizes, %s: %s" % (spec, e))
            if m is not None:
                m.ours_failures.append(str(e))
            continue
        sizes[spec] = (len(alone.image), len(mods.image), len(p_alone.image), len(p_mods.image))
        if m is not None:
            m.ours.append(len(mods.image) / 1024)
            m.peer.append(len(p_mods.image) / 1024)
            path = work / ("ours-modules-%s.img" % spec.split(":")[0])
            atomic.write_bytes(path, mods.image)
            out["unpack"][spec] = path
        say("sizes, %s: ours alone %d B, with modules %d B; peer alone %d B, with modules %d B"
            % ((spec,) + sizes[spec]))


def size_arithmetic(sizes, method):
    """Markdown: the 0.4x target's arithmetic. Ours = runtime+agent R + modules M, theirs = busybox B + M with the
    same modules; M is each image's growth when the modules are added (the modules compress together with the
    rest, so the two M differ a little). Even with R = 0 the ratio cannot go under M / (B + M)."""
    rows, best = [], []
    for spec in [method] + [s for s in SIZE_COMPRESSORS + ("none",) if s != method]:
        if spec not in sizes or sizes[spec][0] is None:
            continue
        r, rm, b, bm = sizes[spec]
        mo, mp = rm - r, bm - b
        need = 0.4 * bm - mo
        name = "uncompressed" if spec == "none" else spec
        best.append((mp / float(bm), name))
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %.2fx | %.2fx | %s |" % (
            name, _n(r), _n(mo), _n(rm), _n(b), _n(mp), _n(bm), rm / float(bm), mp / float(bm),
            _n(need) + " B" if need >= 0 else "none (%s B)" % _n(need)))
    if not rows:
        return []
    low = min(best)
    return ["Ours = runtime + agent R + modules M; busybox's = busybox + script B + the same modules M. M is each "
            "image's growth when the generic-live modules are added (they compress together with the rest, so "
            "the two M differ a little: ours also carries the module index). With R = 0 the ratio would be "
            "M / (B + M): the best any runtime can reach with this module set.", "",
            "| compression | R (ours) | M (ours) | R + M | B (busybox) | M (busybox) | B + M | ratio | best, R = 0 "
            "| R for 0.4x |", "|---|---|---|---|---|---|---|---|---|---|"] + rows + [
            "", "%s: the modules alone are %.2fx of busybox's image at best (%s), so the 0.4x target %s with the "
            "same module set; what is left to gain is R." % (
                "Reachable" if low[0] <= 0.4 else "Unreachable", low[0], low[1],
                "is reachable only with R <= the last column" if low[0] <= 0.4 else
                "cannot be met by any runtime")]


def _n(v):
    return "{:,}".format(int(round(v)))


# --- pack time ---------------------------------------------------------------------------------------------

def time_pack(args, kernel, images, work, metrics, failures):
    m = Metric("pack_time", "host: pack time (generic-live set)", "s",
               target=Target("abs", 1.0, "mpinit <= 1 s"),
               note="ours: `python -m mpinit pack` wall clock (interpreter start included), %s; busybox: `find . "
                    "| cpio -o -H newc | gzip -9` of the same tree (our image unpacked)." % images["method"])
    metrics.append(m)
    if args.pack_runs == 0:
        return
    if images["ours_mods"] is None:
        m.ours_failures.append("no image to unpack (pack failed)")
        return
    from mpinit import cpio
    from mpinit.cmd_archive import extract

    tree = work / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    extract(cpio.read_image(images["ours_mods"].read_bytes()), tree)
    out_ours = work / "pack-timing.img"
    out_cpio = work / "cpio-timing.img.gz"
    argv = [sys.executable, "-m", "mpinit", "pack", "-o", str(out_ours), "--init", str(images["init"]),
            "--kernel-modules", str(kernel.modules_dir), "--compress", images["method"]]
    pipeline = "find . | cpio -o -H newc --quiet | gzip -9 > %s" % shlex.quote(str(out_cpio))
    say("pack timing: %s" % shlex.join(argv))
    say("cpio timing: (cd %s && %s)" % (tree, pipeline))
    for i in range(args.pack_runs):
        for side in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):
            t0 = time.monotonic()
            if side == "ours":
                proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
            else:
                proc = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], cwd=tree,
                                      capture_output=True, text=True)
            dt = time.monotonic() - t0
            if proc.returncode != 0:
                msg = "exit %d: %s" % (proc.returncode, (proc.stderr or "").strip()[-300:])
                (m.ours_failures if side == "ours" else m.peer_failures).append(msg)
                failures.append("pack timing, %s: %s" % (side, msg))
            else:
                (m.ours if side == "ours" else m.peer).append(dt)
    for p in (out_ours, out_cpio):
        p.unlink(missing_ok=True)
    shutil.rmtree(tree, ignore_errors=True)


# --- boots -------------------------------------------------------------------------------------------------

def boot(args, kernel, image, disk, append, log_path, cpus=1, clock=None):
    """One boot; clock: a hostclock.LineClock that stamps each console line with the host's clock as it arrives
    (kept next to the log as <log>.clock)."""
    from mpinit import qemu

    r = qemu.boot(kernel.vmlinuz, image, disks=[disk], append=append, memory_mb=args.memory,
                  timeout_s=args.timeout, marker=MARKER, log_path=log_path, echo=False,
                  extra_args=guest.smp_args(cpus), on_data=clock.feed if clock is not None else None)
    if clock is not None:
        from mpinit import atomic

        atomic.write_bytes(Path(str(log_path) + ".clock"), clock.close().dump().encode())
    return r


def record(metric, side, fn, output, failures):
    """fn(output) -> the figure, appended to the side's values (side: "ours", "peer" or "floor", the Metric's
    list of that name); a ParseError is that run's failure."""
    try:
        value = fn(output)
    except parse.ParseError as e:
        getattr(metric, side + "_failures").append(str(e))
        failures.append(str(e))
        return
    getattr(metric, side).append(value)


HANDOFF = {"ours": parse.OURS_HANDOFF, "peer": parse.PEER_HANDOFF, "floor": parse.FLOOR_HANDOFF}
VMHWM = {"ours": parse.OURS_VMHWM, "peer": parse.PEER_VMHWM, "floor": parse.FLOOR_VMHWM}
# Boot order per round: rotated so that no side always boots first (the host's load drifts during a run).
ORDERS = (("ours", "peer", "floor"), ("peer", "floor", "ours"), ("floor", "ours", "peer"))


def boot_medium(work):
    """A private copy of the e2e "gpt-vfat" medium: build/e2e/<digest>/ is shared with the tests, and a change of
    media.py or liveroot.py elsewhere replaces it (the old digest's directory is removed) in the middle of a run."""
    from mpinit import media

    copy = work / "gpt-vfat.img"
    if not copy.exists():
        src = media.ensure("gpt-vfat").path
        tmp = work / ".gpt-vfat.img.tmp"
        shutil.copyfile(src, tmp)
        tmp.rename(copy)
    return copy


# The 0.8x target is judged on the boots compared within one TSC calibration mode (report.ModeMatched), on both
# clocks (report.Metric.joint): the guest kernel's calibration mode is drawn at random per boot and moves both
# clocks, so medians over all boots compare unlike boots when the modes fall unevenly between the sides.
LIVE_TARGET = "<= 0.8x busybox, within one TSC calibration mode, on both the uptime and the host clock"
HOST_NOTE = ("wall time on the host (monotonic clock, as the console's lines reach bench/run.py from QEMU's "
             "stdio pipe; bench/mpbench/hostclock.py) from the first kernel console line (the first "
             "`[    0.000000]` line, printed when the kernel's serial console registers) to the live root's marker "
             "line. It leaves out the firmware and the kernel's set-up before its console, the same for every "
             "side, and includes the serial console's pace. It does not lose the TSC calibration's time as the "
             "guest's clock does, but a late (HPET) calibration makes the boot itself longer: see the `Run /init`, "
             "host clock column of \"The guest kernel's clock calibration\" below.")
MATCHED_NOTE = ("the same boots as the row above it, compared within one TSC calibration mode "
                "(report.matched_ratio()): the ratio of the medians in each mode both sides booted in, averaged "
                "with the boots of both sides in that mode as weights. The mode is drawn at random per boot in the "
                "kernel's set-up, before the initramfs is unpacked, so no init can steer it; a late (HPET) "
                "calibration makes the boot longer in real time and shorter on the guest's clock, so when the "
                "modes fall unevenly between the sides (e.g. mpinit 3 HPET boots of 7, busybox 2 of 7) the ratio "
                "of the medians over all boots compares unlike boots. The cells give each side's median per mode.")


def run_boots(args, kernel, images, work, metrics, failures, toram, stages=None, cpus=1, calib=None):
    """Alternating boots; fills the boot figures (toram=False) or the toram figures (toram=True); cpus=2: the
    plain boots' time figures with -smp 2 (no targets: the issue's apply to -smp 1). Plain boots also give the
    host-clock live root and append one record per boot to `calib` (side, CPUs, the guest kernel's TSC
    calibration mode, both clocks' figures: report.calibration_lines())."""
    runs = args.toram_runs if toram else (args.runs if cpus == 1 else args.smp2_runs)
    if cpus != 1:
        live = Metric("live_root_smp%d" % cpus, "time to the live root, -smp %d" % cpus, "s",
                      note="as the -smp 1 row, QEMU with -smp %d (the guest kernel's `smp: Brought up` line is "
                           "checked on every boot); no target: the issue's targets are for -smp 1." % cpus)
        init = Metric("time_in_init_smp%d" % cpus, "time in /init, -smp %d" % cpus, "s",
                      note="as the -smp 1 row, QEMU with -smp %d." % cpus)
        host = Metric("live_root_host_smp%d" % cpus, "time to the live root, host clock, -smp %d" % cpus, "s",
                      note="as the -smp 1 row, QEMU with -smp %d." % cpus)
        new = [live, host, init]
    elif toram:
        thr = Metric("toram", "toram: copy throughput, %d MiB image" % args.toram_mb, "MB/s", better="higher",
                     target=Target("ratio", 2.0, ">= 2x busybox cp"),
                     note="ours: the agent's last progress line (10^6 B/s, 0.1 MB/s resolution; O_DIRECT reads into "
                          "4 MiB page-aligned buffers, toram.py copy()); busybox: the "
                          "squashfs size / the /proc/uptime difference around `cp` (10 ms resolution). Both copy "
                          "from the FAT32 medium (virtio) into a tmpfs, cold cache.")
        live = Metric("live_root_toram", "time to the live root, with toram", "s")
        new = [thr, live]
    else:
        live = Metric("live_root", "time to the live root", "s",
                      note="uptime printed by the live root's /sbin/init (kernel boot included), medians over "
                           "all boots. The guest's clock: in boots whose kernel calibrated its TSC late (HPET "
                           "mode) it misses the ~0.15-0.25 s the calibration took; see \"The guest kernel's "
                           "clock calibration\" below. The 0.8x target is judged on the rows that compare boots "
                           "within one calibration mode.")
        host = Metric("live_root_host", "time to the live root, host clock", "s", note=HOST_NOTE)
        records = calib if calib is not None else []
        same_mode = ModeMatched("live_root_matched", "time to the live root, within one TSC calibration mode",
                                "s", target=Target("ratio", 0.8, LIVE_TARGET), note=MATCHED_NOTE,
                                records=records, value_key="uptime")
        same_mode_host = ModeMatched("live_root_host_matched",
                                     "time to the live root, host clock, within one TSC calibration mode", "s",
                                     target=Target("ratio", 0.8, LIVE_TARGET),
                                     note="as the row above, on the host's clock.", records=records,
                                     value_key="host")
        same_mode.joint.append(same_mode_host)
        same_mode_host.joint.append(same_mode)
        init = Metric("time_in_init", "time in /init", "s", target=Target("floor", 1.15, "<= 1.15x the C floor"),
                      note="printk time of `Run /init as init process` to the init's hand-off line "
                           "(`mpinit: handoff: switching to`, `bbinit: switch_root`, `cinit: switch_root`). The "
                           "C floor (bench/cinit/cinit.c) loads the same module list with finit_module and "
                           "mounts the medium by its device path: no search, no interpreter.")
        mem = Metric("vmhwm", "PID 1 peak memory (VmHWM) before the hand-off", "kB",
                     target=Target("abs", 2048, "mpinit <= 2 MB (2048 kB)"),
                     note="/proc/<pid 1>/status VmHWM. Ours: the agent's hand-off line (handoff.py reads "
                          "/proc/self/status just before it; no benchmark code in the image). Busybox: the ash "
                          "process only; its children (insmod, mount, cp) are separate processes, not counted.")
        new = [live, host, init, mem]
    # the same-mode rows below their all-boots rows; they take their figures from the calibration records
    metrics += new if cpus != 1 or toram else [live, host, same_mode, same_mode_host, init, mem]
    if runs == 0:
        return
    sides = ("ours", "peer") if toram else ("ours", "peer", "floor")  # the C floor has no toram
    missing = [s for s in sides if images.get(s) is None]
    for s in missing:
        for m in new:
            getattr(m, s + "_failures").append("no image")
    if toram:
        say("toram medium (%d MiB image) ..." % args.toram_mb)
        disk = toram_medium.ensure(work, args.toram_mb)
    else:
        disk = boot_medium(work)
    append = "%s%s" % (CMDLINE, " toram" if toram else "")
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    tag = "toram" if toram else ("boot" if cpus == 1 else "smp%d" % cpus)
    for i in range(runs):
        for side in ORDERS[i % len(ORDERS)]:
            if side not in sides or images.get(side) is None or args.only not in (None, side):
                continue
            log_path = logs / ("%s-%s-%d.log" % (tag, side, i + 1))
            what = "%s boot %d (%s, log %s)" % (side, i + 1, tag, log_path.relative_to(ROOT)
                                                if log_path.is_relative_to(ROOT) else log_path)
            say("%s ..." % what)
            clock = None if toram else hostclock.LineClock()
            r = boot(args, kernel, images[side], disk, append, log_path, cpus, clock=clock)
            try:
                seen = parse.cpus(r.output, what) if r.ok else cpus
            except parse.ParseError:
                seen = cpus  # a kernel wording it otherwise: not a reason to drop the boot
            if seen != cpus:
                msg = "%s: the guest brought up %d CPUs, not %d" % (what, seen, cpus)
                failures.append(msg)
                for m in new:
                    getattr(m, side + "_failures").append(msg)
                say(msg)
                continue
            if not r.ok:
                hint = "; ".join(parse.failure_block(r.output, 5))
                msg = "%s: no marker (%s)%s" % (what, "timed out after %d s" % args.timeout if r.timed_out
                                                else "exit %s" % r.exit_status, ": " + hint if hint else "")
                failures.append(msg)
                for m in new:
                    getattr(m, side + "_failures").append(msg)
                say(msg)
                continue
            out = r.output
            record(live, side, lambda o: parse.marker_uptime(o, what), out, failures)
            if clock is not None:
                record_clock(host, side, clock.lines, out, what, cpus, calib, failures)
            if cpus != 1:
                record(init, side, lambda o: parse.time_in_init(o, HANDOFF[side], what), out, failures)
            elif toram:
                fn = parse.ours_toram_mbps if side == "ours" else parse.peer_toram_mbps
                record(thr, side, lambda o: fn(o, what), out, failures)
            else:
                record(init, side, lambda o: parse.time_in_init(o, HANDOFF[side], what), out, failures)
                record(mem, side, lambda o: parse.vmhwm_kb(o, VMHWM[side], what), out, failures)
                if stages is not None:
                    from mpinit_agent import contract

                    if side == "ours":
                        for name, ms in parse.stage_times(out, contract.STAGES).items():
                            stages.setdefault(name, []).append(ms)
                    for name, ms in parse.phase_times(out, side, what).items():
                        stages.setdefault((side, name), []).append(ms)
            got = getattr(live, side)
            say("%s: live root at %s" % (what, "%.2f s" % got[-1] if got else "?"))


def record_clock(host, side, lines, output, what, cpus, calib, failures):
    """The host-clock live root of one plain boot (into `host`) and its calibration record (into `calib`)."""
    try:
        value = hostclock.live_root(lines, what)
    except hostclock.ClockError as e:
        getattr(host, side + "_failures").append(str(e))
        failures.append(str(e))
        value = None
    else:
        getattr(host, side).append(value)
    if calib is None:
        return

    def get(fn, *a):
        try:
            return fn(*a)
        except (parse.ParseError, hostclock.ClockError):
            return None

    calib.append({"side": side, "cpus": cpus, "mode": get(parse.calibration, output) or "unknown",
                  "uptime": get(parse.marker_uptime, output), "host": value,
                  "run_init": get(parse.run_init_stamp, output), "run_init_host": get(hostclock.run_init, lines)})


def unpack_boots(args, kernel, images, work, failures):
    """Our image with the generic-live modules, once per compressor (images["unpack"]), args.unpack_runs boots
    each in rotating order: the printk time of `Run /init` (the kernel has unpacked the initramfs by then,
    init/initramfs.c) and the time to the live root. Returns markdown lines."""
    from mpbench.stats import summarize

    specs = list(images.get("unpack", {}))
    if args.unpack_runs == 0 or not specs or args.only not in (None, "ours"):
        return []
    got = {spec: ([], []) for spec in specs}
    failed = {spec: 0 for spec in specs}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    disk = boot_medium(work)
    for i in range(args.unpack_runs):
        for spec in specs[i % len(specs):] + specs[:i % len(specs)]:
            name = spec.split(":")[0]
            log_path = logs / ("unpack-%s-%d.log" % (name, i + 1))
            what = "ours, %s, unpack boot %d (log %s)" % (spec, i + 1, log_path)
            say("%s ..." % what)
            r = boot(args, kernel, images["unpack"][spec], disk, CMDLINE, log_path)
            try:
                at = parse.run_init_stamp(r.output, what)
                live = parse.marker_uptime(r.output, what)
            except parse.ParseError as e:
                failed[spec] += 1
                failures.append("%s (%s)" % (e, "timed out" if r.timed_out else "exit %s" % r.exit_status))
                continue
            got[spec][0].append(at)
            got[spec][1].append(live)

    def cell(values, n_failed):
        s = summarize(values)
        text = "not measured" if s is None else ("%.3f s (%.3f - %.3f, n=%d)" % (s.median, s.min, s.max, s.n)
                                                 if s.n > 1 else "%.3f s" % s.median)
        return text + (", %d failed" % n_failed if n_failed else "")

    lines = ["Our image with the generic-live modules, compressed each way, booted in the "
             "plain configuration (-smp 1): the kernel unpacks the initramfs before it runs /init "
             "(init/initramfs.c), so the printk time of `Run /init` carries the decompressor's cost; the rest of "
             "the boot is the same image's.", "",
             "| compression | image | `Run /init` at | time to the live root |", "|---|---|---|---|"]
    for spec in specs:
        size = images["unpack"][spec].stat().st_size
        lines.append("| %s | %s B | %s | %s |" % (spec, _n(size), cell(got[spec][0], failed[spec]),
                                                 cell(got[spec][1], failed[spec])))
    return lines


def scale_bench(args, work, failures):
    """The scale bench (bench/mpbench/scale.py) with args.scales disks, args.scale_runs boots per side and scale.
    Returns markdown lines."""
    from types import SimpleNamespace

    if args.scale_runs == 0 or args.only not in (None, "ours", "peer"):
        return []
    if shutil.which("sgdisk") is None:
        failures.append("scale bench: sgdisk not found (Debian package gdisk)")
        return ["Not measured: sgdisk not found (Debian package gdisk)."]
    opts = SimpleNamespace(scales=args.scales, runs=args.scale_runs, no_peer=args.only == "ours", spec=None,
                           hook=[], timeout=max(args.timeout, 300), memory=args.memory, work=work / "scale")
    say("scale bench: %s disks, %d boot(s) per side and scale (logs in %s) ..." % (args.scale, args.scale_runs,
                                                                                     opts.work))
    rows = scale.measure(opts)
    for g in rows:
        if not g.get("ok"):
            failures.append("scale bench, %s with %d disks: no marker%s" % (
                g["side"], g["disks"], ": " + g["error"] if g.get("error") else ""))
    return report.scale_lines(rows, args.scale_runs)


def order(metrics):
    """The -smp 2 rows right below their -smp 1 rows."""
    out = [m for m in metrics if "_smp" not in m.key]
    for m in [m for m in metrics if "_smp" in m.key]:
        base = m.key.split("_smp")[0]
        at = next((i for i, o in enumerate(out) if o.key == base), len(out) - 1)
        out.insert(at + 1 + sum(1 for o in out[at + 1:] if o.key.startswith(base + "_smp")), m)
    return out


def check_default(args, kernel, images, work):
    """With --ours-preload: one boot of our image without the workaround, so the report says whether (and how)
    the default still fails. Returns markdown lines."""
    from mpinit import media

    if images.get("ours_default") is None:
        return []
    log_path = work / "logs" / "default-ours.log"
    log_path.parent.mkdir(exist_ok=True)
    say("ours without the workaround, one boot (log %s) ..." % log_path)
    r = boot(args, kernel, images["ours_default"], boot_medium(work), CMDLINE, log_path)
    if r.ok:
        return ["Our default image (generic-live, no preloaded modules) also reached the live root in a check "
                "boot: the workaround is no longer needed."]
    hint = parse.failure_block(r.output, 10)
    return ["Our default image (generic-live, no preloaded modules) did **not** reach the live root in a check "
            "boot (%s). Its last lines:" % ("timed out" if r.timed_out else "exit %s" % r.exit_status), ""] + \
        ["    " + line for line in hint]


# --- report ------------------------------------------------------------------------------------------------

def _tool_version(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((proc.stdout or proc.stderr).strip().split("\n") or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def source_info(init):
    """The checkout's commit (and whether it has uncommitted changes) and the runtime's sha256: what was measured."""
    import hashlib

    head = _tool_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    try:
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        dirty = ""
    try:
        digest = hashlib.sha256(Path(init).read_bytes()).hexdigest()[:16]
    except OSError as e:
        digest = "unreadable (%s)" % e.strerror
    return "commit %s%s; runtime %s sha256 %s" % (head, " + uncommitted changes" if dirty else "", init, digest)


def machine_info(args, kernel, loads):
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().split("\n"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [("host", "%s %s, %s" % (platform.system(), platform.release(), platform.machine())),
            ("CPU", "%s, %d logical CPUs" % (cpu, os.cpu_count() or 0)),
            ("host load average (start, end)", "%s / %s (the host is shared; TCG timings follow its load)"
             % loads),
            ("QEMU", "%s, -accel tcg -smp 1 (and -smp 2 where a row says so) -m %d, virtio disk (snapshot=on)" % (
                _tool_version(["qemu-system-x86_64", "--version"]), args.memory)),
            ("guest kernel", "%s (%s)" % (kernel.package, kernel.kver)),
            ("busybox (peer)", _tool_version(["busybox"])),
            ("Python (host)", platform.python_version())]


def stage_table(stages):
    from mpinit_agent import contract

    from mpbench.stats import summarize

    lines = ["| stage | median | min - max | n |", "|---|---|---|---|"]
    for name in contract.STAGES:
        s = summarize(stages.get(name, []))
        if s is not None:
            lines.append("| %s | %d ms | %d - %d ms | %d |" % (name, s.median, s.min, s.max, s.n))
    return lines


def phase_table(stages):
    from mpbench.stats import summarize

    def cell(s):
        return "%d ms (%d - %d, n=%d)" % (s.median, s.min, s.max, s.n) if s is not None else "-"

    lines = ["Each phase runs from one console line to the next (printk stamps): the kernel's `Run /init`, then "
             "ours: the end of the modules, devices and root stages and the hand-off line; the peer: "
             "`bbinit: modules: done`, `bbinit: medium: <dev>`, `bbinit: root: done`, `bbinit: switch_root`; the "
             "C floor: the same lines with `cinit:`.",
             "", "| phase | mpinit | busybox script | C floor |", "|---|---|---|---|"]
    for name, _, _ in parse.PHASES:
        o, p, f = [summarize(stages.get((side, name), [])) for side in ("ours", "peer", "floor")]
        if o is not None or p is not None or f is not None:
            lines.append("| %s | %s | %s | %s |" % (name, cell(o), cell(p), cell(f)))
    return lines


def measured(m):
    """Did the run give this figure on both sides, without a failed run? The same-mode rows (report.ModeMatched)
    take their figures from the calibration records: they count when a ratio came out of them."""
    if m.ours_failures or m.peer_failures or m.floor_failures:
        return False
    if isinstance(m, ModeMatched):
        return m.ratio() is not None
    return bool(m.ours and m.peer)


def mode_counts(calib, cpus):
    """"Boots per TSC calibration mode, -smp N: mpinit PIT 4, HPET 1; ..." from the plain boots' records."""
    labels = (("ours", "mpinit"), ("peer", "busybox script"), ("floor", "C floor"))
    parts = []
    for side, label in labels:
        modes = {}
        for r in calib:
            if r["side"] == side and r["cpus"] == cpus:
                modes[r["mode"]] = modes.get(r["mode"], 0) + 1
        if modes:
            parts.append("%s %s" % (label, ", ".join("%s %d" % (k, modes[k]) for k in sorted(modes))))
    return "Boots per TSC calibration mode, -smp %d: %s." % (cpus, "; ".join(parts)) if parts else ""


def calibration_section(calib):
    """Markdown: how the guest kernel's TSC calibration fell per side, with what it does to the clocks."""
    return ["Which way the guest kernel calibrated its TSC in each plain boot (arch/x86/kernel/tsc.c: `PIT` = "
            "\"Fast TSC calibration using PIT\" early in setup_arch(), the printk clock counts from the start; "
            "`HPET` = \"Unable to calibrate against PIT\" + \"using HPET reference calibration\" in tsc_init() "
            "after the console is up, the printk clock restarts near 0 when tsc-early registers, so the time the "
            "calibration took is missing from every later printk stamp and from the live root's uptime). Host "
            "clock: from the first kernel console line (bench/mpbench/hostclock.py). Measured while this was "
            "found (the same image, first kernel console line to `Run /init`): 1.43-1.52 s on the host's clock in "
            "PIT boots (printk said 1.58-1.68 s), 1.54-1.60 s in HPET boots (printk said 1.42-1.49 s): the "
            "uptime of an HPET boot reads ~0.2 s short against a PIT boot, while on the host's clock it takes ~0.1 "
            "s longer. `tsc_early_khz=` does not avoid it "
            "(the cpu_khz calibration still runs), nor does `-cpu qemu64,tsc-frequency=...,level=0x16`.", ""] \
        + report.calibration_lines(calib)


def main(argv=None):
    args = parse_args(argv)
    from mpinit import atomic
    from mpinit import kernel as kernel_mod
    from mpinit.paths import build_dir
    from mpinit.runner import ToolError

    started = datetime.now(timezone.utc)
    load0 = "%.2f" % os.getloadavg()[0]
    work = args.work or build_dir() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    metrics, failures = [], []
    stages = {}
    calib = []   # one record per plain boot: side, CPUs, the guest kernel's TSC calibration, both clocks' figures
    unpack, scaled, arithmetic = [], [], []
    default_check = []
    kernel = None
    try:
        kernel = kernel_mod.ensure()
        say("kernel %s" % kernel.kver)
        images = build_images(args, kernel, work, metrics, failures)
        arithmetic = size_arithmetic(images.get("sizes", {}), images["method"])
        time_pack(args, kernel, images, work, metrics, failures)
        if not args.no_boot:
            (work / "gpt-vfat.img").unlink(missing_ok=True)  # a fresh copy each run (boot_medium)
            run_boots(args, kernel, images, work, metrics, failures, toram=False, stages=stages, calib=calib)
            if args.smp2_runs:
                run_boots(args, kernel, images, work, metrics, failures, toram=False, cpus=2, calib=calib)
            run_boots(args, kernel, images, work, metrics, failures, toram=True)
            netfetch.run_boots(args, kernel, work, metrics, failures, say, guest.common())
            unpack = unpack_boots(args, kernel, images, work, failures)
            scaled = scale_bench(args, work, failures)
            if args.ours_preload and args.only in (None, "ours"):
                default_check = check_default(args, kernel, images, work)
    except (ToolError, BenchError, OSError, ValueError) as e:
        print("bench/run.py: error: %s" % e, file=sys.stderr)
        failures.append("the run stopped early: %s" % e)
        if not metrics:
            return 1
    loads = (load0, "%.2f" % os.getloadavg()[0])
    metrics = order(metrics)
    for m in metrics:
        if m.key == "size_modules" and arithmetic:
            m.note += " The 0.4x target's arithmetic (R + M against B + M) is in its own section below."
        if m.key in ("live_root", "live_root_smp2") and calib:
            m.note += " " + mode_counts(calib, 1 if m.key == "live_root" else 2)
    complete = all(measured(m) for m in metrics) and not args.no_boot and not args.only and not failures
    command = "python3 build.py bench" + (" -- " + shlex.join(args.argv) if args.argv else "")
    status = ("Complete run: every figure measured on both sides%s." % (
        " (with the workaround described under Method)" if args.ours_preload else "") if complete else
              "INCOMPLETE run: figures marked \"not measured\" or with failed runs did not come out of this run "
              "(see below); nothing here is estimated.")
    meta = {
        "title": "mpinit vs a busybox-script init: benchmark results",
        "status": status, "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "chart": args.chart.name if args.chart.parent == args.results.parent else str(args.chart),
        "failures": failures,
        "sections": ([("Image size: the 0.4x target's arithmetic", arithmetic)] if arithmetic else [])
        + ([("Where the time in /init goes (plain boots)", phase_table(stages)),
                      ("mpinit's stages (plain boots, from its `mpinit: <stage>: ... (N ms)` lines)",
                       stage_table(stages))] if stages else [])
        + ([("The guest kernel's clock calibration (plain boots)", calibration_section(calib))] if calib else [])
        + ([("Scale: %s disks (devices and medium stages, -smp 1)" % args.scale.replace(",", ", "), scaled)]
           if scaled else [])
        + ([("The kernel's unpack cost per compression (our image)", unpack)] if unpack else [])
        + ([("Without the workaround", default_check)] if default_check else []),
        "method": [
            "- Both images: the same kernel, the same module closure (generic-live), the same compression; "
            "ours from `mpinit pack` (nothing added for the benchmark), the peer from "
            "bench/peer/init.sh + static busybox (bench/mpbench/peer.py); the C floor from bench/cinit/cinit.c "
            "(static musl, bench/mpbench/cinit.py) with the same modules and /etc/modules.order as the peer and the "
            "medium's device path, filesystem type and image path written into its image (no search); it has no "
            "toram.",
            "- Boots: `qemu-system-x86_64 -accel tcg -smp 1 -m %d` (mpinit.qemu.boot), kernel command line `%s` "
            "(+ `toram`), identical for both; only -initrd differs. Runs alternate (the order of the "
            "sides rotates each round). The `-smp 2` rows: the same images, medium and command line, QEMU with "
            "-smp 2 (multi-threaded TCG; the guest's CPU count is checked on every boot), booted after the "
            "-smp 1 plain boots, alternating the same way; on a shared host two vCPU threads compete with other "
            "work more than one does. `printk.devkmsg=on` because /dev/kmsg is otherwise rate-limited (10 "
            "lines per 5 s per open file) and the agent's later lines, its hand-off line included, are dropped."
            % (args.memory, CMDLINE),
            "- The peer insmods every module of the set in dependency order (it has no udev to know which are "
            "needed); mpinit loads what the devices' modaliases and the mounts ask for.",
            "- Console output is not quiet (printk.time needs the kernel lines); both sides pay the same "
            "serial-console cost for the kernel, each its own for its own lines.",
            "- Targets come from issues 7 and 14 and are reported, not asserted.",
            "- The guest's clock: under TCG the guest kernel calibrates its TSC either early against the PIT "
            "(`PIT`: the printk clock and /proc/uptime count from the start) or, when that fails, late against the "
            "HPET (`HPET`: the clock restarts near 0 when tsc-early registers, and the ~0.15-0.25 s the "
            "calibration took are counted nowhere), at random per boot. Every plain boot's mode is recorded "
            "(parse.calibration()) and counted per side in \"The guest kernel's clock calibration\". A late "
            "calibration also makes the boot longer in real time (the host clock, bench/mpbench/hostclock.py, "
            "counts it; measured 0.09-0.12 s more to `Run /init` on every side in one run), so both clocks are "
            "biased when the modes fall unevenly between the sides (earlier runs: mpinit 4 PIT boots of 5, "
            "busybox 1 of 5; mpinit 3 HPET boots of 7, busybox 2 of 7). The 0.8x target is therefore judged on "
            "boots compared within one mode (report.matched_ratio()), on both clocks; the medians over all boots "
            "are reported beside it. The mode is drawn before the initramfs is unpacked, so no init can steer it. "
            "The times in /init are differences of printk stamps taken after the calibration, unaffected.",
        ] + ([
            "- **Workaround in this run**: our booted image also ships and preloads `%s` (config \"modules\", "
            "`--ours-preload`), because the agent at this commit does not load a filesystem's module before "
            "mounting it (its vfat mount fails with ENODEV) and Debian's vfat default iocharset (ascii) needs "
            "nls_ascii, which generic-live lacks. The size figures are of the default images (no "
            "preload)." % args.ours_preload] if args.ours_preload else []),
        "machine": ([("mpinit measured", source_info(args.runtime or _default_runtime()))]
                    + (machine_info(args, kernel, loads) if kernel is not None else [])),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(args.results, report.markdown(metrics, meta).encode())
    atomic.write_bytes(args.chart, report.svg(metrics).encode())
    say("wrote %s and %s%s" % (args.results, args.chart, "" if complete else " (incomplete run)"))
    return 0 if complete else 3


if __name__ == "__main__":
    sys.exit(main())
