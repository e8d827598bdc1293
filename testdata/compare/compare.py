"""Gradio's gradio_client-per-visitor pattern beside spacerelay, in one run.

One command starts Space B (the fixture, testdata/gradio/app.py), then:

  A. Space A (space_a.py: a Gradio app keeping a gradio_client.Client per
     visitor in gr.State) in front of B, driven by drive_a.py;
  R. the spacerelay binary in front of the same B, driven by the load
     generator cmd/spacerelay-load;

with the same visitors (each with a token of its own), the same prompts and
steps, and prints one table. Every process it starts is stopped on the way
out, whatever happens (and dies with it if it is killed: PR_SET_PDEATHSIG).

Memory is read the same way on both sides (see README.md): at 0 visitors,
N visitors and N + --more visitors (who arrive after the N reading and
count for the marginal memory only), each time as the process left it and
again after two passes of its collection, which gives freed memory back to
the OS: gc.collect() and malloc_trim(0) in Space A (its POST
/compare/collect), a GC and debug.FreeOSMemory() in the relay (GET
/debug/free, which debugfree.go adds to the binary compare.py builds).

    python3 testdata/compare/compare.py                # from the repository root
    python3 testdata/compare/compare.py --visitors 20 --jobs 1 --json-out /tmp/compare.json

Needs the Gradio 6.31.0 virtual environment (.cache/gradio-6.31.0, made by
the Taskfile's venvs task) and Go. Linux only (/proc).
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from procstat import COLLECTIONS, ProcSampler, loadavg, memory_summary, reading  # noqa: E402

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In the child, before exec: SIGTERM when compare.py dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent_niced():
    """die_with_parent, at a lower priority: for the visitor simulators,
    which stand for browsers on other machines, so that on a busy machine
    the Spaces and the relay get the CPU first."""
    die_with_parent()
    os.nice(10)


class Procs:
    """The processes compare.py started, to stop them all on the way out."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []
        # Where children's temporary files go (gradio_client leaves a
        # directory per downloaded file there), removed with the rest.
        self.tmpdir = os.path.join(logdir, "tmp")
        os.makedirs(self.tmpdir)

    def start(self, name, argv, env=None, stdout=None, simulator=False):
        log = open(os.path.join(self.logdir, name + ".log"), "wb")
        p = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, "TMPDIR": self.tmpdir, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent_niced if simulator else die_with_parent,
        )
        p.name, p.log = name, log
        self.procs.append(p)
        return p

    def stop(self, p, grace=10):
        """SIGTERM to p's process group, SIGKILL after grace seconds."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # The leader is gone; anything left in its group goes too.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        p.log.close()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)

    def tail(self, p, n=20):
        path = os.path.join(self.logdir, p.name + ".log")
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, timeout=5):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_ready(procs, p, url, timeout):
    """Waits until url answers 200, or fails if p exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"compare: {p.name} exited ({p.returncode}):\n{procs.tail(p)}")
        try:
            if http("GET", url)[0] == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"compare: {p.name} not ready at {url} after {timeout}s:\n{procs.tail(p)}")


def journal(b_url):
    return json.loads(http("GET", b_url + "/fixture/journal")[1])


def clear_journal(b_url):
    http("DELETE", b_url + "/fixture/journal")


def tokens_billed(entries, exclude=()):
    """Distinct token digests of B's completed /generate jobs."""
    return len({e["token"] for e in entries if e["event"] == "completed"} - set(exclude))


# What Space B's log shows when Gradio rewrites a cached output file (the
# same image again) while a client is still downloading the previous copy:
# the download ends short. A race of identical outputs, not of the relaying.
B_FILE_RACE = "LocalProtocolError: Too little data for declared Content-Length"


def count_in_log(path, offset, text):
    with open(path, errors="replace") as f:
        f.seek(offset)
        return f.read().count(text)


