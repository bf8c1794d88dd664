"""The drawing page: `classify_drawing` on strokes drawn with Pillow, the HTTP server (the page, good and bad
requests, the server serving on after each), experiments/draw.py (bad flags, Ctrl+C), and the page itself in a
headless Chromium driven by Selenium (skipped, saying how to install them, when they are absent).

Waits are on conditions (an answer, a line of output, the page no longer busy), each with a generous timeout
that only guards against a hang.
"""

import http.client
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import REPO, run_in_process
from PIL import Image, ImageDraw

import jaxmlp
from jaxmlp import checkpoint, digits, draw

DRAW_SCRIPT = REPO / "experiments" / "draw.py"
TIMEOUT = 60  # seconds; a guard against hangs, never a synchronisation
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = 'apt install chromium chromium-driver and pip install selenium, or pip install -e ".[test]"'


# --------------------------------------------------------------------------- drawings


def ellipse(points=24, width=130, height=190):
    """A closed loop (a zero): `points` + 1 integer offsets from the pad's centre in pixels, the last the first."""
    angles = [2 * math.pi * i / points for i in range(points)]  # clockwise from the top
    loop = [(round(width / 2 * math.sin(angle)), round(-height / 2 * math.cos(angle))) for angle in angles]
    return [*loop, loop[0]]


VERTICAL = [(0, y) for y in range(-90, 91, 18)]  # a one: offsets from the pad's centre, top to bottom
LOOP = ellipse()


def drawing_png(stroke=(), size=(draw.PAD_SIDE, draw.PAD_SIDE)) -> bytes:
    """A white page of `size` with `stroke` (offsets from its centre) drawn as the page draws: black, 20 px, round."""
    page = Image.new("RGB", size, "white")
    centre_x, centre_y = size[0] / 2, size[1] / 2
    points = [(centre_x + x, centre_y + y) for x, y in stroke]
    if points:
        ImageDraw.Draw(page).line(points, fill="black", width=20, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            ImageDraw.Draw(page).ellipse([x - 10, y - 10, x + 10, y + 10], fill="black")
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


ONE = drawing_png(VERTICAL)


@pytest.fixture(scope="module")
def small_classifier():
    """A random 784-16-10 network: for the requests refused before the network is asked, and the script."""
    return jaxmlp.init_mlp(jax.random.key(0), (784, 16, 10))


# --------------------------------------------------------------------------- classify_drawing


@pytest.mark.parametrize("stroke, expected", [(VERTICAL, 1), (LOOP, 0)], ids=["one", "zero"])
def test_classify_drawing_reads_the_digit(seed_network, stroke, expected):
    body = drawing_png(stroke)
    answer = draw.classify_drawing(seed_network, body)

    assert answer["class"] == expected
    assert len(answer["probabilities"]) == 10 and np.isclose(sum(answer["probabilities"]), 1, atol=1e-5)
    assert int(np.argmax(answer["probabilities"])) == expected
    # "image" is what the network saw: MNIST's preprocessing of the drawing, row-major, and its probabilities.
    seen = np.array(answer["image"])
    assert seen.shape == (784,) and 0 <= seen.min() <= seen.max() <= 255
    assert all(type(value) is int for value in answer["image"])
    np.testing.assert_array_equal(seen, digits.mnist_style(digits.decode_image(body, "drawing")).ravel())
    np.testing.assert_allclose(answer["probabilities"], jaxmlp.predict(seed_network, seen[None].astype(np.uint8))[0])
    json.dumps(answer)  # plain Python values, ready for JSON


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "the body is empty: POST the drawing as a PNG"),
        (b"hello", "drawing: not an image ("),
        (drawing_png(VERTICAL, size=(100, 120)), "drawing must be 280x280 pixels (the pad); got 100x120"),
        (drawing_png(VERTICAL, size=(281, 280)), "drawing must be 280x280 pixels (the pad); got 281x280"),
        (drawing_png(), "drawing: image is one colour"),
    ],
    ids=["empty", "not an image", "small", "one pixel wider", "blank"],
)
def test_classify_drawing_refuses_with_one_line(small_classifier, body, reason):
    with pytest.raises(draw.BadDrawing) as refused:
        draw.classify_drawing(small_classifier, body)
    assert isinstance(refused.value, ValueError)
    assert str(refused.value).startswith(reason) and "\n" not in str(refused.value)


