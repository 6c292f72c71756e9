# LUKS (1 and 2) unlocking with a packed cryptsetup: which devices to open under which names (kernel parameters,
# the baked-in /etc/crypttab), where the key comes from (key files in the initramfs or on another device, else a
# passphrase typed on the console), and the cryptsetup call itself.
#
# Parameters (cmdline.py fills Options; README "Kernel parameters" documents them):
#   rd.luks=0                       unlock nothing
#   rd.luks.uuid=<uuid>             only these LUKS devices (UUID prefix match; "luks-<uuid>" accepted), named
#                                   luks-<full uuid> unless crypttab or rd.luks.name= names them (dracut.cmdline(7))
#   rd.luks.name=<uuid>=<name>      that device under that name (systemd-cryptsetup-generator(8))
#   rd.luks.key=<path>[:<keydev>[:<luksdev>]]   a key file in the initramfs, or on keydev (mounted read-only for
#                                   the read), for every LUKS device or only luksdev
#   rd.luks.options=<opts>          for every device: discard (--allow-discards), readonly
#   rd.luks.timeout=<s>             how long a key device is waited for before the passphrase is asked (default 10),
#                                   and how long each passphrase prompt waits for a line (dracut.cmdline(7): "0
#                                   means forever", the default): then the rescue report
#   cryptdevice=<dev>:<name>[:allow-discards], cryptkey=rootfs:<path> | <dev>:<fstype>:<path> |
#                                   <dev>:<offset>:<size>                       (mkinitcpio's encrypt hook)
#   /etc/crypttab in the image      (crypttab.py) its entries, unless rd.luks.uuid= leaves them out
# Without any of these, a plain-root boot unlocks every LUKS device it finds (dracut's default), but only while
# root= names no device present (a root found without unlocking leaves every other disk alone and unprobed) and
# only with cryptsetup packed (an image without it is dracut without its crypt module: the report then names the
# LUKS devices seen); a live boot unlocks none.
#
# The unlock: `cryptsetup open --type luks <dev> <name> --key-file=-` with the key or passphrase written to its
# stdin through a pipe (syscalls.spawn stdin_data): never on argv (/proc/<pid>/cmdline is world-readable) and
# never in a file. DM_DISABLE_UDEV=1 makes libdevmapper create the node itself instead of waiting for a udev that
# does not exist (libdevmapper's libdm-common.c); devmapper.sync_nodes() then makes /dev/mapper/<name>.
# cryptsetup(8) exit codes: 1 wrong parameters, 2 no permission (bad passphrase), 3 out of memory, 4 wrong device,
# 5 device already exists or is busy.
#
# The passphrase prompt: on the console (fd 0, opened by the early stage after the keymap was loaded), echo off
# with TCGETS/TCSETS (termios c_lflag ECHO; restored whatever happens), read as one canonical-mode line; three
# tries (crypttab tries=N changes it), then BootError -> the rescue REPL, where unlock("/dev/vda2") tries again.
#
# For other stages (live-boot's persistence-encryption=luks): open_device(ctx, dev, name, stage) unlocks one device
# (prompting as above) and returns "/dev/mapper/<name>".
from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import BootError

CRYPTTAB = contract.CRYPTTAB_PATH
RUN_DIR = "/run/cryptsetup"        # cryptsetup's lock directory (it warns and goes on without, but why warn)
KEY_MOUNT = "/run/mpinit/keydev"
ENV = ["DM_DISABLE_UDEV=1", "PATH=/sbin:/usr/sbin:/bin:/usr/bin", "LC_ALL=C"]
# dm-crypt, and the kernel crypto cryptsetup asks for: the cipher for the data (aes, xts/cbc/essiv modes), the
# AF_ALG sockets it decrypts keyslots and hashes through (lib/crypto_backend/crypto_kernel.c), sha256.
MODULES = ("dm_mod", "dm_crypt", "af_alg", "algif_skcipher", "algif_hash", "aes_generic", "aesni_intel",
           "xts", "cbc", "ecb", "essiv", "sha256_generic", "sha256_ssse3", "crc32c_generic", "crc32c_intel",
           "libaes", "cryptd", "crypto_simd")

_TRIES = const(3)
_KEY_WAIT_S = const(10)
_NO_KEY = const(2)          # cryptsetup: "no permission (bad passphrase)"
_TERMIOS_LEN = const(64)    # >= sizeof(struct termios) of asm-generic/termbits.h (36 bytes)
_LFLAG_OFF = const(12)      # c_iflag, c_oflag, c_cflag, then c_lflag: 4-byte tcflag_t each


