"""Benchmark: serving vs the model called in-process vs `mlflow models serve`, one 224x224 JPEG.

    .venv/bin/python bench/serving.py [--tracking-uri URI --model-uri models:/NAME@ALIAS]
    .venv/bin/python bench/serving.py --zoo-model ensemble

Without a tracking URI it starts a throwaway `mlflow server` and registers the zoo's
basic_cnn at 224 px, or with `--zoo-model ensemble` the graph's champion as the graph builds it
(untrained heads: inference cost does not depend on the weights). For each
target it measures p50/p99 latency and requests/s at 1, 8 and 32 concurrent clients (serving's
rows with the mean images per model call, read from its /metrics), then prints a table with the
ratios to the targets of issues 4, 13, 15 and 29:
  p50 at one client <= 1.3x the in-process call plus decode; throughput at 8 and 32 clients >= 1.5x
  the model called in-process without batching from as many threads (serving's own load_model and
  predict, one decoded image a call: what batching must beat); throughput at 8 clients >= 10x
  `mlflow models serve`; the Open Inference Protocol's infer (the same JPEG as a BYTES tensor
  in the binary extension) p50 at one client <= 1.2x /predict's; the prediction log costs at
  most 5 % of /predict's p50 at one client and of its throughput at 8 (a second server with
  PREDICTION_LOG=off, measured in turns with one with the log on, both serving the same pinned version).
The in-process batched rows call the model from one thread on batches of as many images as there
are clients, decode included: the most any batcher could reach with this model on this machine.
It also measures the reload latency (POST /admin/reload to the new version answering),
serving's share of a redeploy; bench/redeploy.py measures the full redeploy (champion
materialization -> sensor -> deploy job -> every request answered by the new version).

    .venv/bin/python bench/serving.py --batching

measures only the in-process rows and serving's /predict (no V2, prediction log, reload or
`mlflow models serve`): the rows of issue 29's target, in a few minutes.

    .venv/bin/python bench/serving.py --worst-request

measures only the worst legal requests under serving's default limits instead: peak resident memory
of the serving process above its warm baseline, and seconds, for /predict with RGBA PNGs filling
MAX_REQUEST_PIXELS (each at most MAX_IMAGE_PIXELS), the same requests from as many clients as serving
has decode threads at once, and a V2 JSON `image_pixels` body of MAX_UPLOAD_MB.
"""

import argparse
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.helpers import VENV_BIN, Service, copy_version, free_port, start_mlflow_server, wait_for_http  # noqa: E402
from tests.serving.serving_support import metric_delta, metric_samples, v2_files_request  # noqa: E402

from serving.settings import available_cpus  # noqa: E402
from skin_cancer_contract.api import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, DEFAULT_MAX_UPLOAD_MB  # noqa: E402
from skin_cancer_contract.imaging import decode_image  # noqa: E402
from skin_cancer_contract.registry import CHAMPION_ALIAS, CHAMPION_URI, REGISTERED_MODEL_NAME  # noqa: E402

IMAGE = Path(os.environ.get("SKIN_CANCER_DATA", REPO_ROOT.parent / "shared" / "datasets" / "skin-cancer")) / "test" / "benign" / "1.jpg"
ADMIN_TOKEN = "bench-token"
CONCURRENCY = (1, 8, 32)
WARM_UP_REQUESTS = 100


@dataclass
class Result:
    target: str
    clients: int
    latencies: list[float]
    seconds: float
    images_per_call: int = 1
    mean_batch: float | None = None
    """Serving's images per model call during the run (its /metrics); None for other targets."""

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000

    @property
    def rps(self) -> float:
        """Images answered per second: requests per second, but for the in-process batched rows."""
        return len(self.latencies) * self.images_per_call / self.seconds


