"""`mpinit demo`: boot a live system in QEMU with its console on this terminal, then summarise the boot.

Steps: the Debian cloud kernel (mpinit.kernel.ensure), an initramfs packed from the runtime for it (`mpinit pack
--modules generic-live`), the GPT demo disk (a FAT32 partition MPLIVE holding /live/filesystem.squashfs), a boot
with `root=live:LABEL=MPLIVE`; the live root prints its MPINIT-LIVE-OK line and powers off. The summary reads the
console: the time to the live root (the root's own uptime), the initramfs size, and the agent's stage timeline
from its `mpinit: <stage>: ... (N ms)` lines, and writes the boot chart (`mpinit analyze`) beside the console log.
"""

import re
import sys
from dataclasses import dataclass
from pathlib import Path

DEMO_APPEND = "root=live:LABEL=MPLIVE"

# An agent line on the console, after the kernel's optional "[ seconds]" timestamp:
#   [    2.24] mpinit: medium: /run/initramfs/live/... on /dev/vda1 (15 ms)
#   [    2.24] mpinit: medium: done in 15 ms
_LINE = re.compile(r"^(?:\[\s*(?P<ts>\d+\.\d+)\]\s*)?mpinit: (?P<stage>[a-z][a-z0-9_-]*): (?P<text>.*)$")
_DURATION = re.compile(r"(?:done in (?P<a>\d+) ms|\((?P<b>\d+) ms\))\s*$")


@dataclass
class StageTime:
    stage: str
    duration_ms: int
    at_s: float | None   # kernel timestamp of the line (seconds since boot), when the console showed one
    text: str            # what the agent said about the stage


def parse_timeline(output):
    """The agent's finished stages, in console order: lines `mpinit: <stage>: ... (N ms)` or `... done in N ms`.

    Defensive: lines that do not fit are skipped, a stage reported twice (resume() after a break) keeps both."""
    stages = []
    for raw in output.replace("\r", "").split("\n"):
        i = raw.find("mpinit: ")
        if i < 0:
            continue
        # Keep the timestamp when the line starts with one; drop anything else before "mpinit:".
        head = raw[:i].strip()
        line = raw[i:] if not head.startswith("[") else head + " " + raw[i:]
        m = _LINE.match(line)
        if not m:
            continue
        d = _DURATION.search(m.group("text"))
        if not d:
            continue
        ms = int(d.group("a") or d.group("b"))
        ts = float(m.group("ts")) if m.group("ts") else None
        stages.append(StageTime(m.group("stage"), ms, ts, m.group("text")[:d.start()].rstrip(" ,")))
    return stages


def kernel_init_time(output):
    """Kernel timestamp (s) of "Run /init as init process": where the kernel handed over to the initramfs."""
    m = re.search(r"\[\s*(\d+\.\d+)\]\s*Run /init as init process", output)
    return float(m.group(1)) if m else None


def summary(result, initrd_size, initrd_path=None):
    """The text printed after the boot (a pure function of the BootResult, for tests)."""
    out = ["", "=" * 72, "mpinit demo summary", "=" * 72]
    facts = result.marker_fields()
    if result.ok:
        out.append("live root reached:      yes (%s, / is %s, writable: %s)" % (
            result.marker_line.split(" ")[0], facts.get("rootfs", "?"), facts.get("rw", "?")))
        if "uptime" in facts:
            out.append("time to the live root:  %s s after the kernel started (the root's /proc/uptime)"
                       % facts["uptime"])
    else:
        why = "QEMU killed at the deadline" if result.timed_out else "QEMU exited"
        out.append("live root reached:      NO (%s after %.1f s; the console above says why)"
                   % (why, result.elapsed_s))
    handover = kernel_init_time(result.output)
    if handover is not None:
        out.append("kernel to /init:        %.2f s" % handover)
    size = "%d bytes (%.2f MiB)" % (initrd_size, initrd_size / (1024 * 1024))
    out.append("initramfs size:         %s%s" % (size, " - %s" % initrd_path if initrd_path else ""))
    out.append("wall clock in QEMU/TCG: %.1f s" % result.elapsed_s)
    stages = parse_timeline(result.output)
    if stages:
        out.append("boot timeline (the agent's stages):")
        for s in stages:
            at = "%7.2f s" % s.at_s if s.at_s is not None else "        "
            out.append("  %s  %-11s %6d ms  %s" % (at, s.stage, s.duration_ms, s.text[:60]))
        out.append("  total in stages: %d ms" % sum(s.duration_ms for s in stages))
    else:
        out.append("boot timeline:          no `mpinit: <stage>: ... (N ms)` lines on the console")
    return "\n".join(out)