class PromptTimeout(Exception):
    """Nothing was typed at the passphrase prompt before rd.luks.timeout= ran out."""


class Target:
    """One device to unlock. spec: a device spec (blockdev.parse_spec), or None with uuid: a UUID prefix."""

    def __init__(self, name, spec=None, uuid=None, options=(), keys=(), param="", tries=_TRIES, nofail=False,
                 fallback=False):
        self.name = name            # None: luks-<uuid> once the device is known
        self.spec = spec
        self.uuid = uuid            # lower case prefix ("" = every LUKS device)
        self.options = list(options)
        self.keys = list(keys)      # [(path or None, keydev spec or None, offset, size[, luks dev spec])]
        self.param = param          # what asked for it, for messages
        self.tries = tries
        self.nofail = nofail
        self.fallback = fallback    # dracut's default "unlock all": only while root= names no device present
        self.done = []              # device names opened for this target

    def __repr__(self):
        return "Target(%r, spec=%r, uuid=%r, options=%r, keys=%r)" % (self.name, self.spec, self.uuid,
                                                                     self.options, self.keys)


def tool():
    from . import proc

    return proc.find_tool("cryptsetup")


def _crypttab_entries(path=CRYPTTAB):
    from . import crypttab

    if not fsutil.exists(path):
        return []
    text = fsutil.read_text(path)
    try:
        return crypttab.parse(text)
    except ValueError as e:
        raise BootError("devices", str(e), param=path)


def _cryptkey(value):
    """mkinitcpio cryptkey= -> a key tuple."""
    if value is None:
        return []
    if value.startswith("rootfs:"):
        return [(value[7:], None, 0, 0)]
    dev, a, b = value.split(":")
    if a.isdigit() and b.isdigit():
        return [(None, dev, int(a), int(b))]  # raw bytes on the device
    return [(b, dev, 0, 0)]  # a file on a filesystem (the fstype field: we probe it)


def _uuid_of_spec(spec):
    if spec and spec.upper().startswith("UUID="):
        return spec[5:].strip("\"'").lower()
    return None


def targets(opts, entries, unlock_all=True):
    """The Targets for these options and crypttab entries (pure, for tests). unlock_all: whether a plain-root boot
    asking for nothing in particular gets dracut's default (every LUKS device); the Unlocker passes whether
    cryptsetup is packed."""
    if not opts.luks:
        return []
    common = []
    for o in opts.luks_options:
        common.append(o)
    out = []
    for dev, name, o in opts.cryptdevices:
        t = Target(name, spec=dev, options=common + (["discard"] if "allow-discards" in o else []),
                   keys=_cryptkey(opts.cryptkey), param="cryptdevice=%s:%s" % (dev, name))
        out.append(t)
    used = []
    for u in opts.luks_uuids:
        entry = None
        for e in entries:
            eu = _uuid_of_spec(e.device)
            if eu is not None and eu.startswith(u):
                entry = e
        if entry is not None:
            used.append(entry)
            out.append(_from_entry(entry, common, opts.luks_names.get(u)))
        else:
            out.append(Target(opts.luks_names.get(u), uuid=u, options=common, param="rd.luks.uuid=%s" % u))
    if not opts.luks_uuids:
        for e in entries:
            if "noauto" not in e.options:
                out.append(_from_entry(e, common, None))
    if not out and opts.live is None and unlock_all:
        out.append(Target(None, uuid="", options=common, param="a LUKS device (dracut's default: unlock all)",
                          nofail=True, fallback=True))
    for path, keydev, luksdev in opts.luks_keys:
        for t in out:
            t.keys.insert(0, (path, keydev, 0, 0, luksdev))  # luksdev: checked per device (key_applies())
    return out


def key_applies(key, dev):
    """A key tuple's luksdev (rd.luks.key=...:<luksdev>; None: any) names dev: a spec, or a UUID prefix."""
    luksdev = key[4] if len(key) > 4 else None
    if luksdev is None:
        return True
    u = _uuid_of_spec(luksdev)
    if u is not None:
        return (dev.info.get("UUID") or "").lower().startswith(u)
    from . import blockdev

    try:
        return blockdev.find(luksdev, [dev]) is dev
    except ValueError:
        return False


def _from_entry(e, common, name):
    keys = []
    if e.keyfile is not None:
        keys.append((e.keyfile, e.keydev, _number(e.option("keyfile-offset"), 0),
                     _number(e.option("keyfile-size"), 0)))
    tries = _number(e.option("tries"), _TRIES) or _TRIES  # crypttab(5): tries=0 is "unlimited"; we keep 3
    return Target(name or e.name, spec=e.device, options=common + e.options, keys=keys,
                  param="%s line %d (%s)" % (CRYPTTAB, e.line, e.name), tries=tries, nofail="nofail" in e.options)


