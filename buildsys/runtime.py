"""The runtime: MicroPython 1.25.0's unix port, static, with the native module `_linux` and the frozen agent.

    build(args) -> Path          build/mpinit-init (args.micropython_src: optional directory or tarball;
                                 args.arch: "x86_64" or "arm64", default the build machine's, see arches.py)

Steps: find the MicroPython source (--micropython-src, else the cached Debian orig tarball, else fetched with
`apt-get source` from Debian trixie through a private, temporary apt set-up), build mpy-cross, then the unix port
with our variant (agent/native/variant), user C module (agent/native) and freeze manifest (agent/manifest.py),
statically linked with musl-gcc (gcc -static as a fallback), or for another architecture with Debian's cross
compiler and that architecture's musl (buildsys/arches.py). MicroPython's sources are never patched.

A stamp holds a hash of every input (agent sources, native sources, variant, manifest, this file, the source
identity and the toolchain), so a second build with nothing changed costs one hash pass.
"""

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from . import arches
from .common import BUILD, ROOT, BuildError, log, run, warn

MPY_VERSION = "1.25.0"
DEB_SOURCE = "micropython"
DEB_VERSION = "1.25.0+ds-1"
DEB_SUITE = "trixie"
ORIG_TARBALL = "micropython_1.25.0+ds.orig.tar.xz"
ORIG_SHA256 = "7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea"

AGENT = ROOT / "agent"
NATIVE = AGENT / "native"
VARIANT_DIR = NATIVE / "variant"
MANIFEST = AGENT / "manifest.py"

WORK = BUILD / "micropython"               # everything this module generates, besides build/mpinit-init
CACHE_TARBALL = WORK / ORIG_TARBALL
PROG = "mpinit-init"

SIZE_BUDGET = 600 * 1024
GZIP_BUDGET = 320 * 1024


# ------------------------------------------------------------------------------------------------------------
# Small helpers

