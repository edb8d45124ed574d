"""Processes for the tools: children that die with the script, and what
/proc tells about any process of ours (CPU, memory)."""

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """A preexec_fn: if the script dies, even by SIGKILL, the kernel sends
    the child SIGTERM, so nothing is left behind."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_s(pid):
    """User + system CPU seconds of a running process, from /proc; NaN if
    it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def status_kib(pid, keys=("VmHWM", "VmRSS")):
    """{key: KiB} of /proc/PID/status for the given keys; {} if it is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out