def boot_chart(log_path, svg_path):
    """Write the boot chart of the demo's console log (mpinit analyze); the line pointing to it."""
    from . import analyze, atomic

    cmd = "mpinit analyze %s --svg %s" % (log_path, svg_path)
    try:
        boot = analyze.load(log_path)
        atomic.write_bytes(svg_path, analyze.svg(boot).encode())
    except (analyze.AnalyzeError, OSError) as e:
        return "boot chart: not written (%s); `%s` makes one from a log" % (e, cmd)
    return "boot chart:  %s (table and chart again: %s)" % (svg_path, cmd)


def register(sub):
    p = sub.add_parser("demo", help="boot a live system in QEMU with the console here, then summarise",
                       description=__doc__)
    p.add_argument("--runtime", type=Path, default=None,
                   help="the /init binary (default: build/mpinit-init, from `python3 build.py runtime`)")
    p.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64",
                   help="the machine: x86_64 (default) or arm64 (Debian's cloud-arm64 kernel on qemu-system-aarch64 "
                        "-M virt, the runtime of `build.py runtime --arch arm64`, an arm64 busybox live root)")
    p.add_argument("--append", default="", help="extra kernel parameters (e.g. toram, rd.break=premount)")
    p.add_argument("--memory", type=int, default=256, metavar="MB", help="guest memory (default 256)")
    p.add_argument("--timeout", type=float, default=180, metavar="S", help="kill QEMU after S seconds")
    p.add_argument("--no-interactive", action="store_true",
                   help="do not connect this terminal's keyboard (the console is still shown)")
    p.set_defaults(func=run)


def run(args):
    from . import kernel as kernel_mod
    from . import media, paths, qemu
    from .cli import UsageError
    from .runner import ToolError
    from .runner import run as run_tool

    runtime = args.runtime or paths.runtime(args.arch)
    if not Path(runtime).is_file():
        raise UsageError("--runtime %s: no such file (build it with `python3 build.py runtime --arch %s`)"
                         % (runtime, args.arch))
    work = paths.build_dir() / ("demo" if args.arch == "x86_64" else "demo-" + args.arch)
    work.mkdir(parents=True, exist_ok=True)
    try:
        print("mpinit demo: 1/4 the kernel (Debian's cloud kernel, drivers as modules)", flush=True)
        k = kernel_mod.ensure(arch=args.arch)
        print("mpinit demo: 2/4 the initramfs: %s as /init, the agent, modules for %s" % (runtime, k.kver),
              flush=True)
        initrd = work / "initrd.img"
        run_tool([sys.executable, "-m", "mpinit", "pack", "-o", initrd, "--init", runtime, "--arch", args.arch,
                  "--kernel-modules", k.modules_dir, "--modules", "generic-live"])
        print("mpinit demo: 3/4 the live medium (GPT disk, FAT32 partition MPLIVE, squashfs of a busybox root)",
              flush=True)
        if args.arch == "x86_64":
            disk = media.ensure("gpt-vfat")
        else:
            from . import archmedia

            disk = archmedia.ensure("gpt-vfat", args.arch)   # the same disk with the arch's busybox
        append = (DEMO_APPEND + " " + args.append).strip()
        interactive = not args.no_interactive
        print("mpinit demo: 4/4 booting in QEMU (TCG) with: %s" % append, flush=True)
        if interactive and sys.stdin.isatty():
            print("             the console is yours: at a `>>>` rescue prompt try help(); Ctrl-C stops QEMU",
                  flush=True)
        result = qemu.boot(k.vmlinuz, initrd, disks=[disk.path], append=append, memory_mb=args.memory,
                           timeout_s=args.timeout, log_path=work / "console.log", interactive=interactive,
                           echo=False, arch=args.arch)
        if not interactive:
            sys.stdout.write(result.output)
    except ToolError as e:
        raise UsageError(str(e))
    print(summary(result, initrd.stat().st_size, initrd))
    print("console log: %s" % (work / "console.log"))
    print(boot_chart(work / "console.log", work / "boot.svg"))
    return 0 if result.ok else 1
