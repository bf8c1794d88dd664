"""jaxmlp.download against a real HTTP server on 127.0.0.1: checksums, truncation, mirrors, retries.

No test touches the network: every URL is on a ThreadingHTTPServer started here (port 0),
whose handler looks up a per-path behaviour and counts the requests it gets.
"""

import collections
import gzip
import hashlib
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from jaxmlp import data, download

BODY = bytes(range(256)) * 4  # 1024 bytes
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


# --------------------------------------------------------------------------- the server


class Server:
    """Per-path behaviours (`routes`), request counts (`hits`), and the base URL."""

    def __init__(self):
        self.routes = {}
        self.hits = collections.Counter()
        self.release = threading.Event()  # set at teardown: frees handlers still stalling
        self.url = None


def serve(body, *, length=None):
    """200 with `body`; `length` overrides the Content-Length header."""

    def behaviour(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        handler.wfile.write(body)

    return behaviour


def status(code):
    return lambda handler: handler.send_error(code)


def stall(server, seconds, then):
    """Say nothing for `seconds` (or until teardown), then behave as `then`."""

    def behaviour(handler):
        server.release.wait(seconds)
        then(handler)

    return behaviour


def fail_first(times, then):
    """Answer 500 to the first `times` requests, then behave as `then`."""
    count = [0]

    def behaviour(handler):
        count[0] += 1
        if count[0] <= times:
            handler.send_error(500, "flaky")
        else:
            then(handler)

    return behaviour


@pytest.fixture
def server(monkeypatch):
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)  # 127.0.0.1 must be reached directly
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.hits[self.path] += 1
            try:
                state.routes.get(self.path, status(404))(self)
            except ConnectionError:  # the client gave up (timeout tests)
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: bind a port, then close it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- download()


def test_good_file_is_written_with_no_temporary_left(server, tmp_path):
    server.routes["/file.gz"] = serve(BODY)
    destination = tmp_path / "file.gz"
    got = download.download(
        [server.url + "/file.gz"], destination, BODY_SHA256, progress=False, attempts=1, retry_wait=0
    )
    assert got == destination
    assert destination.read_bytes() == BODY
    assert files_in(tmp_path) == ["file.gz"]  # no *.part


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    corrupted = bytearray(BODY)
    corrupted[100] ^= 0xFF
    server.routes["/file.gz"] = serve(bytes(corrupted))
    with pytest.raises(
        download.DownloadError, match=r"/file\.gz: checksum mismatch: sha256 [0-9a-f]{64}, expected " + BODY_SHA256
    ):
        download.download(
            [server.url + "/file.gz"], tmp_path / "file.gz", BODY_SHA256, progress=False, attempts=1, retry_wait=0
        )
    assert files_in(tmp_path) == []


def test_truncated_response_keeps_nothing(server, tmp_path):
    # The bytes sent are the right ones (checksum matches), but fewer than Content-Length
    # announced before the connection closed: only the length check can catch it.
    server.routes["/file.gz"] = serve(BODY, length=len(BODY) + 100)
    with pytest.raises(download.DownloadError, match=r"truncated: got 1024 of 1124 bytes"):
        download.download(
            [server.url + "/file.gz"], tmp_path / "file.gz", BODY_SHA256, progress=False, attempts=1, retry_wait=0
        )
    assert files_in(tmp_path) == []


def test_404_on_first_mirror_falls_back_to_the_second(server, tmp_path):
    server.routes["/b/file.gz"] = serve(BODY)  # /a/file.gz: 404
    urls = [server.url + "/a/file.gz", server.url + "/b/file.gz"]
    download.download(urls, tmp_path / "file.gz", BODY_SHA256, progress=False, attempts=1, retry_wait=0)
    assert (tmp_path / "file.gz").read_bytes() == BODY
    assert server.hits == {"/a/file.gz": 1, "/b/file.gz": 1}
    assert files_in(tmp_path) == ["file.gz"]


def test_every_failure_is_listed_when_all_mirrors_fail(server, tmp_path):
    server.routes["/b/file.gz"] = serve(b"wrong bytes")
    urls = [server.url + "/a/file.gz", server.url + "/b/file.gz"]
    with pytest.raises(download.DownloadError) as info:
        download.download(urls, tmp_path / "file.gz", BODY_SHA256, progress=False, attempts=1, retry_wait=0)
    message = str(info.value)
    assert re.search(re.escape(urls[0]) + r": HTTP Error 404", message), message
    assert re.search(re.escape(urls[1]) + r": checksum mismatch", message), message
    assert files_in(tmp_path) == []


def test_slow_mirror_times_out_and_the_next_one_is_used(server, tmp_path):
    server.routes["/slow/file.gz"] = stall(server, 5, serve(BODY))
    server.routes["/fast/file.gz"] = serve(BODY)
    urls = [server.url + "/slow/file.gz", server.url + "/fast/file.gz"]
    start = time.monotonic()
    download.download(urls, tmp_path / "file.gz", BODY_SHA256, progress=False, timeout=0.5, attempts=1, retry_wait=0)
    assert time.monotonic() - start < 3  # gave up on the slow one after ~0.5 s, not 5 s
    assert (tmp_path / "file.gz").read_bytes() == BODY
    assert server.hits == {"/slow/file.gz": 1, "/fast/file.gz": 1}
    assert files_in(tmp_path) == ["file.gz"]


