# The kernel command line, split by the kernel's own rules and turned into the Options the boot acts on.
#
# A pure module (no I/O): the cmdline stage reads /proc/cmdline and the baked-in config, then calls
# parse(text, defaults=config["cmdline"]). Every parameter the agent understands is handled in _HANDLERS below;
# everything else goes where the kernel would send it (init's argv, init's environment, module parameters),
# so the real init sees what it would have seen without an initramfs. The agent's own parameters (toram,
# boot=live, archisolabel=, ...) are consumed, as dracut does: the real init never sees them.
# tests/test_cmdline.py boots a real kernel to check init_args/init_env against what it hands to init.
#
# Sources: lib/cmdline.c next_arg() (quoting), kernel/params.c parse_args() ("--", "-" == "_" in names),
# init/main.c unknown_bootoption()/set_init_arg() (what reaches init), dracut.cmdline(7), the archiso hook
# (archisolabel=, archisodevice=, archisobasedir=, copytoram=, cow_spacesize=, checksum=), Debian live-boot(7)
# (boot=live, live-media=, live-media-path=, toram, findiso=) and grub's loopback.cfg convention
# (iso-scan/filename=).
from . import contract

# isspace() of the kernel's lib/ctype.c for the ASCII range. (The kernel's table also calls byte 0xA0 a space;
# /proc/cmdline is decoded to str before we see it, so that Latin-1 quirk is not reproduced.)
_SPACE = " \t\n\v\f\r"


class CmdlineError(ValueError):
    """A parameter with a value the agent cannot use. str() names the parameter and the value."""

    def __init__(self, param, value, why, source=None):
        self.param = param
        self.value = value
        if value is None:
            word = param
        else:
            word = "%s=%s" % (param, value)
        if source:
            msg = "bad kernel parameter %s (in %s): %s" % (word, source, why)
        else:
            msg = "bad kernel parameter %s: %s" % (word, why)
        super().__init__(msg)


def _pairs(text):
    """(param, value) pairs exactly as lib/cmdline.c next_arg() cuts them; value None for a bare word.

    Rules reproduced: a word may start with a double quote (the whole `"param=a b"` is quoted); inside a word,
    every double quote toggles quoting, so whitespace inside quotes does not end the word; the param/value
    separator is the first "=" at an index > 0 of the (unquoted-start) word; a value starting with a quote loses
    it, and a closing quote at the very end of the word is removed once. Quotes elsewhere are kept, as the
    kernel keeps them."""
    out = []
    n = len(text)
    i = 0
    while i < n and text[i] in _SPACE:  # parse_args(): skip_spaces() before the first word
        i += 1
    while i < n:
        quoted = text[i] == '"'
        start = i + 1 if quoted else i
        in_quote = quoted
        equals = 0  # relative index; 0 means none, as in next_arg() (so "=x" has no value)
        j = start
        while j < n:
            c = text[j]
            if not in_quote and c in _SPACE:
                break
            if equals == 0 and c == "=":
                equals = j - start
            if c == '"':
                in_quote = not in_quote
            j += 1
        end = j  # one past the word's last character
        cut_last = False
        if equals:
            vstart = start + equals + 1
            if vstart < end and text[vstart] == '"':
                vstart += 1
                if text[end - 1] == '"':
                    cut_last = True
            if quoted and not cut_last and end > start and text[end - 1] == '"':
                cut_last = True
            vend = end - 1 if cut_last else end
            out.append((text[start:start + equals], text[vstart:vend] if vstart < vend else ""))
        else:
            if quoted and end > start and text[end - 1] == '"':
                end -= 1
            out.append((text[start:end], None))
        i = j
        while i < n and text[i] in _SPACE:
            i += 1
    return out


def split(text):
    """The words of a kernel command line by the kernel's rules, quotes removed: 'a="b c" d' -> ['a=b c', 'd'].

    A bare "--" is kept as a word: everything after it belongs to init (parse() does that)."""
    words = []
    for key, val in _pairs(text):
        words.append(key if val is None else key + "=" + val)
    return words


