# The medium stage of a network boot: fetch the image named by a URL (opts.url: root=live:http://...,
# archiso_http_srv=, fetch=, url=) into a tmpfs at TORAM_MOUNT, verify it, and hand it on exactly as the toram
# stage would have left a copied image (ctx.image in RAM, ctx.toram set, no medium to release).
#
#   - memory: the tmpfs may grow to MemAvailable minus the toram reserve (config toram_reserve_mb); the
#     Content-Length is checked against the same numbers before any body byte is written (toram's rule);
#   - verification: rd.live.sha256=<hex> (pinned) and/or checksum=y (<image>.sha256 / .sha512, archiso's
#     <stem>.sha512, fetched from beside the image first); the digest is computed while the bytes arrive, and a
#     mismatch or a missing checksum file is a boot failure showing both values: the image is deleted, never
#     mounted;
#   - an image that probes as iso9660 (casper's url=, or any ISO URL) is opened like an ISO file (medium._open_iso)
#     and the squashfs looked up inside it; anything else must probe as squashfs.
from micropython import const

from . import contract, fsutil, log, netconf
from . import syscalls as sc
from .failure import BootError, oserror_text

_MiB = const(1 << 20)
_MIN_TMPFS = const(16 << 20)


def _param(opts):
    return "URL %s" % opts.url


def _resolver(ctx, tried):
    servers = list(ctx.net.dns) if getattr(ctx, "net", None) is not None else []

    def resolve(host):
        from . import dns

        try:
            return dns.resolve(host, servers, tried)[0]
        except dns.DnsError as e:
            raise BootError("medium", str(e), param=_param(ctx.opts), tried=tried,
                            seen=["DNS servers: %s" % (" ".join(servers) or "none")])
    return resolve


def _http_knobs(opts):
    """rd.live.http.timeout= / rd.live.http.retries= as http.Download's keywords (None: its defaults)."""
    t = getattr(opts, "http_timeout", None)
    return {"timeout_ms": t * 1000 if t else None, "retries": getattr(opts, "http_retries", None)}


def _fetch_checksum(ctx, url, resolve, tried):
    """checksum=y: (algo, digest, checksum URL) from the first checksum file beside the image that exists."""
    from . import http, medium

    for cand in medium.checksum_files(url):
        path = fsutil.join(contract.TORAM_MOUNT, ".checksum")
        d = http.Download(cand, path, resolve=resolve, label="fetch", quiet=True, **_http_knobs(ctx.opts))
        try:
            d.run()
        except http.HttpError as e:
            tried.append("%s: %s" % (cand, e))
            if e.status == 404 or e.status == 410:
                continue
            raise BootError("medium", "cannot fetch the checksum file %s: %s" % (cand, e), param="checksum=y",
                            tried=tried)
        try:
            text = fsutil.read_text(path)
            _remove(path)
            digest = medium.parse_checksum(text, cand)
        except (OSError, ValueError) as e:
            raise BootError("medium", "checksum file %s: %s" % (cand, e), param="checksum=y", tried=tried)
        algo = "sha512" if cand.endswith(".sha512") else "sha256"
        return algo, digest, cand
    raise BootError("medium", "checksum=y but there is no checksum file beside %s" % url, param="checksum=y",
                    tried=tried)


def _remove(path):
    import os

    try:
        os.remove(path)
    except OSError:
        pass


