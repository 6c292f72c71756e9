# mpinit's /init: the boot as one readable sequence of stages (contract.STAGES).
#
#   start()  refuses unless PID 1, then boot(); whatever happens, PID 1 does not return into a kernel panic:
#            every failure goes to rescue.fail() (report, REPL or timed reboot).
#   boot()   early -> cmdline -> modules -> devices -> network -> medium -> toram -> persistence -> root ->
#            handoff. Each stage: rd.break REPL before it, hooks before_<stage>/after_<stage>, "mpinit: <stage>:
#            ..." lines in /dev/kmsg, a timeline entry {stage, start_ms, duration_ms, result}; a failure retries the
#            stage after resume().
#
# The stage bodies live in their modules (early.py, medium.py, toram.py, root.py, handoff.py); cmdline, modules
# and devices are short and sit here. docs/agent.md is the stage-by-stage reference.
from micropython import const

from . import contract, fsutil, kernlog, log
from . import syscalls as sc
from .failure import BootError, oserror_text

_POLL_MS = const(100)   # device wait: how often /sys/class/block is looked at again
# What a live boot's root stage mounts with (root.py): loaded during the device wait instead of after it.
_LIVE_MODULES = ("fs-squashfs", "fs-overlay", "loop")


class Stopped(Exception):
    """The machine was rebooted or powered off and the call returned (only a recording implementation, such as the
    fake machine, returns from reboot(2)): the boot ends."""


class Context:
    """What the stages share, and what hooks and the rescue REPL see as `ctx`."""

    def __init__(self):
        self.config = dict(contract.DEFAULTS)
        self.config_error = None    # a bad config.json, reported by the cmdline stage
        self.opts = None            # cmdline.Options
        self.modules = None         # kmod.Modules
        self.devices = None         # [blockdev.Device]
        self.root_dev = None        # plain root: the Device of root=
        self.medium_dev = None      # live: the Device holding the image (None: image in the initramfs)
        self.medium = None          # live: where the medium is mounted (MEDIUM_MOUNT) or None
        self.iso_loop = None        # loop device of an ISO file on a partition
        self.image = None           # path of the squashfs image (a file, or a whole block device)
        self.image_size = 0
        self.image_loop = None      # the loop device the squashfs is mounted from
        self.optical = False
        self.toram = False
        self.new_root = contract.NEW_ROOT
        self.timeline = []          # [{"stage", "start_ms", "duration_ms", "result"}]
        self.stage = None           # the stage running (or failed)
        self.stage_start = 0
        self.console = False
        self.tried = []
        self.hooks = None
        self._broken = []           # stages whose rd.break REPL already ran
        self._parsed = None         # (/proc/cmdline text, its cmdline.Options) parsed by breaks() before the
                                    # cmdline stage
        self.handoff_step = 0       # handoff: irreversible steps done (resume() continues after them)
        self.wait_started = None    # uptime_ms when the devices stage began waiting (the medium stage goes on
                                    # with the rest of the same deadline instead of a second full one)
        self.net = None             # network boot: the net.Config the network stage applied

    def record(self, stage, start, result):
        self.timeline.append({"stage": stage, "start_ms": start, "duration_ms": sc.uptime_ms() - start,
                              "result": result})

    def deadline_ms(self):
        """How long to wait for the medium / root: rootdelay= seconds, rootwait = no limit (None), else the
        config's root_wait_s."""
        opts = self.opts
        if opts is not None and opts.rootdelay is not None:
            return int(opts.rootdelay) * 1000
        if opts is not None and opts.rootwait:
            return None
        return int(self.config["root_wait_s"]) * 1000

    def breaks(self):
        if self.opts is not None:
            return self.opts.break_at
        # Before the cmdline stage has run (rd.break=cmdline, rd.break=early): a quick look at /proc/cmdline. The
        # parse is kept for the cmdline stage, which then does not parse the same line a second time.
        try:
            from . import cmdline

            text = fsutil.read_text("/proc/cmdline")
            if self._parsed is not None and self._parsed[0] == text:
                return self._parsed[1].break_at  # after early, then before cmdline: one parse for both
            opts = cmdline.parse(text, self.config["cmdline"])
        except Exception:  # noqa: BLE001 - the cmdline stage reports a bad line properly
            return []
        self._parsed = (text, opts)
        return opts.break_at

    def write_timeline(self):
        import json

        fsutil.makedirs(contract.RUN_DIR)
        fsutil.write_atomic(contract.TIMELINE_PATH, json.dumps(self.timeline))

    def __repr__(self):
        return "<boot context: stage=%s image=%s medium=%s new_root=%s>" % (self.stage, self.image, self.medium,
                                                                            self.new_root)


# ---- the boot ------------------------------------------------------------------------------------------------