def _number(value, default):
    """A crypttab option's numeric value (a bare option gives True: not a number)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def matches(t, dev):
    """The device t wants, when dev is one."""
    if dev.info.get("TYPE") != "crypto_LUKS":
        return False
    if t.spec is not None:
        from . import blockdev

        try:
            return blockdev.find(t.spec, [dev]) is dev
        except ValueError:
            return False
    return (dev.info.get("UUID") or "").lower().startswith(t.uuid)


def load_modules(ctx):
    from . import md

    return md.load_modules(ctx, MODULES)


def cryptsetup_argv(cryptsetup, path, name, options):
    argv = [cryptsetup, "open", "--type", "luks", path, name, "--key-file=-"]
    for o in options:
        if o in ("discard", "allow-discards"):
            argv.append("--allow-discards")
        elif o in ("readonly", "read-only"):
            argv.append("--readonly")
    return argv


def unsupported(options):
    from . import crypttab

    return [o for o in options if o.split("=")[0] in crypttab.UNSUPPORTED]


def _wait_line(fd, deadline):
    """Wait until fd (the console, in canonical mode: readable once a whole line was typed) can be read, or raise
    PromptTimeout at deadline (uptime ms; None: forever)."""
    if deadline is None:
        return
    left = deadline - sc.uptime_ms()
    if left <= 0:
        raise PromptTimeout()
    try:
        ready = sc.poll(fd, sc.POLLIN, left)
    except OSError as e:
        # A console poll(2) cannot wait on: read without the bound rather than never ask.
        log.warning("luks: cannot wait on the console with a timeout (%r): waiting for the passphrase" % (e,))
        return
    if not ready:
        raise PromptTimeout()


def ask_passphrase(prompt, fd=0, timeout_ms=None):
    """One line typed on the console without echo, as a bytearray without the newline; None at end of input.
    timeout_ms: PromptTimeout when no line came within it. Echo is put back whatever happens (Ctrl-C included)."""
    import struct

    tio = bytearray(_TERMIOS_LEN)
    saved = None
    try:
        sc.ioctl(fd, sc.TCGETS, tio)
        saved = bytearray(tio)
        lflag = struct.unpack_from("@I", tio, _LFLAG_OFF)[0]
        struct.pack_into("@I", tio, _LFLAG_OFF, (lflag & ~sc.ECHO) | sc.ICANON)
        sc.ioctl(fd, sc.TCSETS, tio)
    except OSError as e:
        log.warning("luks: console echo cannot be turned off (%r): reading the passphrase anyway" % (e,))
        saved = None
    got = bytearray()
    deadline = None if not timeout_ms else sc.uptime_ms() + timeout_ms
    try:
        print(prompt, end="")
        while True:
            _wait_line(fd, deadline)
            chunk = sc.read(fd, 256)
            if not chunk:
                if not got:
                    return None
                break
            got.extend(chunk)
            if b"\n" in chunk:
                break
    finally:
        if saved is not None:
            try:
                sc.ioctl(fd, sc.TCSETS, saved)
            except OSError:
                pass
        print()
    i = got.find(b"\n")
    if i < 0:
        i = len(got)
    if i and got[i - 1] == 13:  # a serial terminal sending CR LF
        i -= 1
    secret = got[:i]
    _wipe(got)  # the slice is a copy: leave no second copy of the passphrase in the heap
    return secret


def _wipe(buf):
    if isinstance(buf, bytearray):
        for i in range(len(buf)):
            buf[i] = 0


def _open_with(cryptsetup, path, name, options, secret):
    from . import proc

    argv = cryptsetup_argv(cryptsetup, path, name, options)
    log.info("luks: running %s (key on stdin)" % " ".join(argv))
    try:
        return proc.run(argv, ENV, secret)
    except OSError as e:
        log.warning("luks: %s: %r" % (cryptsetup, e))
        return -1


def read_key(ctx, key, devices=None):
    """The bytes of one key source, or (None, why)."""
    path, keydev, offset, size = key[0], key[1], key[2], key[3]
    if keydev is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            return None, "key file %s: %r" % (path, e)
        return _cut(data, offset, size), None
    from . import blockdev

    try:
        dev = blockdev.find(keydev, devices if devices is not None else (ctx.devices or []))
    except ValueError as e:
        return None, str(e)
    if dev is None:
        return None, "key device %s not found" % keydev
    if path is None:  # raw bytes on the device (mkinitcpio cryptkey=<dev>:<offset>:<size>)
        try:
            with open(dev.path, "rb") as f:
                f.seek(offset)
                return f.read(size), None
        except OSError as e:
            return None, "key device %s: %r" % (dev.path, e)
    fstype = dev.info.get("TYPE")
    if not fstype:
        return None, "key device %s has no filesystem" % dev.path
    from .medium import mount_dev

    try:
        mount_dev(ctx, dev, KEY_MOUNT, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    except OSError as e:
        return None, "mount %s (%s) for the key: %r" % (dev.path, fstype, e)
    try:
        with open(KEY_MOUNT + "/" + path.lstrip("/"), "rb") as f:
            data = f.read()
    except OSError as e:
        return None, "key file %s on %s: %r" % (path, dev.path, e)
    finally:
        try:
            sc.umount(KEY_MOUNT)
        except OSError as e:
            log.warning("luks: umount %s: %r" % (KEY_MOUNT, e))
    return _cut(data, offset, size), None


def _cut(data, offset, size):
    if offset:
        data = data[offset:]
    if size:
        data = data[:size]
    return bytearray(data)


def prompt_timeout_ms(ctx, stage):
    """How long a passphrase prompt waits: rd.luks.timeout= (0 or unset: forever, dracut.cmdline(7)); the rescue
    REPL's unlock() always waits (someone is there)."""
    t = getattr(ctx.opts, "luks_timeout", None) if ctx.opts is not None else None
    if stage == "rescue" or not t:
        return None
    return t * 1000


