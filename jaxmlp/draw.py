"""Draw a digit, watch the network answer: a local web page and the one endpoint it talks to.

    server = make_server(params)                  # 127.0.0.1:8000; port=0 picks a free port
    server.serve_forever()                        # experiments/draw.py does this, Ctrl+C stops it

Two routes:

    GET  /          the page (draw.html, shipped in the package): a 280x280 pad, the ten
                    class probabilities as bars, and the 28x28 image the network sees
    POST /predict   body: the pad as a PNG (280x280) -> 200 JSON
                    {"class": 3, "probabilities": [10 floats], "image": [784 ints 0..255]}

The drawing goes through what experiments/predict.py does to an image file:
`digits.decode_image`, a size check, `digits.mnist_style` (MNIST's own preprocessing:
crop to the ink, 20-px box, centre of mass at the centre), then `jaxmlp.predict` on
one (1, 28, 28) uint8 image, so the compiled forward pass is reused for every drawing.
`classify_drawing` is that whole path as a pure function, testable without HTTP.

A bad request (no or bad Content-Length, a body over MAX_BODY_BYTES, which is refused
unread, bytes that are no image, an image that is not the pad's size, a blank drawing)
is answered 400 with one line of text/plain saying why; another path 404; anything
unexpected 500, one line. The server keeps serving after each. Successful requests are
not logged (the page posts while you draw); errors are logged one line each to stderr.

Why the standard library's `http.server.ThreadingHTTPServer` and not a web framework:
there is one page and one JSON endpoint, nothing a framework would add (routing,
templates, sessions), and no dependency to install. It binds 127.0.0.1 by default, so
the page is reachable from this computer only. Every response closes its connection
(HTTP/1.0), so no idle keep-alive connection holds a thread.
"""

from __future__ import annotations

import io
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

import numpy as np

from jaxmlp import digits, model, train