class Options:
    """Every kernel parameter the agent acts on (see parse()). Options() holds the values of an empty line."""

    def __init__(self):
        self.root = None            # root= as given (e.g. "UUID=...", "live:CDLABEL=x")
        self.live = None            # live medium spec; "" = live boot, scan every device; None = not live
        self.live_dir = contract.DEFAULTS["live_dir"]      # image directory on the medium, no slashes
        self.live_image = contract.DEFAULTS["live_image"]  # image file name in live_dir
        self.image_paths = _image_paths(self.live_dir, self.live_image, None)  # candidates, in order
        self.iso_file = None        # img_loop= / iso-scan/filename= / findiso=: an ISO file on a partition
        self.iso_dev = None         # img_dev=: the spec of the partition holding iso_file
        self.toram = "no"           # "no" | "yes" | "auto"
        self.overlay_size = None    # a tmpfs size= value ("256m", "75%"), None = config default
        self.checksum = False       # verify the image against a .sha256/.sha512 beside it
        self.rootfstype = None
        self.rootflags = None       # raw option string (mountopts.mount_flags() splits it)
        self.readonly = True        # ro (kernel default) / rw
        self.init = None            # init=
        self.init_args = []         # argv[1:] for the real init, as the kernel would give it
        self.init_env = []          # "KEY=value" environment for the real init, as the kernel would give it
        self.rootwait = False       # wait for the root/medium without a deadline
        self.rootdelay = None       # seconds to wait at most (rootdelay=, rootwait=N)
        self.quiet = False
        self.debug = False          # debug / rd.debug
        self.loglevel = None        # console log level 0..15
        self.modules = []           # to load first, names with "_"
        self.blacklist = []         # never load, names with "_"
        self.module_params = {}     # module name -> "p=v p2=v2"
        self.break_at = []          # contract.STAGES names to stop before (rd.break=)
        self.shell = None           # rd.shell=; None = config default
        self.panic = None           # panic= seconds (kernel: 0 waits forever, < 0 reboots at once)
        self.md_uuids = []          # rd.md.uuid=, in order
        self.md_all = True          # assemble every array (no rd.md.uuid=, no rd.md=0)
        self.lvm_vgs = []           # rd.lvm.vg=, in order
        self.lvm_all = True         # activate every volume group (no rd.lvm.vg=, no rd.lvm=0)
        self.lvm_lvs = []           # rd.lvm.lv=<vg>/<lv>: activate only these logical volumes
        self.luks = True            # rd.luks=0: unlock nothing (crypttab and the parameters below ignored)
        self.luks_uuids = []        # rd.luks.uuid= (lower case, "luks-" dropped): unlock only these (prefixes)
        self.luks_names = {}        # rd.luks.name=<UUID>=<name>: uuid -> mapping name
        self.luks_keys = []         # rd.luks.key=: [(keypath, keydev spec or None, luks dev spec or None)]
        self.luks_options = []      # rd.luks.options=: cryptsetup options for every device (discard, ...)
        self.luks_timeout = None    # rd.luks.timeout= seconds to wait for a key device before asking, and for
                                    # each passphrase prompt (0/None: the prompt waits forever)
        self.cryptdevices = []      # cryptdevice=<dev>:<name>[:<options>] (mkinitcpio): [(dev, name, options)]
        self.cryptkey = None        # cryptkey= (mkinitcpio): "rootfs:<path>", "<dev>:<fstype>:<path>" or
                                    # "<dev>:<offset>:<size>"
        self.persist = None         # persistent overlay asked for by: "live-boot", "casper", "archiso", "dracut",
                                    # "mpinit"; None = the upper layer is a tmpfs (persist.py)
        self.persist_labels = []    # volume / image file labels to look for (persistence-label=; casper's two)
        self.persist_spec = None    # one named volume: cow_device=, cow_label=, rd.overlay=, mpinit.persist=
        self.persist_dir = None     # directory in the volume (cow_directory=, rd.overlay=<spec>:<path>,
                                    # mpinit.persist=<spec>:<dir>) or where files are looked for (persistence-path=)
        self.persist_storage = ["file", "filesystem"]  # persistence-storage= (live-boot's default)
        self.persist_encryption = ["none"]  # persistence-encryption= none,luks (live-boot's default: none)
        self.persist_readonly = False  # the persistent layer is a read-only lower layer under a tmpfs upper
        self.persist_reset = False  # wipe the persistent layer before use
        self.persist_flags = None   # cow_flags=: mount options of the persistence volume
        self.url = None             # network boot: the image (or ISO) URL (root=live:http://, fetch=, url=,
                                    # archiso_http_srv= + archisobasedir's layout); net.py / netfetch.py
        self.net_ip = []            # ip= values as given (netconf.parse_ip checked them), in order
        self.bootif = None          # BOOTIF= (PXELINUX's 01-<mac>): the interface to use
        self.neednet = False        # rd.neednet=1: bring the network up even without a URL
        self.live_sha256 = None     # rd.live.sha256=<hex>: the fetched image's pinned digest (lower case)
        self.net_timeout_carrier = None  # rd.net.timeout.carrier= seconds to wait for a link (dracut); None: the
                                    # medium's deadline rules (rootdelay=, rootwait, config root_wait_s)
        self.net_timeout_dhcp = None  # rd.net.timeout.dhcp= seconds for a DHCP lease per interface (dracut)
        self.http_timeout = None    # rd.live.http.timeout= seconds: connect, answer and stall timeout (ours)
        self.http_retries = None    # rd.live.http.retries= attempts after a failed one without progress (ours)
        self.capture = []           # rd.mpinit.capture=<target>[@<point>]: [(target, point)] (capture.py)
        self.defer = None           # rd.mpinit.defer=0/1: coldplug defers slow controllers (kmod.py); None: config
        self.params = {}            # every word before "--": key -> value (None for a bare word), last wins

    def as_dict(self):
        """The attributes as a plain dict (for the timeline, hooks and the rescue REPL)."""
        d = {}
        for name in _FIELDS:
            d[name] = getattr(self, name)
        return d

    def __repr__(self):
        return "Options(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in _FIELDS)


