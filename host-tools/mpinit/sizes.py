"""Byte counts as people read them, for the tools' summary lines."""


def human(n):
    """1023 -> "1023 B", 1536 -> "1.5 KiB"; binary units up to GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
