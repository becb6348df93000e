"""Draw or upload an image: a local web page with live predictions from a run's exported models.

    GET  /                      the page (one self-contained HTML file, no CDN)
    GET  /report                the run's report.html
    GET  /api/variants          the run's variants (size, latency, test accuracy) and its data: "data" is
                                {"shape": [H, W, C], "class_names": [...], "digits": bool, "drawing": bool}
    POST /api/predict?variant=  body: a PNG/JPEG, the drawing pad's or an uploaded file
                                -> {"variant", "class", "name", "top": 3 x {"class", "name", "probability"},
                                    "input": the H x W x C image the model saw}

The page always offers an upload, and a drawing pad only where the models take grey images ("drawing").
Only the standard library serves it. Every image goes through the same
`inference.predict.classify` as `mnist-opt predict`. Errors are JSON with a 4xx
status, and the server stays up.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_opt import rundir, runio
from mnist_opt.errors import InputError, RunDirError

MAX_BODY = 1 << 20  # bytes: a 280x280 canvas PNG is about 10 KB, an image scaled for a 96x96 model far less
READ_TIMEOUT = 5.0  # seconds a connection may take to send its next bytes; a stalled one is closed
MAX_CONNECTIONS = 256  # open at once, each a thread; one more is answered 503 and closed
MAX_PIXELS = 2048 * 2048  # decoded size cap, checked from the header before decoding
PAGE = Path(__file__).with_name("assets") / "draw.html"


@dataclass
class Variant:
    name: str
    file: str
    model: object  # inference.model.Model
    prepare: object  # inference.predict.Preparation
    info: dict


def exported_runs(run_dir: Path) -> list[tuple[str, Path]]:
    """(name prefix, run directory) of each exported model set: the run's, or each budget's of a frontier run."""
    if rundir.is_frontier(run_dir):
        runs = [(f"{kb:g}kb/", sub) for kb, sub in rundir.frontier_dirs(run_dir)]
        if not runs:
            raise RunDirError(f"run directory {run_dir}: no size budget of this frontier run has a model "
                              "(frontier.json says why); run again with larger --budgets")
    else:
        runs = [("", run_dir)]
    for _, run in runs:
        rundir.require(run, (rundir.MANIFEST,), f"run `mnist-opt export {run}` first", what="no exported models")
    return runs


class RequestError(Exception):
    """A bad request: answered with `status` and a JSON message."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class App:
    """A run's exported models, loaded once; `classify` is safe to call from several threads."""

    def __init__(self, run_dir: str | Path, latency_runs: int = 200):
        from mnist_opt.inference.model import Model
        from mnist_opt.inference.predict import preparation

        self.run_dir = Path(run_dir)
        self.variants: dict[str, Variant] = {}
        self.budget_reports: dict[str, Path] = {}  # URL path -> a frontier budget's report.html
        for prefix, run in exported_runs(self.run_dir):
            if prefix and (run / "report.html").is_file():
                self.budget_reports[f"/{run.relative_to(self.run_dir).as_posix()}/report.html"] = run / "report.html"
            manifest = rundir.manifest(run)
            report_path = run / "report.json"
            report = runio.read_json(report_path) if report_path.is_file() else {}
            accuracy = {r["name"]: r["test_accuracy"] for r in report.get("rows", [])}
            for entry in manifest["variants"]:
                model = Model(run / "export" / entry["file"])
                sample = np.full(model.input_shape, 128, np.uint8)  # latency does not depend on the pixels
                latency = model.latency_us(sample, runs=latency_runs, warmup=20)
                name = prefix + entry["name"]
                file = str((run / "export" / entry["file"]).relative_to(self.run_dir)) if prefix else entry["file"]
                self.variants[name] = Variant(name, file, model, preparation(model), {
                    "name": name, "file": file, "bytes": entry["bytes"],
                    "gzip_bytes": entry["gzip_bytes"], "quantization": entry["quantization"],
                    "sparsity": entry["sparsity"], "median_us": round(latency["median_us"], 1),
                    "test_accuracy": accuracy.get(entry["name"])})
        report_path = self.run_dir / "report.json"
        report = runio.read_json(report_path) if report_path.is_file() else {}
        if not self.variants:
            raise RunDirError(f"run directory {self.run_dir}: the manifest lists no variants; run "
                              f"`mnist-opt export {self.run_dir}` again")
        preparations = {v.prepare for v in self.variants.values()}
        if len(preparations) > 1:  # one page, one kind of input: the budgets of a frontier run share their data
            shown = "; ".join(sorted(str(p.to_dict()) for p in preparations))
            raise RunDirError(f"run directory {self.run_dir}: its models take different data ({shown}); "
                              "serve each run on its own")
        self.data = preparations.pop()
        # The page opens on an int8 model: the report's pick if it is one, else plain int8.
        int8 = [n for n, v in self.variants.items() if v.info["quantization"] == "int8"]
        recommended = report.get("recommended")
        self.default = next((n for n in (recommended, "int8", *int8) if n in int8), next(iter(self.variants)))
        self.lock = threading.Lock()  # one LiteRT interpreter per variant; interpreters are not thread-safe

    def variants_doc(self) -> dict:
        return {"default": self.default, "report": (self.run_dir / "report.html").is_file(),
                "data": self.data.to_dict(), "variants": [v.info for v in self.variants.values()]}

    def classify(self, name: str, body: bytes) -> dict:
        from mnist_opt.inference.predict import classify

        if name not in self.variants:
            raise RequestError(HTTPStatus.NOT_FOUND, f"unknown variant {name!r}; choose one of "
                                                     f"{', '.join(self.variants)} (GET /api/variants)")
        try:
            with Image.open(io.BytesIO(body)) as img:
                width, height = img.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body ({len(body):,} bytes) is not a readable image; "
                                                       "POST a PNG or JPEG image") from None
        if width * height > MAX_PIXELS:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"image is {width}x{height} pixels; send at most {MAX_PIXELS:,} pixels")
        variant = self.variants[name]
        try:
            with self.lock:
                result = classify(variant.model, io.BytesIO(body), "image", top=3, prepare=variant.prepare)
        except InputError as exc:
            status = HTTPStatus.UNPROCESSABLE_ENTITY if "blank" in str(exc) else HTTPStatus.BAD_REQUEST
            raise RequestError(status, str(exc)) from None
        return {"variant": name, "class": result["class"], "name": result["name"], "top": result["top"],
                "input": result["input"].reshape(variant.prepare.shape).tolist()}