_FIELDS = (
    "root", "live", "live_dir", "live_image", "image_paths", "iso_file", "iso_dev", "toram", "overlay_size",
    "checksum", "rootfstype", "rootflags", "readonly", "init", "init_args", "init_env", "rootwait", "rootdelay",
    "quiet", "debug", "loglevel", "modules", "blacklist", "module_params", "break_at", "shell", "panic",
    "md_uuids", "md_all", "lvm_vgs", "lvm_all", "lvm_lvs", "luks", "luks_uuids", "luks_names", "luks_keys",
    "luks_options", "luks_timeout", "cryptdevices", "cryptkey", "persist", "persist_labels", "persist_spec", "persist_dir",
    "persist_storage", "persist_encryption", "persist_readonly", "persist_reset", "persist_flags", "url", "net_ip", "bootif", "neednet",
    "live_sha256", "net_timeout_carrier", "net_timeout_dhcp", "http_timeout", "http_retries", "capture", "defer", "params",
)

# Parameters the kernel itself consumes, so they never reach init (init/main.c obsolete_checksetup(): __setup()
# and early_param() names; kernel/params.c: core_param()). An honest subset: the common ones. A kernel name not
# listed here is passed on to init like an unknown word, which real inits ignore. Compared with "-" as "_".
_KERNEL = set((
    "root rootfstype rootflags rootwait rootdelay ro rw init rdinit initrd noinitrd quiet debug loglevel "
    "ignore_loglevel console earlycon earlyprintk panic panic_on_oops oops module_blacklist nomodeset mem "
    "memmap nosmp maxcpus nr_cpus noapic nolapic acpi apic noresume resume resume_offset hibernate mitigations "
    "nokaslr selinux security lsm audit apparmor enforcing crashkernel iommu intel_iommu amd_iommu pci nopti "
    "pti spectre_v2 isolcpus hugepages hugepagesz default_hugepagesz transparent_hugepage cgroup_disable "
    "cgroup_enable vga video fbcon swiotlb reboot nowatchdog nmi_watchdog tsc clocksource threadirqs preempt "
    "efi noefi no_console_suspend consoleblank log_buf_len initcall_debug init_on_alloc init_on_free "
    "slab_nomerge vsyscall nohz rcu_nocbs irqpoll numa ramdisk_size raid md lpj nr_uarts noexec"
).split())

# Key namespaces that userspace owns: "rd.break=x" is dracut's, not parameter "break" of a module "rd".
_NOT_MODULES = ("rd", "systemd", "udev", "plymouth", "vconsole", "locale", "fsck", "quotacheck", "net",
                "modprobe", "mpinit")

# dracut's hook points (dracut.cmdline(7) rd.break=) mapped onto our stages (contract.STAGES).
_BREAK_ALIASES = {
    "pre-udev": "modules", "pre-trigger": "modules", "initqueue": "devices", "pre-mount": "medium",
    "premount": "medium", "mount": "root", "pre-pivot": "handoff", "cleanup": "handoff",
}

_TRUE = ("", "1", "y", "yes", "on", "true")
_FALSE = ("0", "n", "no", "off", "false")

# Size suffixes accepted in cow_spacesize= (a tmpfs size=: mm/shmem.c parses it with memparse(), which also
# knows p and e; nobody has a petabyte of RAM).
_SIZE_SUFFIXES = "kmgt"


def _digits(s):
    if not s:
        return False
    for c in s:
        if c < "0" or c > "9":
            return False
    return True


def _image_paths(live_dir, live_image, arch_base):
    """Where a live image may sit on the medium, in the order they are tried: ours (live-boot's layout; with the
    default name also filesystem.erofs, `mpinit squash --format erofs`), dracut's LiveOS/squashfs.img (squashfs or
    EROFS: the root stage mounts what the image probes as, as dracut's det_img_fs does), archiso's
    <basedir>/x86_64/airootfs.sfs and airootfs.erofs (archiso's mount handler takes whichever is there; x86_64:
    the only architecture we build for)."""
    paths = []
    ours = live_dir + "/" + live_image if live_dir else live_image
    erofs = ours[:-len("squashfs")] + "erofs" if live_image == contract.DEFAULTS["live_image"] else ours
    base = "%s/x86_64/airootfs" % (arch_base or "arch")
    for p in (ours, erofs, "LiveOS/squashfs.img", base + ".sfs", base + ".erofs"):
        if p not in paths:
            paths.append(p)
    return paths


