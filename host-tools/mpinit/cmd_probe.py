"""`mpinit probe FILE|DEVICE...`: the agent's own probes (mpinit_agent.probe) on the host, printed like
`blkid -p -o export`, so a "medium not found" can be debugged before rebooting.

Output: for each FILE, `DEVNAME=FILE` then its KEY=value lines, a blank line between blocks. A partitioned disk
(or disk image) prints its own block (PTTYPE, PTUUID) and then one block per partition with
`DEVNAME=FILE:partN` (N = the kernel's partition number, so disk.img:part1 is what boots as /dev/sda1), holding
PARTUUID, PARTLABEL (GPT), PART_ENTRY_* and the filesystem keys read at the partition's offset. Values are
escaped exactly as blkid's export format escapes them (backslash before space and \\"'$`<>, ^X for control
characters, M- for bytes >= 128), so the two outputs can be diffed; the order of keys within a block may differ
from blkid's (it varies by prober there). Exit status: 0 when something was recognised, 1 when nothing was on
any FILE (blkid says 2), 2 when a FILE cannot be read (named on stderr; the other FILEs are still printed).
"""

import sys

# blkid's order of keys in its export output, as far as the probes print them; anything else follows, sorted.
KEY_ORDER = ("LABEL_FATBOOT", "LABEL", "UUID", "UUID_SUB", "LOGUUID", "EXT_JOURNAL", "SUBSYSTEM", "VERSION",
             "SEC_TYPE", "BLOCK_SIZE", "TYPE", "USAGE", "PTUUID", "PTTYPE", "PARTLABEL", "PARTUUID",
             "PART_ENTRY_SCHEME", "PART_ENTRY_NAME", "PART_ENTRY_UUID", "PART_ENTRY_TYPE", "PART_ENTRY_FLAGS",
             "PART_ENTRY_NUMBER", "PART_ENTRY_OFFSET", "PART_ENTRY_SIZE")

_SHELL_SPECIAL = " \\\"'$`<>"


def register(sub):
    p = sub.add_parser("probe", help="identify filesystems and partitions like `blkid -p`, with mpinit's probes",
                       description="Run the init agent's own probe code on files or block devices and print "
                                   "`blkid -p -o export` style KEY=value blocks (TYPE, UUID, LABEL, ...). A "
                                   "partitioned disk also prints one block per partition, named FILE:partN, "
                                   "with PARTUUID/PARTLABEL and the filesystem keys read at its offset.")
    p.add_argument("files", nargs="+", metavar="FILE|DEVICE")
    p.add_argument("--sector-size", type=int, default=512, metavar="N",
                   help="logical sector size for partition tables (default 512; 4096 for 4Kn disks)")
    p.set_defaults(func=run)


def escape(value):
    """A value as blkid's `-o export` prints it (misc-utils/blkid.c safe_print with its export escape set)."""
    out = []
    for ch in str(value).encode("utf-8", "surrogateescape"):
        if ch >= 128:
            out.append("M-")
            ch -= 128
        if ch < 32 or ch == 0x7F:
            out.append("^" + chr(ch ^ 0x40))
        elif chr(ch) in _SHELL_SPECIAL:
            out.append("\\" + chr(ch))
        else:
            out.append(chr(ch))
    return "".join(out)


def ordered(info):
    keys = [k for k in KEY_ORDER if k in info]
    keys += sorted(k for k in info if k not in KEY_ORDER)
    return [(k, info[k]) for k in keys]


def export_lines(devname, info):
    return ["DEVNAME=%s" % escape(devname)] + ["%s=%s" % (k, escape(v)) for k, v in ordered(info)]


def probe_file(path, sector=512):
    """[(devname, info dict)] for one file or device: the whole, then each partition (FILE:partN)."""
    from mpinit_agent import probe

    with open(path, "rb") as f:
        whole = probe.probe(f)
        blocks = [(path, whole)]
        if whole.get("PTTYPE"):
            for part in probe.partitions(f, sector=sector):
                info = probe.probe_partition(f, part, sector=sector)
                for key in ("PART_ENTRY_SCHEME", "PART_ENTRY_TYPE", "PART_ENTRY_FLAGS", "PART_ENTRY_NUMBER",
                            "PART_ENTRY_OFFSET", "PART_ENTRY_SIZE"):
                    if key in part:
                        info[key] = part[key]
                blocks.append(("%s:part%d" % (path, part["PART_ENTRY_NUMBER"]), info))
    return blocks


def run(args):
    from .cli import UsageError

    if args.sector_size not in (512, 1024, 2048, 4096):
        raise UsageError("--sector-size %d: want 512, 1024, 2048 or 4096" % args.sector_size)
    found = False
    printed = []
    errors = []
    for path in args.files:
        try:
            blocks = probe_file(path, args.sector_size)
        except OSError as e:
            errors.append("%s: %s" % (path, e.strerror or e))
            continue
        for devname, info in blocks:
            if not info:
                continue
            found = True
            printed.append("\n".join(export_lines(devname, info)))
    if printed:
        print("\n\n".join(printed))
    for message in errors:
        print("mpinit probe: %s" % message, file=sys.stderr)
    if errors:
        return 2
    return 0 if found else 1