def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tree_files(top, suffixes=None):
    """Every file under top, sorted, skipping caches; suffixes filters by name ending."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if suffixes is None or name.endswith(suffixes):
                out.append(Path(dirpath) / name)
    return out


def _hash_inputs(h, paths):
    for p in paths:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")


def _write_atomic(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".%s.tmp" % path.name)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sizes(path):
    """(size, gzip -9 size) of a file in bytes."""
    data = Path(path).read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def _report_sizes(path):
    size, gz = sizes(path)
    log("%s: %d bytes (%.0f KB), %d gzipped (%.0f KB); budget %d KB / %d KB gzipped"
        % (path, size, size / 1024, gz, gz / 1024, SIZE_BUDGET // 1024, GZIP_BUDGET // 1024))
    if size > SIZE_BUDGET or gz > GZIP_BUDGET:
        warn("%s is over its size budget" % path)
    return size, gz


# ------------------------------------------------------------------------------------------------------------
# The MicroPython source

def _check_source_dir(src):
    """Raise BuildError unless src is a MicroPython 1.25 source tree (py/mpconfig.h names its version)."""
    mpconfig = src / "py" / "mpconfig.h"
    if not mpconfig.is_file() or not (src / "ports" / "unix" / "Makefile").is_file():
        raise BuildError("%s is not a MicroPython source tree (no py/mpconfig.h or ports/unix/Makefile)" % src)
    text = mpconfig.read_text(errors="replace")
    version = []
    for part in ("MAJOR", "MINOR", "MICRO"):
        m = re.search(r"#define MICROPY_VERSION_%s \(?(\d+)\)?" % part, text)
        version.append(m.group(1) if m else "?")
    found = ".".join(version)
    if found != MPY_VERSION:
        raise BuildError("%s is MicroPython %s; mpinit needs %s" % (src, found, MPY_VERSION))
    return src


def _unpack(tarball, dest):
    """Unpack a MicroPython tarball into dest (replaced atomically); returns the source tree inside it."""
    marker = dest / ".unpacked"
    if marker.exists():
        return _single_top(dest)
    log("unpacking %s" % tarball)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        try:
            with tarfile.open(tarball) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # Python 3.11 before 3.11.4: check member paths ourselves
                    for member in tf.getmembers():
                        name = member.name
                        if name.startswith("/") or ".." in Path(name).parts or member.isdev():
                            raise BuildError("%s: unsafe member %r" % (tarball, name))
                    tf.extractall(tmp)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BuildError("%s: cannot unpack: %s" % (tarball, e))
        (tmp / ".unpacked").write_text(str(tarball) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _single_top(dest)


def _single_top(dest):
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise BuildError("%s: expected one top-level directory in the tarball, found %d" % (dest, len(tops)))
    return tops[0]


def apt_mirror_uris(etc=Path("/etc/apt")):
    """URIs of the Debian main archive in this machine's apt configuration (deb822 .sources, then one-line lists).

    Security and ports archives are left out: the source package lives in the main archive."""
    etc = Path(etc)
    found = []

    def consider(uri, suites, components):
        uri = uri.rstrip("/")
        if not uri.startswith(("http://", "https://", "file:", "ftp://")):
            return
        if "security" in uri or "ports" in uri.rsplit("/", 1)[-1]:
            return
        if suites and all(s.endswith("-security") for s in suites):
            return
        if components and "main" not in components:
            return
        if uri not in found:
            found.append(uri)

    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if not set(fields.get("types", "").split()) & {"deb", "deb-src"}:
                continue
            for uri in fields.get("uris", "").split():
                consider(uri, fields.get("suites", "").split(), fields.get("components", "").split())
    lists = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list"))
    for path in lists:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] in ("deb", "deb-src"):
                consider(line[1], [line[2]], line[3:])
    # The archive whose path is .../debian first (a mirror of the main archive), other URIs after.
    found.sort(key=lambda u: 0 if u.endswith("/debian") else 1)
    return found


def _fetch_with_apt():
    """Download the orig tarball with apt-get source from DEB_SUITE, leaving the system's apt state untouched."""
    if not shutil.which("apt-get"):
        raise BuildError("apt-get not found")
    uris = apt_mirror_uris()
    if not uris:
        raise BuildError("no Debian archive URI in /etc/apt/sources.list or /etc/apt/sources.list.d/")
    errors = []
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    for uri in uris:
        with tempfile.TemporaryDirectory(prefix="apt-", dir=WORK) as tmpdir:
            tmp = Path(tmpdir)
            for d in ("lists/partial", "cache/archives/partial", "download"):
                (tmp / d).mkdir(parents=True)
            signed = " [signed-by=%s]" % keyring if keyring.exists() else ""
            (tmp / "sources.list").write_text("deb-src%s %s %s main\n" % (signed, uri, DEB_SUITE))
            opts = [
                "-o", "Dir::Etc::SourceList=%s" % (tmp / "sources.list"),
                "-o", "Dir::Etc::SourceParts=/nonexistent",
                "-o", "Dir::State::Lists=%s" % (tmp / "lists"),
                "-o", "Dir::Cache=%s" % (tmp / "cache"),
            ]
            if os.geteuid() == 0:
                # The private directories are root's; apt's _apt sandbox user could not write them.
                opts += ["-o", "APT::Sandbox::User=root"]
            try:
                run(["apt-get", "-q"] + opts + ["update"], capture=True)
                run(["apt-get", "-q"] + opts + ["source", "--download-only", "%s=%s" % (DEB_SOURCE, DEB_VERSION)],
                    cwd=tmp / "download", capture=True)
            except BuildError as e:
                errors.append("%s: %s" % (uri, e))
                continue
            got = tmp / "download" / ORIG_TARBALL
            if not got.exists():
                errors.append("%s: apt-get source gave no %s" % (uri, ORIG_TARBALL))
                continue
            digest = _sha256_file(got)
            if digest != ORIG_SHA256:
                errors.append("%s: %s has sha256 %s, expected %s" % (uri, ORIG_TARBALL, digest, ORIG_SHA256))
                continue
            os.replace(got, CACHE_TARBALL)
            return CACHE_TARBALL
    raise BuildError("; ".join(errors))


