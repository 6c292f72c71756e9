# The on-image contract: every path and file format that the host side (`mpinit pack`) writes into the initramfs
# and the agent reads at boot. Both sides import this module; nothing else may spell these paths.
#
# The baked-in configuration is one JSON object at CONFIG_PATH (MicroPython's json is C and fast). Every key is
# optional; DEFAULTS below lists them all with their meaning. `mpinit pack --config FILE` takes the same format.

INIT_PATH = "/init"                               # the static MicroPython binary (build.py runtime)
CONFIG_PATH = "/etc/mpinit/config.json"           # baked-in configuration (DEFAULTS)
MODULES_TABLE_PATH = "/etc/mpinit/modules.tbl"    # precomputed kernel-module table (kmod.py documents the format)
MODULES_DIR = "/lib/modules"                      # <kver>/kernel/... .ko files, uncompressed by default
FIRMWARE_DIR = "/lib/firmware"
KEYMAP_PATH = "/etc/mpinit/keymap.bmap"           # busybox `loadkmap` binary keymap
HOOKS_DIR = "/etc/mpinit/hooks"                   # *.py run at hook points (hooks.py documents them)
CRYPTTAB_PATH = "/etc/crypttab"                   # `mpinit pack --crypttab FILE`: LUKS devices to unlock (crypttab.py)
INITRD_RELEASE = "/etc/initrd-release"            # systemd's marker that this is an initrd (os-release format)

# Run-time state, under /run so that it survives the move into the new root (see handoff).
RUN_DIR = "/run/mpinit"
TIMELINE_PATH = "/run/mpinit/timeline.json"       # [{"stage", "start_ms", "duration_ms", "result"}, ...]
MEDIUM_MOUNT = "/run/initramfs/live"              # the live medium, read-only (dracut's path, kept for tools)
SHUTDOWN_PATH = "/run/initramfs/shutdown"         # the exitrd systemd-shutdown runs at the end (shutdown.py)
ISO_MOUNT = "/run/mpinit/iso"                     # an ISO file's filesystem, when the image sits inside one
TORAM_MOUNT = "/run/mpinit/toram"                 # tmpfs holding the image copied to RAM
IMAGE_MOUNT = "/run/mpinit/rootfsbase"            # the squashfs (overlay lower layer)
ROOTFS_IMG_MOUNT = "/run/mpinit/rootfsimg"          # dracut's LiveOS/rootfs.img inside the image, when present
COW_MOUNT = "/run/mpinit/cow"                     # tmpfs holding overlay upper/ and work/
NET_DIR = "/run/mpinit/net"                       # network boot: <ifname>.json per configured interface (net.py)
NET_RESOLV_CONF = "/run/mpinit/net/resolv.conf"   # network boot: the DNS servers, resolv.conf(5) format
PERSIST_MOUNT = "/run/mpinit/persist"             # the persistence volume (a partition or a loop-mounted file)
PERSIST_HOST = "/run/mpinit/persist-host"         # a filesystem holding a persistence file/directory (not the medium)
PERSIST_CONF = "persistence.conf"                 # live-boot's list of persistent paths, in the volume's root
NEW_ROOT = "/sysroot"                             # where the new root is assembled before the hand-off

# The boot stages, in order (main.py runs them; rd.break=<stage> and hooks name them; cmdline.py maps dracut's
# break-point names onto these).
STAGES = ("early", "cmdline", "modules", "devices", "network", "medium", "toram", "persistence", "root",
          "handoff")

# Directories that every image holds (pack creates them; the agent mounts on them).
IMAGE_DIRS = ("/dev", "/proc", "/sys", "/run", "/tmp", "/sysroot", "/etc/mpinit", "/lib/modules", "/lib/firmware")

DEFAULTS = {
    "cmdline": "",            # default kernel parameters, applied before /proc/cmdline (which wins)
    "modules": [],            # modules loaded at the modules stage, before coldplug, in this order
    "blacklist": [],          # modules never loaded (as module_blacklist=)
    "coldplug": True,         # load modules matching device modaliases
    "defer_slow": True,       # coldplug holds back slow legacy controllers (IDE) until a device is waited for
                              # (kmod.py DEFERRED; rd.mpinit.defer= wins)
    "live_dir": "live",       # directory of the image on the medium (rd.live.dir=)
    "live_image": "filesystem.squashfs",  # image file name in live_dir (rd.live.squashimg=)
    "root_wait_s": 30,        # default deadline for the medium/root to appear when neither rootwait nor rootdelay=
    "toram_reserve_mb": 64,   # copytoram=auto copies only when MemAvailable > image size + this reserve
    "overlay_size": "50%",    # tmpfs size of the overlay upper layer (rd.live.overlay.size=, cow_spacesize=)
    "shell": True,            # rescue REPL on failure (rd.shell=)
    "panic_s": 10,            # with the shell off: seconds before reboot (panic=)
    "hooks": True,            # run HOOKS_DIR/*.py
}


def load_config(text, source=CONFIG_PATH):
    """Parse a configuration (JSON text) into a full dict: DEFAULTS overlaid with the keys given.

    Unknown keys and values of the wrong type raise ValueError naming the key and the source."""
    import json

    try:
        given = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise ValueError("%s: not valid JSON: %s" % (source, e))
    if not isinstance(given, dict):
        raise ValueError("%s: must be a JSON object" % source)
    conf = {}
    for key in DEFAULTS:  # lists copied: a caller appending to conf["modules"] must not change DEFAULTS
        value = DEFAULTS[key]
        conf[key] = list(value) if isinstance(value, list) else value
    for key in given:
        if key not in DEFAULTS:
            raise ValueError("%s: unknown key %r (known: %s)" % (source, key, ", ".join(sorted(DEFAULTS))))
        want = type(DEFAULTS[key])
        value = given[key]
        if want is int and isinstance(value, bool) or not isinstance(value, want):
            raise ValueError("%s: %r must be %s, not %r" % (source, key, want.__name__, value))
        if want is list:
            for item in value:
                if not isinstance(item, str) or not item:
                    raise ValueError("%s: %r must be a list of names, not %r" % (source, key, value))
        if want is int and value < 0:
            raise ValueError("%s: %r must not be negative, not %r" % (source, key, value))
        conf[key] = value
    return conf
