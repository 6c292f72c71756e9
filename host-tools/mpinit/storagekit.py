"""`mpinit pack --luks / --mdadm / --lvm / --crypttab FILE`: what an installed system's storage stack needs in the
image, one flag each.

    --luks      cryptsetup (with its libraries) and the kernel side of dm-crypt: dm_mod, dm_crypt, the cipher and
                hash modules a LUKS volume uses (aes, xts, cbc, essiv, sha256, sha512), and AF_ALG (af_alg,
                algif_skcipher, algif_hash), through which cryptsetup decrypts key slots with the kernel's crypto;
                and virtio_rng (loaded by modalias in a VM with a virtio RNG): cryptsetup's LUKS2 open waits in
                getrandom(2) until the kernel's crng is initialised, which a hardware RNG makes happen at once
    --mdadm     mdadm and the md driver with its RAID personalities (md_mod, raid0, raid1, raid10, raid456, linear):
                nothing triggers these by modalias, the agent loads them when assembly is asked for
    --lvm       lvm (Debian has no lvm.static: the dynamic one with its libraries) and dm_mod with the common targets
    --crypttab  FILE copied to /etc/crypttab after a check with the agent's own parser (crypttab.py)

Modules are only added when the image gets a module tree (--kernel-modules / --kver); those the kernel lacks or
builds in are left out without a warning (the kernel may use aesni_intel or not, build dm_mod in or not). The
tools come from this machine (mpinit.runner.find_tool: PATH, then /usr/sbin and /sbin); a missing one is an error naming its Debian package.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .runner import ToolError, find_tool

# flag -> (program, Debian package, modules)
KITS = {
    "luks": ("cryptsetup", "cryptsetup-bin",
             ("dm_mod", "dm_crypt", "af_alg", "algif_skcipher", "algif_hash", "aes_generic", "aesni_intel", "xts",
              "cbc", "ecb", "essiv", "sha256_generic", "sha256_ssse3", "sha512_generic", "sha512_ssse3",
              "crc32c_generic", "crc32c_intel", "virtio_rng")),
    "mdadm": ("mdadm", "mdadm", ("md_mod", "raid0", "raid1", "raid10", "raid456", "linear")),
    "lvm": ("lvm", "lvm2", ("dm_mod", "dm_snapshot", "dm_mirror", "dm_zero")),
}

class KitError(ValueError):
    pass


def present_modules(module_dir, names):
    """The names a module tree ships as files (built-in and absent ones dropped)."""
    from . import kmod

    try:
        tree = kmod.Tree(module_dir)
    except kmod.ModuleError:
        return []
    return [n for n in names if n in tree.files]


def check_crypttab(path):
    """The file's bytes after the agent's parser accepted them; KitError naming the file and line otherwise."""
    from mpinit_agent import crypttab

    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except OSError as e:
        raise KitError("--crypttab %s: %s" % (path, e.strerror))
    except UnicodeDecodeError:
        raise KitError("--crypttab %s: not UTF-8 text" % path)
    try:
        entries = crypttab.parse(text)
    except crypttab.CrypttabError as e:
        raise KitError("--crypttab %s: %s" % (path, e))
    for e in entries:
        bad = [o for o in e.options if o.split("=")[0] in crypttab.UNSUPPORTED]
        if bad:
            raise KitError("--crypttab %s line %d: %s: mpinit unlocks LUKS only (not %s)"
                           % (path, e.line, e.name, ",".join(bad)))
    return data, entries


def expand(opts):
    """A copy of PackOptions with the kits' programs in binaries and their modules in modules. Returns (opts,
    warnings)."""
    warnings = []
    binaries = list(opts.binaries)
    extra = []
    for flag in ("luks", "mdadm", "lvm"):
        if not getattr(opts, flag, False):
            continue
        prog, package, mods = KITS[flag]
        try:
            path = str(Path(find_tool(prog, package)))
        except ToolError:
            raise KitError("--%s: %s is not installed on this machine (Debian package %s)"
                           % (flag, prog, package)) from None
        if path not in binaries:
            binaries.append(path)
        if opts.module_dir is None:
            warnings.append("--%s: no module tree given (--kernel-modules/--kver): %s must be built into the kernel"
                            % (flag, ", ".join(mods[:2])))
            continue
        for m in present_modules(opts.module_dir, mods):
            if m not in extra:
                extra.append(m)
    modules = opts.modules
    if extra:
        modules = list(opts.modules if opts.modules is not None else ["generic-live"])
        modules += [m for m in extra if m not in modules]
    if getattr(opts, "crypttab", None) is not None:
        _data, entries = check_crypttab(opts.crypttab)
        if entries and not opts.luks and not any(Path(b).name == "cryptsetup" for b in binaries):
            warnings.append("--crypttab without --luks: the image has no cryptsetup to unlock %s"
                            % ", ".join(e.name for e in entries))
    return dataclasses.replace(opts, binaries=binaries, modules=modules), warnings


def add_files(tree, opts):
    """/etc/crypttab from --crypttab."""
    from mpinit_agent import contract

    if getattr(opts, "crypttab", None) is not None:
        data, _entries = check_crypttab(opts.crypttab)
        tree.add_file(contract.CRYPTTAB_PATH, data, 0o644, source="--crypttab")
