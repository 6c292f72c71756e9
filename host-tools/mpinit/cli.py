"""The `mpinit` command: one sub-command per module, each module registering its own parser.

A command module exposes `register(subparsers)`, which adds one or more sub-parsers and sets `func` on each to a
callable taking the parsed arguments and returning an exit status. Modules keep heavy imports inside their
functions so that `mpinit --help` stays fast.
"""

import argparse
import importlib
import sys

# Command modules, in the order `mpinit --help` lists them.
COMMAND_MODULES = (
    "mpinit.cmd_pack",      # pack
    "mpinit.cmd_archive",   # ls, extract
    "mpinit.cmd_modules",   # modules
    "mpinit.cmd_probe",     # probe
    "mpinit.cmd_replay",    # replay
    "mpinit.cmd_analyze",   # analyze
    "mpinit.cmd_qemu",      # qemu
    "mpinit.cmd_live",      # squash, live-image, live-iso
    "mpinit.cmd_persistence",  # persistence-file
    "mpinit.cmd_netboot",   # netboot-tree
    "mpinit.cmd_uki",       # uki
    "mpinit.cmd_hooks",     # install-hooks
    "mpinit.cmd_demo",      # demo
)


class UsageError(Exception):
    """Bad input from the user: printed as `mpinit: error: ...` with exit status 2, no traceback."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mpinit",
        description="Build and inspect mpinit initramfs images and live media.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # a command not written yet
        module.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UsageError as e:
        print("mpinit: error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mpinit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