class Handler(BaseHTTPRequestHandler):
    app: App  # set on the subclass that `make_server` builds
    server_version = "mnist-opt"
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT  # socketserver sets it on the connection: a read that waits longer ends it

    def log_message(self, format, *args):  # one quiet line per request is too many for a drawing page
        pass

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, doc: dict) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _error(self, exc: RequestError) -> None:
        self._json(exc.status, {"error": str(exc), "status": int(exc.status)})

    def do_GET(self):
        path = urlsplit(self.path).path
        try:
            if path == "/":
                self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/report":
                report = self.app.run_dir / "report.html"
                if not report.is_file():
                    raise RequestError(HTTPStatus.NOT_FOUND, f"no report yet; run `mnist-opt report "
                                                             f"{self.app.run_dir}` and reload")
                self._send(HTTPStatus.OK, report.read_bytes(), "text/html; charset=utf-8")
            elif path in self.app.budget_reports:  # a frontier report's links to each budget's report
                self._send(HTTPStatus.OK, self.app.budget_reports[path].read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/variants":
                self._json(HTTPStatus.OK, self.app.variants_doc())
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no page {path}; try / or /report")
        except RequestError as exc:
            self._error(exc)

    def do_POST(self):
        url = urlsplit(self.path)
        try:
            if url.path != "/api/predict":
                raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint {url.path}; POST images to /api/predict")
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header with the image")
            if int(length) > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"body of {int(length):,} bytes; the limit is {MAX_BODY:,} bytes")
            if int(length) == 0:
                raise RequestError(HTTPStatus.BAD_REQUEST, "empty body; POST the drawing or an image as PNG or JPEG")
            body = self.rfile.read(int(length))
            variant = parse_qs(url.query).get("variant", [self.app.default])[0]
            self._json(HTTPStatus.OK, self.app.classify(variant, body))
        except RequestError as exc:
            self._error(exc)


_BUSY_BODY = json.dumps({"error": "too many open connections; try again in a moment", "status": 503}).encode()
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(_BUSY_BODY)) + _BUSY_BODY


class Server(ThreadingHTTPServer):
    """The stdlib threading server with a cap on open connections: past it, 503 and close, no thread."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog; socketserver's 5 makes a burst of clients wait for SYN retries

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS):
        super().__init__(address, handler)
        self.max_connections = max_connections
        self.open, self.peak = 0, 0  # connections being handled now, and the most at once
        self.count_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self.count_lock:
            full = self.open >= self.max_connections
            if not full:
                self.open += 1
                self.peak = max(self.peak, self.open)
        if full:
            try:
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self.count_lock:
            self.open -= 1


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000, max_connections: int = MAX_CONNECTIONS,
                read_timeout: float = READ_TIMEOUT) -> Server:
    """A server bound to host:port (port 0: any free port), not yet serving."""
    handler = type("BoundHandler", (Handler,), {"app": app, "timeout": read_timeout})
    return Server((host, port), handler, max_connections)
