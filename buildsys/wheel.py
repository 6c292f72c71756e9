"""`python3 build.py wheel`: a platform wheel of mpinit that carries the built runtime (standard library only).

`pip install mpinit-<version>-py3-none-<platform>.whl` into any virtual environment then gives a working `mpinit
pack` (it finds /init as the package data file mpinit/runtime/mpinit-init: mpinit.paths.runtime()) and the
pytest plugin (the `fake_machine` fixture), with no MicroPython source and no compiler.

Why we write the wheel ourselves (a zip file laid out as the binary distribution format says: PyPA "Binary
distribution format", PEP 427/491, and "Core metadata specifications" 2.1) instead of running setuptools: the
runtime must go into the package without being copied into the checkout (other builds and editors work there),
and the result must be tagged for a platform, which setuptools only does for packages with C extensions. The
metadata comes from pyproject.toml's [project] table (tomllib), so the two cannot drift; the packages from its
[tool.setuptools] package-dir/packages (the *.py files of each package directory, as setuptools would take).

The platform tag: the one binary inside is the static musl /init, which links nothing from the host (no libc, no
libpython), and there is no extension module; so any Linux of that CPU runs it. We tag it for both the glibc
(manylinux_2_17, i.e. manylinux2014, PEP 600) and the musl (musllinux_1_1, PEP 656) Linux families, as a
compressed tag set (PEP 425). The contents are reproducible: sorted names, a fixed timestamp (SOURCE_DATE_EPOCH,
default 1980-01-01, the zip format's earliest), fixed permissions.
"""

import base64
import csv
import hashlib
import io
import os
import re
import time
import zipfile
from pathlib import Path

from .common import ROOT, BuildError, log

# uname -m -> the platform tags (manylinux = glibc >= 2.17, musllinux = musl >= 1.1) of that CPU.
PLATFORMS = {
    "x86_64": "manylinux_2_17_x86_64.manylinux2014_x86_64.musllinux_1_1_x86_64",
    "arm64": "manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64",
}
RUNTIME_IN_PACKAGE = "mpinit/runtime/mpinit-init"   # mpinit.paths.runtime() looks here
_DEFAULT_EPOCH = 315532800                          # 1980-01-01T00:00:00Z: the zip format's first timestamp


def project(pyproject=None):
    """[project] and [tool.setuptools] of pyproject.toml."""
    import tomllib

    with open(pyproject or ROOT / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)
    return data["project"], data.get("tool", {}).get("setuptools", {})


def _normalise(name):
    # PEP 503 / binary distribution format: runs of -_. become one _ in file names.
    return re.sub(r"[-_.]+", "_", name)


def metadata(proj):
    """The METADATA file (core metadata 2.1) of [project]."""
    lines = ["Metadata-Version: 2.1", "Name: %s" % proj["name"], "Version: %s" % proj["version"]]
    if proj.get("description"):
        lines.append("Summary: %s" % proj["description"])
    if proj.get("license", {}).get("text"):
        lines.append("License: %s" % proj["license"]["text"])
    if proj.get("requires-python"):
        lines.append("Requires-Python: %s" % proj["requires-python"])
    for req in proj.get("dependencies", []):
        lines.append("Requires-Dist: %s" % req)
    for extra, reqs in sorted(proj.get("optional-dependencies", {}).items()):
        lines.append("Provides-Extra: %s" % extra)
        for req in reqs:
            lines.append('Requires-Dist: %s ; extra == "%s"' % (req, extra))
    body = ""
    readme = proj.get("readme")
    if isinstance(readme, str) and (ROOT / readme).is_file():
        lines.append("Description-Content-Type: text/markdown")
        body = "\n" + (ROOT / readme).read_text()
    return "\n".join(lines) + "\n" + body


def entry_points(proj):
    out = []
    if proj.get("scripts"):
        out.append("[console_scripts]")
        out += ["%s = %s" % kv for kv in sorted(proj["scripts"].items())]
        out.append("")
    for group, eps in sorted(proj.get("entry-points", {}).items()):
        out.append("[%s]" % group)
        out += ["%s = %s" % kv for kv in sorted(eps.items())]
        out.append("")
    return "\n".join(out)


def package_files(tool):
    """{path in the wheel: source file} of the packages' *.py files."""
    dirs = tool.get("package-dir", {})
    files = {}
    for pkg in tool.get("packages", []):
        top, _, rest = pkg.partition(".")
        if top not in dirs:
            raise BuildError("pyproject.toml: package %s has no package-dir entry" % pkg)
        src = ROOT / dirs[top] / rest.replace(".", "/")
        if not (src / "__init__.py").is_file():
            raise BuildError("pyproject.toml: package %s: %s has no __init__.py" % (pkg, src))
        for f in sorted(src.glob("*.py")):
            files["%s/%s" % (pkg.replace(".", "/"), f.name)] = f
    return files


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build(runtime, out_dir, arch="x86_64"):
    """Write the wheel into out_dir; returns its path. runtime: the built /init for `arch`."""
    runtime = Path(runtime)
    if not runtime.is_file():
        raise BuildError("%s: no runtime to put in the wheel (python3 build.py runtime)" % runtime)
    head = runtime.read_bytes()[:20]
    # ELF e_machine (System V gABI): EM_X86_64 62, EM_AARCH64 183; little-endian on both.
    machine = int.from_bytes(head[18:20], "little") if head[:4] == b"\x7fELF" else None
    if machine != {"x86_64": 62, "arm64": 183}[arch]:
        raise BuildError("%s: not an %s ELF program (e_machine %s)" % (runtime, arch, machine))
    proj, tool = project()
    tag = "py3-none-" + PLATFORMS[arch]
    dist = "%s-%s" % (_normalise(proj["name"]), proj["version"])
    info = dist + ".dist-info"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", _DEFAULT_EPOCH))
    stamp = time.gmtime(max(epoch, _DEFAULT_EPOCH))[:6]

    members = []   # (name, bytes, mode)
    for name, src in sorted(package_files(tool).items()):
        members.append((name, src.read_bytes(), 0o644))
    members.append(("mpinit/runtime/__init__.py", b'"""The static /init this wheel carries (mpinit-init)."""\n',
                    0o644))
    members.append((RUNTIME_IN_PACKAGE, runtime.read_bytes(), 0o755))
    members.append((info + "/METADATA", metadata(proj).encode(), 0o644))
    members.append((info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: mpinit buildsys/wheel.py\n"
                                      "Root-Is-Purelib: false\n" +
                                      "".join("Tag: py3-none-%s\n" % p for p in PLATFORMS[arch].split(".")))
                    .encode(), 0o644))
    members.append((info + "/entry_points.txt", entry_points(proj).encode(), 0o644))
    tops = sorted({name.split("/")[0] for name, _, _ in members if not name.startswith(info)})
    members.append((info + "/top_level.txt", ("\n".join(tops) + "\n").encode(), 0o644))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data, _ in members:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([info + "/RECORD", "", ""])
    members.append((info + "/RECORD", record.getvalue().encode(), 0o644))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("%s-%s.whl" % (dist, tag))
    tmp = out_dir / (".%s.tmp" % path.name)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data, mode in members:
                zi = zipfile.ZipInfo(name, date_time=stamp)
                zi.external_attr = (0o100000 | mode) << 16   # a regular file with these permission bits
                zi.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(zi, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log("wrote %s (%d KiB: %d files, the runtime %s)" % (path, path.stat().st_size // 1024, len(members), runtime))
    return path
