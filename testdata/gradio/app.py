"""The test Space: a small ZeroGPU-style text-to-image Gradio app.

It implements testdata/gradio/SPEC.md with real Gradio (5.50.x and 6.31.x),
so the upstream client can be tested against the real protocol. Run it as

    python app.py --port 7860

or, from a test that already holds a listening socket, as

    python app.py --fd 3 --watch-stdin

Environment: FIXTURE_STEP_SECONDS (default 0.1), FIXTURE_QUOTA_SECONDS
(default 60), FIXTURE_PORT (used when --port is absent, default 7860).
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
import asyncio  # noqa: E402
import base64  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import fastapi  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402

STEP_SECONDS = float(os.environ.get("FIXTURE_STEP_SECONDS") or 0.1)
QUOTA_SECONDS = int(os.environ.get("FIXTURE_QUOTA_SECONDS") or 60)

PREVIEW_SIZE = 128  # /preview has no size inputs
MAX_SIDE = 1024
MAX_STEPS = 3600
# Every event shares this concurrency group, so the whole app runs one job
# at a time, like a Space with a single GPU.
GPU_GROUP = "gpu"
GRADIO_MAJOR = int(gr.__version__.split(".")[0])


class Journal:
    """What the app did, in order, for tests to inspect."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries = []

    def add(self, event, endpoint, prompt, caller):
        entry = {
            "event": event,
            "endpoint": endpoint,
            "prompt": prompt,
            "token": caller.token,
            "session": caller.session,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self):
        with self._lock:
            return list(self._entries)

    def clear(self):
        with self._lock:
            self._entries.clear()


class Quota:
    """Seconds of GPU time left per quota key: the token digest ("" is the
    shared pool), or a JWT token's visitor claim."""

    def __init__(self, seconds):
        self._lock = threading.Lock()
        self._seconds = seconds
        self._left = {}

    def take(self, token, steps):
        """Takes steps seconds, or returns how many are left if too few."""
        with self._lock:
            left = self._left.get(token, self._seconds)
            if steps > left:
                return left
            self._left[token] = left - steps
            return None


class Caller:
    """Who made a request: the token digest and the Gradio session, and,
    when the token is a JWT (as Hugging Face's proxy stamps), its expiry
    and visitor claim. The signature is not checked: the Space trusts the
    proxy in front of it."""

    def __init__(self, request):
        raw = request.headers.get("x-ip-token") or ""
        self.token = digest(raw)
        self.session = request.session_hash or ""
        claims = jwt_claims(raw)
        visitor = claims.get("visitor")
        self.quota_key = "visitor:" + visitor if isinstance(visitor, str) and visitor else self.token
        exp = claims.get("exp")
        self.expires = exp if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None

    def expired(self):
        return self.expires is not None and time.time() >= self.expires


def jwt_claims(token):
    """The claims of a JWT (its middle part), or {} if it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def take_gpu(caller, seconds, endpoint, prompt):
    """The ZeroGPU step: an expired proxy token fails the job, else the
    caller's quota pays for seconds or the job fails with the quota error."""
    if caller.expired():
        raise gr.Error("Expired ZeroGPU proxy token", title="ZeroGPU client error")
    left = quota.take(caller.quota_key, seconds)
    if left is not None:
        journal.add("quota", endpoint, prompt, caller)
        raise quota_error(seconds, left)


journal = Journal()
quota = Quota(QUOTA_SECONDS)


def digest(token):
    """The first 12 hex digits of sha256(token), or "" for no token."""
    if not token:
        return ""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def render(prompt, width, height):
    """The image for prompt, as an RGB array of height x width x 3."""
    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    first = np.array(list(h[0:3]), dtype=np.float64)
    second = np.array(list(h[3:6]), dtype=np.float64)
    a = h[6] % 7 + 1
    b = h[7] % 7 + 1
    xs = np.arange(width)[np.newaxis, :]
    ys = np.arange(height)[:, np.newaxis]
    t = ((a * xs + b * ys) % 64 / 63.0)[:, :, np.newaxis]
    mixed = first * (1 - t) + second * t
    # The exact value is never halfway between two integers, so the
    # rounding rule does not matter.
    return np.rint(mixed).astype(np.uint8)


def whole_number(value, low, high, name):
    """value as an int in [low, high], or ValueError."""
    if value is None or int(value) != value or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}")
    return int(value)


def check_text(value):
    """value if it is a string, or ValueError."""
    if not isinstance(value, str):
        raise ValueError("prompt must be a string")
    return value


def quota_error(steps, left):
    wait = datetime.timedelta(seconds=(steps - left) * 10)
    return gr.Error(
        f"You have exceeded your free ZeroGPU quota ({steps}s requested vs. "
        f"{left}s left). Try again in {wait}.",
        title="ZeroGPU quota exceeded",
    )