def metrics(url):
    """The spacerelay metrics compare.py follows, summed over labels."""
    text = http("GET", url + "/metrics")[1].decode()
    m = {"open": 0, "opened": 0, "refused": 0, "ended": 0}
    names = {
        "spacerelay_sessions_open": "open",
        "spacerelay_sessions_opened_total": "opened",
        "spacerelay_handshakes_refused_total": "refused",
        "spacerelay_jobs_total": "ended",
    }
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            m[names[name]] += int(float(line.rsplit(" ", 1)[1]))
    return m


def go_build(out, pkg, overlay=None):
    """Builds pkg (with the go build -overlay file overlay, if given);
    False (and the compiler's words on stderr) if it fails."""
    argv = ["go", "build", "-o", out]
    if overlay:
        argv += ["-overlay", overlay]
    p = subprocess.run(argv + [pkg], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"compare: go build {pkg} failed:\n{p.stderr.strip()}", file=sys.stderr)
    return p.returncode == 0


# The file debugfree.go becomes, in the relay compare.py builds, this file of
# cmd/spacerelay: the production relay plus GET /debug/free on a loopback
# listener of its own, named by COMPARE_DEBUG_FREE_ADDR.
DEBUG_FREE_AS = os.path.join(ROOT, "cmd", "spacerelay", "zz_compare_debugfree.go")


def build_relay(tmp):
    """cmd/spacerelay with debugfree.go compiled in (go build -overlay: no
    file of the repository changes), as the binary's path."""
    if os.path.exists(DEBUG_FREE_AS):
        raise SystemExit(f"compare: {DEBUG_FREE_AS} exists; the overlay would replace it")
    overlay = os.path.join(tmp, "overlay.json")
    with open(overlay, "w") as f:
        json.dump({"Replace": {DEBUG_FREE_AS: os.path.join(HERE, "debugfree.go")}}, f)
    out = os.path.join(tmp, "spacerelay")
    if not go_build(out, "./cmd/spacerelay", overlay):
        raise SystemExit("compare: cannot build cmd/spacerelay")
    return out


def build_load_tools(tmp):
    """The load generator, as [(name, binary)]."""
    out = os.path.join(tmp, "spacerelay-load")
    if not go_build(out, "./cmd/spacerelay-load"):
        raise SystemExit("compare: cannot build cmd/spacerelay-load")
    return [("cmd/spacerelay-load", out)]


def pick(d, path, default=None):
    """d's value at the dotted path, or default."""
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def seconds(summary):
    """A spacerelay-load latency summary (milliseconds) in seconds."""
    if not summary:
        return {"n": 0}
    out = {"n": summary.get("n")}
    for k, v in summary.items():
        if k.endswith("_ms"):
            out[k[: -len("_ms")]] = v / 1000
    return out


def run_space_a(args, procs, tmp, b_url):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "SPACE_A_STEPS": str(args.steps),
        "GRADIO_TEMP_DIR": os.path.join(tmp, "space-a-files"),
    }
    a = procs.start(
        "space_a",
        [args.python, os.path.join(HERE, "space_a.py"), "--port", str(port), "--upstream", b_url + "/"],
        env=env,
    )
    wait_ready(procs, a, url + "/config", 180)
    clear_journal(b_url)
    b_log = os.path.join(tmp, "space_b.log")
    b_log_at = os.path.getsize(b_log)
    out = os.path.join(tmp, "drive_a.json")
    with open(out, "wb") as f:
        d = procs.start(
            "drive_a",
            [
                args.python,
                os.path.join(HERE, "drive_a.py"),
                "--url", url + "/",
                "--pid", str(a.pid),
                "--visitors", str(args.visitors),
                "--jobs", str(args.jobs),
                "--rate", str(args.rate),
                "--think", str(args.think),
                "--hold", str(args.hold),
                "--settle", str(args.settle),
                "--more", str(args.more),
                "--collect-url", "" if args.no_collect else url + "/compare/collect",
                "--prompt", args.prompt,
                "--timeout", str(args.timeout),
                "--download-dir", os.path.join(tmp, "visitors-files"),
            ],
            env={"GRADIO_TEMP_DIR": os.path.join(tmp, "visitors-files")},
            stdout=f,
            simulator=True,
        )
        try:
            rc = d.wait(args.timeout + 60)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"compare: drive_a.py still running after {args.timeout + 60}s")
    if rc != 0:
        raise SystemExit(f"compare: drive_a.py failed ({rc}):\n{procs.tail(d)}")
    procs.stop(d)
    with open(out) as f:
        result = json.load(f)
    result["b_tokens_billed"] = tokens_billed(journal(b_url), result.get("warmup_token_digests", ()))
    result["b_file_races"] = count_in_log(b_log, b_log_at, B_FILE_RACE)
    procs.stop(a)
    return result