def png_header(width, height) -> bytes:
    """A small PNG file that declares a large grey image: its header, and the first of its pixel data only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlacing
    first_row = zlib.compress(bytes(1 + width))  # filter byte and one row of black
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", first_row) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "side, reason",
    [
        (5000, "drawing must be 280x280 pixels (the pad); got 5000x5000"),
        (20000, "drawing must be 280x280 pixels (the pad); Image size (400000000 pixels) exceeds limit"),
    ],
)
def test_classify_drawing_refuses_a_large_image_from_its_header(small_classifier, side, reason):
    """Not decoded: 5000x5000 grey would take 25 MB, and Pillow refuses to open 20000x20000 at all."""
    with pytest.raises(draw.BadDrawing, match=re.escape(reason)):
        draw.classify_drawing(small_classifier, png_header(side, side))


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(seed_network):
    """The drawing server for the seed network on a free port of 127.0.0.1, serving in a background thread."""
    server = draw.make_server(seed_network, port=0)
    thread = threading.Thread(target=server.serve_forever, name="draw-server", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


def send(server, method, path, body=None, headers=None):
    """One request, headers exactly as given (no Content-Length unless given): (status, content type, body)."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=TIMEOUT)
    try:
        connection.putrequest(method, path)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def post_drawing(server, body, path="/predict"):
    return send(server, "POST", path, body, {"Content-Type": "image/png", "Content-Length": str(len(body))})


def assert_one_line(content_type, body) -> str:
    assert content_type == "text/plain; charset=utf-8"
    text = body.decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1 and text.strip(), text
    return text.strip()


def assert_still_serving(server):
    status, content_type, body = post_drawing(server, ONE)
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["class"] == 1


def test_page_is_served_self_contained(server):
    status, content_type, body = send(server, "GET", "/")
    page = body.decode("utf-8")

    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert page == draw.page()
    for element in ["pad", "prediction", "clear", "seen", *(f"prob-{digit}" for digit in range(10))]:
        assert f'id="{element}"' in page
    assert f'<canvas id="pad" width="{draw.PAD_SIDE}" height="{draw.PAD_SIDE}"' in page
    # Nothing from the internet: no absolute or protocol-relative address anywhere, no src or href leaving the page.
    assert "http://" not in page and "https://" not in page
    assert re.findall(r"""\b(?:src|href)\s*=\s*["']?\s*(?!data:)[^"'\s>]*//""", page) == []
    assert re.findall(r"""<(?:script|link)[^>]*\bsrc\s*=""", page) == []


def test_page_is_also_served_with_a_query_and_forbids_other_sources(server):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=TIMEOUT)
    connection.request("GET", "/?from=bookmark")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    assert response.getheader("Content-Security-Policy").startswith("default-src 'none';")


def test_predict_answers_json(server):
    status, content_type, body = post_drawing(server, ONE)

    assert (status, content_type) == (200, "application/json")
    answer = json.loads(body)
    assert answer["class"] == 1 and len(answer["probabilities"]) == 10 and len(answer["image"]) == 784
    assert answer == draw.classify_drawing(server.params, ONE)