def boot(ctx):
    """The whole boot, top to bottom. Returns only when the hand-off was recorded instead of performed."""
    from . import early, handoff, medium, root, toram

    stage(ctx, "early", early.run)        # /proc /sys /dev /run /dev/pts /dev/shm, console on 0-2, keymap
    stage(ctx, "cmdline", cmdline_stage)  # /proc/cmdline + baked-in config -> ctx.opts; console log level
    stage(ctx, "modules", modules_stage)  # config + modules= with dependencies, then coldplug
    stage(ctx, "devices", devices_stage)  # /dev nodes, by-* links, mdadm/lvm, wait for the root or medium
    stage(ctx, "network", network_stage)  # network boot: link, carrier, ip=/DHCP; skipped when not asked for
    stage(ctx, "medium", medium.run)      # live: find + mount the medium, find (and check) the image
    stage(ctx, "toram", toram.run)        # live: copy the image into RAM when asked, release the medium
    stage(ctx, "persistence", persistence_stage)  # live: the persistent overlay layer when asked for (else tmpfs)
    stage(ctx, "root", root.run)          # squashfs + tmpfs + overlay, or the plain root, at NEW_ROOT
    return stage(ctx, "handoff", handoff.run)  # move /dev /proc /sys /run, empty the initramfs, exec init


def stage(ctx, name, fn):
    """Run one stage: break point, hooks, timing, log; on failure the rescue path, and after resume() the stage
    again. Returns the stage's one-line result."""
    from . import hooks

    if ctx.hooks is None:
        ctx.hooks = hooks.Hooks(enabled=bool(ctx.config.get("hooks", True)))
    while True:
        if ctx.opts is not None and ctx.opts.capture:  # rd.mpinit.capture=<target>@<stage> (capture.py)
            from . import capture

            capture.at(ctx, name)
        _break_point(ctx, name)
        ctx.stage = name
        start = sc.uptime_ms()
        ctx.stage_start = start
        log.info("%s: start" % name)
        kernlog.mark()  # the failure report shows what the kernel logged from here on
        err = None
        try:
            ctx.hooks.run("before_" + name, ctx)
            result = fn(ctx) or "ok"
            ctx.hooks.run("after_" + name, ctx)
        except BootError as e:
            err = e
        except (Exception, KeyboardInterrupt, SystemExit) as e:  # noqa: BLE001 - PID 1 must not die
            err = internal_error(name, e)
        if err is None:
            ctx.record(name, start, result)
            log.info("%s: %s (%d ms)" % (name, result, sc.uptime_ms() - start))
            if name == "early":
                _break_point(ctx, "early")  # rd.break=early: the first moment a console exists
            return result
        if err.stage == "hook":
            err.stage = name
        kernlog.add_to(err)
        ctx.record(name, start, "failed: %s" % err.message)
        from . import rescue

        if not rescue.fail(ctx, err):
            raise Stopped()
        log.notice("%s: resumed from the rescue shell, running the stage again" % name)


def _break_point(ctx, name):
    if name == "early" and ctx.stage is None:
        return  # before early there is no console (nor /proc) yet: stage() calls again once early is done
    if name in ctx._broken or name not in ctx.breaks():
        return
    ctx._broken.append(name)
    from . import rescue

    log.notice("%s: rd.break=%s: rescue shell before the stage; resume() continues" % (name, name))
    if rescue.break_shell(ctx, name) == "stopped":
        raise Stopped()


def internal_error(stage_name, e):
    """A BootError for an exception no stage anticipated, with its traceback as what was seen."""
    from .failure import format_exception

    if isinstance(e, OSError):
        msg = oserror_text(e)
    else:
        msg = "%s: %s" % (type(e).__name__, e)
    return BootError(stage_name, "unexpected error: %s" % msg, seen=format_exception(e))


# ---- the short stages ----------------------------------------------------------------------------------------

def cmdline_stage(ctx):
    from . import cmdline, early

    if ctx.config_error:
        raise BootError("cmdline", ctx.config_error, param=contract.CONFIG_PATH)
    try:
        text = fsutil.read_text("/proc/cmdline")
    except OSError as e:
        raise BootError("cmdline", "cannot read /proc/cmdline: %s" % oserror_text(e))
    parsed = ctx._parsed
    ctx._parsed = None
    try:
        # The break point before this stage parsed the same line already (Context.breaks()).
        opts = parsed[1] if parsed is not None and parsed[0] == text else cmdline.parse(text, ctx.config["cmdline"])
    except ValueError as e:
        raise BootError("cmdline", str(e), param=getattr(e, "param", None), seen=["/proc/cmdline: " + text])
    ctx.opts = opts
    log.set_debug(bool(opts.debug))
    early.set_console_loglevel(early.console_loglevel(opts.quiet, opts.loglevel, opts.debug))
    if opts.live is not None:
        what = "live from %s" % (opts.live or "any medium")
    else:
        what = "root=%s" % opts.root
    return what