def open_device(ctx, dev, name, stage, options=(), keys=(), tries=_TRIES, param=None, what=None):
    """Unlock dev (a blockdev.Device or a /dev path) as /dev/mapper/<name>: key sources first, then the
    passphrase prompt (`tries` times; what: the volume's role in the prompt, e.g. "persistence"). Returns the
    mapper path; BootError(stage) when it stays locked."""
    from . import devmapper

    path = getattr(dev, "path", dev)
    param = param or "rd.luks.uuid="
    if name in devmapper.mapped():
        devmapper.sync_nodes()
        return devmapper.MAPPER + "/" + name
    cryptsetup = tool()
    if cryptsetup is None:
        raise BootError(stage, "%s is a LUKS device but cryptsetup is not in the initramfs" % path, param=param,
                        tried=["looked for cryptsetup in /sbin, /usr/sbin, /bin, /usr/bin"],
                        seen=["pack it with: mpinit pack --luks (cryptsetup, its libraries and dm_crypt)"])
    bad = unsupported(options)
    if bad:
        raise BootError(stage, "%s: crypttab options %s are not supported (LUKS only)" % (name, ",".join(bad)),
                        param=param)
    load_modules(ctx)
    fsutil.makedirs(RUN_DIR)
    tried = []
    for key in keys:
        secret, why = read_key(ctx, key)
        if secret is None:
            log.warning("luks: %s: %s" % (name, why))
            tried.append(why)
            continue
        code = _open_with(cryptsetup, path, name, options, secret)
        _wipe(secret)
        kwhat = key[0] or "%s at %d" % (key[1], key[2])
        if code == 0:
            devmapper.sync_nodes()
            log.notice("luks: %s unlocked as %s with key %s" % (path, name, kwhat))
            return devmapper.MAPPER + "/" + name
        tried.append("key %s%s: cryptsetup exit %d" % (kwhat, " on " + key[1] if key[1] and key[0] else "", code))
        log.warning("luks: %s: key %s did not unlock it (cryptsetup exit %d)" % (name, kwhat, code))
    timeout_ms = prompt_timeout_ms(ctx, stage)
    for n in range(tries):
        try:
            pw = ask_passphrase("Enter passphrase for %s (%s%s): " % (path, name, ", " + what if what else ""),
                                timeout_ms=timeout_ms)
        except PromptTimeout:
            tried.append("passphrase prompt: nothing typed within rd.luks.timeout=%d s" % (timeout_ms // 1000))
            log.console("Timed out waiting for the passphrase of %s." % path)
            break
        if pw is None:
            tried.append("passphrase prompt: end of console input")
            break
        code = _open_with(cryptsetup, path, name, options, pw)
        _wipe(pw)
        if code == 0:
            devmapper.sync_nodes()
            log.notice("luks: %s unlocked as %s" % (path, name))
            return devmapper.MAPPER + "/" + name
        tried.append("passphrase %d of %d: cryptsetup exit %d" % (n + 1, tries, code))
        if code != _NO_KEY:
            break  # not a wrong passphrase: asking again cannot help
        log.console("No key available with this passphrase (%d of %d)." % (n + 1, tries))
    raise BootError(stage, "could not unlock %s as %s" % (path, name), param=param, tried=tried,
                    seen=["cryptsetup(8) exit codes: 1 wrong parameters, 2 wrong passphrase or key, 3 out of "
                          "memory, 4 wrong device, 5 busy; in this shell: unlock(%r)" % path])


class Unlocker:
    """The devices stage's LUKS work for one boot (storage.py drives it)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.targets = targets(ctx.opts, _crypttab_entries(), tool() is not None) if ctx.opts.luks else []
        self.opened = []        # mapper names opened by us
        self.started = sc.uptime_ms()

    def key_wait_ms(self):
        t = self.ctx.opts.luks_timeout
        return (_KEY_WAIT_S if t is None else t) * 1000

    def _keys_ready(self, t, devices):
        from . import blockdev

        if sc.uptime_ms() - self.started >= self.key_wait_ms():
            return True
        for key in t.keys:
            keydev = key[1]
            if keydev is not None:
                try:
                    if blockdev.find(keydev, devices) is None:
                        return False
                except ValueError:
                    pass
        return True

    def step(self, devices):
        """Unlock the wanted LUKS devices present now. True when something was opened."""
        wanted = self.targets
        if [t for t in wanted if t.fallback] and self._root_found(devices):
            wanted = [t for t in wanted if not t.fallback]
        if not wanted:
            return False
        opened = False
        for dev in devices:
            if dev.info.get("TYPE") != "crypto_LUKS":
                continue
            for t in wanted:
                if dev.name in t.done or not matches(t, dev):
                    continue
                if t.uuid is not None and t.spec is None and t.name is not None and t.done:
                    continue  # a named UUID target takes one device
                if not self._keys_ready(t, devices):
                    continue  # its key device may still appear
                name = t.name or "luks-%s" % (dev.info.get("UUID") or dev.name)
                if self._holder(dev):
                    t.done.append(dev.name)
                    continue
                self.ctx.devices = devices
                keys = [k for k in t.keys if key_applies(k, dev)]
                open_device(self.ctx, dev, name, "devices", t.options, keys, t.tries, t.param)
                t.done.append(dev.name)
                self.opened.append(name)
                opened = True
                break
        return opened

    def _root_found(self, devices):
        """Whether root= names a device present without any unlocking: then dracut's unlock-all has nothing to do
        (no other LUKS disk is asked for, no device probed beyond those the root's lookup probes anyway). A bad
        spec counts as found: the devices stage reports it, before any passphrase is asked."""
        from . import blockdev

        spec = self.ctx.opts.root
        try:
            return not spec or blockdev.find(spec, devices) is not None
        except ValueError:
            return True

    def _holder(self, dev):
        """True when dev is already held by a mapped device (unlocked earlier, e.g. before a resume())."""
        return len(fsutil.listdir("/sys/class/block/%s/holders" % dev.name)) > 0

    def missing(self):
        """Targets not unlocked that a boot must have (for the failure report)."""
        return [t for t in self.targets if not t.done and not t.nofail]


def repl_unlock(ctx, device, name=None):
    """The rescue REPL's unlock(device, name=None): unlock one LUKS device by spec or path, asking for the
    passphrase (key files from rd.luks.key= are tried first)."""
    from . import blockdev

    devices = blockdev.scan()
    ctx.devices = devices
    try:
        dev = blockdev.find(device, devices)
    except ValueError as e:
        print("unlock: %s" % e)
        return None
    if dev is None:
        print("unlock: %s: no such device (blkid() lists them)" % device)
        return None
    if dev.info.get("TYPE") != "crypto_LUKS":
        print("unlock: %s is not a LUKS device (%s)" % (dev.path, dev.info.get("TYPE") or "nothing recognised"))
        return None
    if name is None:
        name = "luks-%s" % (dev.info.get("UUID") or dev.name)
    keys = []
    if ctx.opts is not None:
        for path, keydev, luksdev in ctx.opts.luks_keys:
            k = (path, keydev, 0, 0, luksdev)
            if key_applies(k, dev):
                keys.append(k)
    try:
        out = open_device(ctx, dev, name, "rescue", ctx.opts.luks_options if ctx.opts else (), keys)
    except BootError as e:
        print("unlock: %s" % e.message)
        for line in e.tried or []:
            print("  tried: %s" % line)
        return None
    ctx.devices = blockdev.scan()
    print("unlock: %s is %s; resume() goes on with the boot" % (dev.path, out))
    return out