def measure(target: str, clients: int, call: Callable[[object], None], make_session, budget: "Budget") -> Result:
    """`clients` threads call `call(session)` until the time or request budget is spent (>= 1 each)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = max(1, budget.requests // clients)
    start = time.perf_counter()
    deadline = start + budget.seconds

    def client() -> None:
        with make_session() as session:
            for done in range(per_client):
                if done and time.perf_counter() > deadline:
                    return
                began = time.perf_counter()
                try:
                    call(session)
                except Exception as error:  # counted and reported: a benchmark must not hide failures
                    with lock:
                        errors.append(repr(error))
                    continue
                with lock:
                    latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{target} at {clients} clients: {len(errors)} failed requests, first: {errors[0]}")
    return Result(target, clients, latencies, time.perf_counter() - start)


@dataclass
class Budget:
    seconds: float
    requests: int


class _NoSession:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def bench_in_process(model_uri: str, jpeg: bytes, budget: Budget) -> tuple[list[Result], int]:
    """The limit: decode and predict in this process, no HTTP, with serving's own load_model and
    predict: one image a call from 1, 8 and 32 threads, then batches of 8 and 32 from one thread.
    Also returns the model's input side."""
    from serving.model import load_model

    model = load_model(model_uri)
    size = model.image_size

    def call(_):
        model.predict(decode_image(jpeg, size)[None])

    for _ in range(3):
        call(None)
    rows = [measure("in-process (decode + predict)", n, call, _NoSession, budget) for n in CONCURRENCY]
    for batch in CONCURRENCY[1:]:

        def batched(_, batch=batch):
            model.predict(np.stack([decode_image(jpeg, size) for _ in range(batch)]))

        batched(None)
        row = measure("in-process batched", 1, batched, _NoSession, Budget(budget.seconds, max(1, budget.requests // batch)))
        rows.append(Result(row.target, batch, row.latencies, row.seconds, images_per_call=batch, mean_batch=batch))
    return rows, size


def bench_http(
    target: str, url: str, send: Callable[[httpx.Client], httpx.Response], budget: Budget, batches: bool = True
) -> list[Result]:
    """`send` from 1, 8 and 32 clients; `batches`: the target is serving, whose /metrics count its model calls."""

    def call(client: httpx.Client) -> None:
        response = send(client)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    def session():
        return httpx.Client(base_url=url, timeout=300)

    def measured(clients: int) -> Result:
        if not batches:
            return measure(target, clients, call, session, budget)
        with session() as client:
            before = metric_samples(client)
            result = measure(target, clients, call, session, budget)
            after = metric_samples(client)
        calls = metric_delta(before, after, "serving_batch_size_count")
        result.mean_batch = metric_delta(before, after, "serving_batch_size_sum") / calls if calls else None
        return result

    with session() as warm:
        for _ in range(3):
            call(warm)
    return [measured(n) for n in CONCURRENCY]


def start_serving(work: Path, name: str, tracking_uri: str, model_uri: str, prediction_log: str = "on") -> tuple[Service, str]:
    """Serving on a free port, its prediction log (`on` or `off`) in `work`, its own log in
    `work/NAME.log`, ready."""
    port = free_port()
    service = Service(
        [str(VENV_BIN / "uvicorn"), "serving.app:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        log_path=work / f"{name}.log",
        env={
            "MLFLOW_TRACKING_URI": tracking_uri, "MODEL_URI": model_uri, "SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
            "PREDICTION_LOG": prediction_log, "SKIN_CANCER_STATE": str(work / "state"), "AWS_BUCKET": "",
            # every client admitted: the default (4 per CPU) answers 503 to most of 32 clients on 2 cores
            "SERVING_MAX_IN_FLIGHT": str(2 * max(CONCURRENCY)),
        },
        cwd=REPO_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", timeout=60, process=service.process)
    deadline = time.monotonic() + 300
    while httpx.get(f"{url}/ready", timeout=10).status_code != 200:
        if time.monotonic() > deadline or service.process.poll() is not None:
            raise RuntimeError(f"serving never became ready:\n{service.log_tail()}")
        time.sleep(0.3)
    return service, url


def start_mlflow_serve(work: Path, tracking_uri: str, model_uri: str) -> tuple[Service, str]:
    port = free_port()
    service = Service(
        [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        log_path=work / "mlflow-serve.log",
        env={"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"},  # it runs `uvicorn`
        cwd=work,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/ping", timeout=300, process=service.process)
    return service, url


def throwaway_model(work: Path, zoo_model: str | None) -> tuple[Service, str, str]:
    """A throwaway `mlflow server` with `untrained_model(zoo_model)` registered as champion."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    server, tracking_uri = start_mlflow_server(work)
    mlflow.set_tracking_uri(tracking_uri)
    network = untrained_model(zoo_model)
    example = decode_image(IMAGE.read_bytes(), 224)[None]
    with mlflow.start_run(run_name=f"bench {network.name}"):
        mlflow.log_metrics({"test_accuracy": 0.0, "test_roc_auc": 0.0})
        info = mlflow.keras.log_model(
            network,
            name="model",
            signature=infer_signature(example, network.predict_on_batch(example)),
            registered_model_name=REGISTERED_MODEL_NAME,
            pip_requirements=[f"keras=={keras.__version__}"],
        )
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    for key, value in {"model_class": network.name, "threshold": "0.5", "image_size": "224"}.items():
        client.set_model_version_tag(REGISTERED_MODEL_NAME, version, key, value)
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    return server, tracking_uri, CHAMPION_URI


def untrained_model(zoo_model: str | None):
    """The zoo model as the graph builds it for 224 px images (its own image size inside; an ensemble's
    members included), heads untrained: inference cost does not depend on the weights. None: basic_cnn
    at 224 px, the model of the README's first serving figures."""
    from skin_cancer_assets import training
    from skin_cancer_assets.model_zoo import ZOO, build_model
    from skin_cancer_assets.training_config import TrainingConfig, config_class_for

    specs = {spec.name: spec for spec in ZOO}
    if zoo_model is None:
        return build_model(specs["basic_cnn"], TrainingConfig(), 224)
    spec = specs[zoo_model]
    if spec.cross_validated:
        raise SystemExit(f"{zoo_model} serves the average of its folds' networks: not built here")
    if spec.members:
        return training.ensemble_model(spec, [untrained_model(member) for member in spec.members], (224, 224, 3))
    return build_model(spec, config_class_for(spec.name, spec.defaults)(), 224)


def reload_latency(url: str, tracking_uri: str, model_uri: str, jpeg: bytes) -> tuple[float, str, str]:
    """Register the served version again, move the alias, reload; seconds until /predict answers with it.

    Only for alias URIs (`models:/NAME@ALIAS`); the alias is moved back afterwards.
    """
    from mlflow import MlflowClient

    name, alias = model_uri.removeprefix("models:/").split("@")
    client = MlflowClient(tracking_uri)
    current = client.get_model_version_by_alias(name, alias)
    new = copy_version(client, current)
    client.set_registered_model_alias(name, alias, new.version)
    try:
        started = time.perf_counter()
        httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).raise_for_status()
        files = {"file": ("lesion.jpg", jpeg, "image/jpeg")}
        while httpx.post(f"{url}/predict", files=files, timeout=60).json()["model"]["version"] != str(new.version):
            time.sleep(0.05)
        return time.perf_counter() - started, str(current.version), str(new.version)
    finally:
        client.set_registered_model_alias(name, alias, current.version)


def log_cost(url_on: str, url_off: str, files: dict, budget: "Budget") -> list[Result]:
    """/predict with the prediction log on and off, at 1 and 8 clients, each server warmed first,
    then in the order on, off, off, on, twice (a steady drift of the machine weighs on both
    alike); each side's four runs pooled."""

    def call(client: httpx.Client) -> None:
        response = client.post("/predict", files=files)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    def session(url: str):
        return httpx.Client(base_url=url, timeout=300)

    for url in (url_on, url_off):  # the first requests of a fresh server are slower: not measured
        measure("warm-up", 8, call, lambda u=url: session(u), Budget(budget.seconds, WARM_UP_REQUESTS))
    pooled = []
    for clients in (1, 8):
        runs: dict[str, list[Result]] = {"on": [], "off": []}
        for side in ("on", "off", "off", "on") * 2:
            url = url_on if side == "on" else url_off
            runs[side].append(measure(f"/predict, log {side}", clients, call, lambda u=url: session(u), budget))
        for side, results in runs.items():
            pooled.append(Result(results[0].target, clients, [s for r in results for s in r.latencies], sum(r.seconds for r in results)))
    return pooled


def print_table(
    rows: list[Result], in_process: list[Result], mlflow_serve: list[Result], reload: tuple | None, log: list[Result]
) -> None:
    """The rows, then each target check whose rows were measured (`--batching` measures fewer)."""
    print(f"\n{'target':<32} {'clients':>7} {'requests':>8} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>8} {'batch':>6}")
    for row in rows:
        batch = f"{row.mean_batch:>6.1f}" if row.mean_batch is not None else f"{'':>6}"
        print(
            f"{row.target:<32} {row.clients:>7} {len(row.latencies):>8} {row.p50_ms:>9.1f} {row.p99_ms:>9.1f} {row.rps:>8.1f} {batch}"
        )
    print("(req/s of the in-process batched rows: images/s; batch: images per model call, serving's from its /metrics)")
    serving = {r.clients: r for r in rows if r.target == "serving (this app)"}
    base = {r.clients: r for r in in_process if r.target == "in-process (decode + predict)"}
    batched = {r.clients: r for r in in_process if r.target == "in-process batched"}
    print("\ntarget checks")
    p50_ratio = serving[1].p50_ms / base[1].p50_ms
    print(f"  p50 at 1 client vs in-process decode+predict: {p50_ratio:.2f}x (target <= 1.3x) "
          f"{'PASS' if p50_ratio <= 1.3 else 'FAIL'}")
    for clients in CONCURRENCY[1:]:
        ratio = serving[clients].rps / base[clients].rps
        print(f"  throughput at {clients} clients vs in-process unbatched from {clients} threads: {ratio:.2f}x (target >= 1.5x) "
              f"{'PASS' if ratio >= 1.5 else 'FAIL'}; in-process batches of {clients}: "
              f"{batched[clients].rps / base[clients].rps:.2f}x, the most batching could give")
    if mlflow_serve:
        rps_ratio = serving[8].rps / {r.clients: r for r in mlflow_serve}[8].rps
        print(f"  throughput at 8 clients vs mlflow models serve: {rps_ratio:.1f}x (target >= 10x) "
              f"{'PASS' if rps_ratio >= 10 else 'FAIL'}")
    v2 = {r.clients: r for r in rows if r.target == "serving V2 infer"}
    if v2:
        v2_ratio = v2[1].p50_ms / serving[1].p50_ms
        print(f"  V2 infer p50 at 1 client vs /predict: {v2_ratio:.2f}x (target <= 1.2x) {'PASS' if v2_ratio <= 1.2 else 'FAIL'}")
    if log:
        on = {r.clients: r for r in log if r.target.endswith("on")}
        off = {r.clients: r for r in log if r.target.endswith("off")}
        log_p50 = on[1].p50_ms / off[1].p50_ms
        log_rps = on[8].rps / off[8].rps
        print(f"  prediction log: p50 at 1 client, on vs off: {log_p50:.3f}x (target <= 1.05x) {'PASS' if log_p50 <= 1.05 else 'FAIL'}")
        print(f"  prediction log: throughput at 8 clients, on vs off: {log_rps:.3f}x (target >= 0.95x) {'PASS' if log_rps >= 0.95 else 'FAIL'}")
    if reload:
        seconds, old, new = reload
        print(f"  reload latency (POST /admin/reload -> version {new} answers, was {old}): {seconds:.1f} s "
              "(serving's share of the 8 s redeploy target; bench/redeploy.py times the whole redeploy)")


def rgba_png(side: int) -> bytes:
    """A valid black 8-bit RGBA PNG of side x side pixels, a few hundred KB: the costliest decode per
    pixel that the limits admit, in a body far under MAX_UPLOAD_MB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(bytes(1 + 4 * side) * 100) for _ in range(side // 100))
    pixels += compressor.compress(bytes(1 + 4 * side) * (side % 100)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)  # 8 bits, RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def peak_memory(pid: int, send: Callable[[], list[int]]) -> tuple[float, float, list[int]]:
    """(peak resident MB above the process's RSS before, seconds, statuses) of `send()`, sampling every 5 ms."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak, done = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    statuses = send()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return (peak - before) / 1024 / 1024, seconds, statuses


def worst_requests(service: Service, url: str, jpeg: bytes) -> None:
    """Print the peak memory and time of the worst legal requests (serving's default limits)."""
    side = int(DEFAULT_MAX_IMAGE_PIXELS**0.5)
    count = DEFAULT_MAX_REQUEST_PIXELS // (side * side)
    files = [("file", (f"rgba-{i}.png", rgba_png(side), "image/png")) for i in range(count)]
    body_mb = sum(len(data) for _, (_, data, _) in files) / 1e6
    values = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024 * 0.99) // 2  # "0," per value
    height = values // (3 * 1000)
    tensor = {"name": "image_pixels", "datatype": "UINT8", "shape": [1, height, 1000, 3], "data": [0] * (height * 3000)}
    pixels = json.dumps({"inputs": [tensor]}, separators=(",", ":"))
    threads = available_cpus()
    cases = {
        f"/predict {count} RGBA PNGs of {side}x{side} ({body_mb:.1f} MB)": (1, lambda c: c.post("/predict", files=files)),
        f"the same from {threads} clients at once (one per decode thread)": (threads, lambda c: c.post("/predict", files=files)),
        f"V2 JSON image_pixels [1, {height}, 1000, 3] ({len(pixels) / 1e6:.1f} MB)": (
            1, lambda c: c.post(f"/v2/models/{REGISTERED_MODEL_NAME}/infer", content=pixels, headers={"Content-Type": "application/json"})
        ),
    }
    with httpx.Client(base_url=url, timeout=300) as client:
        for _ in range(3):  # warm: allocator pools, the first decode
            client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")}).raise_for_status()
    print(f"serving RSS after warm-up {psutil.Process(service.process.pid).memory_info().rss / 1024 / 1024:.0f} MB; "
          f"{threads} decode threads; load average {os.getloadavg()[0]:.1f}")
    print(f"{'worst legal request':<72} {'peak MB above':>14} {'seconds':>8}  statuses")
    for name, (clients, send) in cases.items():

        def send_all() -> list[int]:
            statuses: list[int] = []

            def one() -> None:
                with httpx.Client(base_url=url, timeout=300) as client:
                    statuses.append(send(client).status_code)

            senders = [threading.Thread(target=one) for _ in range(clients)]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
            return statuses

        peak_mb, seconds, statuses = peak_memory(service.process.pid, send_all)
        print(f"{name:<72} {peak_mb:>14.0f} {seconds:>8.2f}  {statuses}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--model-uri", default=os.environ.get("MODEL_URI", CHAMPION_URI))
    parser.add_argument("--seconds", type=float, default=8.0, help="time budget per target and client count")
    parser.add_argument("--requests", type=int, default=200, help="request budget per target and client count")
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--zoo-model", help="without --tracking-uri: register this zoo model (e.g. ensemble, the "
                        "graph's champion) untrained instead of basic_cnn at 224 px")
    parser.add_argument("--batching", action="store_true", help="only the in-process rows and serving's /predict")
    parser.add_argument("--worst-request", action="store_true", help="only the peak memory and time of the worst legal requests")
    args = parser.parse_args()

    jpeg = args.image.read_bytes()
    budget = Budget(args.seconds, args.requests)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    services: list[Service] = []
    try:
        model_uri, tracking_uri = args.model_uri, args.tracking_uri
        if not tracking_uri:
            server, tracking_uri, model_uri = throwaway_model(work, args.zoo_model)
            services.append(server)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        from mlflow import MlflowClient

        aliased = "@" in model_uri
        if aliased:  # every target loads the same version, even if the alias moves meanwhile
            name, alias = model_uri.removeprefix("models:/").split("@")
            pinned = f"models:/{name}/{MlflowClient().get_model_version_by_alias(name, alias).version}"
        else:
            pinned = model_uri
        print(f"model {pinned} ({model_uri}) from {tracking_uri}; image {args.image} ({len(jpeg)} bytes)", flush=True)
        if args.worst_request:
            serving, url = start_serving(work, "serving", tracking_uri, pinned)
            services.append(serving)
            worst_requests(serving, url, jpeg)
        else:
            in_process, size = bench_in_process(pinned, jpeg, budget)
            print("in-process done", flush=True)

            serving, url = start_serving(work, "serving", tracking_uri, model_uri)
            services.append(serving)
            files = {"file": ("lesion.jpg", jpeg, "image/jpeg")}
            ours = bench_http("serving (this app)", url, lambda c: c.post("/predict", files=files), budget)
            if args.batching:
                print_table(in_process + ours, in_process, [], None, [])
            else:
                infer_path = f"/v2/models/{REGISTERED_MODEL_NAME}/infer"
                v2_body, v2_headers = v2_files_request([jpeg])
                ours += bench_http("serving V2 infer", url, lambda c: c.post(infer_path, content=v2_body, headers=v2_headers), budget)
                reload = reload_latency(url, tracking_uri, model_uri, jpeg) if aliased else None
                print("serving done", flush=True)

                serving.stop()
                # Two servers started alike, the same version pinned, only the prediction log differs.
                logged, logged_url = start_serving(work, "serving-log-on", tracking_uri, pinned, prediction_log="on")
                unlogged, unlogged_url = start_serving(work, "serving-log-off", tracking_uri, pinned, prediction_log="off")
                services += [logged, unlogged]
                log = log_cost(logged_url, unlogged_url, files, budget)
                logged.stop()
                unlogged.stop()
                print("prediction log on/off done", flush=True)

                mlflow_serve, mlflow_url = start_mlflow_serve(work, tracking_uri, pinned)
                services.append(mlflow_serve)
                payload = json.dumps({"inputs": decode_image(jpeg, size)[None].tolist()}).encode()
                headers = {"Content-Type": "application/json"}
                send = lambda c: c.post("/invocations", content=payload, headers=headers)  # noqa: E731
                theirs = bench_http("mlflow models serve", mlflow_url, send, budget, batches=False)
                print(f"mlflow models serve done (JSON payload {len(payload) / 1e6:.1f} MB)", flush=True)
                print_table(in_process + ours + log + theirs, in_process, theirs, reload, log)
    except BaseException:
        print(f"benchmark failed; server logs are kept in {work}", file=sys.stderr)
        raise
    finally:
        for service in services:
            service.stop()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