def run_relay(args, procs, tmp, b_url, relay_bin, load_tools):
    port, free_at = free_port(), free_port()
    http_url = f"http://127.0.0.1:{port}"
    r = procs.start(
        "spacerelay",
        [relay_bin, "--listen", f"127.0.0.1:{port}", "--upstream", b_url, "--token-policy", "require",
         "--metrics-public"],
        env={"COMPARE_DEBUG_FREE_ADDR": f"127.0.0.1:{free_at}"},
    )
    wait_ready(procs, r, http_url + "/readyz", 60)
    collect = None
    if not args.no_collect:

        def collect():
            # The relay's GC and debug.FreeOSMemory (debugfree.go).
            return json.loads(http("GET", f"http://127.0.0.1:{free_at}/debug/free", timeout=60)[1])

    def load_argv(load_bin, sessions, jobs, hold):
        return [
            load_bin,
            "--url", f"ws://127.0.0.1:{port}/v1/ws",
            "--sessions", str(sessions),
            "--rate", str(args.rate),
            "--jobs", str(jobs),
            "--think", f"{args.think}s",
            "--endpoint", "/generate",
            # spacerelay-load writes {job} as a name unique to the job, as
            # drive_a.py does with {visitor}-{job}: no two jobs ask for the
            # same image (Spaces cache identical calls).
            "--inputs", json.dumps({"prompt": args.prompt.replace("{visitor}-{job}", "{job}"), "steps": args.steps}),
            "--hold", hold,
            "--duration", f"{int(args.timeout)}s",
            "--json",
        ]

    # Warm-up, as drive_a.py does for Space A: one visitor, one prompt. A
    # load generator that cannot do that gives way to the next.
    for load_tool, load_bin in load_tools:
        warm = procs.start("load-warmup", load_argv(load_bin, 1, 1, "0s"), stdout=subprocess.PIPE, simulator=True)
        wout, _ = warm.communicate(timeout=120)
        procs.stop(warm)
        try:
            ok = warm.returncode == 0 and pick(json.loads(wout), "jobs.completed") == 1
        except ValueError:
            ok = False
        if ok:
            warm_raw = json.loads(wout)
            break
        print(f"compare: relay warm-up with {load_tool} failed:\n{wout.decode(errors='replace')}", file=sys.stderr)
    else:
        raise SystemExit("compare: no load generator could warm the relay up")
    deadline = time.monotonic() + 10
    while metrics(http_url)["open"] and time.monotonic() < deadline:
        time.sleep(0.1)
    before = metrics(http_url)

    clear_journal(b_url)
    b_log = os.path.join(tmp, "space_b.log")
    b_log_at = os.path.getsize(b_log)
    sampler = ProcSampler(r.pid, interval=0.1)
    time.sleep(args.settle)
    load_before = loadavg()
    idle = reading(sampler, collect)
    # --hold negative: every session stays until told (SIGINT), so that the
    # readings below see them all connected, as drive_a.py's do. The N
    # visitors come from one load generator ("load"), the --more visitors,
    # once the N reading is taken, from a second ("load-more"), for the
    # marginal memory only, as drive_a.py does.
    outs = {name: os.path.join(tmp, name + ".json") for name in ("load", "load-more")}
    files = {"load": open(outs["load"], "wb")}
    lps = {"load": procs.start("load", load_argv(load_bin, args.visitors, args.jobs, "-1s"), stdout=files["load"],
                               simulator=True)}
    sampler.start()

    # The same readings as drive_a.py's: once every visitor has arrived and
    # every connected one has had all its jobs end, after --settle (for N,
    # then for N + --more); then --hold more seconds connected, and the load
    # generators let them go.
    held = more = load_after = peak = None
    settled_at, released, last_at = None, False, None
    want = args.visitors
    deadline = time.monotonic() + args.timeout
    while lps["load"].poll() is None:
        try:
            m = {k: v - before[k] for k, v in metrics(http_url).items()}
            m["open"] += before["open"]
        except OSError:
            break
        arrived = m["opened"] + m["refused"] >= want
        over = m["ended"] >= m["opened"] * args.jobs and m["open"] == m["opened"]
        if last_at is None:
            if arrived and over:
                settled_at = settled_at or time.monotonic()
                if time.monotonic() - settled_at >= args.settle:
                    if held is None:
                        held = reading(sampler, collect)
                        peak = (sampler.peak_rss, sampler.peak_threads)
                        load_after = loadavg()
                        held["sessions_open"] = m["open"]
                        if args.more > 0:
                            want += args.more
                            settled_at = None
                            files["load-more"] = open(outs["load-more"], "wb")
                            lps["load-more"] = procs.start(
                                "load-more", load_argv(load_bin, args.more, args.jobs, "-1s"),
                                stdout=files["load-more"], simulator=True)
                        else:
                            last_at = time.monotonic()
                    else:
                        more = reading(sampler, collect)
                        more["sessions_open"] = m["open"]
                        last_at = time.monotonic()
            else:
                settled_at = None
        if not released and (
            (last_at is not None and time.monotonic() - last_at >= max(0.0, args.hold - args.settle))
            or time.monotonic() > deadline
        ):
            for lp in lps.values():
                lp.send_signal(signal.SIGINT)
            released = True
        time.sleep(0.05)
    if not released:
        for lp in lps.values():
            lp.send_signal(signal.SIGINT)
    try:
        for lp in lps.values():
            lp.wait(60)
    finally:
        for f in files.values():
            f.close()
    sampler.stop()
    time.sleep(args.settle)
    after = reading(sampler, collect)  # every visitor gone
    raws = {}
    for name, lp in lps.items():
        if lp.returncode != 0:
            raise SystemExit(f"compare: {load_tool} ({name}) failed ({lp.returncode}):\n{procs.tail(lp)}")
        procs.stop(lp)
        with open(outs[name]) as fh:
            raws[name] = json.load(fh)
    raw = raws["load"]
    if held is None:
        raise SystemExit(f"compare: the relay never had every visitor connected with its jobs over: {raw}")
    if args.more > 0 and more is None:
        raise SystemExit(f"compare: the relay never had the --more visitors connected with their jobs over: {raws}")
    n = held["sessions_open"]
    k = more["sessions_open"] - n if more else 0

    def jobs_of(raw):
        jobs = raw.get("jobs", {})
        return jobs.get("completed", 0), sum(jobs.get(k, 0) for k in ("failed", "cancelled", "unfinished"))

    completed, failed = jobs_of(raw)
    more_raw = raws.get("load-more", {})
    result = {
        "system": "spacerelay",
        "load_tool": load_tool,
        "visitors": args.visitors,
        "visitors_connected": pick(raw, "sessions.opened", default=0),
        "setup_s": seconds(pick(raw, "latency.hello")),
        "time_to_image_s": seconds(pick(raw, "latency.result")),
        "jobs_completed": completed,
        "jobs_failed": failed,
        "errors": raw.get("errors") or {},
        "more": {
            "visitors": args.more,
            "visitors_connected": pick(more_raw, "sessions.opened", default=0),
            "jobs_completed": jobs_of(more_raw)[0],
            "jobs_failed": jobs_of(more_raw)[1],
            "errors": more_raw.get("errors") or {},
        },
        "warmup": {
            "setup_s": seconds(pick(warm_raw, "latency.hello")),
            "time_to_image_s": seconds(pick(warm_raw, "latency.result")),
        },
        "loadavg_1m": [load_before, load_after],
        "driver_cpu_s": pick(raw, "cpu.load_seconds"),
        "memory": memory_summary(r.pid, idle, held, more, after, n, k, peak),
        "raw": raws,
    }
    result["b_tokens_billed"] = tokens_billed(journal(b_url))
    result["b_file_races"] = count_in_log(b_log, b_log_at, B_FILE_RACE)
    procs.stop(r)
    return result


