"""Benchmark: storing and loading `train_images` through the project's IO manager on S3.

    .venv/bin/python bench/io_manager.py [--endpoint URL --bucket NAME] [--repeats 3]

The array is the real training set decoded at 224 px (about 400 MB of uint8; decoded once
and cached under the temp folder). Without an endpoint it starts a throwaway `moto_server`
on loopback, as a separate process. Three ways of moving the same array, each against
the same server:
  project   ArtifactIOManager + S3ArtifactStore (.npy streamed, no pickle)
  pickle    dagster-aws's S3PickleIOManager
  raw       boto3 put_object / get_object of the .npy bytes (the reference)
Every store and every load runs in a fresh child process, so one variant's memory never
counts against another; peak memory is the child's peak RSS (VmHWM) above its RSS before
the array existed. Each round runs every variant back to back (in rotating order), and the
ratio to raw is the median of the per-round ratios, which keeps a busy machine's swings out
of the comparison. The table shows the targets of issue 3: project >= 0.8x raw throughput,
peak <= 1.5x the array.
"""

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.arrays import images_path, split_arrays  # noqa: E402
from skin_cancer_assets.environment import default_data_folder  # noqa: E402
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http  # noqa: E402

VARIANTS = ("project", "pickle", "raw")
CACHE = images_path("train")
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
THROUGHPUT_TARGET = 0.8
MEMORY_TARGET = 1.5


