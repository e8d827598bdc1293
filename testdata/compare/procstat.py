"""Memory, threads and open files of a process, from /proc (Linux)."""

import math
import os
import threading


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read(pid):
    """VmRSS in bytes, threads, open file descriptors and CPU seconds
    (user + system) of pid."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    with open(f"/proc/{pid}/stat") as f:
        # The fields after the command name, which is in parentheses.
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return {"rss_bytes": rss, "threads": threads, "fds": fds, "cpu_s": cpu}


def loadavg():
    """The 1-minute load average of the machine."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def percentile(xs, p):
    """The p-th percentile of xs by the nearest-rank method, or None."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


class ProcSampler:
    """Reads a process every interval seconds and keeps the peaks."""

    def __init__(self, pid, interval=0.1):
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_threads = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self):
        r = read(self.pid)
        self._note(r)
        return r

    def _note(self, r):
        self.peak_rss = max(self.peak_rss, r["rss_bytes"])
        self.peak_threads = max(self.peak_threads, r["threads"])
        self.samples += 1

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self._note(read(self.pid))
            except OSError:
                return

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
