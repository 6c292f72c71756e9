"""Reading a text file the user named (a list, a config, a hook): one error for each way it can fail, naming the
option and the file, in the caller's exception class (mpinit.cli turns those into a usage error)."""

from pathlib import Path


def read_text(path, what, error):
    """The UTF-8 text of the file at `path`; error("<what>: <why>") when it cannot be read or is not UTF-8.
    what: how the user named it, e.g. "--config /etc/x.conf"."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise error("%s: %s" % (what, e.strerror)) from None
    except UnicodeDecodeError:
        raise error("%s: not UTF-8 text" % what) from None