def modules_stage(ctx):
    from . import kmod

    opts = ctx.opts
    m = kmod.of(ctx)  # ctx.modules, with one timeline entry per module load
    m.blacklist(list(ctx.config["blacklist"]) + list(opts.blacklist))
    # kmod DEFERRED: slow legacy controllers (IDE) wait until a device is waited for; rd.mpinit.defer=0 or config
    # "defer_slow": false loads them at once.
    m.defer = bool(ctx.config.get("defer_slow", True)) if getattr(opts, "defer", None) is None else opts.defer
    wanted = list(ctx.config["modules"]) + list(opts.modules)
    check_kernel_release(m)
    try:
        m.load_many(wanted, opts.module_params)
        cold = m.coldplug() if ctx.config["coldplug"] else []
    except ValueError as e:  # a broken module table
        raise BootError("modules", str(e), param=contract.MODULES_TABLE_PATH)
    missing = [n for n, why in m.failed if n in wanted]
    if missing:
        # Not fatal here: the device may not need them (or be built in). If the root never shows up, the failure
        # report lists them.
        log.warning("modules: not loaded: %s" % ", ".join(missing))
    return "%d loaded (%d by coldplug), %d failed%s" % (len(m.loaded), len(cold), len(m.failed),
                                                     ", %d without a device" % len(m.absent) if m.absent else "")


def check_kernel_release(m):
    """The image's modules must be for the running kernel: finit_module(2) refuses others one by one with
    ENOEXEC ("Invalid module format"), which says nothing about the cause. Fails at once when modules are packed,
    only warns when the image has none."""
    try:
        packed = m.available()
    except ValueError as e:  # a broken module table
        raise BootError("modules", str(e), param=contract.MODULES_TABLE_PATH)
    running = sc.uname()[2]
    if not m.kver or m.kver == running:
        return
    if packed:
        raise BootError("modules", "the image's %d modules are for kernel %s, but the running kernel is %s"
                        % (len(packed), m.kver, running), param=contract.MODULES_TABLE_PATH,
                        tried=["%s: kver %s" % (contract.MODULES_TABLE_PATH, m.kver)],
                        seen=["uname -r: %s" % running,
                              "fix: mpinit pack --kver %s ... (or --kernel-modules /lib/modules/%s), or boot the "
                              "kernel %s the image was made for" % (running, running, m.kver)])
    log.warning("modules: the image was packed for kernel %s, running %s (no modules packed, so nothing to load)"
                % (m.kver, running))


def scan_devices(ctx):
    """Enumerate block devices, make their /dev nodes and by-* links; ctx.devices. The one rescan of every stage
    that waits for a device (devices, medium, persistence, storage): new devices only cost anything."""
    from . import blockdev

    # Makes the nodes of new devices (why one could not be made is in node_errors); a device whose uevent the
    # modules' listener has read is not read again from sysfs.
    devices = blockdev.scan(ctx.modules.announced() if ctx.modules is not None else None)
    for name, e in blockdev.node_errors:
        log.warning("devices: node for %s: %s" % (name, oserror_text(e)))
    try:
        blockdev.make_links(devices, only_probed=True)  # probing every device here would undo blockdev's laziness
    except OSError as e:
        log.warning("devices: /dev/disk links: %s" % oserror_text(e))
    ctx.devices = devices
    return devices


def wanted_spec(opts):
    """The device spec this boot waits for ("" or None: nothing specific)."""
    if opts.live is None:
        return opts.root
    if opts.iso_file:
        return opts.iso_dev
    if opts.url:
        return None  # a network boot: no block device to wait for
    spec = opts.live
    if spec.startswith("/") and not spec.startswith("/dev/"):
        return None  # an image path, not a device
    return spec


def _searches_every_device(opts):
    """A live boot that names no device: the medium stage tries every block device for the image."""
    if opts.live is None or opts.url:
        return False
    if opts.iso_file:
        return not opts.iso_dev
    return not opts.live


def spec_param(opts):
    """The kernel parameter that named the device being waited for, for messages."""
    if opts.live is None:
        return "root=%s" % (opts.root or "")
    if opts.iso_file:
        return "img_dev=%s" % (opts.iso_dev or "")
    return "root=live:%s" % opts.live


def network_stage(ctx):
    opts = ctx.opts
    if not opts.url and not opts.neednet:
        return "skipped: no network boot asked for"  # without importing any network code
    from . import net

    return net.run(ctx)