def check_prompt(prompt):
    if prompt.startswith("raise:"):
        text = prompt[len("raise:") :]
        raise gr.Error(f"Cannot draw <b>{text}</b>", title="Bad prompt")
    if prompt.startswith("crash:"):
        raise ValueError(prompt[len("crash:") :])


async def generate(prompt, steps, width, height, request: gr.Request, progress=gr.Progress()):
    prompt = check_text(prompt)
    steps = whole_number(steps, 1, MAX_STEPS, "steps")
    width = whole_number(width, 1, MAX_SIDE, "width")
    height = whole_number(height, 1, MAX_SIDE, "height")
    caller = Caller(request)
    journal.add("started", "/generate", prompt, caller)
    try:
        take_gpu(caller, steps, "/generate", prompt)
        check_prompt(prompt)
        gr.Info("Waiting for a GPU to become available", title="ZeroGPU queue")
        gr.Success("Successfully acquired a GPU", title="ZeroGPU queue")
        for i in range(steps):
            progress((i, steps), unit="steps")
            await asyncio.sleep(STEP_SECONDS)
    except asyncio.CancelledError:
        journal.add("cancelled", "/generate", prompt, caller)
        raise
    image = Image.fromarray(render(prompt, width, height))
    info = json.dumps(
        {"token": caller.token, "prompt": prompt, "steps": steps},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    journal.add("completed", "/generate", prompt, caller)
    return image, info


async def preview(prompt, steps, request: gr.Request, progress=gr.Progress()):
    prompt = check_text(prompt)
    steps = whole_number(steps, 1, MAX_STEPS, "steps")
    caller = Caller(request)
    journal.add("started", "/preview", prompt, caller)
    try:
        full = render(prompt, PREVIEW_SIZE, PREVIEW_SIZE)
        for i in range(1, steps + 1):
            progress((i - 1, steps), unit="steps")
            await asyncio.sleep(STEP_SECONDS)
            frame = full.copy()
            frame[PREVIEW_SIZE * i // steps :] = 0
            yield Image.fromarray(frame)
    except (asyncio.CancelledError, GeneratorExit):
        # CancelledError: /cancel while sleeping; GeneratorExit: Gradio
        # closed the generator between two steps.
        journal.add("cancelled", "/preview", prompt, caller)
        raise
    journal.add("completed", "/preview", prompt, caller)


def count(state):
    n = (state or 0) + 1
    return n, n


def whoami(request: gr.Request):
    return Caller(request).token


RESTYLE_STEPS = 4
RESTYLE_SECONDS = 4  # GPU seconds a /restyle asks of the quota
STYLES = ["invert", "grayscale", "tint"]
CHAT_WORDS_MAX = 50
MAX_NOTES = 100


def file_sha256(path):
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def restyled(pixels, style, strength, prompt):
    """pixels (H x W x 3, uint8) moved strength percent towards style."""
    p = pixels.astype(np.int64)
    if style == "invert":
        target = 255 - p
    elif style == "grayscale":
        y = (299 * p[:, :, 0] + 587 * p[:, :, 1] + 114 * p[:, :, 2] + 500) // 1000
        target = np.repeat(y[:, :, np.newaxis], 3, axis=2)
    else:  # tint: towards the prompt's colour A
        h = hashlib.sha256(prompt.encode("utf-8")).digest()
        target = np.broadcast_to(np.array(list(h[0:3]), dtype=np.int64), p.shape)
    mixed = (p * (100 - strength) + target * strength + 50) // 100
    return mixed.astype(np.uint8)


def check_style(style):
    if style not in STYLES:
        raise ValueError("style must be one of " + ", ".join(STYLES))
    return style


async def restyle(image, prompt, strength, style, request: gr.Request, progress=gr.Progress()):
    """Restyles an image: inverts it, makes it grayscale or tints it with the prompt's colour."""
    if image is None:
        raise gr.Error("Give an image to restyle.", title="No image")
    prompt = check_text(prompt)
    strength = whole_number(strength, 0, 100, "strength")
    style = check_style(style)
    caller = Caller(request)
    journal.add("started", "/restyle", prompt, caller)
    try:
        take_gpu(caller, RESTYLE_SECONDS, "/restyle", prompt)
        check_prompt(prompt)
        digest_hex = file_sha256(image)
        with Image.open(image) as im:
            if im.width > MAX_SIDE or im.height > MAX_SIDE:
                raise ValueError(f"the image must be at most {MAX_SIDE} x {MAX_SIDE}")
            pixels = np.asarray(im.convert("RGB"))
        for i in range(RESTYLE_STEPS):
            progress((i, RESTYLE_STEPS), unit="steps")
            await asyncio.sleep(STEP_SECONDS)
    except asyncio.CancelledError:
        journal.add("cancelled", "/restyle", prompt, caller)
        raise
    out = Image.fromarray(restyled(pixels, style, strength, prompt))
    info = json.dumps(
        {
            "sha256": digest_hex,
            "width": out.width,
            "height": out.height,
            "style": style,
            "strength": strength,
            "prompt": prompt,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    journal.add("completed", "/restyle", prompt, caller)
    return out, info


def text_of(content):
    """The text of a chat message's content: a string (Gradio 5) or a list
    of parts such as {"type": "text", "text": ...} (Gradio 6)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict)
        )
    return ""


def reply_words(text, limit):
    """The words of the echo reply to text, at most limit of them."""
    return (["You", "said:"] + text.split())[:limit]


def add_message(message, history):
    """Adds the user's message to the chat history, without queueing."""
    message = check_text(message)
    history = list(history or [])
    history.append({"role": "user", "content": message})
    return "", history


async def bot_reply(history, words):
    """Streams the echo of the last user message, one word at a time."""
    words = whole_number(words, 1, CHAT_WORDS_MAX, "words")
    history = list(history or [])
    last = ""
    for message in reversed(history):
        if message.get("role") == "user":
            last = text_of(message.get("content"))
            break
    reply = ""
    for word in reply_words(last, words):
        await asyncio.sleep(STEP_SECONDS)
        reply = word if not reply else reply + " " + word
        yield history + [{"role": "assistant", "content": reply}]


async def chat(message, history):
    """Echoes the message back, one word at a time."""
    reply = ""
    for word in reply_words(text_of(message), CHAT_WORDS_MAX):
        await asyncio.sleep(STEP_SECONDS)
        reply = word if not reply else reply + " " + word
        yield reply


async def ticks(n):
    """Counts n ticks, one per step."""
    n = whole_number(n, 1, MAX_STEPS, "n")
    for i in range(1, n + 1):
        await asyncio.sleep(STEP_SECONDS)
        yield f"tick {i} of {n}"


def reset_count():
    """Sets the count back to zero."""
    return 0


def checksums(files):
    """The report of the file endpoints: how many files came, and what of
    each (its sha256, and more for a gallery's items)."""
    return json.dumps(
        {"count": len(files), "files": files}, separators=(",", ":"), ensure_ascii=False
    )


def gallery_sums(gallery):
    """A gallery: the kind, sha256 and caption of each item."""
    files = []
    for media, caption in gallery or []:
        # type="pil": an image item comes as a PIL image, opened (lazily)
        # from the uploaded file itself, a video item as its path; so the
        # kind tells which object the item came in.
        if isinstance(media, Image.Image):
            with media:
                kind, path = "image", media.filename
        else:
            kind, path = "video", media
        files.append({"kind": kind, "sha256": file_sha256(path), "caption": caption})
    return checksums(files)


def file_sums(files):
    """Several files: the sha256 of each."""
    return checksums([{"sha256": file_sha256(f)} for f in files or []])


def audio_sum(audio):
    """An audio clip: its sha256."""
    return checksums([{"sha256": file_sha256(audio)}] if audio else [])


def video_sum(video):
    """A video: its sha256."""
    return checksums([{"sha256": file_sha256(video)}] if video else [])


def build():
    """The Gradio app of SPEC.md."""
    with gr.Blocks(title="spacerelay test Space", analytics_enabled=False) as demo:
        with gr.Tab("generate"):
            prompt = gr.Textbox(label="prompt")
            steps = gr.Number(label="steps", value=8, precision=0)
            width = gr.Number(label="width", value=128, precision=0)
            height = gr.Number(label="height", value=128, precision=0)
            run = gr.Button("generate")
            image = gr.Image(label="image", format="png", type="pil")
            info = gr.Textbox(label="info")
        with gr.Tab("preview"):
            preview_prompt = gr.Textbox(label="prompt")
            preview_steps = gr.Number(label="steps", value=4, precision=0)
            run_preview = gr.Button("preview")
            preview_image = gr.Image(label="image", format="png", type="pil")
        with gr.Tab("count"):
            state = gr.State()
            number = gr.Number(label="count", precision=0)
            run_count = gr.Button("count")
        with gr.Tab("whoami"):
            token = gr.Textbox(label="token")
            run_whoami = gr.Button("whoami")

        run.click(
            generate,
            [prompt, steps, width, height],
            [image, info],
            api_name="generate",
            concurrency_id=GPU_GROUP,
        )
        run_preview.click(
            preview,
            [preview_prompt, preview_steps],
            [preview_image],
            api_name="preview",
            concurrency_id=GPU_GROUP,
        )
        run_count.click(
            count, [state], [number, state], api_name="count", concurrency_id=GPU_GROUP
        )
        run_whoami.click(whoami, None, [token], api_name="whoami", concurrency_id=GPU_GROUP)
        # Everything below came after the four endpoints above, so their
        # fn_index and component ids stay as they were.
        with gr.Tab("reset count"):
            run_reset = gr.Button("reset count")
        run_reset.click(reset_count, None, [state], api_name="reset_count")
        build_restyle()
        build_chat()
        build_ticks()
        build_files()
    demo.queue(default_concurrency_limit=1)
    return demo


def build_restyle():
    with gr.Tab("restyle"):
        # image_mode=None: the app gets the uploaded file itself, never a
        # converted copy (with "RGB", Gradio re-encodes non-RGB images).
        source = gr.Image(label="image", type="filepath", image_mode=None, sources=["upload"])
        prompt = gr.Textbox(label="prompt", info="raise:<text> and crash:<text> fail")
        strength = gr.Slider(
            0, 100, value=50, step=1, label="strength", info="how far to go, in percent"
        )
        # The defaults show a person a change they can see, and the
        # prompt's part in it (invert at 50% would be a flat grey).
        style = gr.Dropdown(STYLES, value="tint", label="style", info="what to do to the image")
        run = gr.Button("restyle")
        result = gr.Image(label="restyled", format="png", type="pil")
        info = gr.Textbox(label="info")
    run.click(
        restyle,
        [source, prompt, strength, style],
        [result, info],
        api_name="restyle",
        concurrency_id=GPU_GROUP,
    )


def build_chat():
    messages = {} if GRADIO_MAJOR >= 6 else {"type": "messages"}
    with gr.Tab("chat"):
        history = gr.Chatbot(label="history", allow_tags=True, **messages)
        message = gr.Textbox(label="message")
        words = gr.Number(label="words", value=8, precision=0, minimum=1, maximum=CHAT_WORDS_MAX)
    message.submit(
        add_message, [message, history], [message, history], api_name="add_message", queue=False
    ).then(bot_reply, [history, words], [history], api_name="bot_reply")
    with gr.Tab("chat interface"):
        gr.ChatInterface(chat, **messages)


def build_ticks():
    with gr.Tab("ticks"):
        n = gr.Number(label="n", value=3, precision=0)
        tick = gr.Textbox(label="tick")
        run = gr.Button("ticks")
    run.click(ticks, [n], [tick], api_name="ticks")


def build_files():
    # Each input hands the app the uploaded files themselves, never a
    # converted copy: no format, and a Video takes only uploads (a webcam's
    # is mirrored) with their sound, so Gradio runs no ffmpeg on them.
    with gr.Tab("gallery"):
        gallery = gr.Gallery(label="gallery", type="pil")
        gallery_out = gr.Textbox(label="checksums")
        run_gallery = gr.Button("gallery")
    run_gallery.click(gallery_sums, [gallery], [gallery_out], api_name="gallery")
    with gr.Tab("files"):
        files = gr.File(label="files", file_count="multiple", type="filepath")
        files_out = gr.Textbox(label="checksums")
        run_files = gr.Button("files")
    run_files.click(file_sums, [files], [files_out], api_name="files")
    with gr.Tab("audio"):
        audio = gr.Audio(label="audio", type="filepath", sources=["upload"])
        audio_out = gr.Textbox(label="checksums")
        run_audio = gr.Button("audio")
    run_audio.click(audio_sum, [audio], [audio_out], api_name="audio")
    with gr.Tab("video"):
        video = gr.Video(label="video", sources=["upload"], include_audio=True)
        video_out = gr.Textbox(label="checksums")
        run_video = gr.Button("video")
    run_video.click(video_sum, [video], [video_out], api_name="video")


def create_app():
    """The FastAPI app: the journal routes, and the Gradio app at "/"."""
    app = fastapi.FastAPI()

    @app.get("/fixture/journal")
    def get_journal():
        return journal.entries()

    @app.delete("/fixture/journal", status_code=204)
    def clear_journal():
        journal.clear()

    return gr.mount_gradio_app(app, build(), path="/", show_error=False, ssr_mode=False)


def watch_stdin():
    """Shuts the server down when stdin closes, e.g. when the parent dies."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("FIXTURE_PORT") or 7860),
        help="port to listen on at 127.0.0.1 (default: $FIXTURE_PORT or 7860)",
    )
    parser.add_argument(
        "--fd",
        type=int,
        help="serve on this already listening socket instead of --port",
    )
    parser.add_argument(
        "--watch-stdin",
        action="store_true",
        help="shut down when stdin reaches end of file",
    )
    args = parser.parse_args()
    config = uvicorn.Config(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    sockets = None
    if args.fd is not None:
        sockets = [socket.socket(fileno=args.fd)]
    if args.watch_stdin:
        threading.Thread(target=watch_stdin, daemon=True).start()
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