class _State:
    """Parse state: the Options being filled plus what is only resolved at the end (live, image paths)."""

    def __init__(self):
        self.o = Options()
        self.source = None
        self.live_spec = None      # archisolabel=/archisodevice=/live-media=, last given
        self.live_wanted = False   # boot=live, rd.live.image, liveimg, an ISO file
        self.live_image_flag = False  # rd.live.image / liveimg: root= names the medium (dracut legacy form)
        self.arch_base = None      # archisobasedir=
        self.net_srv = None        # archiso_http_srv=
        self.net_url = None        # fetch= / url=
        self.md_on = True
        self.lvm_on = True
        self.modparams = {}        # module -> {param: value}, in order of appearance
        self.modorder = []
        self.after_dashes = []     # words after "--"

    def fail(self, key, val, why):
        raise CmdlineError(key, val, why, self.source)

    def need(self, key, val):
        if val is None or val == "":
            self.fail(key, val, "needs a value (%s=...)" % key)
        return val

    def boolean(self, key, val):
        if val is None or val in _TRUE:
            return True
        if val in _FALSE:
            return False
        self.fail(key, val, "expected 1/0, y/n, yes/no or on/off")

    def integer(self, key, val, lo, hi, what):
        self.need(key, val)
        s = val[1:] if val[0] == "-" else val
        if not _digits(s):
            self.fail(key, val, "expected %s" % what)
        n = int(val)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            self.fail(key, val, "expected %s" % what)
        return n

    def choices(self, key, val, allowed):
        """A comma-separated list of words, each one of `allowed`."""
        words = self.need(key, val).split(",")
        for w in words:
            if w not in allowed:
                self.fail(key, val, "expected a comma list of %s" % ", ".join(allowed))
        return words

    def names(self, key, val, into):
        """A comma-separated module list, accumulated; "-" and "_" are the same in module names (kmod)."""
        for name in self.need(key, val).split(","):
            name = name.strip().replace("-", "_")
            if name and name not in into:
                into.append(name)

    def feed(self, text, source):
        self.source = source
        o = self.o
        after_dashes = False
        for key, val in _pairs(text):
            if after_dashes:
                # init/main.c: everything after "--" is init's argv, param=value rejoined (repair_env_string()),
                # added after the whole line is parsed (set_init_arg()), so finish() appends these.
                self.after_dashes.append(key if val is None else key + "=" + val)
                continue
            if val is None and key == "--":
                after_dashes = True
                continue
            if not key and val is None:
                continue  # an empty quoted word ("")
            o.params[key] = val
            handler = _HANDLERS.get(key.replace("-", "_"))  # kernel/params.c parameq(): "-" is "_"
            if handler is not None:
                handler(self, key, val)
            elif "." in key:
                self.module_param(key, val)
            elif key.replace("-", "_") in _KERNEL:
                pass
            elif key.startswith("kexec") or (key == "BOOT_IMAGE" and val is not None):
                # Bootloader identifiers (LILO/grub's BOOT_IMAGE=, kexec-tools' "kexec") are dropped by the kernel
                # since the 2025 change "init: handle bootloader identifier in kernel parameters" (also in the
                # stable kernels, e.g. Debian's 6.1.1xx): a strstarts() match. Older kernels passed them on.
                pass
            elif val is None:
                o.init_args.append(key)
            else:
                # init/main.c unknown_bootoption(): an environment variable; a repeated key replaces the
                # earlier value in place (the strncmp(param, envp_init[i], len + 1) lookup).
                prefix = key + "="
                for i in range(len(o.init_env)):
                    if o.init_env[i].startswith(prefix):
                        o.init_env[i] = prefix + val
                        break
                else:
                    o.init_env.append(prefix + val)

    def module_param(self, key, val):
        # kmod reads "module.param=value" from /proc/cmdline when it loads a module; we do the same at load time.
        dot = key.find(".")
        mod = key[:dot].replace("-", "_")
        param = key[dot + 1:].replace("-", "_")  # the kernel matches parameter names with parameq() too
        if not mod or not param or mod in _NOT_MODULES or "/" in mod:
            return
        if mod not in self.modparams:
            self.modparams[mod] = {}
            self.modorder.append(mod)
        self.modparams[mod][param] = val

    def finish(self):
        o = self.o
        o.init_args.extend(self.after_dashes)
        root = o.root
        if root is not None and root.startswith("live:"):
            o.live = root[5:]
        elif self.live_image_flag and root:
            o.live = root  # dracut: `rd.live.image root=CDLABEL=x` is the old spelling of root=live:CDLABEL=x
        elif self.live_spec is not None:
            o.live = self.live_spec
        elif self.live_wanted or o.iso_file is not None:
            o.live = ""
        if o.live is not None and "://" in o.live:
            o.url = _http_url(self, "root", o.live)     # dracut's root=live:http://host/path
        elif self.net_url is not None:
            o.url = self.net_url
        elif self.net_srv is not None:
            o.url = "%s/%s/x86_64/airootfs.sfs" % (self.net_srv.rstrip("/"), self.arch_base or "arch")
        if o.url is not None:
            o.live = o.url
        o.image_paths = _image_paths(o.live_dir, o.live_image, self.arch_base)
        if o.persist in _PERSIST_LABELS and not o.persist_labels:
            o.persist_labels = list(_PERSIST_LABELS[o.persist])
        if not self.md_on:
            o.md_all = False
            o.md_uuids = []
        elif o.md_uuids:
            o.md_all = False
        if not self.lvm_on:
            o.lvm_all = False
            o.lvm_vgs = []
            o.lvm_lvs = []
        elif o.lvm_vgs:
            o.lvm_all = False
        for mod in self.modorder:
            words = []
            ps = self.modparams[mod]
            for p in ps:
                v = ps[p]
                if v is None:
                    words.append(p)
                elif " " in v or "\t" in v:
                    words.append('%s="%s"' % (p, v))  # re-quoted: the kernel splits module params with next_arg()
                else:
                    words.append("%s=%s" % (p, v))
            o.module_params[mod] = " ".join(words)
        return o


