"""Calls a Gradio Space with the official Python client, gradio_client, and
prints what it saw as one JSON object (one member per scenario).

    python driver.py http://127.0.0.1:7860 OUTDIR TOKEN

upstream/official_test.go runs it, and the Node driver beside it, against
the demo Space and the real test Space (testdata/gradio), and checks that
both clients see the same thing on each. Files are written to OUTDIR and
named in the output, for the Go test to compare their pixels. TOKEN is
the X-IP-Token the driver's visitors send (its suffixes name the others).
"""

import os

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import concurrent.futures  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

from gradio_client import Client, handle_file  # noqa: E402

TIMEOUT = 30  # seconds any one wait may take before the driver gives up


def connect(url, token):
    return Client(url, headers={"X-IP-Token": token}, verbose=False, download_files=OUT)


def keep(path, name):
    """Copies a downloaded file into OUT as name and returns name."""
    shutil.copyfile(path, os.path.join(OUT, name))
    return name


def texts(history):
    """A chat history as [role, text] pairs, whatever the content's shape."""
    out = []
    for m in history:
        c = m.get("content")
        if isinstance(c, list):
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        out.append([m.get("role"), c])
    return out


def outcome(job):
    """How a job ended: its result, or the kind of exception."""
    try:
        return {"result": job.result(timeout=TIMEOUT)}
    except concurrent.futures.CancelledError:
        return {"cancelled": "CancelledError"}
    except KeyError as e:
        # gradio_client's race: its stream reader got the synthetic
        # completion (no data) before its cancel watcher raised.
        if "Could not find 'data' key" in str(e):
            return {"cancelled": "KeyError"}
        raise
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__, "message": str(e)}


def wait_status(job, codes):
    deadline = time.monotonic() + TIMEOUT
    while job.status().code.name not in codes:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job never reached {codes}: {job.status().code.name}")
        time.sleep(0.02)


def api(client):
    info = client.view_api(return_format="dict", print_info=False)
    named = info["named_endpoints"]
    return {
        "endpoints": sorted(named),
        "restyle": [p["parameter_name"] for p in named["/restyle"]["parameters"]],
        "restyle_defaults": [p.get("parameter_default") for p in named["/restyle"]["parameters"]],
    }


def predict(client):
    out = {}
    image, info = client.predict("official fox", 1, 16, 12, api_name="/generate")
    out["generate"] = {"image": keep(image, "generate.png"), "info": json.loads(info)}
    out["preview"] = {"image": keep(client.predict("official preview", 2, api_name="/preview"), "preview.png")}
    out["count"] = [client.predict(api_name="/count"), client.predict(api_name="/count")]
    client.predict(api_name="/reset_count")
    out["count_after_reset"] = client.predict(api_name="/count")
    out["whoami"] = client.predict(api_name="/whoami")
    with open(image, "rb") as f:
        sent = hashlib.sha256(f.read()).hexdigest()
    restyled, info = client.predict(handle_file(image), "official", 100, "invert", api_name="/restyle")
    info = json.loads(info)
    out["restyle"] = {
        "image": keep(restyled, "restyle.png"),
        "intact": info.pop("sha256") == sent,
        "info": info,
    }
    box, history = client.predict("hello official world", [], api_name="/add_message")
    out["add_message"] = {"box": box, "history": texts(history)}
    out["bot_reply"] = texts(client.predict(history, 3, api_name="/bot_reply"))
    out["chat"] = client.predict("hi chat", api_name="/chat")
    out["ticks"] = client.predict(2, api_name="/ticks")
    return out


def generator(client):
    job = client.submit(3, api_name="/ticks")
    result = job.result(timeout=TIMEOUT)
    return {"outputs": job.outputs(), "result": result}


def cancel_queued(url, token):
    blocker, waiter = connect(url, token + "-a"), connect(url, token + "-b")
    long = blocker.submit("official blocker", 10, 8, 8, api_name="/generate")
    wait_status(long, {"PROGRESS", "PROCESSING", "ITERATING", "LOG"})
    queued = waiter.submit("official queued", 1, 8, 8, api_name="/generate")
    wait_status(queued, {"IN_QUEUE"})
    queued.cancel()
    got = outcome(queued)
    long.cancel()
    outcome(long)
    blocker.close()
    waiter.close()
    return got


def cancel_running(client):
    job = client.submit("official running", 40, 8, 8, api_name="/generate")
    wait_status(job, {"PROGRESS"})
    job.cancel()
    return outcome(job)


def app_error(client):
    got = outcome(client.submit("raise:official <i>cat</i>", 1, 8, 8, api_name="/generate"))
    got.pop("result", None)
    return got


def rest_call(url, token):
    """The curl recipe of /info's code snippets, with urllib."""

    def post(api, data):
        req = urllib.request.Request(
            f"{url}/gradio_api/call/{api}",
            data=json.dumps({"data": data}).encode(),
            headers={"Content-Type": "application/json", "X-IP-Token": token},
        )
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            event_id = json.load(resp)["event_id"]
        with urllib.request.urlopen(f"{url}/gradio_api/call/{api}/{event_id}", timeout=TIMEOUT) as resp:
            events, name = [], None
            for line in resp.read().decode().splitlines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append([name, json.loads(line[len("data: "):])])
            return events

    ticks = post("ticks", [2])
    error = [name for name, _ in post("generate", ["raise:rest", 1, 8, 8])]
    return {"ticks": ticks, "error_events": error}


def main():
    global OUT
    url, OUT, token = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    client = connect(url, token)
    report = {"api": api(client), "predict": predict(client), "generator": generator(client)}
    report["cancel_queued"] = cancel_queued(url, token)
    report["cancel_running"] = cancel_running(client)
    report["app_error"] = app_error(client)
    report["rest_call"] = rest_call(url, token)
    client.close()
    json.dump(report, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
