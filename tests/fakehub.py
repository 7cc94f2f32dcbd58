"""A loopback stand-in for the Hugging Face Hub's file endpoints, with fault injection (stdlib only).

It answers `HEAD`/`GET /{repo_id}/resolve/{revision}/{filename}` the way huggingface_hub expects: `X-Repo-Commit`,
`ETag` (for LFS files also `X-Linked-Etag` = sha256 and `X-Linked-Size`), `Content-Length`, `Range` requests, and
404s carrying the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound).

    with FakeHub() as hub:
        commit = hub.add_repo("owner/name", {"model.safetensors": data})
        hub.fault("owner/name", "model.safetensors", corrupt=True, times=1)
        hf_hub_download("owner/name", "model.safetensors", endpoint=hub.url, ...)

Run as a script to serve files to another process until killed:
    python tests/fakehub.py --repo owner/name=path/to/model.safetensors [--repo ...] --port-file F
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Fault:
    """What goes wrong when a file is requested; `times` None means every time."""

    corrupt: bool = False  # same length, different bytes (GET)
    truncate: bool = False  # send half the file as a complete answer, after the HEAD announced all of it (GET)
    drop_connection: bool = False  # send the headers and half the body, then drop the connection (GET)
    drop_mode: str = "reset"  # "reset": TCP RST (client read error); "close": orderly close (client may resume)
    status: int | None = None  # answer HEAD and GET with this status and no Hub error code
    delay: float = 0.0  # seconds to wait before answering HEAD and GET
    times: int | None = None

    def applies(self, method: str) -> bool:
        return self.status is not None or self.delay > 0 or method == "GET"


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0  # bytes of file content sent


@dataclass
class _Repo:
    branches: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    lfs: dict[str, bool] = field(default_factory=dict)  # filename -> served as an LFS file


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 serving in-memory repos; use as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._repos: dict[str, _Repo] = {}
        self._faults: dict[tuple[str, str], Fault] = {}
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> FakeHub:
        """Start serving in a background thread."""
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.hub = self
        # A short poll interval makes stop() quick: shutdown() waits for the serving loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="fakehub",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (clients then see the server as down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to pass as `endpoint`, e.g. http://127.0.0.1:40123."""
        assert self._server is not None, "FakeHub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -------------------------------------------------------------------------------------------- content
    def add_repo(self, repo_id: str, files: dict[str, bytes], branch: str = "main", lfs: bool = True) -> str:
        """Commit `files` as the new head of `branch` (creating the repo); returns the 40-hex commit sha.

        lfs: serve the files like LFS files (ETag = sha256 of the content) rather than like git files.
        """
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            digest = hashlib.sha1(f"{repo_id}\0{branch}\0{len(repo.commits)}".encode())
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
            commit = digest.hexdigest()
            repo.commits[commit] = dict(files)
            repo.branches[branch] = commit
            repo.lfs.update({name: lfs for name in files})
            return commit

    def replace_file(self, repo_id: str, commit: str, filename: str, data: bytes) -> None:
        """Change a file's content without a new commit (what a tampered mirror would do)."""
        with self._lock:
            self._repos[repo_id].commits[commit][filename] = data

    def fault(self, repo_id: str, filename: str, **fault: Any) -> None:
        """Make requests for one file fail; keywords are the fields of `Fault`. Replaces an earlier fault."""
        with self._lock:
            self._faults[(repo_id, filename)] = Fault(**fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    # -------------------------------------------------------------------------------------------- request log
    @property
    def requests(self) -> list[Request]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._log.clear()

    def body_downloads(self, filename: str | None = None) -> int:
        """How many GETs sent (part of) a file body, optionally only for paths ending in `filename`."""
        return sum(1 for r in self.requests
                   if r.method == "GET" and r.body_bytes > 0 and (filename is None or r.path.endswith(filename)))

    # -------------------------------------------------------------------------------------------- internals
    def _lookup(self, repo_id: str, revision: str, filename: str) -> tuple[int, dict[str, str], bytes | None]:
        """(status, headers, content) for a resolve request, before faults."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, None
            commit = revision if revision in repo.commits else repo.branches.get(revision)
            if commit is None:
                return 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, None
            data = repo.commits[commit].get(filename)
            if data is None:
                return 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                             "X-Repo-Commit": commit}, None
            headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
            if repo.lfs.get(filename, True):
                etag = hashlib.sha256(data).hexdigest()
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
            else:
                etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id
            headers["ETag"] = f'"{etag}"'
            return 200, headers, data

    def _take_fault(self, repo_id: str, filename: str, method: str) -> Fault | None:
        """The fault for this request, counting it down."""
        with self._lock:
            fault = self._faults.get((repo_id, filename))
            if fault is None or not fault.applies(method):
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[(repo_id, filename)]
            return fault

    def _record(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: FakeHub

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeouts, stop()) is expected here; anything else is a bug worth seeing."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, ValueError)):
            super().handle_error(request, client_address)

    def close_all(self) -> None:
        with self._open_lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real Hub
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        hub = self.server.hub
        entry = Request(self.command, self.path, dict(self.headers.items()))
        hub._record(entry)
        parsed = _parse_resolve(self.path)
        if parsed is None:
            entry.status = 404
            return self._send(404, {"Content-Type": "text/plain"}, b"not found", send_body)
        repo_id, revision, filename = parsed
        status, headers, data = hub._lookup(repo_id, revision, filename)
        fault = hub._take_fault(repo_id, filename, self.command) if data is not None else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            status, headers, data = fault.status, {}, None
        entry.status = status
        if data is None:
            body = json.dumps({"error": headers.get("X-Error-Message", "error")}).encode()
            return self._send(status, {**headers, "Content-Type": "application/json"}, body, send_body)
        self._send_file(entry, headers, data, fault if send_body else None, send_body)

    def _send_file(self, entry: Request, headers: dict[str, str], data: bytes, fault: Fault | None,
                   send_body: bool) -> None:
        total = len(data)
        start, end = _byte_range(self.headers.get("Range"), total)
        status = 206 if self.headers.get("Range") and start < total else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        entry.status = status
        if fault is not None and fault.corrupt:
            data = _corrupted(data)
        part = data[start:end]
        headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(len(part))})
        if fault is not None and fault.truncate:
            # A complete HTTP answer that is too short: the HEAD announced the full size.
            part = part[: len(part) // 2]
            headers["Content-Length"] = str(len(part))
        if fault is None or not fault.drop_connection:
            entry.body_bytes = len(part) if send_body else 0
            return self._send(status, headers, part, send_body)
        half = part[: len(part) // 2]
        self._send(status, headers, half, True)
        entry.body_bytes = len(half)
        self.close_connection = True
        if fault.drop_mode == "reset":
            # SO_LINGER 0 makes the close send a TCP reset instead of an orderly end of stream. The reader made
            # by makefile() keeps the socket open, so close it too for the reset to go out now.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()

    def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)
        self.wfile.flush()


def _parse_resolve(path: str) -> tuple[str, str, str] | None:
    """(repo_id, revision, filename) of '/{owner}/{name}/resolve/{revision}/{filename}', else None."""
    parts = urlsplit(path).path.split("/")
    if len(parts) < 6 or parts[0] != "" or parts[3] != "resolve":
        return None
    return f"{unquote(parts[1])}/{unquote(parts[2])}", unquote(parts[4]), unquote("/".join(parts[5:]))


def _byte_range(header: str | None, total: int) -> tuple[int, int]:
    """[start, end) of a 'bytes=a-b' or 'bytes=a-' Range header; the whole file otherwise."""
    if not header or not header.startswith("bytes="):
        return 0, total
    first, _, last = header[len("bytes="):].partition("-")
    start = min(int(first or 0), total)
    end = min(int(last) + 1, total) if last else total
    return start, max(start, end)


def _corrupted(data: bytes) -> bytes:
    """The same length with bytes flipped in the middle, past any header."""
    middle = len(data) // 2
    flipped = bytes(b ^ 0xFF for b in data[middle: middle + 64])
    return data[:middle] + flipped + data[middle + len(flipped):]


def make_tiny_weights(variant_or_config: Any, seed: int = 0) -> bytes:
    """Safetensors bytes with the official key names and shapes of a variant (or ModelConfig), random fp16 values.

    The values are finite and below 2 in magnitude; the shapes come from `helpers.weight_shapes`.
    """
    from helpers import weight_shapes

    shapes = weight_shapes(variant_or_config)
    header: dict[str, Any] = {}
    offset = 0
    for key, shape in shapes.items():
        size = 2
        for dim in shape:
            size *= dim
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    values = bytearray(random.Random(seed).randbytes(offset))
    # fp16 is little-endian: the odd bytes hold sign, exponent and 2 mantissa bits; clearing the exponent's
    # top bit keeps every value finite and below 2.
    values[1::2] = bytes(values[1::2]).translate(bytes(b & 0xBF for b in range(256)))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(values)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve files like the Hugging Face Hub on 127.0.0.1.")
    parser.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH",
                        help="serve the file at PATH as OWNER/NAME's file of the same name on branch main")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the server's URL to this file once it listens")
    args = parser.parse_args(argv)
    hub = FakeHub(args.port).start()
    for spec in args.repo:
        repo_id, _, path = spec.partition("=")
        commit = hub.add_repo(repo_id, {Path(path).name: Path(path).read_bytes()})
        print(f"{repo_id} {Path(path).name} commit {commit}", flush=True)
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(hub.url, encoding="utf-8")
        os.replace(tmp, args.port_file)
    print(f"serving on {hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
