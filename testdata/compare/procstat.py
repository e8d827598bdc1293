"""Memory, threads and open files of a process, from /proc (Linux)."""

import math
import os
import threading
import time


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read(pid):
    """VmRSS in bytes (and its parts: RssAnon, the process's own memory, and
    RssFile, mapped files such as its code), threads, open file descriptors
    and CPU seconds (user + system) of pid."""
    rss = threads = 0
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0][3:].lower()] = int(line.split()[1]) * 1024
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
    return {"rss_bytes": rss, "rss_anon_bytes": parts.get("anon"), "rss_file_bytes": parts.get("file"),
            "threads": threads, "fds": fds, "cpu_s": cpu}


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


# Collections before a "collected" reading. Two: a Go GC only moves what
# sync.Pools hold to a victim cache, which the next GC frees, and halves a
# goroutine's oversized stack each time; a Python collection can free what
# the finalizers of the one before released. Both sides get the same.
COLLECTIONS = 2


def reading(sampler, collect=None):
    """One memory reading of sampler's process, taken twice: as the process
    left its memory ("as_left"), then, with collect, after COLLECTIONS calls
    of collect(), each making the process collect its garbage and give its
    freed memory back to the OS ("collected"; collect returns what the
    process reported, kept from the last call). Without collect, both are
    the first reading."""
    as_left = sampler.read()
    if collect is None:
        return {"as_left": as_left, "collected": as_left, "collect": None}
    t0 = time.monotonic()
    for _ in range(COLLECTIONS):
        reply = collect()
    took = time.monotonic() - t0
    return {"as_left": as_left, "collected": sampler.read(),
            "collect": {"seconds": took, "times": COLLECTIONS, "reply": reply}}


def memory_summary(pid, idle, connected, more, after, n, k, peak):
    """The memory figures of one side, from its readings (see reading):
    idle (0 visitors), connected (N = n visitors, every job over), more
    (n + k: k more visitors, every job over; None when there were none) and
    after (every visitor gone); peak is (peak RSS, peak threads) up to the
    connected reading. compare.py and drive_a.py both use this, so that
    both sides are figured the same way."""

    def per(a, b, key, count):
        if not count or a is None or b is None or a.get(key) is None or b.get(key) is None:
            return None
        return (b[key] - a[key]) / count

    c = {name: r["collected"] if r else None for name, r in
         (("idle", idle), ("connected", connected), ("more", more), ("after_close", after))}
    return {
        "pid": pid,
        **c,
        "idle_as_left": idle["as_left"],
        "connected_as_left": connected["as_left"],
        "after_close_as_left": after["as_left"],
        "collect": {name: r["collect"] for name, r in
                    (("idle", idle), ("connected", connected), ("more", more), ("after_close", after)) if r},
        "visitors": n,
        "more_visitors": k,
        "peak_rss_bytes": peak[0],
        "peak_threads": peak[1],
        # After collection: (N connected - 0 visitors) / N, and the marginal
        # cost, (N + k connected - N connected) / k, without one-time costs.
        "rss_per_visitor_bytes": per(c["idle"], c["connected"], "rss_bytes", n),
        "rss_marginal_per_visitor_bytes": per(c["connected"], c["more"], "rss_bytes", k),
        # As the process left its memory (no collection): the earlier method.
        "rss_per_visitor_as_left_bytes": per(idle["as_left"], connected["as_left"], "rss_bytes", n),
        "threads_per_visitor": per(c["idle"], c["connected"], "threads", n),
        "fds_per_visitor": per(c["idle"], c["connected"], "fds", n),
        # The work of the N visitors: from the 0-visitor reading (after its
        # collection) to the N reading (before its collection), so that no
        # collection compare.py asked for is counted.
        "cpu_s": connected["as_left"]["cpu_s"] - idle["collected"]["cpu_s"],
    }
