"""Drives Space A (space_a.py) with N simulated visitors, and measures it.

Each visitor is what a browser tab is to Space A: a gradio_client.Client(A)
with a token of its own in X-IP-Token (the header the Hugging Face proxy
would add), which "opens the page" by firing A's page-load event (Gradio
exposes it as the API endpoint /open: a queue/join of that event in the
visitor's session, as the page's own JavaScript does), then sends M
prompts to /relay, one after the other (--think apart), and waits for
each image (it downloads it, as a page shows it). Then every visitor stays connected
until all are done, for --hold seconds, and leaves (Client.close()).

Measured: per visitor set-up (Client(A) plus /open), prompt to image
(submit to downloaded file), jobs completed and failed (errors by kind),
and the memory (VmRSS from /proc) and threads of Space A's process with 0
visitors (before the first arrives), with all N connected (after every
job, while they hold), with --more visitors beside them (after their jobs
too; they are left out of every other figure) and after all have left.
Each memory reading is taken as Space A left its memory, then, with
--collect-url, again after Space A ran gc.collect() and malloc_trim(0)
(space_a.py; procstat.COLLECTIONS times). From them, memory per visitor
(procstat.memory_summary).
JSON on stdout:

    python drive_a.py --url http://127.0.0.1:7861/ --pid 1234 --visitors 50 --jobs 2
"""

import os

# Nothing may phone home; these must be set before gradio_client is imported.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

from gradio_client import Client  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procstat import ProcSampler, loadavg, memory_summary, percentile, reading  # noqa: E402


class Visitor:
    """One simulated browser tab and what it measured."""

    def __init__(self, index, args, token):
        self.index = index
        self.args = args
        self.token = token
        self.client = None
        self.connect_s = None  # Client(A): /config, /info, heartbeat
        self.open_s = None  # the page-load event: A makes its Client(B)
        self.latencies = []  # seconds, submit to image, per completed job
        self.failed = []  # error kinds
        self.setup_error = None

    def run(self, connected, done, release):
        args = self.args
        try:
            t0 = time.monotonic()
            # httpx's default 5 s timeout would make a visitor give up on a
            # busy Space A sooner than a browser does: wait up to --timeout.
            self.client = Client(
                args.url,
                headers={"X-IP-Token": self.token},
                verbose=False,
                download_files=args.download_dir,
                httpx_kwargs={"timeout": args.timeout},
            )
            t1 = time.monotonic()
            self.client.submit(api_name="/open").result(timeout=args.timeout)
            t2 = time.monotonic()
            self.connect_s, self.open_s = t1 - t0, t2 - t1
        except Exception as e:  # noqa: BLE001 - any failure is a failed set-up
            self.setup_error = kind(e)
            self.failed.extend([self.setup_error] * args.jobs)
            connected()
            done()
            return
        connected()
        for j in range(args.jobs):
            if j > 0 and args.think > 0:
                time.sleep(args.think)
            prompt = args.prompt.format(visitor=self.index, job=j)
            t0 = time.monotonic()
            try:
                path = self.client.submit(prompt, api_name="/relay").result(timeout=args.timeout)
                if not path:
                    raise ValueError("no image")
                if not os.path.getsize(path):
                    # Space A served a file it was rewriting in place (the
                    # same image again, see compare.py): an empty download.
                    raise ValueError("empty image file")
                self.latencies.append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - counted by kind
                self.failed.append(kind(e))
        done()
        release.wait()

    def close(self):
        if self.client is not None:
            self.client.close()


def kind(e):
    """A short name for a failure, for counting."""
    text = str(e).splitlines()[0][:80] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Counter:
    def __init__(self, total):
        self.total = total
        self.n = 0
        self.lock = threading.Lock()
        self.all = threading.Event()

    def __call__(self):
        with self.lock:
            self.n += 1
            if self.n == self.total:
                self.all.set()


def own_cpu():
    """CPU seconds (user + system) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def summary(xs):
    return {
        "n": len(xs),
        "p50": percentile(xs, 50),
        "p90": percentile(xs, 90),
        "p99": percentile(xs, 99),
        "max": max(xs) if xs else None,
        "mean": sum(xs) / len(xs) if xs else None,
    }


def collector(url):
    """A function that has Space A run gc.collect() and malloc_trim(0) (its
    POST /compare/collect, space_a.py) and returns what it reported."""

    def collect():
        req = urllib.request.Request(url, data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    return collect


def errors_of(visitors):
    """The visitors' failures, counted by kind."""
    errors = {}
    for v in visitors:
        for f in v.failed:
            errors[f] = errors.get(f, 0) + 1
    return errors


