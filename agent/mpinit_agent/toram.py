# The toram stage: copy the live image into a tmpfs so the medium can be removed (rd.live.ram=1, toram,
# copytoram=y|auto). Memory is checked first; the copy uses the kernel's copy (copy_file_range/sendfile through
# syscalls.copy_range) in large chunks, with one progress line on the console; the copy's size is verified, then
# the medium is unmounted.
import os

from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import BootError, oserror_text

_MiB = const(1 << 20)
_CHUNK = const(64 << 20)         # bytes per copy call: large, so the copy is syscall-cheap
# copy_direct's buffer: 4 MiB reads with O_DIRECT were 2-4x faster than sendfile/copy_file_range through the page
# cache under QEMU TCG (issue 14's measurements); the mapping exists only during each call.
_DIRECT_BUF = const(4 << 20)
_PROGRESS_MS = const(500)        # progress line refresh interval


def mem_available(meminfo_path="/proc/meminfo"):
    """MemAvailable in bytes (Documentation/filesystems/proc.rst; kernels before 3.14 lack it: MemFree is used)."""
    text = fsutil.read_text(meminfo_path)
    free = None
    for line in text.split("\n"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
        if line.startswith("MemFree:"):
            free = int(line.split()[1]) * 1024
    if free is None:
        raise ValueError("%s has neither MemAvailable nor MemFree" % meminfo_path)
    return free


def decide(mode, image_size, available, reserve, optical):
    """(copy?, why) for toram mode "no"|"yes"|"auto". Raises BootError when "yes" cannot fit."""
    if mode == "no":
        return False, "not requested"
    need = image_size + reserve
    if mode == "auto" and optical:
        return False, "copytoram=auto: the medium is optical"
    if available < need:
        why = ("image %d MiB + reserve %d MiB > MemAvailable %d MiB"
               % (image_size // _MiB, reserve // _MiB, available // _MiB))
        if mode == "auto":
            return False, "copytoram=auto: not enough memory (%s)" % why
        raise BootError("toram", "not enough memory to copy the image to RAM: " + why, param="toram / rd.live.ram=1",
                        seen=["MemAvailable %d kB" % (available // 1024)])
    return True, "%s: %d MiB free" % (mode, available // _MiB)


def progress_line(done, total, elapsed_ms, label="toram"):
    """'toram: 45% 123/456 MiB 80.1 MB/s ETA 4 s' (MB/s in 10^6 bytes, as dd and pv print); label: the word
    after "mpinit: " (http.py's download says "fetch")."""
    pct = (done * 100 // total) if total else 100
    rate = (done * 1000 // elapsed_ms) if elapsed_ms > 0 else 0  # bytes/s
    if rate > 0 and done < total:
        eta = "ETA %d s" % ((total - done) // rate)
    else:
        eta = "done" if done >= total else "ETA ?"
    return "mpinit: %s: %3d%% %d/%d MiB %d.%d MB/s %s" % (label, pct, done // _MiB, total // _MiB,
                                                          rate // 1000000, (rate // 100000) % 10, eta)


def _console(text, end):
    try:
        import sys

        sys.stdout.write(text + end)
    except OSError:
        pass


def _open_direct(src):
    """(fd, True) opened with O_DIRECT, or (fd, False) when the filesystem refuses it (open(2): EINVAL, e.g.
    isofs and tmpfs before 6.6 have no direct I/O)."""
    try:
        return sc.open(src, sc.O_RDONLY | sc.O_CLOEXEC | sc.O_DIRECT), True
    except OSError as e:
        if not e.args or e.args[0] != sc.EINVAL:
            raise
    return sc.open(src, sc.O_RDONLY | sc.O_CLOEXEC), False


def _map_file(src, size):
    """Read the file's last byte through the page cache before the direct copy. On FAT the file's blocks are found
    by walking its cluster chain in the FAT (fs/fat/cache.c fat_get_cluster(), one FAT entry at a time through the
    buffer cache): walked once here, the FAT sectors are cached and every O_DIRECT read maps its blocks without a
    synchronous FAT read in the middle of the copy. Measured under TCG on the bench's 256 MiB image on FAT32: 97-127
    MB/s without this, 167-231 MB/s with it (3 boots each; an earlier full probe of the image read its tail and so did
    this by accident).
    ext4's extent tree and iso9660's single extent are cheap either way. Failure only costs the speed."""
    if size <= 0:
        return
    try:
        with open(src, "rb") as f:
            f.seek(size - 1)
            f.read(1)
    except OSError:
        pass


def copy(src, dst, size, chunk=_CHUNK):
    """Copy size bytes from src to dst, printing progress: O_DIRECT reads into a page-aligned buffer
    (copy_direct) where the source's filesystem allows it, else the kernel's copy (copy_range). A direct read
    refused with EINVAL at the first call (an unaligned device) starts over with copy_range. Returns the bytes
    copied."""
    fin, direct = _open_direct(src)
    if direct:
        _map_file(src, size)
    try:
        fout = sc.open(dst, sc.O_WRONLY | sc.O_CREAT | sc.O_TRUNC | sc.O_CLOEXEC, 0o444)
        try:
            start = sc.uptime_ms()
            last = start
            done = 0
            while done < size:
                if direct:
                    try:
                        n = sc.copy_direct(fin, fout, min(chunk, size - done), _DIRECT_BUF)
                    except OSError as e:
                        if done or not e.args or e.args[0] != sc.EINVAL:
                            raise
                        log.debug("toram: O_DIRECT read refused (%s): copying through the page cache" % e)
                        sc.close(fin)
                        fin = sc.open(src, sc.O_RDONLY | sc.O_CLOEXEC)
                        direct = False
                        continue
                else:
                    n = sc.copy_range(fin, fout, min(chunk, size - done))
                if n <= 0:
                    break
                done += n
                now = sc.uptime_ms()
                if now - last >= _PROGRESS_MS:
                    last = now
                    _console("\r" + progress_line(done, size, now - start), "")
            _console("\r" + progress_line(done, size, sc.uptime_ms() - start), "\n")
        finally:
            sc.close(fout)
    finally:
        sc.close(fin)
    return done


def release_medium(ctx):
    """Unmount the ISO and the medium after the copy so the stick can be pulled. Failure is only a warning."""
    for target in (contract.ISO_MOUNT if ctx.iso_loop else None, ctx.medium):
        if not target:
            continue
        try:
            sc.umount(target)
        except OSError as e:
            log.warning("toram: medium stays mounted: umount %s: %s" % (target, oserror_text(e)))
            return False
    ctx.iso_loop = None
    ctx.medium = None
    return True


def run(ctx):
    opts = ctx.opts
    if opts.live is None or not ctx.image:
        return "skipped: not a live boot"
    if ctx.toram:
        return "skipped: the image is in RAM already (fetched)"
    mode = opts.toram or "no"
    if mode == "no":
        return "skipped: not requested"
    reserve = ctx.config["toram_reserve_mb"] * _MiB
    try:
        available = mem_available()
    except (OSError, ValueError) as e:
        if mode == "yes":
            raise BootError("toram", "cannot read free memory: %s" % e, param="toram")
        log.warning("toram: copytoram=auto skipped: cannot read free memory: %s" % e)
        return "skipped: free memory unknown"
    do, why = decide(mode, ctx.image_size, available, reserve, ctx.optical)
    if not do:
        if mode == "auto" and "memory" in why:
            # A person asked for a copy and will pull the stick: say it on the console whatever the log level.
            log.warning("toram: %s; booting from the medium" % why)
            log.console("mpinit: toram: %s; booting from the medium (keep it plugged in)" % why)
        else:
            log.info("toram: %s" % why)
        return "skipped: " + why
    # tmpfs just big enough: the image rounded up to MiB, plus one MiB for the directory and rounding.
    size_mib = (ctx.image_size + _MiB - 1) // _MiB + 1
    fsutil.makedirs(contract.TORAM_MOUNT)
    try:
        sc.mount("tmpfs", contract.TORAM_MOUNT, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV,
                 "size=%dm,mode=0755" % size_mib)
    except OSError as e:
        raise BootError("toram", "mount tmpfs on %s failed: %s" % (contract.TORAM_MOUNT, oserror_text(e)),
                        param="toram")
    dst = fsutil.join(contract.TORAM_MOUNT, fsutil.basename(ctx.image))
    try:
        done = copy(ctx.image, dst, ctx.image_size)
        got = os.stat(dst)[6]
        if done != ctx.image_size or got != ctx.image_size:
            raise OSError(sc.EIO, "short copy: %d of %d bytes (file %d)" % (done, ctx.image_size, got))
    except OSError as e:
        try:
            sc.umount(contract.TORAM_MOUNT)
        except OSError:
            pass
        msg = "copying %s to RAM failed: %s" % (ctx.image, oserror_text(e))
        if mode == "auto":
            log.warning("toram: %s; booting from the medium" % msg)
            log.console("mpinit: toram: %s; booting from the medium (keep it plugged in)" % msg)
            return "skipped: copy failed"
        raise BootError("toram", msg, param="toram", tried=["copy %s -> %s" % (ctx.image, dst)])
    source = ctx.image
    ctx.image = dst
    ctx.toram = True
    released = release_medium(ctx)
    return "copied %s (%d MiB)%s" % (source, ctx.image_size // _MiB, "" if released else ", medium still mounted")
