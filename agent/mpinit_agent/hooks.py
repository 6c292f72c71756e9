# User hooks: Python files in contract.HOOKS_DIR, run in name order at named points of the boot, like dracut's
# hook directories and mkinitcpio's run_hook. A hook file defines plain functions named for the points:
#
#   before_<stage>(ctx) / after_<stage>(ctx)   for every stage in contract.STAGES
#   on_failure(ctx, err)                        after a failure, before the rescue shell (err: failure.BootError)
#
# ctx is the boot context (main.Context): ctx.opts, ctx.config, ctx.devices, ctx.medium, ctx.image, ctx.new_root,
# ctx.timeline, ctx.modules. A hook that raises fails the boot like any other step; the message names the hook
# file and function. docs/hooks.md has an example.
from . import contract, fsutil
from .failure import BootError


def points():
    """Every hook point name, in boot order."""
    out = []
    for stage in contract.STAGES:
        out.append("before_" + stage)
        out.append("after_" + stage)
    out.append("on_failure")
    return out


class Hooks:
    def __init__(self, directory=contract.HOOKS_DIR, enabled=True):
        self.directory = directory
        self.enabled = enabled
        self.files = None   # [(path, namespace)] once loaded

    def load(self):
        """Compile and run every *.py in the directory (sorted), once. A broken file raises BootError naming it."""
        if self.files is not None:
            return self.files
        files = []
        if self.enabled:
            known = points()
            for name in fsutil.listdir(self.directory):
                if not name.endswith(".py"):
                    continue
                path = fsutil.join(self.directory, name)
                try:
                    with open(path) as f:
                        source = f.read()
                except OSError as e:
                    raise BootError("hook", "cannot read hook file %s: %r" % (path, e), param=path)
                namespace = {"__name__": "mpinit_hook_" + name[:-3], "__file__": path}
                try:
                    exec(compile(source, path, "exec"), namespace)
                except Exception as e:  # noqa: BLE001 - any error in user code is reported, never fatal to PID 1
                    raise BootError("hook", "hook file %s failed to load: %s" % (path, _describe(e)), param=path)
                for key in namespace:
                    if (key.startswith("before_") or key.startswith("after_")) and key not in known:
                        # A typo (before_mediums) would silently never run: say so in the log.
                        from . import log

                        log.warning("hook file %s: %s() is not a hook point (known: %s)"
                                    % (path, key, ", ".join(known)))
                files.append((path, namespace))
        self.files = files
        return files

    def run(self, point, ctx, *extra):
        """Call point(ctx, *extra) in every hook file defining it. Returns the number of hooks run.

        A hook's exception becomes a BootError for the stage the point belongs to, naming file and function."""
        files = self.load()
        if not files:
            return 0  # the usual boot: no hook files, nothing to look up at each hook point
        ran = 0
        stage = point.split("_", 1)[1] if "_" in point and point != "on_failure" else "hook"
        for path, namespace in files:
            fn = namespace.get(point)
            if fn is None or not callable(fn):
                continue
            try:
                fn(ctx, *extra)
            except Exception as e:  # noqa: BLE001
                raise BootError(stage, "hook %s: %s() failed: %s" % (path, point, _describe(e)), param=path,
                                tried=["%s(ctx) from %s" % (point, path)])
            ran += 1
        return ran


def _describe(e):
    if isinstance(e, BootError):
        return e.message
    return "%s: %s" % (type(e).__name__, e)