def arrive(visitors, rate, release):
    """Starts the visitors, rate per second (0: all at once), and waits
    until each has set up and had every job end. Returns their threads
    (each then waits for release), and the seconds until every one had
    connected and until every job was over."""
    if not visitors:
        return [], 0.0, 0.0
    connected, done = Counter(len(visitors)), Counter(len(visitors))
    threads = []
    start = time.monotonic()
    for i, v in enumerate(visitors):
        if rate > 0:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        t = threading.Thread(target=v.run, args=(connected, done, release), daemon=True)
        t.start()
        threads.append(t)
    connected.all.wait()
    all_connected_s = time.monotonic() - start
    done.all.wait()
    return threads, all_connected_s, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Space A's URL")
    parser.add_argument("--pid", type=int, required=True, help="Space A's process id (for its memory)")
    parser.add_argument("--visitors", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2, help="prompts per visitor")
    parser.add_argument("--rate", type=float, default=5, help="visitors arriving per second (0: all at once)")
    parser.add_argument("--think", type=float, default=0.5, help="seconds between an image and the next prompt")
    parser.add_argument("--hold", type=float, default=3, help="seconds all visitors stay connected after the last job")
    parser.add_argument("--settle", type=float, default=1, help="seconds to wait before each memory reading")
    parser.add_argument("--prompt", default="visitor {visitor} prompt {job}", help="prompt, with {visitor} and {job}")
    parser.add_argument("--timeout", type=float, default=180, help="seconds a set-up or a job may take")
    parser.add_argument(
        "--more",
        type=int,
        default=0,
        help="visitors that arrive after the N-visitor reading, for the marginal memory per visitor",
    )
    parser.add_argument(
        "--collect-url",
        default="",
        help="Space A's POST /compare/collect (gc.collect and malloc_trim), called before each memory reading",
    )
    parser.add_argument("--download-dir", default=None, help="where visitors' images go (default: gradio_client's)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="visitors that each send one prompt and leave before the 0-visitor reading (first-use costs)",
    )
    args = parser.parse_args()
    if args.download_dir is None:
        args.download_dir = os.environ.get("GRADIO_TEMP_DIR") or "/tmp/gradio"

    run_id = secrets.token_hex(4)
    warm, warmup = [], None
    if args.warmup > 0:
        warm = [Visitor(i, args, f"compare-{run_id}-warmup-{i}") for i in range(args.warmup)]
        warm_args = argparse.Namespace(**{**vars(args), "jobs": 1, "think": 0})
        ends, leave = Counter(len(warm)), threading.Event()
        leave.set()
        for v in warm:
            v.args = warm_args
            threading.Thread(target=v.run, args=(lambda: None, ends, leave), daemon=True).start()
        ends.all.wait()
        for v in warm:
            v.close()
        if any(v.failed for v in warm):
            sys.exit(f"drive_a: warm-up failed: {[f for v in warm for f in v.failed]}")
        warmup = {
            "setup_s": summary([v.connect_s + v.open_s for v in warm]),
            "time_to_image_s": summary([x for v in warm for x in v.latencies]),
        }

    collect = collector(args.collect_url) if args.collect_url else None
    sampler = ProcSampler(args.pid, interval=0.1)
    time.sleep(args.settle)
    driver_cpu = own_cpu()
    load_before = loadavg()
    idle = reading(sampler, collect)
    sampler.start()

    release = threading.Event()
    visitors = [Visitor(i, args, f"compare-{run_id}-visitor-{i}") for i in range(args.visitors)]
    threads, all_connected_s, jobs_s = arrive(visitors, args.rate, release)
    time.sleep(args.settle)
    held = reading(sampler, collect)  # every visitor connected, every job over
    peak = (sampler.peak_rss, sampler.peak_threads)
    load_after = loadavg()
    driver_cpu = own_cpu() - driver_cpu

    # --more visitors, for the marginal memory only: they arrive after the
    # N reading, send their prompts like the others, and the reading with
    # all N + k connected gives (RSS(N + k) - RSS(N)) / k.
    extra, more = [], None
    if args.more > 0:
        n = args.visitors
        extra = [Visitor(n + i, args, f"compare-{run_id}-visitor-{n + i}") for i in range(args.more)]
        threads += arrive(extra, args.rate, release)[0]
        time.sleep(args.settle)
        more = reading(sampler, collect)

    time.sleep(max(0.0, args.hold - args.settle))
    release.set()
    for t in threads:
        t.join(timeout=10)
    # Client.close() waits up to 1 s for its heartbeat thread: all at once.
    closers = [threading.Thread(target=v.close, daemon=True) for v in visitors + extra]
    for t in closers:
        t.start()
    for t in closers:
        t.join(timeout=10)
    sampler.stop()
    time.sleep(args.settle)
    after = reading(sampler, collect)

    ok = [v for v in visitors if v.setup_error is None]
    setup = [v.connect_s + v.open_s for v in ok]
    latencies = [x for v in visitors for x in v.latencies]
    errors = errors_of(visitors)
    n = len(ok)
    k = len([v for v in extra if v.setup_error is None])
    result = {
        "system": "gradio_client per visitor (Space A)",
        "visitors": args.visitors,
        "visitors_connected": n,
        "jobs_per_visitor": args.jobs,
        "setup_s": summary(setup),
        "setup_connect_s": summary([v.connect_s for v in ok]),
        "setup_open_s": summary([v.open_s for v in ok]),
        "time_to_image_s": summary(latencies),
        "jobs_completed": len(latencies),
        "jobs_failed": sum(errors.values()),
        "errors": errors,
        "more": {
            "visitors": len(extra),
            "visitors_connected": k,
            "jobs_completed": sum(len(v.latencies) for v in extra),
            "jobs_failed": sum(len(v.failed) for v in extra),
            "errors": errors_of(extra),
        },
        "loadavg_1m": [load_before, load_after],
        "driver_cpu_s": driver_cpu,
        # Space B's journal names tokens by these digests (SPEC.md).
        "warmup": warmup,
        "warmup_token_digests": [digest(v.token) for v in warm],
        "all_connected_after_s": all_connected_s,
        "jobs_done_after_s": jobs_s,
        "memory": memory_summary(args.pid, idle, held, more, after, n, k, peak),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
