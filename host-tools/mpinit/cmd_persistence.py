"""`mpinit persistence-file`: a persistence image file to drop on a live stick (docs/live-media.md).

    mpinit persistence-file -o persistence --size 1G [--label persistence] [--fs ext4]
"""

from pathlib import Path


def register(sub):
    p = sub.add_parser("persistence-file", help="make a persistence image file (ext4 + persistence.conf) for a stick",
                       description="An ext2/3/4 filesystem image holding persistence.conf with '/ union', made "
                                   "without a loop device or a mount. Copy it to the root of the live medium "
                                   "under its label's name (default 'persistence'; casper: 'casper-rw') and boot "
                                   "with `persistence` (live-boot) or `persistent` (casper).")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="the image file to write")
    p.add_argument("--size", required=True, help="its size: 512M, 2G, 1GiB (at least 8 MiB)")
    p.add_argument("--label", default=None, help="filesystem label (default persistence)")
    p.add_argument("--fs", default="ext4", help="ext4 (default), ext3 or ext2")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_persistence_file)


def run_persistence_file(args):
    from .cli import UsageError
    from .persistence import DEFAULT_LABEL, PersistenceError, make_image, parse_size
    from .runner import ToolError
    from .sizes import human

    try:
        spec = make_image(args.output, parse_size(args.size), label=args.label or DEFAULT_LABEL, fs=args.fs,
                          force=args.force)
    except (PersistenceError, ToolError) as e:
        raise UsageError(str(e))
    print("mpinit persistence-file: wrote %s (%s %s, label %s, persistence.conf '/ union')"
          % (args.output, human(spec.size), spec.fs, spec.label))
    return 0
