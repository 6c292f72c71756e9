"""Where the host tools keep generated files: the checkout's build/ when run from one, else ~/.cache/mpinit."""

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    env = os.environ.get("MPINIT_BUILD_DIR")
    if env:
        return Path(env)
    if (_CHECKOUT / "build.py").exists():
        return _CHECKOUT / "build"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mpinit"


# Where a wheel from `python3 build.py wheel` carries the runtime (buildsys/wheel.py RUNTIME_IN_PACKAGE).
PACKAGED_RUNTIME = Path(__file__).resolve().parent / "runtime" / "mpinit-init"


def runtime(arch=None) -> Path:
    """The /init binary built by `python3 build.py runtime` (MPINIT_RUNTIME overrides); when none is built
    there, the one an installed wheel carries (PACKAGED_RUNTIME).

    arch: another architecture's, from `python3 build.py runtime --arch ARCH`: build/<arch>/mpinit-init
    (MPINIT_RUNTIME_<ARCH>, e.g. MPINIT_RUNTIME_ARM64, overrides). The build machine's own stays
    build/mpinit-init."""
    if arch is not None:
        from . import arch as archmod

        a = archmod.get(arch)
        if a is not archmod.native():
            env = os.environ.get("MPINIT_RUNTIME_" + a.name.upper())
            return Path(env) if env else build_dir() / a.name / "mpinit-init"
    env = os.environ.get("MPINIT_RUNTIME")
    if env:
        return Path(env)
    built = build_dir() / "mpinit-init"
    return PACKAGED_RUNTIME if not built.exists() and PACKAGED_RUNTIME.is_file() else built
