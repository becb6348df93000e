"""The drawing server: HTTP answers for good and bad requests, and the page in a real headless Chromium."""

import base64
import http.client
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_opt.cli import app as cli
from mnist_opt.inference.model import Model
from mnist_opt.inference.predict import classify
from mnist_opt.inference.serve import MAX_BODY, App, make_server
from mnist_opt.data import load_test
from test_predict import ANIMALS, colour_image, fake_run, tiny_model  # the tiny runs of data other than MNIST

CHROMIUM = "/usr/bin/chromium"  # Debian's package; `make test` installs it


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(quick_run):
    run_dir, _ = quick_run
    application = App(run_dir, latency_runs=20)
    httpd = make_server(application, port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield application, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    doc = json.loads(data) if response.getheader("Content-Type") == "application/json" else data
    return response.status, doc


def still_up(port):
    status, doc = request(port, "GET", "/api/variants")
    return status == 200 and doc["variants"]


def test_binds_loopback_by_default(server):
    application, _ = server
    httpd = make_server(application, port=0)
    try:
        assert httpd.server_address[0] == "127.0.0.1"
    finally:
        httpd.server_close()


def test_variants_are_the_manifests_with_an_int8_default(server, quick_run):
    _, port = server
    status, doc = request(port, "GET", "/api/variants")
    manifest = json.loads((quick_run[0] / "export" / "manifest.json").read_text())
    assert status == 200
    assert [v["name"] for v in doc["variants"]] == [v["name"] for v in manifest["variants"]]
    assert doc["data"] == {"shape": [28, 28, 1], "class_names": [str(d) for d in range(10)], "digits": True,
                           "drawing": True}
    by_name = {v["name"]: v for v in doc["variants"]}
    assert by_name[doc["default"]]["quantization"] == "int8"
    for v, m in zip(doc["variants"], manifest["variants"]):
        assert v["bytes"] == m["bytes"] and v["median_us"] > 0
        assert 0 < v["test_accuracy"] <= 1  # from the run's report


def test_prediction_is_the_predict_commands(server, quick_run):
    """A digit POSTed as an image gets the same top 3 as `mnist-opt predict`'s code on the same file."""
    _, port = server
    x = load_test()[0][..., 0]
    model = Model(quick_run[0] / "export" / "int8.tflite")
    for i in range(5):
        body = png(np.asarray(Image.fromarray(x[i]).resize((280, 280), Image.BICUBIC)))
        status, doc = request(port, "POST", "/api/predict?variant=int8", body, {"Content-Type": "image/png"})
        assert status == 200, doc
        expected = classify(model, io.BytesIO(body), "image", top=3)
        assert doc["variant"] == "int8" and doc["class"] == expected["class"] and doc["name"] == str(doc["class"])
        assert doc["top"] == expected["top"]
        assert np.array_equal(np.array(doc["input"]), expected["input"][..., np.newaxis])  # H x W x C
        probabilities = [t["probability"] for t in doc["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and len({t["class"] for t in doc["top"]}) == 3


@pytest.mark.parametrize("path, body, headers, status, words", [
    ("/api/predict", b"this is not an image", {}, 400, "not a readable image"),
    ("/api/predict", b"", {}, 400, "empty body"),
    ("/api/predict", png(np.zeros((280, 280))), {}, 422, "blank"),
    ("/api/predict?variant=nope", png(np.eye(280) * 255), {}, 404, "unknown variant 'nope'"),
    ("/api/predict", png(np.zeros((2100, 2100))), {}, 413, "pixels"),
    ("/nowhere", b"x", {}, 404, "no endpoint"),
])
def test_bad_requests_get_4xx_json_and_the_server_stays_up(server, path, body, headers, status, words):
    _, port = server
    got, doc = request(port, "POST", path, body, headers)
    assert got == status and doc["status"] == status
    assert words in doc["error"]
    assert still_up(port)


def test_body_size_is_capped_before_reading(server):
    _, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # headers only: the server must answer without waiting for the body
    response = conn.getresponse()
    doc = json.loads(response.read())
    conn.close()
    assert response.status == 413 and f"{MAX_BODY:,}" in doc["error"]
    assert still_up(port)


def test_missing_length_is_refused(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 411") and "Content-Length" in reply
    assert still_up(port)


def test_unknown_page_and_report(server):
    _, port = server
    status, doc = request(port, "GET", "/missing")
    assert status == 404 and "no page /missing" in doc["error"]
    status, page = request(port, "GET", "/report")
    assert status == 200 and b"mnist-opt report" in page


def test_serve_refuses_an_unexported_run(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and "mnist-opt export" in result.output


def test_serve_on_a_taken_port_exits_2(quick_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(quick_run[0]), "--port", str(port)])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output


@pytest.fixture(scope="module")
def served(quick_run):
    """`mnist-opt serve RUN --port 0` in its own process, as a user starts it; yields the URL."""
    proc = subprocess.Popen([sys.executable, "-m", "mnist_opt", "serve", str(quick_run[0]), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("serving"):
            break
        assert line or proc.poll() is None, "".join(lines)
    url = line.split(" on ")[1].split()[0]
    yield url
    proc.terminate()
    assert proc.wait(30) is not None


def chromium(playwright):
    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: `make test` installs Debian's chromium package"
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def test_page_draws_and_predicts_in_chromium(served, quick_run):
    from playwright.sync_api import sync_playwright

    run_dir = quick_run[0]
    with sync_playwright() as p:
        browser = chromium(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(served)
            page.wait_for_selector("body[data-ready]")
            default = page.input_value("#variant")
            assert page.is_visible("#pad") and page.is_visible("#upload")  # digits: draw or upload

            # A "7": a bar and a slanted stem, drawn with the mouse.
            box = page.locator("#pad").bounding_box()
            x0, y0 = box["x"], box["y"]
            page.mouse.move(x0 + 70, y0 + 60)
            page.mouse.down()
            page.mouse.move(x0 + 210, y0 + 60, steps=12)
            page.mouse.move(x0 + 120, y0 + 230, steps=12)
            page.mouse.up()
            page.wait_for_selector(f'#prediction[data-variant="{default}"]')
            page.wait_for_selector("#prediction:not([data-pending])", state="attached")  # the last stroke's answer

            def shown():
                return (page.get_attribute("#prediction", "data-variant"), int(page.text_content("#answer")),
                        page.locator("#bars .bar").count())

            canvas = base64.b64decode(page.evaluate("document.getElementById('pad').toDataURL()").split(",")[1])
            variant, digit, bars = shown()
            expected = classify(Model(run_dir / "export" / f"{default}.tflite"), io.BytesIO(canvas), "canvas")
            assert (variant, digit, bars) == (default, expected["class"], 3)

            page.select_option("#variant", "float32")
            page.wait_for_selector('#prediction[data-variant="float32"]:not([data-pending])', state="attached")
            variant, digit, bars = shown()
            expected = classify(Model(run_dir / "export" / "float32.tflite"), io.BytesIO(canvas), "canvas")
            assert (variant, digit, bars) == ("float32", expected["class"], 3)
            assert "float32.tflite" in page.text_content("#info")

            screenshots = run_dir / "screenshots"
            screenshots.mkdir(exist_ok=True)
            page.screenshot(path=str(screenshots / "draw.png"), full_page=True)
            assert (screenshots / "draw.png").stat().st_size > 0

            page.click("#clear")
            assert page.text_content("#answer") == "" and page.get_attribute("#prediction", "data-variant") is None

            page.goto(served + "report")
            assert "mnist-opt report" in page.title()
        finally:
            browser.close()


def _stalled(port: int, n: int) -> list[socket.socket]:
    """n connections that sent half a request and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /api/variants HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: the headers never end
        socks.append(s)
    return socks


@pytest.fixture
def abusable(server):
    """A second server on the same models, with a 1-second read timeout."""
    application, _ = server
    httpd = make_server(application, port=0, read_timeout=1.0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_stalled_clients_neither_block_others_nor_stay_open(abusable):
    port = abusable.server_address[1]
    stalled = _stalled(port, 100)
    try:
        start = time.perf_counter()
        status, doc = request(port, "GET", "/api/variants")
        assert status == 200 and doc["variants"] and time.perf_counter() - start < 1.0
        deadline = time.perf_counter() + 1.0 + 2.0  # the timeout, and slack for 100 threads on 2 cores
        for s in stalled:
            s.settimeout(max(0.01, deadline - time.perf_counter()))
            assert s.recv(1024) == b""  # closed by the server, not answered
        assert time.perf_counter() <= deadline
    finally:
        for s in stalled:
            s.close()


def test_connections_past_the_cap_get_503_and_the_cap_holds(server):
    application, _ = server
    httpd = make_server(application, port=0, max_connections=4, read_timeout=3.0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    stalled = _stalled(port, 4)
    try:
        time.sleep(0.2)  # let the server take all four
        for _ in range(3):
            status, doc = request(port, "GET", "/api/variants")
            assert status == 503 and "too many open connections" in doc["error"]
        assert httpd.open == httpd.peak == 4
    finally:
        for s in stalled:
            s.close()
    deadline = time.time() + 5
    while time.time() < deadline and request(port, "GET", "/api/variants")[0] == 503:
        time.sleep(0.1)
    assert still_up(port) and httpd.peak == 4  # the slots came back when the stalled connections went
    httpd.shutdown()
    httpd.server_close()


def test_a_host_other_than_loopback_is_warned_about(quick_run, monkeypatch):
    import mnist_opt.inference.serve as serve_module

    run_dir, _ = quick_run

    class Stopped(serve_module.Server):
        def serve_forever(self, poll_interval=0.5):
            raise KeyboardInterrupt

    monkeypatch.setattr(serve_module, "Server", Stopped)
    outside = CliRunner().invoke(cli, ["serve", str(run_dir), "--host", "0.0.0.0", "--port", "0"])
    assert outside.exit_code == 0 and "no authentication" in outside.output
    local = CliRunner().invoke(cli, ["serve", str(run_dir), "--port", "0"])
    assert local.exit_code == 0 and "no authentication" not in local.output


def test_serving_tflite_files_imports_no_tensorflow(quick_run):
    run_dir, _ = quick_run
    code = ("import sys; from mnist_opt.inference.serve import App, make_server; app = App(sys.argv[1], latency_runs=5); "
            "make_server(app, port=0).server_close(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf_keras', 'keras_tuner'}))")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# Data other than MNIST: exported runs of tiny untrained models (what is checked is the page and the input, not
# accuracy), each served from this process.

def exported_run(run, shape, names):
    """A run whose data is `shape` images in `names`, with one exported (Keras) variant."""
    fake_run(run, shape, names)
    model = tiny_model(run / "export" / "float32.keras", shape, len(names))
    size = model.stat().st_size
    (run / "export" / "manifest.json").write_text(json.dumps({"settings": {}, "variants": [
        {"name": "float32", "file": "float32.keras", "bytes": size, "gzip_bytes": size, "quantization": "float32",
         "sparsity": 0.0}]}))
    return run


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
    """{"rgb": (run, App, port), "grey": ...}: 16x16 RGB images of 3 animals, and 16x16 grey ones of 2 shapes."""
    root = tmp_path_factory.mktemp("other")
    servers, served_ = [], {}
    for key, shape, names in (("rgb", (16, 16, 3), ANIMALS), ("grey", (16, 16, 1), ("ring", "cross"))):
        run = exported_run(root / key, shape, names)
        application = App(run, latency_runs=5)
        httpd = make_server(application, port=0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        served_[key] = run, application, httpd.server_address[1]
    yield served_
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_rgb_data_offers_an_upload_and_no_drawing(seed, other_data, tmp_path):
    run, _, port = other_data["rgb"]
    status, doc = request(port, "GET", "/api/variants")
    assert status == 200 and doc["data"] == {"shape": [16, 16, 3], "class_names": list(ANIMALS), "digits": False,
                                             "drawing": False}
    photo = io.BytesIO()
    Image.open(colour_image(tmp_path / "photo.png", (50, 40))).convert("RGB").save(photo, format="JPEG")
    status, doc = request(port, "POST", "/api/predict", photo.getvalue(), {"Content-Type": "image/jpeg"})
    assert status == 200, doc
    expected = classify(Model(run / "export" / "float32.keras"), io.BytesIO(photo.getvalue()), "image", top=3)
    assert doc["name"] == ANIMALS[doc["class"]] == expected["name"]
    assert [t["name"] for t in doc["top"]] == [t["name"] for t in expected["top"]] and len(doc["top"]) == 3
    assert np.array_equal(np.array(doc["input"]), expected["input"]) and np.array(doc["input"]).shape == (16, 16, 3)


def test_grey_data_offers_drawing_without_the_digit_normalization(seed, other_data):
    _, _, port = other_data["grey"]
    status, doc = request(port, "GET", "/api/variants")
    assert doc["data"]["drawing"] and not doc["data"]["digits"] and doc["data"]["class_names"] == ["ring", "cross"]
    pad = np.zeros((280, 280), np.uint8)
    pad[20:60, 20:60] = 255  # a stroke in the pad's corner
    status, doc = request(port, "POST", "/api/predict", png(pad), {"Content-Type": "image/png"})
    assert status == 200 and doc["name"] in ("ring", "cross")
    seen = np.array(doc["input"])
    assert seen.shape == (16, 16, 1)
    assert np.array_equal(seen[..., 0], np.asarray(Image.fromarray(pad).resize((16, 16), Image.BILINEAR)))
    assert seen[2, 2, 0] > 200 and seen[8, 8, 0] == 0  # left in its corner, not centred


def test_latency_is_measured_without_reading_any_data(seed, other_data, monkeypatch):
    import mnist_opt.data

    def no_data(*args, **kwargs):
        raise AssertionError("serve read a data set")

    monkeypatch.setattr(mnist_opt.data, "load", no_data)
    application = App(other_data["rgb"][0], latency_runs=5)  # the model's own 16x16x3 shape, not an MNIST image
    assert application.variants["float32"].info["median_us"] > 0


def test_a_run_whose_model_disagrees_with_its_data_is_refused(seed, tmp_path):
    run = exported_run(tmp_path / "run", (16, 16, 3), ANIMALS)
    fake_run(run, (16, 16, 1), ANIMALS)  # the record now says grey
    result = CliRunner().invoke(cli, ["serve", str(run), "--port", "0"])
    assert result.exit_code == 2 and "recorded 16x16x1 images in 3 classes" in result.output


def test_pages_for_other_data_in_chromium(seed, other_data, tmp_path):
    from playwright.sync_api import sync_playwright

    colour_image(tmp_path / "photo.png", (50, 40))
    with sync_playwright() as p:
        browser = chromium(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(f"http://127.0.0.1:{other_data['rgb'][2]}/")
            page.wait_for_selector("body[data-ready]")
            assert not page.is_visible("#pad") and page.is_visible("#upload")  # RGB: upload only
            page.set_input_files("#upload", str(tmp_path / "photo.png"))
            page.wait_for_selector('#prediction[data-variant="float32"]:not([data-pending])', state="attached")
            run = other_data["rgb"][0]
            expected = classify(Model(run / "export" / "float32.keras"), tmp_path / "photo.png", "photo", top=3)
            assert page.text_content("#answer") == expected["name"]
            assert page.locator("#bars .bar span:first-child").all_text_contents() == [t["name"] for t in expected["top"]]
            assert page.evaluate("[document.getElementById('seen').width, document.getElementById('seen').height]") \
                == [16, 16]

            # A phone-sized photo, over the server's 1 MiB: the page scales it down before sending it.
            big = tmp_path / "big.jpg"
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (2400, 3200, 3), dtype=np.uint8)).save(big, quality=95)
            assert big.stat().st_size > MAX_BODY
            page.reload()
            page.wait_for_selector("body[data-ready]")
            page.set_input_files("#upload", str(big))
            page.wait_for_selector('#prediction[data-variant="float32"]:not([data-pending])', state="attached")
            assert page.text_content("#answer") in ANIMALS and "error" not in (page.text_content("#message") or "")

            page.goto(f"http://127.0.0.1:{other_data['grey'][2]}/")
            page.wait_for_selector("body[data-ready]")
            assert page.is_visible("#pad") and page.is_visible("#upload")  # grey: draw or upload
            box = page.locator("#pad").bounding_box()
            page.mouse.move(box["x"] + 60, box["y"] + 60)
            page.mouse.down()
            page.mouse.move(box["x"] + 200, box["y"] + 200, steps=8)
            page.mouse.up()
            page.wait_for_selector('#prediction[data-variant="float32"]:not([data-pending])', state="attached")
            assert page.text_content("#answer") in ("ring", "cross")
        finally:
            browser.close()