# --- handlers: one per parameter family, (state, key, value) ---

def _root(st, key, val):
    st.o.root = st.need(key, val)


def _rootfstype(st, key, val):
    st.o.rootfstype = st.need(key, val)


def _rootflags(st, key, val):
    st.o.rootflags = st.need(key, val)


def _ro(st, key, val):
    if val is not None:
        st.fail(key, val, "takes no value")
    st.o.readonly = key == "ro"


def _init(st, key, val):
    st.o.init = st.need(key, val)
    _rdinit(st, key, val)


def _rdinit(st, key, val):
    # init/main.c init_setup()/rdinit_setup(): words before init= (LILO's "auto") never reach init.
    del st.o.init_args[:]


def _rootwait(st, key, val):
    if val is None:
        st.o.rootwait = True
    else:
        # Linux 6.5+ rootwait=<seconds>: wait at most that long, which is what our rootdelay= means.
        st.o.rootwait = False
        st.o.rootdelay = st.integer(key, val, 0, None, "a whole number of seconds")


def _rootdelay(st, key, val):
    st.o.rootdelay = st.integer(key, val, 0, None, "a whole number of seconds")


def _quiet(st, key, val):
    st.o.quiet = st.boolean(key, val)


def _debug(st, key, val):
    st.o.debug = st.boolean(key, val)


def _loglevel(st, key, val):
    # Console log levels: 0 (KERN_EMERG) .. 7 (KERN_DEBUG); 8 and up print everything, the kernel's own ceiling
    # being CONSOLE_LOGLEVEL_MOTORMOUTH = 15 (include/linux/printk.h).
    st.o.loglevel = st.integer(key, val, 0, 15, "a console log level 0..15")


def _modules(st, key, val):
    st.names(key, val, st.o.modules)


def _blacklist(st, key, val):
    st.names(key, val, st.o.blacklist)


def _break(st, key, val):
    if val is None or val == "":
        stage = "handoff"  # dracut: a bare rd.break stops just before switch_root
    elif val in contract.STAGES:
        stage = val
    elif val in _BREAK_ALIASES:
        stage = _BREAK_ALIASES[val]
    else:
        st.fail(key, val, "unknown stage (stages: %s; dracut's: %s)"
                % (", ".join(contract.STAGES), ", ".join(sorted(_BREAK_ALIASES))))
    if stage not in st.o.break_at:
        st.o.break_at.append(stage)


def _shell(st, key, val):
    st.o.shell = st.boolean(key, val)


def _panic(st, key, val):
    # kernel/panic.c semantics: 0 waits forever, a negative value reboots at once.
    st.o.panic = st.integer(key, val, None, None, "a whole number of seconds")


def _md_uuid(st, key, val):
    u = st.need(key, val)
    if u not in st.o.md_uuids:
        st.o.md_uuids.append(u)


def _md(st, key, val):
    st.md_on = st.boolean(key, val)


def _lvm_vg(st, key, val):
    vg = st.need(key, val)
    if vg not in st.o.lvm_vgs:
        st.o.lvm_vgs.append(vg)


def _lvm(st, key, val):
    st.lvm_on = st.boolean(key, val)


def _lvm_lv(st, key, val):
    lv = st.need(key, val)
    if "/" not in lv.strip("/"):
        st.fail(key, val, "expected <volume group>/<logical volume>")
    lv = lv.strip("/")
    if lv not in st.o.lvm_lvs:
        st.o.lvm_lvs.append(lv)
    vg = lv.split("/")[0]
    if vg not in st.o.lvm_vgs:
        st.o.lvm_vgs.append(vg)  # dracut: rd.lvm.lv= implies its volume group


def _luks_uuid_of(st, key, val, text):
    u = text.strip().lower()
    if u.startswith("luks-"):
        u = u[5:]  # dracut accepts the mapping name form luks-<uuid>
    if not u:
        st.fail(key, val, "needs a UUID")
    for c in u:
        if not ("0" <= c <= "9" or "a" <= c <= "f" or c == "-"):
            st.fail(key, val, "%r is not a LUKS UUID (hex digits and dashes)" % text)
    return u


def _luks_on(st, key, val):
    st.o.luks = st.boolean(key, val)


def _luks_uuid(st, key, val):
    u = _luks_uuid_of(st, key, val, st.need(key, val))
    if u not in st.o.luks_uuids:
        st.o.luks_uuids.append(u)


def _luks_name(st, key, val):
    # systemd-cryptsetup-generator(8): rd.luks.name=<UUID>=<name>; the device is unlocked (as rd.luks.uuid=).
    v = st.need(key, val)
    i = v.find("=")
    if i <= 0 or i == len(v) - 1 or "/" in v[i + 1:]:
        st.fail(key, val, "expected <UUID>=<name>")
    u = _luks_uuid_of(st, key, val, v[:i])
    st.o.luks_names[u] = v[i + 1:]
    if u not in st.o.luks_uuids:
        st.o.luks_uuids.append(u)