BAD_REQUESTS = {
    "no Content-Length": ({}, b"", "Content-Length must be the body's size in bytes; it is missing"),
    "Content-Length not a number": ({"Content-Length": "many"}, b"", "Content-Length must be the body's size"),
    "negative Content-Length": ({"Content-Length": "-3"}, b"", "Content-Length must be the body's size"),
    # Only the headers are sent: an answer at all shows the server did not wait to read the body.
    "body too large": (
        {"Content-Length": str(draw.MAX_BODY_BYTES + 1)},
        b"",
        f"body of {draw.MAX_BODY_BYTES + 1} bytes is too large; a drawing is at most {draw.MAX_BODY_BYTES} bytes",
    ),
    "empty body": ({"Content-Length": "0"}, b"", "the body is empty"),
    "not an image": ({"Content-Length": "5"}, b"hello", "drawing: not an image ("),
    "wrong size": (
        None,
        drawing_png(VERTICAL, size=(140, 140)),
        "drawing must be 280x280 pixels (the pad); got 140x140",
    ),
    "blank drawing": (None, drawing_png(), "drawing: image is one colour"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_400_with_one_line_and_the_server_serves_on(server, case):
    headers, body, reason = BAD_REQUESTS[case]
    if headers is None:
        headers = {"Content-Type": "image/png", "Content-Length": str(len(body))}

    status, content_type, answer = send(server, "POST", "/predict", body, headers)

    assert status == 400
    assert assert_one_line(content_type, answer).startswith(reason)
    assert_still_serving(server)


@pytest.mark.parametrize("method, path", [("GET", "/predict"), ("GET", "/draw.html"), ("POST", "/"), ("POST", "/x")])
def test_unknown_path_is_404_with_one_line(server, method, path):
    status, content_type, answer = post_drawing(server, ONE, path) if method == "POST" else send(server, "GET", path)
    assert status == 404
    assert path in assert_one_line(content_type, answer)
    assert_still_serving(server)


def test_unexpected_error_is_500_with_one_line_and_the_server_serves_on(server):
    params = server.params
    server.params = jaxmlp.init_mlp(jax.random.key(0), (5, 10))  # a network that cannot take a 784-pixel image
    try:
        status, content_type, answer = post_drawing(server, ONE)
    finally:
        server.params = params
    assert status == 500
    assert assert_one_line(content_type, answer).startswith("internal error: ValueError: ")
    assert_still_serving(server)


def test_only_errors_are_logged_one_line_each(server, capsys):
    capsys.readouterr()
    assert_still_serving(server)
    send(server, "GET", "/")
    assert capsys.readouterr().err == ""  # the log line is written before the answer is sent

    post_drawing(server, b"hello")
    send(server, "GET", "/nowhere")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert '"POST /predict HTTP/1.1" 400 drawing: not an image' in lines[0]
    assert '"GET /nowhere HTTP/1.1" 404 no page at /nowhere' in lines[1]


# --------------------------------------------------------------------------- the script


@pytest.fixture
def params_file(tmp_path, small_classifier):
    return checkpoint.save_pytree(tmp_path / "params.npz", small_classifier)


@pytest.mark.parametrize("kind", ["missing", "not an npz", "another network"])
def test_script_refuses_bad_params_in_one_line(tmp_path, capsys, kind):
    path = tmp_path / "params.npz"
    if kind == "not an npz":
        path.write_text("not numpy")
    elif kind == "another network":
        checkpoint.save_pytree(path, jaxmlp.init_mlp(jax.random.key(0), (784, 8, 3)))

    code, out, err = run_in_process(DRAW_SCRIPT, ["--params", str(path)], capsys)

    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}") and err.count("\n") == 1, err


@pytest.mark.parametrize("port", ["65536", "-1", "eighty"])
def test_script_refuses_a_bad_port_in_one_line(params_file, capsys, port):
    code, out, err = run_in_process(DRAW_SCRIPT, ["--params", str(params_file), "--port", port], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: argument --port: ") and err.count("\n") == 1, err


def test_script_reports_a_port_in_use_in_one_line(params_file, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_in_process(DRAW_SCRIPT, ["--params", str(params_file), "--port", str(port)], capsys)

    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}: ") and err.count("\n") == 1, err
    assert "choose another --port" in err


def test_script_serves_the_page_until_ctrl_c(params_file):
    """Start the script on a free port, read its one line, fetch the page, press Ctrl+C (SIGINT): `stopped`, 0."""
    script = subprocess.Popen(
        [sys.executable, str(DRAW_SCRIPT), "--params", str(params_file), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = queue.Queue()  # stdout's lines, read in a thread so that the wait for the first one has a timeout
        threading.Thread(target=lambda: [lines.put(line) for line in script.stdout], daemon=True).start()
        first = lines.get(timeout=TIMEOUT)
        serving = re.fullmatch(r"serving the drawing pad at http://127\.0\.0\.1:(\d+)/ \(Ctrl\+C to stop\)\n", first)
        assert serving, first

        connection = http.client.HTTPConnection("127.0.0.1", int(serving[1]), timeout=TIMEOUT)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200 and 'id="pad"' in response.read().decode()
        connection.close()

        script.send_signal(signal.SIGINT)
        code = script.wait(timeout=TIMEOUT)
    finally:
        script.kill()  # nothing, when it has exited
        script.wait(timeout=TIMEOUT)
    assert code == 0
    assert lines.get(timeout=TIMEOUT) == "stopped\n"
    errors = script.stderr.read()
    assert "Traceback" not in errors and "GET" not in errors, errors


# --------------------------------------------------------------------------- the page in a browser


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """Headless Chromium through chromedriver, both at fixed paths (Selenium Manager never looks online)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is not installed; {INSTALL}")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found; {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--window-size=900,640",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]:
        options.add_argument(argument)
    for proxy in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]:
        monkeypatch.delenv(proxy, raising=False)  # Selenium talks to chromedriver on 127.0.0.1 directly
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: script errors, CSP violations
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def draw_on(driver, element, points):
    """Press the mouse at points[0] (offsets from the element's centre), move through the others, release."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver, duration=10)  # ms per move
    actions.move_to_element_with_offset(element, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def answer_shown(driver) -> dict:
    """Once the page is no longer busy (every stroke answered), what it shows: prediction, prob texts, status."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def idle(driver):
        return driver.find_element(By.ID, "results").get_attribute("aria-busy") == "false"

    WebDriverWait(driver, TIMEOUT).until(idle)
    return shown(driver)


def shown(driver) -> dict:
    from selenium.webdriver.common.by import By

    seen_ink = driver.execute_script(
        "const seen = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data;"
        "return seen.filter((value, i) => i % 4 !== 3 && value > 0).length;"
    )
    return {
        "prediction": driver.find_element(By.ID, "prediction").text,
        "probabilities": [driver.find_element(By.ID, f"prob-{digit}").text for digit in range(10)],
        "winners": [row.get_attribute("id") for row in driver.find_elements(By.CSS_SELECTOR, "li.winner")],
        "status": driver.find_element(By.ID, "status").text,
        "seen_ink": seen_ink,
    }


def test_browser_draws_a_one_clears_and_draws_a_zero(server, browser, tmp_path):
    """Draw on the page in headless Chromium as a user would, and read the answers it shows.

    With JAXMLP_SCREENSHOT=path, the screenshot after the zero is also saved there; docs/draw.png is made so:
    JAXMLP_SCREENSHOT=docs/draw.png python -m pytest tests/test_draw.py -k browser
    """
    from selenium.webdriver.common.by import By

    host, port = server.server_address[:2]
    browser.get(f"http://{host}:{port}/")
    pad = browser.find_element(By.ID, "pad")
    blank = shown(browser)
    assert blank["prediction"] in ("", "–") and blank["seen_ink"] == 0 and blank["winners"] == []

    draw_on(browser, pad, VERTICAL)
    one = answer_shown(browser)
    assert one["prediction"] == "1" and one["winners"] == ["row-1"] and one["status"] == ""
    assert one["seen_ink"] > 0

    browser.find_element(By.ID, "clear").click()
    assert shown(browser) == blank  # prediction, bars and the seen image reset, without asking the server

    draw_on(browser, pad, LOOP)
    zero = answer_shown(browser)
    assert zero["prediction"] == "0" and zero["winners"] == ["row-0"] and zero["status"] == ""
    probabilities = [float(text) for text in zero["probabilities"]]
    assert all(re.fullmatch(r"[01]\.\d{3}", text) for text in zero["probabilities"])
    assert abs(sum(probabilities) - 1) <= 0.01 and max(probabilities) == probabilities[0]

    screenshot = tmp_path / "draw.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG" and picture.size[0] > 0
    if os.environ.get("JAXMLP_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["JAXMLP_SCREENSHOT"])
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []  # no script error, nothing blocked by the page's Content-Security-Policy