def _mount_tmpfs(ctx):
    from . import toram

    reserve = ctx.config["toram_reserve_mb"] * _MiB
    try:
        available = toram.mem_available()
    except (OSError, ValueError) as e:
        raise BootError("medium", "cannot read free memory: %s" % e, param=_param(ctx.opts))
    size = max(available - reserve, _MIN_TMPFS)
    fsutil.makedirs(contract.TORAM_MOUNT)
    try:
        sc.mount("tmpfs", contract.TORAM_MOUNT, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV,
                 "size=%dk,mode=0755" % (size // 1024))
    except OSError as e:
        raise BootError("medium", "mount tmpfs on %s failed: %s" % (contract.TORAM_MOUNT, oserror_text(e)),
                        param=_param(ctx.opts))
    return available, reserve


def _fail(ctx, message, **kw):
    try:
        sc.umount(contract.TORAM_MOUNT)  # the tmpfs and whatever is in it: nothing half-fetched stays
    except OSError:
        pass
    raise BootError("medium", message, **kw)


def run(ctx):
    from . import http, medium, probe

    opts = ctx.opts
    url = opts.url
    ctx.tried = []
    tried = ctx.tried
    available, reserve = _mount_tmpfs(ctx)
    resolve = _resolver(ctx, tried)

    def check_size(total):
        if total + reserve > available:
            raise BootError("medium", "not enough memory for %s: %d MiB + reserve %d MiB > MemAvailable %d MiB" % (
                url, total // _MiB, reserve // _MiB, available // _MiB), param=_param(opts),
                seen=["Content-Length %d" % total, "MemAvailable %d kB" % (available // 1024)])

    checks = []     # (algo, expected, where it came from)
    try:
        if opts.live_sha256:
            checks.append(("sha256", opts.live_sha256, "rd.live.sha256="))
        if opts.checksum:
            algo, digest, where = _fetch_checksum(ctx, url, resolve, tried)
            checks.append((algo, digest, where))
        name = netconf.url_basename(url) or "image"
        dest = fsutil.join(contract.TORAM_MOUNT, name)
        try:
            new_hash = medium.hash_ctor(checks[0][0]) if checks else None
        except ValueError as e:
            raise BootError("medium", str(e), param="checksum=y")
        log.info("medium: fetching %s" % url)
        d = http.Download(url, dest, resolve=resolve, check_size=check_size, new_hash=new_hash, label="fetch",
                          **_http_knobs(opts))
        try:
            d.run()
        except http.HttpError as e:
            tried.extend(d.tried)
            status = " (HTTP %d)" % e.status if e.status else ""
            # raised, not _fail(): the except below unmounts the tmpfs once
            raise BootError("medium", "fetching %s failed%s: %s" % (url, status, e), param=_param(opts), tried=tried)
        log.debug("medium: %d bytes in %d reads (%d bytes a read)" % (d.done, d.reads, d.done // max(d.reads, 1)))
    except BootError as e:
        try:
            sc.umount(contract.TORAM_MOUNT)
        except OSError:
            pass
        raise e
    for i in range(len(checks)):
        algo, want, where = checks[i]
        if i == 0 and d.hash is not None:
            got = medium.hex_digest(d.hash)
        else:
            got = medium.file_digest(dest, algo)
        if got != want:
            _fail(ctx, "%s of %s does not match %s: the image is not mounted" % (algo, url, where),
                  param=where if where.endswith("=") else "checksum=y",
                  tried=["fetched %s (%d bytes)" % (d.url, d.done)],
                  seen=["expected %s (%s)" % (want, where), "computed %s" % got])
        log.info("medium: %s of %s matches %s" % (algo, url, where))
    info = probe.probe(dest) or {}
    kind = info.get("TYPE")
    image = dest
    if kind == "iso9660":
        where = medium._open_iso(ctx, dest)
        candidates = list(opts.image_paths) + ["casper/filesystem.squashfs"]
        image = medium.find_image(where, candidates)
        if image is None:
            seen = [medium._listing(where)]
            medium._umount(where)       # autoclear frees its loop device; resume() starts clean
            ctx.iso_loop = None
            _fail(ctx, "the ISO fetched from %s holds none of %s" % (url, ", ".join(candidates)),
                  param=_param(opts), seen=seen)
    elif kind not in medium.IMAGE_TYPES:
        _fail(ctx, "%s is not a live image (squashfs, EROFS) or an ISO (probed TYPE=%s)" % (url, kind or "nothing"),
              param=_param(opts), seen=["probe: %r" % (info,), "%d bytes fetched" % d.done])
    import os

    ctx.image = image
    ctx.image_size = os.stat(image)[6]
    ctx.toram = True
    ctx.medium = None
    ctx.medium_dev = None
    # squashfs or EROFS: how the root stage mounts it (probed above; the image inside an ISO is probed now)
    ctx.image_type = kind if image == dest else medium.check_image(image)
    note = ""
    if d.resumed:
        note += ", resumed %d times" % d.resumed
    if checks:
        note += ", " + " + ".join(["%s ok" % c[0] for c in checks])
    return "%s from %s (%d MiB in RAM%s)" % (image, d.url, d.done // _MiB, note)