def test_slow_only_mirror_is_a_timeout_error(server, tmp_path):
    server.routes["/slow/file.gz"] = stall(server, 5, serve(BODY))
    with pytest.raises(download.DownloadError, match=r"/slow/file\.gz: .*timed out"):
        download.download(
            [server.url + "/slow/file.gz"],
            tmp_path / "file.gz",
            BODY_SHA256,
            progress=False,
            timeout=0.5,
            attempts=1,
            retry_wait=0,
        )
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("attempts, succeeds", [(1, False), (2, True)])
def test_a_failed_request_is_retried(server, tmp_path, attempts, succeeds):
    server.routes["/file.gz"] = fail_first(1, serve(BODY))
    call = lambda: download.download(  # noqa: E731
        [server.url + "/file.gz"], tmp_path / "file.gz", BODY_SHA256, progress=False, attempts=attempts, retry_wait=0
    )
    if succeeds:
        call()
        assert (tmp_path / "file.gz").read_bytes() == BODY
    else:
        with pytest.raises(download.DownloadError, match=r"HTTP Error 500"):
            call()
        assert not (tmp_path / "file.gz").exists()
    assert server.hits["/file.gz"] == attempts


def test_progress_goes_to_stderr_and_names_the_file(server, tmp_path, capsys):
    server.routes["/train-labels-idx1-ubyte.gz"] = serve(BODY)
    download.download(
        [server.url + "/train-labels-idx1-ubyte.gz"],
        tmp_path / "train-labels-idx1-ubyte.gz",
        BODY_SHA256,
        progress=True,
        attempts=1,
        retry_wait=0,
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "downloading train-labels-idx1-ubyte.gz: " in captured.err
    assert "100%" in captured.err
    assert captured.err.endswith("\n")


def test_no_progress_output_when_disabled(server, tmp_path, capsys):
    server.routes["/file.gz"] = serve(BODY)
    download.download(
        [server.url + "/file.gz"], tmp_path / "file.gz", BODY_SHA256, progress=False, attempts=1, retry_wait=0
    )
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- fetch() through load_dataset()

GZ_NAMES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def idx_bytes(array):
    array = np.asarray(array, np.uint8)
    magic = {3: 2051, 1: 2049}[array.ndim]
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


@pytest.fixture
def served_mnist(server, monkeypatch):
    """A tiny MNIST as four gzipped IDX files under /mnist/, with REMOTES["mnist"] pointing there."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": np.array([5, 0, 4, 1, 9, 2], np.uint8),
        "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "y_test": np.array([7, 2], np.uint8),
    }
    files = {GZ_NAMES[key]: gzip.compress(idx_bytes(array)) for key, array in arrays.items()}
    for name, content in files.items():
        server.routes["/mnist/" + name] = serve(content)
    sha256 = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    monkeypatch.setitem(download.REMOTES, "mnist", download.Remote(mirrors=(server.url + "/mnist/",), sha256=sha256))
    return arrays, files


def assert_loaded_equal(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"), (y_test, "y_test")):
        assert got.dtype == np.uint8, key
        np.testing.assert_array_equal(got, arrays[key], err_msg=key)


def test_load_dataset_downloads_once_then_reads_the_local_copy(server, served_mnist, tmp_path):
    arrays, files = served_mnist
    assert_loaded_equal(data.load_dataset("mnist", tmp_path), arrays)
    assert files_in(tmp_path / "mnist") == sorted(files)
    for name, content in files.items():
        assert (tmp_path / "mnist" / name).read_bytes() == content
    assert server.hits == {"/mnist/" + name: 1 for name in files}

    assert_loaded_equal(data.load_dataset("mnist", tmp_path), arrays)
    assert server.hits == {"/mnist/" + name: 1 for name in files}  # no second request


def test_fetch_replaces_a_bad_file_and_skips_verified_ones(server, served_mnist, tmp_path):
    _, files = served_mnist
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(files["train-images-idx3-ubyte.gz"])  # good
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"half a file")  # bad
    assert download.fetch("mnist", folder, progress=False) == folder
    for name, content in files.items():
        assert (folder / name).read_bytes() == content
    assert server.hits == {
        "/mnist/train-labels-idx1-ubyte.gz": 1,
        "/mnist/t10k-images-idx3-ubyte.gz": 1,
        "/mnist/t10k-labels-idx1-ubyte.gz": 1,
    }
    assert files_in(folder) == sorted(files)


def test_fetch_falls_back_past_an_unreachable_mirror(server, served_mnist, tmp_path, monkeypatch):
    arrays, files = served_mnist
    remote = download.REMOTES["mnist"]
    monkeypatch.setitem(download.REMOTES, "mnist", remote._replace(mirrors=(closed_port_url(),) + remote.mirrors))
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)  # fetch uses the default retry_wait
    assert_loaded_equal(data.load_dataset("mnist", tmp_path), arrays)
    assert files_in(tmp_path / "mnist") == sorted(files)


def test_offline_load_dataset_says_the_download_failed_and_how_to_supply_files(tmp_path, monkeypatch):
    dead = closed_port_url()
    monkeypatch.setitem(
        download.REMOTES,
        "mnist",
        download.Remote(mirrors=(dead,), sha256={name: "0" * 64 for name in GZ_NAMES.values()}),
    )
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert f"mnist not found in {tmp_path} and the download failed" in message
    assert dead + "train-images-idx3-ubyte.gz" in message  # which URL failed
    assert "mnist.npz" in message and "t10k-labels-idx1-ubyte" in message and "$JAXMLP_DATA" in message
    assert files_in(tmp_path / "mnist") == []  # no half-written files
