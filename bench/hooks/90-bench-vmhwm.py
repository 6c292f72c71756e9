# Benchmark hook (shipped only in the benchmark's image, via `mpinit pack --hook`): log PID 1's peak resident
# memory just before the hand-off, as "mpinit: bench: VmHWM: <n> kB" in /dev/kmsg.
# VmHWM is the "peak resident set size" line of /proc/<pid>/status (proc(5)). The agent does not log it itself
# (agent/mpinit_agent/handoff.py), hence this hook. Loading it adds a little to the peak it measures.
from mpinit_agent import log


def before_handoff(ctx):
    with open("/proc/self/status") as f:
        text = f.read()
    for line in text.split("\n"):
        if line.startswith("VmHWM:"):
            log.notice("bench: VmHWM: %s" % line[6:].strip())
            return
    log.warning("bench: no VmHWM line in /proc/self/status")
