"""Put the local image set into a bucket in the seed's layout, so `raw_images` can read it from S3.

    python -m skin_cancer_assets.upload_data s3://BUCKET/data [--source FOLDER]

Copies `{train,test}/{benign,malignant}/*` from SKIN_CANCER_DATA (when it is a folder) or
../shared/datasets/skin-cancer to `s3://BUCKET/data/{train,test}/{benign,malignant}/`,
creating the bucket if needed. Objects already there with the same size and MD5 ETag are
skipped, so running it again only sends what changed. The destination defaults to
SKIN_CANCER_DATA when that is an s3:// URI. Connection settings are the AWS_* variables
that the pipeline uses (AWS_ENDPOINT_URL for MinIO or any S3-compatible server).
"""

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from skin_cancer_assets.environment import default_data_folder
from skin_cancer_assets.pipeline_resources import s3_resource
from resources.storage import S3_ERRORS, is_not_found, s3_client
from skin_cancer_contract.data import layout, parse_s3_uri

WORKERS = 8


class UploadError(RuntimeError):
    """The source or the bucket is unusable; the message says which and why."""


def local_files(source: Path) -> list[tuple[str, Path]]:
    """(relative key, path) of every file in the layout, sorted; hidden files are left out."""
    if not source.is_dir():
        raise UploadError(f"data folder {source} does not exist (pass --source or set SKIN_CANCER_DATA)")
    files = []
    for _, _, relative in layout():
        folder = source / relative
        if not folder.is_dir():
            raise UploadError(f"{folder} is missing; expected {{train,test}}/{{benign,malignant}}/ under {source}")
        names = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        files += [(f"{relative}/{name}", folder / name) for name in names]
    return sorted(files)


def ensure_bucket(client, bucket: str) -> None:
    try:
        client.head_bucket(Bucket=bucket)
        return
    except S3_ERRORS as error:
        if not is_not_found(error):
            raise
    region = client.meta.region_name
    location = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client.create_bucket(Bucket=bucket, **location)
    print(f"created bucket {bucket}", flush=True)


def existing_objects(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key -> (size, ETag without quotes) of everything under `prefix`."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({item["Key"]: (item["Size"], item["ETag"].strip('"')) for item in page.get("Contents", [])})
    return found


def unchanged(path: Path, remote: tuple[int, str] | None) -> bool:
    """Same size and same MD5 (a single-part object's ETag); anything else is sent again."""
    if remote is None or remote[0] != path.stat().st_size:
        return False
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() == remote[1]


def upload(destination: str, source: Path, client) -> dict:
    """Upload what differs; returns counts of uploaded and skipped files and bytes sent."""
    try:
        bucket, prefix = parse_s3_uri(destination)
    except ValueError as error:
        raise UploadError(f"destination {error}") from None
    files = local_files(source)
    ensure_bucket(client, bucket)
    remote = existing_objects(client, bucket, prefix)
    todo = [(prefix + key, path) for key, path in files if not unchanged(path, remote.get(prefix + key))]
    print(f"{len(files)} files in {source}: {len(files) - len(todo)} already in s3://{bucket}/{prefix}, {len(todo)} to send", flush=True)
    sent = 0
    started = time.monotonic()

    def put(item: tuple[str, Path]) -> int:
        key, path = item
        data = path.read_bytes()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data)
        except S3_ERRORS as error:
            raise UploadError(f"upload of {path} to s3://{bucket}/{key} failed: {error}") from error
        return len(data)

    with ThreadPoolExecutor(WORKERS) as pool:
        for done, size in enumerate(pool.map(put, todo), start=1):
            sent += size
            if done % 200 == 0 or done == len(todo):
                rate = sent / 2**20 / max(time.monotonic() - started, 1e-6)
                print(f"  {done}/{len(todo)} files, {sent / 2**20:.1f} MiB ({rate:.1f} MiB/s)", flush=True)
    return {"uploaded": len(todo), "skipped": len(files) - len(todo), "bytes": sent}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = os.environ.get("SKIN_CANCER_DATA", "")
    on_s3 = data.startswith("s3://")
    parser.add_argument("destination", nargs="?", default=data if on_s3 else None, help="s3://BUCKET/PREFIX")
    parser.add_argument("--source", type=Path, default=Path(data) if data and not on_s3 else default_data_folder())
    args = parser.parse_args(argv)
    if args.destination is None:
        parser.error("give the destination s3://BUCKET/PREFIX (or set SKIN_CANCER_DATA to it)")
    client = s3_client(s3_resource().process_config_and_initialize())
    endpoint = client.meta.endpoint_url
    try:
        counts = upload(args.destination, args.source, client)
    except UploadError as error:
        sys.exit(f"error: {error}")
    except S3_ERRORS as error:
        sys.exit(f"error: S3 at {endpoint} refused {args.destination}: {error}")
    print(f"done: {counts['uploaded']} uploaded, {counts['skipped']} unchanged, to {args.destination} at {endpoint}")


if __name__ == "__main__":
    main()
