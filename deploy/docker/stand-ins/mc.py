#!/usr/bin/env python3
"""Stand-in for MinIO's `mc`, with only what deploy/docker/docker-compose.yaml runs:
`mc ready local`, `mc alias set NAME URL KEY SECRET`, `mc mb [--ignore-existing] NAME/BUCKET`
and `mc mirror [--overwrite] DIR NAME/BUCKET[/PREFIX]`, over boto3."""

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3

ALIASES = Path.home() / ".mc-stand-in.json"


def client(alias: str):
    settings = json.loads(ALIASES.read_text())[alias]
    return boto3.client("s3", endpoint_url=settings["url"], aws_access_key_id=settings["key"],
                        aws_secret_access_key=settings["secret"], region_name="us-east-1")


def split_target(target: str) -> tuple[str, str, str]:
    alias, _, path = target.partition("/")
    bucket, _, prefix = path.partition("/")
    if not bucket:
        sys.exit(f"mc: {target!r} names no bucket (ALIAS/BUCKET[/PREFIX])")
    return alias, bucket, prefix.strip("/")


def ready(_alias: str) -> None:
    try:
        urllib.request.urlopen("http://127.0.0.1:9000/", timeout=4)
    except urllib.error.HTTPError:
        pass  # any S3 answer, even "access denied", means the server is up


def alias_set(name: str, url: str, key: str, secret: str) -> None:
    aliases = json.loads(ALIASES.read_text()) if ALIASES.exists() else {}
    aliases[name] = {"url": url, "key": key, "secret": secret}
    ALIASES.write_text(json.dumps(aliases))
    print(f"Added `{name}` successfully.")


def make_bucket(*args: str) -> None:
    alias, bucket, _ = split_target(args[-1])
    s3 = client(alias)
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    if bucket in existing:
        if "--ignore-existing" not in args:
            sys.exit(f"mc: bucket {bucket} exists")
    else:
        s3.create_bucket(Bucket=bucket)
    print(f"Bucket created successfully `{args[-1]}`.")


def mirror(*args: str) -> None:
    source, target = Path(args[-2]), args[-1]
    alias, bucket, prefix = split_target(target)
    s3 = client(alias)
    files = [path for path in sorted(source.rglob("*")) if path.is_file()]
    for path in files:
        key = "/".join(part for part in (prefix, path.relative_to(source).as_posix()) if part)
        s3.upload_file(str(path), bucket, key)
    print(f"mirrored {len(files)} files from {source} to {target}")


COMMANDS = {("ready",): ready, ("alias", "set"): alias_set, ("mb",): make_bucket, ("mirror",): mirror}

if __name__ == "__main__":
    for words, command in COMMANDS.items():
        if tuple(sys.argv[1:1 + len(words)]) == words:
            command(*sys.argv[1 + len(words):])
            break
    else:
        sys.exit(f"mc stand-in: unsupported command {sys.argv[1:]}")