def fmt_s(x):
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def fmt_bytes(x):
    if x is None:
        return "-"
    if abs(x) >= 1 << 20:
        return f"{x / (1 << 20):.2f} MiB"
    return f"{x / 1024:.0f} KiB"


def ratio(a, r):
    if a is None or r is None or r == 0:
        return "-"
    return f"{a / r:.1f}x"


def table(a, r, args):
    am, rm = a["memory"], r["memory"]
    jobs_a, jobs_r = a["jobs_completed"] or 0, r["jobs_completed"] or 0

    def per_job(cpu, jobs):
        return cpu / jobs if jobs and cpu is not None else None

    def row(name, x, y, fmt=None):
        """A row; with fmt, x and y are numbers and the ratio is shown."""
        if fmt is None:
            return (name, str(x), str(y), "")
        return (name, fmt(x), fmt(y), ratio(x, y))

    cpu_a, cpu_r = per_job(am.get("cpu_s"), jobs_a), per_job(rm.get("cpu_s"), jobs_r)
    k = args.more

    def rss_path(m):
        xs = [m["idle"], m["connected"]] + ([m["more"]] if m.get("more") else [])
        return " -> ".join(fmt_bytes(x["rss_bytes"]) for x in xs)

    def threads_path(m):
        xs = [m["idle"], m["connected"]] + ([m["more"]] if m.get("more") else [])
        return " -> ".join(str(x["threads"]) for x in xs)

    def longest_collect(m):
        took = [c["seconds"] for c in m["collect"].values() if c]
        return max(took) if took else None

    def more_path(res):
        mo = res["more"]
        return f"{mo['visitors_connected']}/{mo['visitors']}, {mo['jobs_completed']}, {mo['jobs_failed']}"

    # Each RSS is read twice (procstat.reading): as the process left it,
    # and after its collection; the rows say which. --no-collect: only the
    # first, and the rows say "no collection".
    how = "no collection" if args.no_collect else "after collection"
    nk = f"N -> N+{k}" if k else "N"
    memory_rows = [
        row(f"memory per visitor, {how}: (RSS at N - at 0) / N", am["rss_per_visitor_bytes"],
            rm["rss_per_visitor_bytes"], fmt_bytes),
    ]
    if k:
        memory_rows.append(row(f"memory per visitor, {how}, marginal: (RSS at N+{k} - at N) / {k}",
                               am["rss_marginal_per_visitor_bytes"], rm["rss_marginal_per_visitor_bytes"], fmt_bytes))
    if not args.no_collect:
        memory_rows.append(row("memory per visitor, no collection: (RSS at N - at 0) / N (the earlier figure)",
                               am["rss_per_visitor_as_left_bytes"], rm["rss_per_visitor_as_left_bytes"], fmt_bytes))
    memory_rows.append(row(f"RSS, {how}: 0 visitors -> {nk} connected", rss_path(am), rss_path(rm)))
    if not args.no_collect:
        memory_rows.append(row(
            "RSS, no collection: 0 visitors -> N",
            f"{fmt_bytes(am['idle_as_left']['rss_bytes'])} -> {fmt_bytes(am['connected_as_left']['rss_bytes'])}",
            f"{fmt_bytes(rm['idle_as_left']['rss_bytes'])} -> {fmt_bytes(rm['connected_as_left']['rss_bytes'])}",
        ))
    memory_rows.append(row("peak RSS (until the N reading)", am["peak_rss_bytes"], rm["peak_rss_bytes"], fmt_bytes))
    if not args.no_collect:
        memory_rows.append(row(f"longest collection before a reading ({COLLECTIONS} passes)", longest_collect(am), longest_collect(rm), fmt_s))
    memory_rows.append(row(f"threads: 0 -> {nk} connected", threads_path(am), threads_path(rm)))

    rows = [
        row("visitors connected", f"{a['visitors_connected']}/{args.visitors}", f"{r['visitors_connected']}/{args.visitors}"),
        row(
            "first visitor alone (cold): set-up",
            pick(a, "warmup.setup_s.p50"),
            pick(r, "warmup.setup_s.p50"),
            fmt_s,
        ),
        row(
            "first visitor alone (cold): prompt to image",
            pick(a, "warmup.time_to_image_s.p50"),
            pick(r, "warmup.time_to_image_s.p50"),
            fmt_s,
        ),
        row("set-up per visitor p50", a["setup_s"].get("p50"), r["setup_s"].get("p50"), fmt_s),
        row("set-up per visitor p99", a["setup_s"].get("p99"), r["setup_s"].get("p99"), fmt_s),
        *memory_rows,
        row(
            f"after all left: RSS ({how}), threads",
            f"{fmt_bytes(am['after_close']['rss_bytes'])}, {am['after_close']['threads']}",
            f"{fmt_bytes(rm['after_close']['rss_bytes'])}, {rm['after_close']['threads']}",
        ),
        row(
            "open fds: 0 -> N connected",
            f"{am['idle']['fds']} -> {am['connected']['fds']}",
            f"{rm['idle']['fds']} -> {rm['connected']['fds']}",
        ),
        row("prompt to image p50", a["time_to_image_s"].get("p50"), r["time_to_image_s"].get("p50"), fmt_s),
        row("prompt to image p99", a["time_to_image_s"].get("p99"), r["time_to_image_s"].get("p99"), fmt_s),
        row("jobs completed", a["jobs_completed"], r["jobs_completed"]),
        row("jobs failed", a["jobs_failed"], r["jobs_failed"]),
        row("relaying process CPU, whole run", am.get("cpu_s"), rm.get("cpu_s"), fmt_s),
        row("relaying process CPU per image", cpu_a, cpu_r, fmt_s),
        row("visitor simulator CPU (not the relay)", a.get("driver_cpu_s"), r.get("driver_cpu_s"), fmt_s),
        *([row(f"the {k} more visitors: connected, jobs completed, failed", more_path(a), more_path(r))] if k else []),
        row(f"tokens Space B billed (want {'N+' + str(k) + ' = ' if k else 'N = '}{args.visitors + k})",
            a["b_tokens_billed"], r["b_tokens_billed"]),
        row("Space B file-cache races (see below)", a["b_file_races"], r["b_file_races"]),
        row(
            "Space A file-cache races (empty images)",
            a["errors"].get("ValueError: empty image file", 0),
            "-",
        ),
        row(
            "load average 1 min, before/after",
            "{:.1f} / {:.1f}".format(*a["loadavg_1m"]),
            "{:.1f} / {:.1f}".format(*r["loadavg_1m"]),
        ),
    ]
    head = ("", "gradio_client (Space A)", "spacerelay", "A / relay")
    cells = [head] + rows
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("| " + " | ".join(c[j].ljust(widths[j]) for j in range(4)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for name, res in (("Space A", a), ("spacerelay", r)):
        if res["errors"]:
            lines.append(f"{name} errors: {json.dumps(res['errors'])}")
        if res["more"]["errors"]:
            lines.append(f"{name} errors of the {k} more visitors: {json.dumps(res['more']['errors'])}")
    if a["b_file_races"] or r["b_file_races"] or a["errors"].get("ValueError: empty image file"):
        lines.append(
            "File-cache race: every job draws the same image (spacerelay-load sends the same inputs to "
            "every job), and Gradio rewrites its cached copy of an output in place (Space B's, and "
            "Space A's copy of it) while an earlier download of that file may still be running, which "
            "then ends short or empty. An artefact of identical outputs, not of the relaying."
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=100, help="visitors (N), each with its own token")
    parser.add_argument("--jobs", type=int, default=2, help="prompts per visitor (M), one after the other")
    parser.add_argument("--steps", type=int, default=2, help="steps of every job on Space B")
    parser.add_argument("--step-seconds", type=float, default=0.05, help="Space B's seconds per step (FIXTURE_STEP_SECONDS)")
    parser.add_argument("--rate", type=float, default=5, help="visitors arriving per second")
    parser.add_argument("--think", type=float, default=0.5, help="seconds a visitor waits before each prompt")
    parser.add_argument("--hold", type=float, default=3, help="seconds all visitors stay connected after the last job")
    parser.add_argument("--settle", type=float, default=1, help="seconds before each memory reading")
    parser.add_argument("--more", type=int, default=None,
                        help="visitors that arrive after the N reading, for the marginal memory per visitor "
                             "(default: N/2; 0: none)")
    parser.add_argument("--no-collect", action="store_true",
                        help="read memory as each process left it only: no gc.collect/malloc_trim in Space A, "
                             "no GC/FreeOSMemory in the relay, before the readings")
    parser.add_argument("--prompt", default="a red fox in the snow {visitor}-{job}",
                        help="the prompt of every job; {visitor}-{job} makes it unique per job")
    parser.add_argument("--timeout", type=float, default=300, help="seconds each side may take")
    parser.add_argument(
        "--python",
        default=os.path.join(ROOT, ".cache", "gradio-6.31.0", "bin", "python"),
        help="Python with gradio 6.31.0",
    )
    parser.add_argument("--json-out", help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if args.more is None:
        args.more = args.visitors // 2
    if not os.path.exists(args.python):
        raise SystemExit(f"compare: no {args.python}: make the venvs first (task venvs)")

    # SIGTERM (and SIGHUP) unwind like Ctrl-C, so the finally below runs.
    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="spacerelay-compare-")
    procs = Procs(tmp)
    ok = False
    try:
        print(f"compare: building (logs in {tmp})", file=sys.stderr)
        relay_bin = build_relay(tmp)
        load_tools = build_load_tools(tmp)

        b_port = free_port()
        b_url = f"http://127.0.0.1:{b_port}"
        b = procs.start(
            "space_b",
            [args.python, os.path.join(ROOT, "testdata", "gradio", "app.py"), "--port", str(b_port)],
            env={
                "FIXTURE_STEP_SECONDS": str(args.step_seconds),
                "FIXTURE_QUOTA_SECONDS": str(10**9),
                "GRADIO_TEMP_DIR": os.path.join(tmp, "space-b-files"),
            },
        )
        wait_ready(procs, b, b_url + "/config", 180)

        print(f"compare: Space A, {args.visitors} visitors x {args.jobs} prompts", file=sys.stderr)
        t = time.monotonic()
        a = run_space_a(args, procs, tmp, b_url)
        a["phase_s"] = time.monotonic() - t
        print(f"compare: spacerelay, {args.visitors} visitors x {args.jobs} prompts", file=sys.stderr)
        t = time.monotonic()
        r = run_relay(args, procs, tmp, b_url, relay_bin, load_tools)
        r["phase_s"] = time.monotonic() - t
        procs.stop(b)

        total = time.monotonic() - started
        print(
            f"{args.visitors} visitors x {args.jobs} prompts, steps={args.steps} x {args.step_seconds}s on one "
            f"Space B (gradio 6.31.0, one job at a time); arrivals {args.rate}/s, think {args.think}s; "
            f"Space A {a['phase_s']:.0f}s, spacerelay {r['phase_s']:.0f}s, total {total:.0f}s; "
            f"relay driven by {r['load_tool']}; {args.more} more visitors after the N reading, for the marginal memory; "
            + ("memory read as each process left it (--no-collect)" if args.no_collect else
               f"memory read after collection, {COLLECTIONS} passes of: gc.collect() + malloc_trim(0) in Space A, "
               "GC + debug.FreeOSMemory() in the relay")
        )
        print(table(a, r, args))
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"args": vars(args), "space_a": a, "spacerelay": r, "total_s": total}, f, indent=2)
        ok = True
    except KeyboardInterrupt as e:
        print(f"compare: interrupted ({e})", file=sys.stderr)
    finally:
        procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"compare: logs kept in {tmp}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
