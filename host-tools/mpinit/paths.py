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


def runtime() -> Path:
    """The /init binary built by `python3 build.py runtime` (MPINIT_RUNTIME overrides)."""
    env = os.environ.get("MPINIT_RUNTIME")
    return Path(env) if env else build_dir() / "mpinit-init"
