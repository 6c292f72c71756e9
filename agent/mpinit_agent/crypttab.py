# /etc/crypttab, as `mpinit pack --crypttab FILE` bakes it into the image (contract.CRYPTTAB_PATH).
#
# A pure parser (no I/O): parse(text) -> [Entry]. Format, crypttab(5) (systemd) and Debian's crypttab(5):
#   <name> <device> [<keyfile> [<options>]]        fields separated by spaces/tabs; '#' starts a comment line
#   device   UUID=, PARTUUID=, LABEL=, PARTLABEL= or a /dev path (blockdev.parse_spec() takes all of them)
#   keyfile  "none", "-" or missing: ask for a passphrase; else an absolute path inside the initramfs, or
#            systemd's "<path>:<device spec>" (the file on another device, e.g. a USB key)
#   options  comma separated; what the agent acts on: discard, noauto (skipped at boot), nofail (missing device
#            is not an error), tries=N (passphrase attempts, 0 = unlimited is taken as the default 3),
#            keyfile-offset=, keyfile-size=, readonly/read-only, luks; plain, tcrypt, bitlk, swap, tmp= are not
#            supported (parse() keeps them; the unlocker refuses those entries with a message)
# Octal escapes (\040) in fields are decoded as fstab(5) does.
#
# Malformed input raises CrypttabError (a ValueError) naming the line; nothing else is ever raised
# (tests/test_crypttab.py fuzzes it).
from . import fsutil


class CrypttabError(ValueError):
    pass


class Entry:
    def __init__(self, name, device, keyfile, keydev, options, line):
        self.name = name          # the /dev/mapper name
        self.device = device      # spec of the LUKS device
        self.keyfile = keyfile    # None: passphrase
        self.keydev = keydev      # spec of the device holding keyfile, None: the initramfs
        self.options = options    # [str], in order
        self.line = line          # 1-based line number, for messages

    def option(self, name, default=None):
        """The value of name=value, True for a bare name, default when absent."""
        for o in self.options:
            if o == name:
                return True
            if o.startswith(name + "="):
                return o[len(name) + 1:]
        return default

    def __repr__(self):
        return "Entry(%r, %r, keyfile=%r, keydev=%r, options=%r)" % (self.name, self.device, self.keyfile,
                                                                     self.keydev, self.options)


UNSUPPORTED = ("plain", "tcrypt", "bitlk", "swap", "tmp")


def _unescape(field, n):
    def refuse(digits):
        raise CrypttabError("crypttab line %d: bad escape \\%s" % (n, digits))

    return fsutil.unescape_octal(field, refuse)


def parse(text):
    """[Entry] from crypttab text. CrypttabError (naming the line) for a line with fewer than 2 or more than 4
    fields, a name that cannot be a device-mapper name, an empty device, or a relative key file path."""
    if not isinstance(text, str):
        raise CrypttabError("crypttab: want text, not %r" % type(text).__name__)
    entries = []
    names = {}
    n = 0
    for raw in text.split("\n"):
        n += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or len(fields) > 4:
            raise CrypttabError("crypttab line %d: want <name> <device> [<keyfile> [<options>]], got %d fields"
                                % (n, len(fields)))
        name = _unescape(fields[0], n)
        # device-mapper names: at most DM_NAME_LEN - 1 = 127 bytes, no '/' (include/uapi/linux/dm-ioctl.h).
        if not name or "/" in name or name in (".", "..") or len(name.encode()) > 127:
            raise CrypttabError("crypttab line %d: %r is not a usable device-mapper name" % (n, name))
        if name in names:
            raise CrypttabError("crypttab line %d: name %r already used on line %d" % (n, name, names[name]))
        names[name] = n
        device = _unescape(fields[1], n)
        keyfile = None
        keydev = None
        if len(fields) > 2 and fields[2] not in ("none", "-"):
            key = _unescape(fields[2], n)
            i = key.find(":")
            if i > 0:
                keydev = key[i + 1:] or None
                key = key[:i]
            if not key.startswith("/"):
                raise CrypttabError("crypttab line %d: key file %r must be an absolute path" % (n, key))
            keyfile = key
        options = []
        if len(fields) > 3:
            for o in fields[3].split(","):
                o = _unescape(o, n)
                if o:
                    options.append(o)
        entries.append(Entry(name, device, keyfile, keydev, options, n))
    return entries