def _luks_key(st, key, val):
    # dracut.cmdline(7): rd.luks.key=<keypath>[:<keydev>[:<luksdev>]]; systemd's <UUID>=<keypath>[:<keydev>] too.
    v = st.need(key, val)
    luksdev = None
    i = v.find("=")
    if i > 0 and not v.startswith("/") and v[:i].upper() not in ("UUID", "LABEL", "PARTUUID", "PARTLABEL"):
        luksdev = "UUID=" + _luks_uuid_of(st, key, val, v[:i])
        v = v[i + 1:]
    parts = v.split(":")
    if len(parts) > 3 or not parts[0].startswith("/"):
        st.fail(key, val, "expected <keypath>[:<keydev>[:<luksdev>]] with an absolute keypath")
    keydev = parts[1] if len(parts) > 1 and parts[1] else None
    if len(parts) > 2 and parts[2]:
        luksdev = parts[2]
    st.o.luks_keys.append((parts[0], keydev, luksdev))


def _luks_options(st, key, val):
    for opt in st.need(key, val).split(","):
        opt = opt.strip()
        if opt and opt not in st.o.luks_options:
            st.o.luks_options.append(opt)


def _luks_timeout(st, key, val):
    v = st.need(key, val)
    if v.endswith("s"):
        v = v[:-1]  # systemd time span: "30s" (other units are not taken)
    st.o.luks_timeout = st.integer(key, v, 0, None, "a whole number of seconds")


def _cryptdevice(st, key, val):
    # mkinitcpio's encrypt hook: cryptdevice=<device>:<dmname>[:<options>], options e.g. allow-discards.
    v = st.need(key, val)
    parts = v.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1] or "/" in parts[1]:
        st.fail(key, val, "expected <device>:<name>[:allow-discards]")
    opts = []
    for o in ":".join(parts[2:]).split(","):
        if o:
            opts.append(o)
    st.o.cryptdevices.append((parts[0], parts[1], opts))


def _cryptkey(st, key, val):
    v = st.need(key, val)
    if not v.startswith("rootfs:") and v.count(":") != 2:
        st.fail(key, val, "expected rootfs:<path>, <device>:<fstype>:<path> or <device>:<offset>:<size>")
    st.o.cryptkey = v


def _live_image_flag(st, key, val):
    st.live_image_flag = st.boolean(key, val)
    st.live_wanted = st.live_image_flag


def _boot(st, key, val):
    # initramfs-tools picks its boot script with boot=; live-boot's is "live", casper's (Ubuntu) "casper".
    st.live_wanted = val in ("live", "casper")


def _archisolabel(st, key, val):
    st.live_spec = "LABEL=" + st.need(key, val)


def _live_device(st, key, val):
    st.live_spec = st.need(key, val)


def _dir(s):
    return s.strip("/")


def _live_dir(st, key, val):
    st.o.live_dir = _dir(st.need(key, val))


def _archisobasedir(st, key, val):
    st.arch_base = _dir(st.need(key, val))
    st.o.live_dir = st.arch_base


def _squashimg(st, key, val):
    st.o.live_image = _dir(st.need(key, val))


def _iso_file(st, key, val):
    st.o.iso_file = st.need(key, val)


def _iso_dev(st, key, val):
    st.o.iso_dev = st.need(key, val)


def _live_ram(st, key, val):
    st.o.toram = "yes" if st.boolean(key, val) else "no"


def _toram(st, key, val):
    # live-boot: `toram` or `toram=<image file>`; either way, copy.
    st.o.toram = "yes"


def _copytoram(st, key, val):
    if val == "auto":
        st.o.toram = "auto"
    else:
        try:
            on = st.boolean(key, val)
        except CmdlineError:
            st.fail(key, val, "expected y, n or auto")
        st.o.toram = "yes" if on else "no"


def _overlay_mib(st, key, val):
    # dracut: rd.live.overlay.size=<MiB>.
    n = st.integer(key, val, 1, None, "a size in MiB greater than 0")
    st.o.overlay_size = "%dm" % n


def _cow_spacesize(st, key, val):
    # archiso: a tmpfs size= value, e.g. 256M, 1G, 75%. Zero is refused: tmpfs reads size=0 as "unlimited".
    v = st.need(key, val).lower()
    if v.endswith("%"):
        if not _digits(v[:-1]) or not 1 <= int(v[:-1]) <= 100:
            st.fail(key, val, "expected a percentage of RAM from 1% to 100%")
    else:
        num = v[:-1] if v[-1] in _SIZE_SUFFIXES else v
        if not _digits(num) or int(num) == 0:
            st.fail(key, val, "expected a size such as 256M, 2G or 75%")
    st.o.overlay_size = v


# Persistence (persist.py acts on these). The last word of the line wins, so the command line overrides the
# baked-in default cmdline: `persistence` there and `nopersistence` here means none.
_PERSIST_LABELS = {"live-boot": ("persistence",), "casper": ("writable", "casper-rw")}
_STORAGE = ("file", "filesystem", "directory")
_ENCRYPTION = ("none", "luks")  # live-boot(7) persistence-encryption=


