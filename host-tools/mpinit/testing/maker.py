"""Storage test media made by the real tools inside a QEMU guest: LUKS with cryptsetup, RAID with mdadm, LVM with
lvm, filesystems with mkfs.ext4, on blank virtio disks.

Why a guest: those tools need the kernel's device mapper, md driver and block devices, and the host we build on
must not get loop devices, dm targets or md arrays (it is shared, and CI runs unprivileged). So the maker is a
small initramfs (busybox, the tools with their libraries, the dm/md/crypto/virtio modules, packed with mpinit's
own image builder) whose /init loads the modules, runs a recipe's shell script with the blank disk image files
attached as /dev/vda, /dev/vdb, ..., prints `MAKER-DONE status=<exit status>` and powers off. The host checks the
marker and keeps the disks.

    recipe = Recipe("luks2-root", disks=(Disk(64, partitions=(Partition("MPCRYPT", type_code="8309"),)),),
                    script="cryptsetup luksFormat ... /dev/vda1 ...", inputs={"passphrase": b"..."})
    made = make(recipe, kernel)       # -> Made(disks=[Path, ...], facts={...}), cached

A recipe script runs under `sh -e -x` (busybox ash) with these in the environment: IN (a directory holding the
recipe's `inputs`, one file per name: secrets reach the tools as key files, never on argv), TREE (the recipe's
`trees`, one directory per name, e.g. a root for `mkfs.ext4 -d`), DM_DISABLE_UDEV=1 (libdevmapper then makes the
/dev/mapper nodes itself: there is no udev in the guest), and the recipe's `env`. `fact NAME VALUE` prints a
`MAKER-FACT NAME=VALUE` line that the host collects into Made.facts (e.g. what `mdadm --examine` says).

Partition tables are written on the host with sgdisk on the image files (no device involved), so the guest sees
/dev/vda1 etc. at once. Results are cached under build/e2e/storage/<name>/<key>/, where key hashes everything the
media are made from (the recipe, the trees' contents, the tools' and busybox's bytes, the kernel release and this
module); the guest works on files in a temporary directory that is renamed to <key> only after the marker said
status 0, so a failed or interrupted make leaves nothing cached. One make takes about 10-20 s under TCG.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import qemu
from ..paths import build_dir
from ..runner import ToolError, find_tool, run

DONE_MARKER = "MAKER-DONE"
FACT_MARKER = "MAKER-FACT"
SECTOR = 512
MIB = 1024 * 1024
PART_START = 2048           # sectors: sgdisk's default 1 MiB alignment
MEMORY_MB = 384             # cryptsetup's argon2 and mkfs need a few tens of MiB on top of the initramfs
TIMEOUT_S = 240             # TCG on a loaded machine; a normal make takes 10-20 s

# Programs in the maker image: in-image path -> (host program name, Debian package). mkfs.ext4 reads
# /etc/mke2fs.conf, which goes in too (below), so the guest makes the same filesystems the host would.
TOOLS = {
    "/sbin/cryptsetup": ("cryptsetup", "cryptsetup-bin"),
    "/sbin/mdadm": ("mdadm", "mdadm"),
    "/sbin/lvm": ("lvm", "lvm2"),
    "/sbin/mkfs.ext4": ("mkfs.ext4", "e2fsprogs"),
    "/sbin/e2fsck": ("e2fsck", "e2fsprogs"),
    "/sbin/debugfs": ("debugfs", "e2fsprogs"),
}
MKE2FS_CONF = "/etc/mke2fs.conf"

# Kernel modules the tools need (the closure brings their dependencies). Debian's cloud kernel builds virtio,
# dm, md and most crypto as modules (ext4, aes, sha256, cbc, crc32c are built in; a built-in one is satisfied):
#   dm_mod, dm_crypt: cryptsetup open; LVM's linear targets are in dm_mod itself
#   md_mod, raid1: mdadm --create --level=1
#   xts, ecb: the aes-xts-plain64 cipher (LUKS's default) for dm-crypt; af_alg and algif_skcipher/algif_hash:
#   cryptsetup encrypts the LUKS keyslots through the kernel crypto user API (AF_ALG) when it is there
#   (lib/crypto_backend/crypto_kernel.c), else through a temporary dm-crypt device
MODULES = ("virtio_pci", "virtio_blk", "dm_mod", "dm_crypt", "md_mod", "raid1", "xts", "ecb", "af_alg",
           "algif_skcipher", "algif_hash")

# The maker's /init, run by busybox ash. Kernel messages are kept off the console (`quiet` on the command line)
# so that the FACT and DONE lines are not split by them.
INIT = r"""#!/bin/sh
export PATH=/sbin:/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 run /run
mkdir -p /run/lock/lvm /run/cryptsetup /run/mdadm /tmp
for m in $(cat /maker/modules); do insmod "$m" || echo "maker: insmod $m failed"; done
for d in $(cat /maker/devices); do
  i=0; while [ ! -b "$d" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
  [ -b "$d" ] || echo "maker: $d did not appear"
done
echo "MAKER-BEGIN"
sh -e -x /maker/recipe.sh
status=$?
sync
echo "MAKER-DONE status=$status"
poweroff -f
"""

# Put before every recipe script.
PRELUDE = r"""export IN=/maker/in TREE=/maker/tree DM_DISABLE_UDEV=1
fact() { echo "MAKER-FACT $1=$2"; }
"""


@dataclass(frozen=True)
class Partition:
    label: str                  # GPT partition name (PARTLABEL)
    size_mib: int = 0           # 0: the rest of the disk
    type_code: str = "8300"     # sgdisk type code: 8300 Linux filesystem, 8309 Linux LUKS, FD00 Linux RAID
    partuuid: str | None = None


@dataclass(frozen=True)
class Disk:
    size_mib: int
    partitions: tuple = ()      # Partitions, in order (vda1, vda2, ...); none: the guest gets the blank disk
    disk_guid: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str                   # the cache directory's name: build/e2e/storage/<name>
    disks: tuple                # Disks, attached as /dev/vda, /dev/vdb, ... in order
    script: str                 # sh script run in the guest (see the module doc)
    description: str = ""
    inputs: dict = field(default_factory=dict)  # name -> bytes, files in $IN (key files, passphrases)
    trees: dict = field(default_factory=dict)   # name -> host directory, copied to $TREE/<name>
    env: dict = field(default_factory=dict)     # name -> str, exported to the script
    facts: dict = field(default_factory=dict)   # name -> str known beforehand (the UUIDs the script was given)


@dataclass
class Made:
    name: str
    disks: list                 # Paths of the disk images, in the recipe's order
    facts: dict                 # the recipe's facts and the guest's MAKER-FACT lines
    directory: Path
    cached: bool = False        # True: taken from the cache, no guest was run


class MakerError(ToolError):
    """The guest did not finish the recipe; the message names the recipe and says what the console showed."""


# --- the cache key ---------------------------------------------------------------------------------------------

def _tree_digest(h, root):
    """Hash a directory as mkfs -d would copy it: relative paths, types, modes, symlink targets, file bytes."""
    root = Path(root)
    if not root.is_dir():
        raise MakerError("tree %s: not a directory" % root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            info = os.lstat(p)
            h.update(b"%s\0%o\0" % (os.fsencode(p.relative_to(root)), info.st_mode))
            if stat.S_ISLNK(info.st_mode):
                h.update(os.fsencode(os.readlink(p)))
            elif stat.S_ISREG(info.st_mode):
                h.update(hashlib.sha256(p.read_bytes()).digest())
            h.update(b"\0")


def tool_paths():
    """{in-image path: host path} of TOOLS; MakerError naming the Debian package of a missing one."""
    out = {}
    for dest, (name, package) in TOOLS.items():
        try:
            out[dest] = Path(find_tool(name, package))
        except ToolError as e:
            raise MakerError("storage media maker: %s" % e) from None
    return out


def recipe_key(recipe, kver, busybox):
    """A short hash of everything the recipe's media are made from."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(kver.encode())
    h.update(repr((recipe.name, recipe.disks, recipe.script, sorted(recipe.env.items()),
                   sorted(recipe.facts.items()))).encode())
    for name in sorted(recipe.inputs):
        h.update(b"input %s\0%s" % (name.encode(), hashlib.sha256(recipe.inputs[name]).digest()))
    for name in sorted(recipe.trees):
        h.update(b"tree %s\0" % name.encode())
        _tree_digest(h, recipe.trees[name])
    for dest, path in sorted(tool_paths().items()):
        h.update(dest.encode() + hashlib.sha256(path.read_bytes()).digest())
    h.update(hashlib.sha256(Path(busybox).read_bytes()).digest())
    return h.hexdigest()[:16]


# --- the maker image -------------------------------------------------------------------------------------------

def _check_name(what, name):
    if not name or "/" in name or name.startswith(".") or not name.replace("-", "").replace("_", "").replace(
            ".", "").isalnum():
        raise MakerError("%s %r: use letters, digits, '-', '_' and '.'" % (what, name))


def _device_names(recipe):
    """The block devices the guest waits for: every disk, and every partition the host wrote."""
    out = []
    for i, disk in enumerate(recipe.disks):
        base = "/dev/vd" + "abcdefghijklmnopqrstuvwxyz"[i]
        out.append(base)
        out.extend("%s%d" % (base, n + 1) for n in range(len(disk.partitions)))
    return out


def make_initrd(recipe, kernel, out, work):
    """Write the maker initramfs for `recipe` to `out` (with mpinit's pack: the ELF closure of each tool, the
    module closure decompressed, one deterministic cpio). `work` is a scratch directory."""
    from .. import initramfs, kmod, liveroot

    stage = Path(work) / "maker-stage"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "bin").mkdir(parents=True)
    (stage / "maker" / "in").mkdir(parents=True)
    (stage / "maker" / "tree").mkdir(parents=True)
    for d in ("dev", "proc", "sys", "run", "tmp", "etc/lvm"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    busybox = liveroot.busybox_path()
    shutil.copyfile(busybox, stage / "bin" / "busybox")
    (stage / "bin" / "busybox").chmod(0o755)
    applets = run([busybox, "--list"], capture=True, echo=False).stdout.decode().split()
    for a in applets:
        if a not in ("busybox", "init", "linuxrc"):
            (stage / "bin" / a).symlink_to("busybox")
    for name, data in recipe.inputs.items():
        _check_name("input", name)
        (stage / "maker" / "in" / name).write_bytes(data)
        (stage / "maker" / "in" / name).chmod(0o600)
    for name, src in recipe.trees.items():
        _check_name("tree", name)
        shutil.copytree(src, stage / "maker" / "tree" / name, symlinks=True)
    closure = kmod.resolve(kernel.modules_dir, list(MODULES))
    paths = ["/lib/modules/%s/%s" % (closure.kver, closure.infos[m].rel) for m in closure.modules]
    (stage / "maker" / "modules").write_text("\n".join(paths) + "\n")
    (stage / "maker" / "devices").write_text("\n".join(_device_names(recipe)) + "\n")
    env = "".join("export %s=%s\n" % (k, _sh_quote(v)) for k, v in sorted(recipe.env.items()))
    (stage / "maker" / "recipe.sh").write_text(PRELUDE + env + recipe.script.strip() + "\n")
    init = Path(work) / "maker-init"
    init.write_text(INIT)
    init.chmod(0o755)
    adds = [(str(src), dest) for dest, src in sorted(tool_paths().items())]
    if Path(MKE2FS_CONF).is_file():
        adds.append((MKE2FS_CONF, MKE2FS_CONF))
    opts = initramfs.PackOptions(init=init, directories=[stage], adds=adds, module_dir=kernel.modules_dir,
                                 modules=list(MODULES), compression="gzip")
    try:
        initramfs.pack(opts, out)
    except initramfs.PackError as e:
        raise MakerError("maker initramfs for %s: %s" % (recipe.name, e)) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        init.unlink(missing_ok=True)
    return Path(out)


def _sh_quote(text):
    return "'" + str(text).replace("'", "'\\''") + "'"


# --- blank disks -----------------------------------------------------------------------------------------------

def make_disk(path, disk):
    """A sparse blank image of disk.size_mib, with its GPT partitions written by sgdisk (on the file)."""
    path = Path(path)
    with open(path, "wb") as f:
        f.truncate(disk.size_mib * MIB)
    if not disk.partitions:
        return path
    argv = [find_tool("sgdisk", "gdisk"), "-o"]
    if disk.disk_guid:
        argv += ["-U", disk.disk_guid]
    start = PART_START
    for n, part in enumerate(disk.partitions, 1):
        end = "0" if not part.size_mib else str(start + part.size_mib * MIB // SECTOR - 1)
        argv += ["-n", "%d:%d:%s" % (n, start, end), "-t", "%d:%s" % (n, part.type_code), "-c",
                 "%d:%s" % (n, part.label)]
        if part.partuuid:
            argv += ["-u", "%d:%s" % (n, part.partuuid)]
        if part.size_mib:
            start += part.size_mib * MIB // SECTOR
    run(argv + [path], capture=True, echo=False)
    return path


# --- making and caching ----------------------------------------------------------------------------------------

def storage_dir(cache=None):
    return Path(cache) if cache else build_dir() / "e2e" / "storage"


def _load(d, name):
    """The Made cached in directory d, or None when a disk file is missing."""
    info = json.loads((d / "facts.json").read_text())
    disks = [d / n for n in info["disks"]]
    if not all(p.is_file() for p in disks):
        return None
    return Made(name, disks, info["facts"], d, cached=True)


def _cached(name, key, build, cache=None):
    """build(work_dir) -> (disk paths in work_dir, facts, extra facts.json fields), run unless
    storage_dir/<name>/<key> holds its result already. The work directory is renamed to <key> only when build
    returned, so an exception (a tool failing, Ctrl-C) leaves nothing cached."""
    base = storage_dir(cache) / name
    final = base / key
    if (final / "facts.json").is_file():
        made = _load(final, name)
        if made is not None:
            return made
    base.mkdir(parents=True, exist_ok=True)
    work = base / (".tmp-%s-%d" % (key, os.getpid()))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        disks, facts, extra = build(work)
        info = dict(extra, recipe=name, key=key, disks=[Path(p).name for p in disks], facts=facts)
        (work / "facts.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        if final.exists():      # another process made the same media meanwhile: keep theirs
            shutil.rmtree(work)
        else:
            work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _drop_stale(base, keep=key)
    made = _load(final, name)
    made.cached = False
    return made


def parse_facts(output):
    """{name: value} from the console's `MAKER-FACT name=value` lines (the last one of a name wins)."""
    facts = {}
    for line in output.split("\n"):
        i = line.find(FACT_MARKER + " ")
        if i < 0:
            continue
        name, eq, value = line[i + len(FACT_MARKER) + 1:].strip().partition("=")
        if eq and name:
            facts[name] = value
    return facts


def done_status(result):
    """The recipe's exit status from the DONE marker line, or None when the marker never appeared."""
    if not result.marker_line:
        return None
    word = result.marker_line[len(DONE_MARKER):].strip()
    if word.startswith("status="):
        try:
            return int(word[len("status="):].split()[0])
        except (ValueError, IndexError):
            return None
    return None


def make(recipe, kernel, cache=None, timeout_s=TIMEOUT_S, echo=False):
    """The recipe's media: from the cache, else made in a guest. Raises MakerError when the guest fails (the
    console is kept in build/e2e/storage/<name>/last-failure.log)."""
    from .. import liveroot

    _check_name("recipe", recipe.name)
    if not recipe.disks:
        raise MakerError("recipe %s: no disks" % recipe.name)
    key = recipe_key(recipe, kernel.kver, liveroot.busybox_path())

    def build(work):
        disks = [make_disk(work / ("disk%d.img" % i), d) for i, d in enumerate(recipe.disks)]
        initrd = make_initrd(recipe, kernel, work / "maker-initrd.img", work)
        argv = qemu.qemu_argv(kernel.vmlinuz, initrd, append="console=ttyS0 quiet panic=1", memory_mb=MEMORY_MB)
        for p in disks:
            # Writable (no snapshot=on): the guest's writes are the product. cache=unsafe: nothing to lose if
            # the host crashes mid-make (the work directory is discarded), and it is faster.
            argv += ["-drive", "file=%s,if=virtio,format=raw,cache=unsafe" % str(p).replace(",", ",,")]
        result = qemu.boot(None, None, argv=argv, marker=DONE_MARKER, timeout_s=timeout_s,
                           log_path=work / "maker.log", echo=echo)
        status = done_status(result)
        if status != 0:
            failure_log = work.parent / "last-failure.log"
            shutil.copyfile(work / "maker.log", failure_log)
            if status is None:
                how = "timed out after %d s" % timeout_s if result.timed_out else "QEMU exited"
                what = "%s without %s" % (how, DONE_MARKER)
            else:
                what = "the script exited with status %d" % status
            raise MakerError("storage medium %s: %s; console (also in %s):\n%s"
                             % (recipe.name, what, failure_log, result.output[-3000:]))
        initrd.unlink()
        facts = dict(recipe.facts)
        facts.update(parse_facts(result.output))
        return disks, facts, {"description": recipe.description, "seconds": round(result.elapsed_s, 1)}

    return _cached(recipe.name, key, build, cache)


def _drop_stale(base, keep):
    """Remove other keys' media of this recipe, unless touched in the last 10 minutes (a concurrent run of another
    checkout state may be using them), and temporary directories of dead processes."""
    now = time.time()
    for d in base.iterdir():
        if not d.is_dir() or d.name == keep:
            continue
        if d.name.startswith(".tmp-"):
            pid = d.name.rsplit("-", 1)[-1]
            if pid.isdigit() and Path("/proc", pid).exists():
                continue
        elif now - d.stat().st_mtime <= 600:
            continue
        shutil.rmtree(d, ignore_errors=True)


def host_made(name, key_parts, build, cache=None):
    """Media made on the host alone (plain image files, e.g. a corrupted ext4): the same cache layout and
    atomicity as make(). build(work_dir) -> (disk paths inside work_dir, facts); key_parts: everything the media
    are made from (bytes or anything with a stable repr)."""
    _check_name("medium", name)
    h = hashlib.sha256(Path(__file__).read_bytes())
    for part in key_parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\0")

    def build_all(work):
        disks, facts = build(work)
        return disks, facts, {}

    return _cached(name, h.hexdigest()[:16], build_all, cache)