def persistence_stage(ctx):
    opts = ctx.opts
    if opts.live is None:
        return "skipped: not a live boot"
    if not opts.persist:
        return "skipped: not requested"  # without importing the persistence code
    from . import persist

    return persist.run(ctx)


def devices_stage(ctx):
    opts = ctx.opts
    if opts.live is None and not opts.root:
        raise BootError("devices", "no root= on the kernel command line and no live medium requested",
                        param="root=", seen=["/proc/cmdline: " + fsutil.read_text("/proc/cmdline", "")])
    from . import blockdev, storage

    devices = scan_devices(ctx)
    stack = storage.Stack(ctx)  # md RAID -> LUKS -> LVM, when asked for (storage.py)
    start = sc.uptime_ms()
    ctx.wait_started = start
    deadline = ctx.deadline_ms()
    devices = stack.settle(devices, 0, deadline)
    spec = wanted_spec(opts)
    if not spec:
        if ctx.modules is not None and _searches_every_device(opts):
            ctx.modules.load_deferred()  # the medium stage looks at every device: the slow controllers' too
        return "%d block devices" % len(devices)
    try:
        dev = blockdev.find(spec, devices)
    except ValueError as e:
        raise BootError("devices", str(e), param=spec_param(opts))
    if dev is None and ctx.modules is not None:
        ctx.modules.load_deferred()  # not there after the fast chain: the slow controllers (kmod DEFERRED) first
        if opts.live is not None:
            ctx.modules.start(_LIVE_MODULES)  # loaded while the disk probes (kmod.Modules.wait_event)
    while dev is None:
        if deadline is not None and sc.uptime_ms() - start >= deadline:
            break
        if ctx.modules is not None:
            ctx.modules.wait_event(_POLL_MS)  # woken by the kernel's next uevent (a disk, a partition) if sooner
        else:
            sc.sleep_ms(_POLL_MS)
        if ctx.modules is not None and ctx.config["coldplug"]:
            ctx.modules.coldplug()  # devices probed asynchronously, USB sticks and their partitions appear late
        devices = stack.settle(scan_devices(ctx), sc.uptime_ms() - start, deadline)
        dev = blockdev.find(spec, devices)
    if dev is None:
        if opts.live is not None:
            # Let the medium stage report it with what was tried; its own wait has already expired.
            log.warning("devices: %s not found within %d s" % (spec, deadline // 1000))
            return "%s not found yet" % spec
        seen = blockdev.describe(devices)
        if isinstance(seen, str):
            seen = seen.split("\n")
        if not seen:
            seen = ["no block devices at all"]
        if ctx.modules is not None and ctx.modules.failed:
            seen.append("modules that failed to load: %s" % ", ".join([n for n, _ in ctx.modules.failed]))
        seen.extend(stack.report())
        raise BootError("devices", "root device %s did not appear within %d s" % (spec, deadline // 1000),
                        param="%s (rootwait / rootdelay= to wait longer)" % spec_param(opts),
                        tried=["looked for %s in /sys/class/block every %d ms" % (spec, _POLL_MS)], seen=seen)
    try:
        blockdev.make_links(devices, only_probed=True)  # the match's own links (probed after the last scan's)
    except OSError as e:
        log.warning("devices: /dev/disk links: %s" % oserror_text(e))
    if opts.live is None:
        ctx.root_dev = dev
    return "%s is %s (%d block devices, %d ms)" % (spec, dev.path, len(devices), sc.uptime_ms() - start)


# ---- PID 1 ---------------------------------------------------------------------------------------------------

def load_config(ctx, path=contract.CONFIG_PATH):
    try:
        text = fsutil.read_text(path, "")
    except OSError:
        text = ""
    try:
        ctx.config = contract.load_config(text, path)
    except ValueError as e:
        ctx.config_error = str(e)


def run():
    """The boot with its last-resort guard, without the PID check (the fake machine calls this)."""
    ctx = Context()
    try:
        load_config(ctx)
        boot(ctx)
    except Stopped:
        return ctx
    except (Exception, KeyboardInterrupt, SystemExit) as e:  # noqa: BLE001 - the failure path of last resort
        from . import rescue

        try:
            if not rescue.fail(ctx, internal_error(ctx.stage or "early", e), can_resume=False):
                return ctx
        except Stopped:
            return ctx
        except (Exception, KeyboardInterrupt, SystemExit):  # noqa: BLE001
            pass
        rescue.reboot_or_hang(sc.RB_AUTOBOOT)
    return ctx


def start():
    """The entry point of /init. Refuses to run as anything but PID 1 (it would mount over the host's /proc)."""
    if sc.getpid() != 1:
        print("mpinit: /init must run as PID 1 from an initramfs; run the binary under another name for a REPL")
        sc.exit(2)
        return None
    return run()