def _persist_on(st, key, val):
    # live-boot(7) `persistence`, casper(7) `persistent`: bare words.
    if val is not None:
        st.fail(key, val, "takes no value")
    st.o.persist = "live-boot" if key == "persistence" else "casper"


def _persist_off(st, key, val):
    st.o.persist = None


def _persist_labels(st, key, val):
    labels = []
    for name in st.need(key, val).split(","):
        if name.strip():
            labels.append(name.strip())
    if not labels:
        st.fail(key, val, "expected one or more labels separated by commas")
    st.o.persist_labels = labels


def _persist_path(st, key, val):
    v = st.need(key, val)
    if ".." in v.split("/"):
        st.fail(key, val, "no .. components")
    st.o.persist_dir = "/" + v.strip("/")


def _persist_storage(st, key, val):
    st.o.persist_storage = st.choices(key, val, _STORAGE)


def _persist_encryption(st, key, val):
    # live-boot(7): which encryption persistence media may use; "none" must be listed for plain ones to count.
    st.o.persist_encryption = st.choices(key, val, _ENCRYPTION)


def _persist_readonly(st, key, val):
    st.o.persist_readonly = st.boolean(key, val)


def _persist_reset(st, key, val):
    st.o.persist_reset = st.boolean(key, val)


def _cow_label(st, key, val):
    st.o.persist = "archiso"
    st.o.persist_spec = "LABEL=" + st.need(key, val)


def _cow_device(st, key, val):
    st.o.persist = "archiso"
    st.o.persist_spec = _device_spec(st, key, st.need(key, val))


def _device_spec(st, key, spec):
    try:
        from .blockdev import parse_spec

        parse_spec(spec)
    except ValueError as e:
        st.fail(key, spec, str(e))
    return spec


def _cow_flags(st, key, val):
    st.o.persist_flags = st.need(key, val)


def _overlay_spec(st, key, val):
    # dracut.cmdline(7): rd.overlay=<devspec>[:<path>] (rd.live.overlay= before dracut-ng). A boolean value is
    # dracut-ng's other meaning (an OverlayFS root at all), which a live boot always has; "none" means no
    # persistent overlay.
    family = "mpinit" if key == "mpinit.persist" else "dracut"
    if val == "none" or (family == "mpinit" and val in _FALSE):
        st.o.persist = None
        return
    if val is None or val in _TRUE or val in _FALSE:
        if family == "mpinit":
            st.fail(key, val, "expected a volume (LABEL=, UUID=, PARTUUID=, /dev/...) or a file path, or off")
        return
    i = val.find(":/")
    spec, path = (val[:i], val[i + 1:]) if i > 0 else (val, None)
    if not (spec.startswith("/") and not spec.startswith("/dev/")):
        spec = _device_spec(st, key, spec)
    if path is not None:
        _persist_path(st, key, path)
    else:
        st.o.persist_dir = None
    st.o.persist = family
    st.o.persist_spec = spec


def _defer(st, key, val):
    st.o.defer = st.boolean(key, val)


def _capture(st, key, val):
    # rd.mpinit.capture=<target>[@<point>]: target "console" or a device spec (the filesystem to write to); point
    # a stage (before it, as rd.break= names them) or "failure" (the default). A label holding "@" is written \x40.
    val = st.need(key, val)
    target, point = val, "failure"
    i = val.rfind("@")
    if i >= 0:
        target, point = val[:i], val[i + 1:]
        point = _BREAK_ALIASES.get(point, point)
        if point != "failure" and point not in contract.STAGES:
            st.fail(key, val, "unknown capture point %r (points: failure, %s)" % (point, ", ".join(contract.STAGES)))
    if target != "console":
        _device_spec(st, key, target)
    if (target, point) not in st.o.capture:
        st.o.capture.append((target, point))


def _checksum(st, key, val):
    st.o.checksum = st.boolean(key, val)


# --- network boot (net.py, netfetch.py; the syntax checks live in netconf.py, imported only when these appear) ---

def _net_check(st, key, val, fn):
    from . import netconf

    try:
        return fn(val)
    except netconf.NetError as e:
        st.fail(key, val, str(e))


def _ip(st, key, val):
    # The kernel's nfsroot.rst syntax (netconf.parse_ip); several ip= are kept in order, the first not "off" wins.
    from . import netconf

    _net_check(st, key, val, netconf.parse_ip)
    st.o.net_ip.append(val)


def _bootif(st, key, val):
    from . import netconf

    _net_check(st, key, val, netconf.parse_bootif)
    st.o.bootif = val


def _neednet(st, key, val):
    st.o.neednet = st.boolean(key, val)


def _http_url(st, key, val):
    from . import netconf

    _net_check(st, key, st.need(key, val), netconf.parse_url)
    return val


def _archiso_http_srv(st, key, val):
    # archiso's archiso_pxe_http hook: ${archiso_http_srv}${archisobasedir}/x86_64/airootfs.sfs.
    st.net_srv = _http_url(st, key, val)


def _fetch(st, key, val):
    # live-boot(7) fetch=URL (its squashfs), casper's url= (an ISO; netfetch.py opens ISOs by their probe).
    st.net_url = _http_url(st, key, val)