def memory(field: str) -> int:
    """VmRSS or VmHWM (peak RSS) of this process in bytes.

    Not getrusage: its ru_maxrss survives exec, so a child would start at its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def reset_peak() -> int:
    """Start a new peak-RSS window (Linux >= 4.0); returns the RSS it starts from."""
    Path("/proc/self/clear_refs").write_text("5")
    return memory("VmRSS")


def s3_resource(endpoint: str):
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=endpoint, **CREDENTIALS)


def npy_header(array: np.ndarray) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue()


def time_calls(client, operation: str) -> list[float]:
    """Seconds spent in `operation` calls of `client`, summed into the returned one-item list."""
    spent, started = [0.0], []

    def finished(**_) -> None:
        spent[0] += time.perf_counter() - started.pop()

    client.meta.events.register(f"before-call.s3.{operation}", lambda **_: started.append(time.perf_counter()))
    client.meta.events.register(f"after-call.s3.{operation}", finished)
    return spent


def child(variant: str, phase: str, endpoint: str, bucket: str) -> dict:
    """One store or load in this process: seconds, bytes, and the peak RSS above the start."""
    import dagster as dg

    from resources.storage import ArtifactIOManager, S3ArtifactStore, s3_client

    key = dg.AssetKey("train_images")
    s3 = s3_resource(endpoint)
    client = s3_client(s3)
    io_manager = {
        "project": lambda: ArtifactIOManager(store=S3ArtifactStore(s3=s3, bucket=bucket, prefix="project")),
        "pickle": lambda: __import__("dagster_aws.s3", fromlist=["S3PickleIOManager"]).S3PickleIOManager(
            s3_resource=s3, s3_bucket=bucket, s3_prefix="pickle"
        ),
    }.get(variant, lambda: None)()
    client.list_buckets()  # connect before measuring
    assembling = time_calls(client, "CompleteMultipartUpload")
    baseline = reset_peak()
    if phase == "store":
        array = np.load(CACHE, allow_pickle=False)
        start = time.perf_counter()
        if variant == "raw":
            body = npy_header(array) + memoryview(array.reshape(-1))  # the bytes put_object needs
            start = time.perf_counter()
            client.put_object(Bucket=bucket, Key="raw/train_images.npy", Body=body)
        else:
            with dg.build_output_context(asset_key=key) as context:
                io_manager.handle_output(context, array)
    else:
        start = time.perf_counter()
        if variant == "raw":
            body = client.get_object(Bucket=bucket, Key="raw/train_images.npy")["Body"].read()
            header = io.BytesIO(body[:4096])
            np.lib.format.read_magic(header)
            shape, _, dtype = np.lib.format.read_array_header_2_0(header)
            array = np.frombuffer(body, dtype=dtype, offset=header.tell()).reshape(shape)
        else:
            with dg.build_output_context(asset_key=key) as upstream:
                with dg.build_input_context(asset_key=key, upstream_output=upstream) as context:
                    array = io_manager.load_input(context)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "assemble_seconds": assembling[0],
        "bytes": array.nbytes,
        "peak_bytes": memory("VmHWM") - baseline,
        "sha256": hashlib.sha256(memoryview(np.ascontiguousarray(array).reshape(-1))).hexdigest(),
    }


def run_child(variant: str, phase: str, endpoint: str, bucket: str) -> dict:
    args = [sys.executable, __file__, "--child", variant, phase, "--endpoint", endpoint, "--bucket", bucket]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0:
        raise SystemExit(f"{variant} {phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def versus_raw(runs: list[dict], raw: list[dict], seconds=lambda run: run["seconds"]) -> float:
    """Median over rounds of raw's time over this variant's, each pair run back to back."""
    return statistics.median(r["seconds"] / seconds(run) for run, r in zip(runs, raw, strict=True))


def print_table(results: dict, array_bytes: int) -> None:
    mb = array_bytes / 1e6
    rounds = len(results[("raw", "store")])
    print(f"\ntrain_images: {mb:.0f} MB uint8; {rounds} rounds; MB/s and x raw: medians; peak: max over rounds")
    print(f"{'variant':<9} {'phase':<6} {'MB/s':>7} {'x raw':>7} {'peak MB':>8} {'x array':>8}   targets")
    for (variant, phase), runs in results.items():
        peak = max(r["peak_bytes"] for r in runs)
        speed, memory = versus_raw(runs, results[("raw", phase)]), peak / array_bytes
        seconds = statistics.median(r["seconds"] for r in runs)
        verdict = ""
        if variant == "project":
            verdict = (
                f"throughput {'ok' if speed >= THROUGHPUT_TARGET else 'MISSED'} (>= {THROUGHPUT_TARGET}x), "
                f"memory {'ok' if memory <= MEMORY_TARGET else 'MISSED'} (<= {MEMORY_TARGET}x)"
            )
        print(f"{variant:<9} {phase:<6} {mb / seconds:>7.0f} {speed:>7.2f} {peak / 1e6:>8.0f} {memory:>8.2f}   {verdict}")
    project = results[("project", "store")]
    assembling = statistics.median(r["assemble_seconds"] for r in project)
    without = versus_raw(project, results[("raw", "store")], lambda run: run["seconds"] - run["assemble_seconds"])
    print(
        f"project store spends {assembling:.1f} s (median) in CompleteMultipartUpload, where the server joins "
        f"the parts; without it: {without:.2f}x raw"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", help="an S3-compatible server; default: a throwaway moto_server")
    parser.add_argument("--bucket", default="io-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=os.environ.get("SKIN_CANCER_DATA", str(default_data_folder())))
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.endpoint, args.bucket)))
        return

    array, _ = split_arrays("train", args.data)
    digest = hashlib.sha256(memoryview(array.reshape(-1))).hexdigest()
    array_bytes = array.nbytes
    del array
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix="io-bench-")) / "moto.log"
        server = Service([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/moto-api/", timeout=60, process=server.process)
    try:
        from resources.storage import s3_client

        client = s3_client(s3_resource(endpoint))
        if args.bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            client.create_bucket(Bucket=args.bucket)
        results = {(v, p): [] for p in ("store", "load") for v in VARIANTS}
        for repeat in range(args.repeats):
            for phase in ("store", "load"):
                for variant in VARIANTS[repeat % 3 :] + VARIANTS[: repeat % 3]:  # no variant always goes first
                    result = run_child(variant, phase, endpoint, args.bucket)
                    if result["sha256"] != digest:
                        raise SystemExit(f"{variant} {phase}: the array changed on the way (sha256 differs)")
                    results[(variant, phase)].append(result)
                    print(f"run {repeat + 1} {variant:<8} {phase:<5} {result['seconds']:6.2f} s", flush=True)
        print_table(results, array_bytes)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
