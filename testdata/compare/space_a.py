"""Space A: Gradio's documented way to call a ZeroGPU Space for visitors.

When a visitor opens the page, the app reads the visitor's X-IP-Token (the
Hugging Face proxy adds it to every request) and keeps a
gradio_client.Client for Space B with that token in a per-visitor gr.State;
each prompt is relayed to B's /generate through that client, so B's
ZeroGPU bills the visitor. This is the pattern spacerelay replaces, built
as faithfully as we can for testdata/compare/compare.py to measure:

    python space_a.py --port 7861 --upstream http://127.0.0.1:7860/

Endpoints: the page-load event, whose api_name is "open" (a client that
is not a browser fires it by calling /open in its session), and
/relay(prompt) -> image. Environment: SPACE_A_STEPS (the steps of each
relayed job, default 2).

For measuring only, one plain HTTP route beside Gradio's (not a Gradio
endpoint: no API entry, no queue, no session): POST /compare/collect runs
a full gc.collect() and then glibc's malloc_trim(0), Python's counterpart
of the relay's debug.FreeOSMemory, so that compare.py reads the memory of
both after their collectors ran. It answers
{"collected": <objects>, "trimmed": <bool>, "seconds": <time taken>}.
"""

import os

# The test machine has no internet: nothing may phone home, neither Space
# A's Gradio nor the gradio_client instances it creates.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_SSR_MODE"] = "False"
os.environ["GRADIO_MCP_SERVER"] = "False"

import argparse  # noqa: E402
import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402

import gradio as gr  # noqa: E402
from gradio_client import Client  # noqa: E402

STEPS = int(os.environ.get("SPACE_A_STEPS") or 2)


def build(upstream):
    """The app: one Client per visitor, made on page load, kept in gr.State."""

    def open_client(request: gr.Request):
        # As Gradio's guide "Using ZeroGPU Spaces with the Clients" does:
        # the visitor's token, forwarded on every request to B.
        token = request.headers["x-ip-token"]
        return Client(upstream, headers={"X-IP-Token": token})

    def relay(prompt, client):
        if client is None:
            raise gr.Error("Reload the page: no client for this visitor.")
        image, _info = client.predict(prompt, STEPS, api_name="/generate")
        return image

    with gr.Blocks(title="Space A: gradio_client per visitor", analytics_enabled=False) as demo:
        client = gr.State()
        prompt = gr.Textbox(label="prompt")
        image = gr.Image(label="image", type="filepath", format="png")
        run = gr.Button("generate")

        # concurrency_limit=None: the handlers only wait on Space B, which has
        # its own queue; Gradio's default of 1 would serialise the visitors
        # in A as well. The limit is then Gradio's thread pool (max_threads).
        # The page-load event is a public API endpoint too ("/open"): a
        # gradio_client visitor fires it just as the browser page does, a
        # queue/join of this event in the visitor's session.
        demo.load(open_client, None, client, api_name="open", concurrency_limit=None)
        run.click(relay, [prompt, client], image, api_name="relay", concurrency_limit=None)
    return demo


def collect():
    """gc.collect() (every generation), then malloc_trim(0): the freed
    memory back to the OS, from every malloc arena."""
    t0 = time.monotonic()
    collected = gc.collect()
    trimmed = None
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):  # glibc only
            trimmed = bool(libc.malloc_trim(0))
    return {"collected": collected, "trimmed": trimmed, "seconds": time.monotonic() - t0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7861, help="port at 127.0.0.1")
    parser.add_argument("--upstream", required=True, help="Space B's URL")
    args = parser.parse_args()
    demo = build(args.upstream)
    demo.queue()
    demo.launch(
        server_name="127.0.0.1",
        server_port=args.port,
        show_error=True,
        quiet=True,
        ssr_mode=False,
        prevent_thread_lock=True,
    )
    # Added once the app exists (launch makes it); a sync route, which
    # FastAPI runs on a worker thread.
    demo.server_app.add_api_route("/compare/collect", collect, methods=["POST"])
    demo.block_thread()


if __name__ == "__main__":
    main()