def _live_sha256(st, key, val):
    v = st.need(key, val).lower()
    if len(v) != 64 or not all(c in "0123456789abcdef" for c in v):
        st.fail(key, val, "expected a SHA-256 digest: 64 hex digits")
    st.o.live_sha256 = v


def _net_timeout_carrier(st, key, val):
    # dracut's net-lib.sh wait_for_carrier(): 0 looks once without waiting.
    st.o.net_timeout_carrier = st.integer(key, val, 0, None, "a whole number of seconds")


def _net_timeout_dhcp(st, key, val):
    # dracut passes it to dhclient as -timeout: how long one interface may take to get a lease.
    st.o.net_timeout_dhcp = st.integer(key, val, 1, None, "a whole number of seconds, at least 1")


def _http_timeout(st, key, val):
    # Ours: dracut's livenet (url-lib.sh runs curl with a fixed --retry 3), live-boot's fetch= (wget) and archiso
    # (curl) have no such parameter.
    st.o.http_timeout = st.integer(key, val, 1, None, "a whole number of seconds, at least 1")


def _http_retries(st, key, val):
    st.o.http_retries = st.integer(key, val, 0, 100, "a number of retries from 0 to 100")


_HANDLER_LIST = {
    "root": _root, "rootfstype": _rootfstype, "rootflags": _rootflags, "ro": _ro, "rw": _ro, "init": _init, "rdinit": _rdinit,
    "rootwait": _rootwait, "rootdelay": _rootdelay, "quiet": _quiet, "debug": _debug, "rd.debug": _debug,
    "loglevel": _loglevel,
    "modules": _modules, "rd.driver.pre": _modules,
    "module_blacklist": _blacklist, "rd.driver.blacklist": _blacklist, "modprobe.blacklist": _blacklist,
    "rd.break": _break, "rd.shell": _shell, "panic": _panic, "rd.mpinit.capture": _capture,
    "rd.mpinit.defer": _defer,
    "rd.md.uuid": _md_uuid, "rd.md": _md, "rd.lvm.vg": _lvm_vg, "rd.lvm": _lvm, "rd.lvm.lv": _lvm_lv,
    "rd.luks": _luks_on, "rd.luks.uuid": _luks_uuid, "rd.luks.name": _luks_name, "rd.luks.key": _luks_key,
    "rd.luks.options": _luks_options, "rd.luks.timeout": _luks_timeout, "cryptdevice": _cryptdevice,
    "cryptkey": _cryptkey,
    "rd.live.image": _live_image_flag, "liveimg": _live_image_flag, "boot": _boot,
    "archisolabel": _archisolabel, "archisodevice": _live_device, "live-media": _live_device,
    "rd.live.dir": _live_dir, "live-media-path": _live_dir, "archisobasedir": _archisobasedir,
    "rd.live.squashimg": _squashimg,
    "img_loop": _iso_file, "iso-scan/filename": _iso_file, "findiso": _iso_file, "img_dev": _iso_dev,
    "rd.live.ram": _live_ram, "toram": _toram, "copytoram": _copytoram,
    "rd.live.overlay.size": _overlay_mib, "cow_spacesize": _cow_spacesize,
    "checksum": _checksum, "rd.live.check": _checksum, "verify-checksums": _checksum,
    "ip": _ip, "BOOTIF": _bootif, "rd.neednet": _neednet, "archiso_http_srv": _archiso_http_srv, "fetch": _fetch,
    "url": _fetch, "rd.live.sha256": _live_sha256, "rd.net.timeout.carrier": _net_timeout_carrier,
    "rd.net.timeout.dhcp": _net_timeout_dhcp, "rd.live.http.timeout": _http_timeout,
    "rd.live.http.retries": _http_retries,
    "persistence": _persist_on, "persistent": _persist_on, "nopersistence": _persist_off,
    "nopersistent": _persist_off, "persistence-label": _persist_labels, "persistence-path": _persist_path,
    "persistent-path": _persist_path, "persistence-storage": _persist_storage,
    "persistence-encryption": _persist_encryption,
    "persistence-read-only": _persist_readonly, "cow_label": _cow_label, "cow_device": _cow_device,
    "cow_directory": _persist_path, "cow_flags": _cow_flags, "rd.overlay": _overlay_spec,
    "rd.live.overlay": _overlay_spec, "mpinit.persist": _overlay_spec, "rd.overlay.readonly": _persist_readonly,
    "rd.live.overlay.readonly": _persist_readonly, "rd.overlay.reset": _persist_reset,
    "rd.live.overlay.reset": _persist_reset,
}
_HANDLERS = {}
for _k in _HANDLER_LIST:
    _HANDLERS[_k.replace("-", "_")] = _HANDLER_LIST[_k]
del _k, _HANDLER_LIST


def parse(text, defaults=""):
    """Options from a kernel command line. `defaults` (the baked-in config's "cmdline") is read first, then
    `text` (/proc/cmdline): a later single value wins, lists accumulate. Raises CmdlineError on a bad value."""
    st = _State()
    if defaults:
        st.feed(defaults, "the configured default cmdline")
    st.feed(text, None)
    return st.finish()


parse_cmdline = parse  # the name docs/ARCHITECTURE.md uses