def source_tree(micropython_src=None):
    """The MicroPython 1.25.0 source tree, and a string identifying it for the build stamp."""
    WORK.mkdir(parents=True, exist_ok=True)
    if micropython_src:
        src = Path(micropython_src).expanduser().resolve()
        if src.is_dir():
            return _check_source_dir(src), "dir:%s" % src
        if src.is_file():
            digest = _sha256_file(src)
            tree = _unpack(src, WORK / ("src-" + digest[:16]))
            return _check_source_dir(tree), "tar:%s" % digest
        raise BuildError("--micropython-src %s: no such file or directory" % micropython_src)

    tried = []
    if CACHE_TARBALL.exists():
        digest = _sha256_file(CACHE_TARBALL)
        if digest == ORIG_SHA256:
            return _check_source_dir(_unpack(CACHE_TARBALL, WORK / "src")), "tar:%s" % digest
        tried.append("the cached %s has sha256 %s, expected %s (deleted)" % (CACHE_TARBALL, digest, ORIG_SHA256))
        CACHE_TARBALL.unlink()
    else:
        tried.append("no cached %s" % CACHE_TARBALL)
    try:
        log("fetching MicroPython %s source: Debian source package %s %s (%s)"
            % (MPY_VERSION, DEB_SOURCE, DEB_VERSION, DEB_SUITE))
        tarball = _fetch_with_apt()
        return _check_source_dir(_unpack(tarball, WORK / "src")), "tar:%s" % ORIG_SHA256
    except BuildError as e:
        tried.append("apt-get source %s=%s from Debian %s failed: %s" % (DEB_SOURCE, DEB_VERSION, DEB_SUITE, e))
    raise BuildError("cannot get the MicroPython %s source. Tried:\n  - %s\n  - --micropython-src PATH was not "
                     "given (a MicroPython %s source directory or tarball, e.g. %s)"
                     % (MPY_VERSION, "\n  - ".join(tried), MPY_VERSION, ORIG_TARBALL))


# ------------------------------------------------------------------------------------------------------------
# The toolchain

def toolchain(arch):
    """(make variables, description) for arch: musl-gcc natively (gcc -static as the fallback), a cross gcc with
    the target's musl otherwise."""
    arch = arches.get(arch)
    headers = WORK / ("kernel-headers" if arches.is_native(arch) else "kernel-headers-%s" % arch.name)
    if not arches.is_native(arch):
        return arches.cross_toolchain(arch, arches.kernel_headers(arch, headers))
    if shutil.which("musl-gcc"):
        kh = arches.kernel_headers(arch, headers)
        return ({"CC": "musl-gcc", "CFLAGS_EXTRA": "-isystem %s %s" % (kh, arches.NO_UNWIND),
                 "LDFLAGS_EXTRA": "-static"}, "musl-gcc")
    if shutil.which("gcc"):
        warn("musl-gcc not found (Debian package musl-tools): linking statically against glibc instead, "
             "which makes a /init about three times larger (over the size budget)")
        return {"CC": "gcc", "LDFLAGS_EXTRA": "-static"}, "gcc -static"
    raise BuildError("no C compiler: install musl-tools (musl-gcc) or gcc")


def _jobs():
    # The build machines are shared: at most 2 parallel jobs.
    return str(min(2, os.cpu_count() or 1))


# ------------------------------------------------------------------------------------------------------------
# The build

def _config_hash(src_id, make_vars):
    """What forces a clean rebuild: the source, the compiler and flags, the variant, this file."""
    h = hashlib.sha256()
    h.update(src_id.encode() + b"\0")
    h.update(repr(sorted(make_vars.items())).encode() + b"\0")
    _hash_inputs(h, _tree_files(VARIANT_DIR) + [Path(__file__).resolve(), Path(arches.__file__).resolve()])
    return h.hexdigest()