PAD_SIDE = 280  # the drawing pad, canvas pixels per side; the page's <canvas id="pad"> has this size
MAX_BODY_BYTES = 512 * 1024  # the pad's PNG is a few KiB; a larger body is refused before it is read
PAGE_SECURITY = (  # the page may load nothing from anywhere: inline script and style, answers from this server
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


class BadDrawing(ValueError):
    """The request's drawing cannot be classified; the message, one line, says why (the server answers 400)."""


def page() -> str:
    """The drawing page, draw.html as shipped in the package."""
    return resources.files("jaxmlp").joinpath("draw.html").read_text(encoding="utf-8")


def classify_drawing(params: model.Params, body: bytes) -> dict:
    """The network's answer to one drawing: {"class": int, "probabilities": [10 floats], "image": [784 ints]}.

    `body`: the encoded pad, a PNG of PAD_SIDE x PAD_SIDE pixels (any image Pillow reads, any mode).
    "image" is the (28, 28) uint8 MNIST-style image the network sees, row-major, 0..255, white on black.
    BadDrawing (a ValueError) with a one-line reason when the body is empty, not an image, not the
    pad's size, or blank (one colour).
    """
    if not body:
        raise BadDrawing("the body is empty: POST the drawing as a PNG")
    declared = _declared_size(body)  # from the header: a small file may declare a huge image
    if declared is not None:
        check_pad_size(*declared)
    try:
        pixels = digits.decode_image(body, "drawing")  # (H, W), (H, W, 3) or (H, W, 4)
    except ValueError as err:
        raise BadDrawing(_one_line(err)) from None
    check_pad_size(pixels.shape[1], pixels.shape[0])
    try:
        image = digits.mnist_style(pixels)  # (28, 28) uint8
    except ValueError as err:
        raise BadDrawing(f"drawing: {_one_line(err)}") from None
    probabilities = train.predict(params, image[None])[0]  # (10,); always (1, 28, 28): one compilation
    return {
        "class": int(np.argmax(probabilities)),
        "probabilities": [float(p) for p in probabilities],
        "image": image.ravel().tolist(),
    }


def check_pad_size(width: int, height: int) -> None:
    """BadDrawing unless the drawing is PAD_SIDE x PAD_SIDE pixels."""
    if (width, height) != (PAD_SIDE, PAD_SIDE):
        raise BadDrawing(f"drawing must be {PAD_SIDE}x{PAD_SIDE} pixels (the pad); got {width}x{height}")


def _declared_size(body: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header, without decoding its pixels; None if Pillow cannot read it.

    BadDrawing for an image so large that Pillow refuses to open it (a decompression bomb).
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as picture:
            return picture.size
    except Image.DecompressionBombError as err:
        raise BadDrawing(f"drawing must be {PAD_SIDE}x{PAD_SIDE} pixels (the pad); {_one_line(err)}") from None
    except Exception:  # decode_image says why, in its own words
        return None


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def make_server(params: model.Params, host: str = "127.0.0.1", port: int = 8000) -> DrawingServer:
    """A server of the page and /predict for `params` (a 784-input, 10-class MLP), bound but not yet serving.

    port=0 picks a free port; `server.server_address` is the (host, port) bound. Call
    `serve_forever()` (in a thread, or the main one), then `shutdown()` from another
    thread and `server_close()`. OSError when the address cannot be bound (in use, no such host).
    """
    return DrawingServer((host, port), DrawingHandler, params)


class DrawingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the network and the page; one daemon thread per request."""

    allow_reuse_port = False  # a port another server holds is an error, never shared (some Pythons set it)

    def __init__(self, address, handler, params: model.Params):
        self.params = params
        self.page_bytes = page().encode("utf-8")
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        """One line on stderr instead of socketserver's traceback (a client that left before its answer)."""
        error = sys.exc_info()[1]
        sys.stderr.write(f"{client_address[0]} connection failed: {type(error).__name__}: {error}\n")


class DrawingHandler(BaseHTTPRequestHandler):
    """GET / -> the page; POST /predict -> the network's answer as JSON; 400 / 404 / 500 one line of text."""

    server: DrawingServer
    server_version = "jaxmlp-draw"

    def do_GET(self):
        if urlsplit(self.path).path == "/":
            self._reply(HTTPStatus.OK, self.server.page_bytes, "text/html; charset=utf-8")
        else:
            self._reply_error(HTTPStatus.NOT_FOUND, f"no page at {self.path}; the drawing pad is at /")

    def do_POST(self):
        if urlsplit(self.path).path != "/predict":
            self.close_connection = True  # the body, if any, is not read
            self._reply_error(HTTPStatus.NOT_FOUND, f"nothing to POST to at {self.path}; drawings go to /predict")
            return
        try:
            body = self._read_body()
            answer = classify_drawing(self.server.params, body)
        except BadDrawing as err:
            self._reply_error(HTTPStatus.BAD_REQUEST, str(err))
        except Exception as err:  # a bug must not stop the server: 500, logged, on to the next request
            self._reply_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(err).__name__}: {err}")
        else:
            self._reply(HTTPStatus.OK, json.dumps(answer).encode("utf-8"), "application/json")

    def _read_body(self) -> bytes:
        """The request's body, exactly Content-Length bytes; BadDrawing (and nothing read) when it is
        missing, malformed or over MAX_BODY_BYTES."""
        declared = self.headers.get("Content-Length")
        if declared is None or not declared.strip().isdigit():
            self.close_connection = True  # a body may follow that we cannot delimit
            shown = "missing" if declared is None else repr(declared)
            raise BadDrawing(f"Content-Length must be the body's size in bytes; it is {shown}")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # answered without reading it: the connection cannot be reused
            raise BadDrawing(f"body of {length} bytes is too large; a drawing is at most {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_SECURITY)
        self.end_headers()
        self.wfile.write(body)

    def _reply_error(self, status: HTTPStatus, reason: str) -> None:
        """One line of text/plain, `reason`, with this status; logged as one line."""
        reason = " ".join(reason.split())
        self.log_message('"%s" %d %s', self.requestline, status, reason)
        self._reply(status, (reason + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def log_request(self, code="-", size="-"):
        """Nothing: successful requests are not logged (the page posts while you draw); errors are, by `_reply_error`
        (ours) and `log_error` (http.server's own, such as a malformed request line)."""

    def log_message(self, format, *args):
        """One line on stderr: client, then the message."""
        sys.stderr.write(f"{self.address_string()} {format % args}\n")
