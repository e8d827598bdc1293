"""A Gradio app for the upstream package's discovery tests.

It has the shapes discovery must read from real Gradio (5.50.x and 6.31.x):
a gr.ChatInterface (whose labels are translation objects), an event with
queue=False, typed inputs (Number, Slider, Dropdown, Radio, CheckboxGroup,
Chatbot, Image, File, Audio, Video, Gallery, a File of several files), help
texts, and an endpoint whose only output is a gr.State. Run it as

    python discovery_app.py --port 7860

or, from a test that already holds a listening socket, as

    python discovery_app.py --fd 3 --watch-stdin

With DISCOVERY_VARIANT=redeployed it serves the same app one version later:
an endpoint more, so the function indexes move, as after a redeploy.
"""

import os

# The test machine has no internet: nothing may phone home at startup.
# These must be set before gradio (and huggingface_hub) are imported.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_SSR_MODE"] = "False"
os.environ["GRADIO_MCP_SERVER"] = "False"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

import fastapi  # noqa: E402
import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402

REDEPLOYED = os.environ.get("DISCOVERY_VARIANT") == "redeployed"
# Gradio 5 keeps chat history as (user, bot) tuples unless told otherwise;
# Gradio 6 knows only messages and has no such option.
MESSAGES = {"type": "messages"} if gr.__version__.startswith("5.") else {}

i18n = gr.I18n(en={"greeting": "Greeting", "greeting_info": "say hello"})


def reply(message, history):
    """The chat, streamed: echoes the message and how long the history is."""
    text = message if isinstance(message, str) else message.get("text", "")
    yield "echo"
    yield f"echo {text} ({len(history)} before)"


def add(a, b):
    """The direct (queue=False) call: a + b."""
    return a + b


def describe(steps, scale, sampler, style, extras, seed):
    """Every kind of typed input, described back as text."""
    return f"steps={steps} scale={scale} sampler={sampler} style={style} extras={extras} seed={seed}"


def history_length(history):
    """A Chatbot as an input: how many messages it holds."""
    return len(history or [])


def image_info(image, strength):
    """An image input: its file name and the strength."""
    return f"{os.path.basename(image) if image else None} at {strength}"


def file_digest(doc):
    """A file input: the sha256 of its bytes."""
    if doc is None:
        return ""
    with open(doc, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def media(audio, video):
    return f"{bool(audio)} {bool(video)}"


def tally(n):
    """A direct call with a State: counts calls per session."""
    n = (n or 0) + 1
    return n, n


def shout(word):
    return word.upper()


def remember(text, state):
    """The only output is the State: nothing comes back to the caller."""
    return (state or []) + [text]


def album(pictures, attachments):
    """A Gallery and a File of several files: how many of each."""
    return f"{len(pictures or [])} {len(attachments or [])}"


def build():
    with gr.Blocks(title="spacerelay discovery app", analytics_enabled=False) as demo:
        if REDEPLOYED:  # first, so that every later function index moves
            with gr.Tab("shout"):
                word = gr.Textbox(label="word")
                loud = gr.Textbox(label="loud")
                gr.Button("shout").click(shout, [word], [loud], api_name="shout")
        with gr.Tab("chat"):
            chat_ui = gr.ChatInterface(reply, api_name="chat", **MESSAGES)
            turns = gr.Number(label="turns")
            gr.Button("turns").click(history_length, [chat_ui.chatbot], [turns], api_name="turns")
        with gr.Tab("greet"):
            greeting = gr.Textbox(label=i18n("greeting"), info=i18n("greeting_info"), placeholder=i18n("greeting"))
            greeted = gr.Textbox(label="greeted")
            gr.Button("greet").click(lambda g: g + "!", [greeting], [greeted], api_name="greet")
        with gr.Tab("add"):
            a = gr.Number(label="a", value=1)
            b = gr.Number(label="b", value=2)
            total = gr.Number(label="sum")
            gr.Button("add").click(add, [a, b], [total], api_name="add", queue=False)
        with gr.Tab("describe"):
            steps = gr.Slider(1, 50, value=20, step=1, label="steps", info="more steps, more detail")
            scale = gr.Number(label="scale", value=7.5, minimum=0, maximum=20, step=0.5)
            sampler = gr.Dropdown(["euler", "ddim"], value="euler", label="sampler")
            style = gr.Radio([("Photo", "photo"), ("Painting", "paint")], value="photo", label="style")
            extras = gr.CheckboxGroup(["hires", "face fix"], label="extras")
            seed = gr.Number(label="seed", precision=0, value=0)
            out = gr.Textbox(label="description")
            gr.Button("describe").click(
                describe, [steps, scale, sampler, style, extras, seed], [out], api_name="describe"
            )
        with gr.Tab("history"):
            chat = gr.Chatbot(label="conversation", **MESSAGES)
            n = gr.Number(label="messages")
            gr.Button("count").click(history_length, [chat], [n], api_name="history_length")
        with gr.Tab("image"):
            image = gr.Image(label="picture", type="filepath")
            strength = gr.Slider(0, 1, value=0.5, label="strength")
            image_out = gr.Textbox(label="info")
            gr.Button("go").click(image_info, [image, strength], [image_out], api_name="image_info")
        with gr.Tab("file"):
            doc = gr.File(label="document", file_types=[".txt", ".md"], type="filepath")
            digest = gr.Textbox(label="sha256")
            gr.Button("hash").click(file_digest, [doc], [digest], api_name="file_digest")
        with gr.Tab("media"):
            audio = gr.Audio(label="voice", type="filepath")
            video = gr.Video(label="clip")
            media_out = gr.Textbox(label="media")
            gr.Button("media").click(media, [audio, video], [media_out], api_name="media")
        with gr.Tab("tally"):
            tally_state = gr.State()
            tally_out = gr.Number(label="calls")
            gr.Button("tally").click(tally, [tally_state], [tally_out, tally_state], api_name="tally", queue=False)
        with gr.Tab("remember"):
            note = gr.Textbox(label="note")
            notes = gr.State()
            gr.Button("remember").click(remember, [note, notes], [notes], api_name="remember")
        with gr.Tab("album"):
            pictures = gr.Gallery(label="pictures", type="filepath")
            attachments = gr.File(label="attachments", file_count="multiple", type="filepath")
            counts = gr.Textbox(label="counts")
            gr.Button("album").click(album, [pictures, attachments], [counts], api_name="album")
    demo.queue(default_concurrency_limit=4)
    return demo


def watch_stdin():
    """Shuts the server down when stdin closes, e.g. when the parent dies."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860, help="port to listen on at 127.0.0.1")
    parser.add_argument("--fd", type=int, help="serve on this already listening socket instead of --port")
    parser.add_argument("--watch-stdin", action="store_true", help="shut down when stdin reaches end of file")
    args = parser.parse_args()
    app = gr.mount_gradio_app(
        fastapi.FastAPI(), build(), path="/", show_error=False, ssr_mode=False, i18n=i18n
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=2
    )
    sockets = None
    if args.fd is not None:
        sockets = [socket.socket(fileno=args.fd)]
    if args.watch_stdin:
        threading.Thread(target=watch_stdin, daemon=True).start()
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