def _inputs_hash(config_hash):
    """Everything the binary is made from: the config plus the agent, the native module and the manifest."""
    h = hashlib.sha256(config_hash.encode())
    _hash_inputs(h, _tree_files(AGENT / "mpinit_agent", (".py",)) + _tree_files(NATIVE) + [MANIFEST])
    return h.hexdigest()


def build(args):
    """Build build/mpinit-init (build/<arch>/mpinit-init for another architecture); returns its path. Nothing to
    do (under a second) when no input changed."""
    arch = arches.get(getattr(args, "arch", None) or arches.native().name)
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / ".lock", "w") as lock:
        # Several builds in one checkout (parallel test runs) must not share the object directory at once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(getattr(args, "micropython_src", None), arch)


def _build_locked(micropython_src, arch):
    src, src_id = source_tree(micropython_src)
    tool_vars, tool_desc = toolchain(arch)
    # The build machine's own architecture keeps the names it always had; another one gets its own object
    # directory and stamps, so switching between them rebuilds nothing.
    suffix = "" if arches.is_native(arch) else "-" + arch.name
    runtime = arches.runtime_path(arch)
    objdir = WORK / ("obj" + suffix)
    mpylib = WORK / "micropython-lib-stub"
    make_vars = dict(tool_vars)
    make_vars.update({
        "VARIANT": "mpinit",
        "VARIANT_DIR": str(VARIANT_DIR),
        "BUILD": str(objdir),
        "PROG": PROG,
        "USER_C_MODULES": str(AGENT),
        "FROZEN_MANIFEST": str(MANIFEST),
        # lib/micropython-lib is empty in Debian's tarball; our manifest require()s nothing from it, and
        # makemanifest.py only needs the directory to exist.
        "MPY_LIB_DIR": str(mpylib),
    })
    config = _config_hash(src_id, make_vars)
    inputs = _inputs_hash(config)
    stamp = WORK / ("stamp" + suffix)
    if runtime.exists() and stamp.exists():
        recorded = stamp.read_text().split()
        if len(recorded) == 2 and recorded[0] == inputs and recorded[1] == _sha256_file(runtime):
            log("%s is up to date" % runtime)
            _report_sizes(runtime)
            return runtime

    config_stamp = WORK / ("config-stamp" + suffix)
    if objdir.exists() and (not config_stamp.exists() or config_stamp.read_text().strip() != config):
        log("configuration changed: clean rebuild")
        shutil.rmtree(objdir)
    mpylib.mkdir(parents=True, exist_ok=True)
    readme = mpylib / "README.md"
    if not readme.exists():
        readme.write_text("Empty on purpose: mpinit freezes nothing from micropython-lib.\n")

    log("building mpy-cross (MicroPython %s)" % MPY_VERSION)
    run(["make", "-C", src / "mpy-cross", "-j", _jobs()], capture=True)

    log("building the unix port for %s with %s: variant %s, native module %s, manifest %s"
        % (arch.name, tool_desc, VARIANT_DIR.relative_to(ROOT), NATIVE.relative_to(ROOT), MANIFEST.relative_to(ROOT)))
    argv = ["make", "-C", src / "ports" / "unix", "-j", _jobs()]
    argv += ["%s=%s" % kv for kv in sorted(make_vars.items())]
    run(argv, capture=True)
    config_stamp.write_text(config + "\n")

    built = objdir / PROG
    if not built.exists():
        raise BuildError("the build finished without %s" % built)
    machine = arches.elf_machine(built)
    if machine != arch.elf_machine:
        raise BuildError("%s is not a %s binary (ELF machine %s, expected %d)" % (built, arch.name, machine,
                                                                               arch.elf_machine))
    _write_atomic(runtime, built.read_bytes())
    os.chmod(runtime, 0o755)
    _write_atomic(stamp, ("%s %s\n" % (inputs, _sha256_file(runtime))).encode())
    log("built %s" % runtime)
    _report_sizes(runtime)
    return runtime
