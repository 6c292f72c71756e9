# persistence.conf: which parts of the live root a persistence volume keeps (Debian live-boot's format,
# persistence.conf(5)). A pure parser of untrusted bytes (the file sits on a USB stick anyone can write): parse()
# returns entries or raises ConfError, nothing else.
#
# Format, one mount per line:  MOUNT [OPTION[,OPTION]...]
#   MOUNT    an absolute path in the live root ("/" = the whole root), no "." or ".." components
#   union    the volume's directory becomes an overlay upper layer over MOUNT (the live root's own files below)
#   bind     the volume's directory is bind-mounted on MOUNT (the default when no option is given, as live-boot)
#   source=  the directory on the volume, relative to its root; default MOUNT without its leading "/" ("." for
#            "/"). "/" may only be "union" with source "." (persistence.conf(5): "/" cannot be bind-mounted).
# Blank lines and lines starting with "#" are ignored. live-boot's "link" option (symlinks into the live root) is
# not supported and is refused by name, so a volume that needs it is not used half-way.
#
#   parse(text) -> [(mount, kind, source)]   kind "union" | "bind"; parents before their children
from micropython import const

_MAX_BYTES = const(65536)   # a persistence.conf is a few lines; anything bigger is not one
KINDS = ("union", "bind")


class ConfError(ValueError):
    """persistence.conf is not usable; str() says which line and why."""


def _clean(path, line_no, what, absolute):
    """path with its "/" runs collapsed and no trailing "/"; ConfError for "." / ".." components or a wrong
    start (absolute for MOUNT, relative for source=)."""
    if absolute != path.startswith("/"):
        raise ConfError("line %d: %s %r must %s" % (line_no, what, path,
                                                     "start with /" if absolute else "be relative to the volume"))
    parts = []
    for p in path.split("/"):
        if not p:
            continue
        if p in (".", ".."):
            raise ConfError("line %d: %s %r: no . or .. components allowed" % (line_no, what, path))
        for c in p:
            if c < " " or c == "\x7f":
                raise ConfError("line %d: %s %r: control characters are not allowed" % (line_no, what, path))
        parts.append(p)
    if absolute:
        return "/" + "/".join(parts)
    return "/".join(parts) or "."


def _line(raw, line_no):
    fields = raw.split()
    if len(fields) > 2:
        raise ConfError("line %d: %r: want MOUNT [OPTIONS], options separated by commas without spaces"
                        % (line_no, raw.strip()))
    mount = _clean(fields[0], line_no, "mount point", True)
    kind = None
    source = None
    if len(fields) == 2:
        for opt in fields[1].split(","):
            if opt in KINDS:
                if kind is not None and kind != opt:
                    raise ConfError("line %d: %s: both union and bind" % (line_no, mount))
                kind = opt
            elif opt.startswith("source="):
                value = opt[7:]
                if value == ".":
                    source = "."
                elif not value:
                    raise ConfError("line %d: %s: source= needs a directory" % (line_no, mount))
                else:
                    source = _clean(value, line_no, "source", False)
            elif opt == "link":
                raise ConfError("line %d: %s: option link is not supported by mpinit (use bind)" % (line_no, mount))
            else:
                raise ConfError("line %d: %s: unknown option %r (known: union, bind, source=)"
                                % (line_no, mount, opt))
    if kind is None:
        kind = "bind"
    if mount == "/":
        if kind != "union":
            raise ConfError("line %d: / can only be a union (the whole root cannot be bind-mounted)" % line_no)
        if source not in (None, "."):
            raise ConfError("line %d: / takes no source= (its layer is the volume's root)" % line_no)
        source = "."
    if source is None:
        source = mount[1:]
    return (mount, kind, source)


def parse(text):
    """The entries of a persistence.conf (str or bytes), parents before children; ConfError on anything else."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > _MAX_BYTES:
            raise ConfError("%d bytes: too big for a persistence.conf (at most %d)" % (len(text), _MAX_BYTES))
        try:
            text = bytes(text).decode()
        except (UnicodeError, ValueError):
            raise ConfError("not UTF-8 text")
    elif not isinstance(text, str):
        raise ConfError("not text")
    if len(text) > _MAX_BYTES:
        raise ConfError("too big for a persistence.conf (at most %d bytes)" % _MAX_BYTES)
    entries = []
    seen = {}
    line_no = 0
    for raw in text.split("\n"):
        line_no += 1
        if "\x00" in raw:
            raise ConfError("line %d: NUL byte" % line_no)
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        entry = _line(s, line_no)
        if entry[0] in seen:
            raise ConfError("line %d: %s is listed twice (first on line %d)" % (line_no, entry[0], seen[entry[0]]))
        seen[entry[0]] = line_no
        entries.append(entry)
    # Parents first: /home must be mounted before /home/user. Sorted by depth, stable within a depth.
    out = []
    depth = 0
    while len(out) < len(entries):
        for e in entries:
            d = 0 if e[0] == "/" else e[0].count("/")
            if d == depth:
                out.append(e)
        depth += 1
    return out


def root_union(entries):
    """True when the entries make the whole root persistent ("/ union")."""
    for mount, kind, source in entries:
        if mount == "/":
            return True
    return False
