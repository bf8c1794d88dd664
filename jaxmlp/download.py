"""Verified downloads: public mirrors tried in turn, SHA-256 checked, nothing half-written kept.

A file is streamed to a temporary name beside its destination while its hash is
computed, and renamed to the final name only when the hash matches the published
one, so an interrupted or corrupted download never leaves a file that looks
complete. `fetch` is what `jaxmlp.data.load_dataset` calls when it finds no local
files; tests point `REMOTES` at a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from jaxmlp import files


class Remote(NamedTuple):
    mirrors: tuple[str, ...]  # base URLs, tried in order; a file's URL is base + its name
    sha256: dict[str, str]  # file name -> published SHA-256 of its bytes


# Checksums: TFDS url_checksums (mnist.txt, fashion_mnist.txt); the same files torchvision lists by MD5.
REMOTES = {
    "mnist": Remote(
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion_mnist": Remote(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
    ),
}


class DownloadError(OSError):
    """No mirror gave a file with the expected checksum."""


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, folder, *, progress=True) -> Path:
    """Download every file of dataset `name` into `folder`, skipping those already verified."""
    remote = REMOTES[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, sha256 in remote.sha256.items():
        destination = folder / file_name
        if destination.is_file() and sha256_of(destination) == sha256:
            continue
        download([base + file_name for base in remote.mirrors], destination, sha256, progress=progress)
    return folder


def download(urls, destination, sha256: str, *, progress=True, timeout=30.0, attempts=2, retry_wait=1.0) -> Path:
    """Fetch the first URL that yields bytes with this SHA-256 and rename them to `destination`.

    Each URL is tried `attempts` times, `retry_wait` seconds apart. Progress goes to
    stderr when `progress` is true. Raises DownloadError listing every failure.
    """
    destination = Path(destination)
    failures = []
    for url in urls:
        for attempt in range(attempts):
            if attempt:
                time.sleep(retry_wait)
            try:
                _download_once(url, destination, sha256, progress, timeout)
                return destination
            except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, timeouts: OSError
                failures.append(f"{url}: {err}")
    raise DownloadError("; ".join(failures) or "no URL to try")


def _download_once(url: str, destination: Path, sha256: str, progress: bool, timeout: float) -> None:
    """Stream `url` into `destination` through `files.atomic_write`: renamed into place only once verified."""

    def stream(out) -> None:
        digest, received = hashlib.sha256(), 0
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while block := response.read(1 << 16):
                out.write(block)
                digest.update(block)
                received += len(block)
                if progress:
                    _show_progress(destination.name, received, total)
        if progress:
            print(file=sys.stderr)
        if total and received != total:
            raise ValueError(f"truncated: got {received} of {total} bytes")
        if digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch: sha256 {digest.hexdigest()}, expected {sha256}")

    files.atomic_write(destination, stream)


def _show_progress(name: str, received: int, total: int) -> None:
    done = (
        f"{received / 1e6:.1f}/{total / 1e6:.1f} MB {100 * received / total:3.0f}%"
        if total
        else f"{received / 1e6:.1f} MB"
    )
    print(f"\rdownloading {name}: {done}", end="", file=sys.stderr, flush=True)
