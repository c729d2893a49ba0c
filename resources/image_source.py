"""The raw images: a local folder or an S3 prefix laid out as {train,test}/{benign,malignant}/."""

from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from resources.storage import S3_ERRORS, s3_client
from skin_cancer_contract.data import layout, parse_s3_uri


class ImageSourceError(RuntimeError):
    """The source is missing or unreadable; the message names where."""


class RawImageSource(dg.ConfigurableResource):
    """Reads images from `location`: a folder, or `s3://BUCKET/PREFIX` (the seed used `data/`)."""

    location: str
    s3: S3Resource | None = None

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def list_images(self) -> list[tuple[str, str, str]]:
        """(split, class, relative path) for every file, sorted; fails on a missing split or class."""
        return [(split, label, path) for split, label, path, _ in self.list_stamped_images()]

    def list_stamped_images(self) -> list[tuple[str, str, str, str]]:
        """`list_images` with a stamp per file that changes when the file does, read from the listing
        alone (no file is opened): its size and modification time in a folder, its ETag on S3."""
        found = []
        for split, label, folder in layout():
            stamps = self._list_folder(folder)
            if not stamps:
                raise ImageSourceError(
                    f"no images in {self.describe(folder)} "
                    f"(SKIN_CANCER_DATA={self.location}); expected {{train,test}}/{{benign,malignant}}/*.jpg"
                )
            found += [(split, label, f"{folder}/{name}", stamp) for name, stamp in stamps.items()]
        return sorted(found, key=lambda item: item[2])

    def read(self, relative_path: str) -> bytes:
        if not self.is_s3:
            return (Path(self.location) / relative_path).read_bytes()
        bucket, prefix = parse_s3_uri(self.location)
        try:
            return self._client().get_object(Bucket=bucket, Key=prefix + relative_path)["Body"].read()
        except S3_ERRORS as error:
            raise ImageSourceError(f"cannot read {self.describe(relative_path)}: {error}") from error

    def describe(self, relative_path: str = "") -> str:
        return f"{self.location.rstrip('/')}/{relative_path}"

    def _list_folder(self, folder: str) -> dict[str, str]:
        """Name -> stamp of the folder's files (hidden ones left out)."""
        if not self.is_s3:
            root = Path(self.location)
            if not root.is_dir():
                raise ImageSourceError(f"data folder {root} does not exist (set SKIN_CANCER_DATA to a folder or s3:// URI)")
            path = root / folder
            if not path.is_dir():
                return {}
            files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
            return {p.name: f"{(stat := p.stat()).st_size}:{stat.st_mtime_ns}" for p in sorted(files)}
        bucket, prefix = parse_s3_uri(self.location)
        try:  # the delimiter keeps to the folder's own objects, as iterdir() does
            paginator = self._client().get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=bucket, Prefix=f"{prefix}{folder}/", Delimiter="/")
            items = {item["Key"].rsplit("/", 1)[-1]: item["ETag"] for page in pages for item in page.get("Contents", [])}
        except S3_ERRORS as error:
            raise ImageSourceError(f"cannot list {self.describe(folder)}: {error}") from error
        return {name: items[name] for name in sorted(items) if name and not name.startswith(".")}

    def _client(self):
        if self.s3 is None:
            raise ImageSourceError(f"{self.location} is on S3 but no S3 resource is configured (AWS_* variables)")
        return s3_client(self.s3)
