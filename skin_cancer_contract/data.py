"""The data set's vocabulary: splits, classes, labels and the folder layout of the raw images."""

SPLITS = ("train", "test")
CLASSES = ("benign", "malignant")
LABELS = {name: index for index, name in enumerate(CLASSES)}
"""Integer label of each class: 0 benign, 1 malignant."""
MALIGNANT = LABELS["malignant"]


def layout() -> list[tuple[str, str, str]]:
    """(split, class, relative folder) of every folder of the raw images: `{train,test}/{benign,malignant}`."""
    return [(split, label, f"{split}/{label}") for split in SPLITS for label in CLASSES]


def label_name(probability: float, threshold: float) -> str:
    """The class a malignant probability is called at `threshold`."""
    return CLASSES[MALIGNANT] if probability >= threshold else CLASSES[1 - MALIGNANT]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://BUCKET/PRE/FIX` -> ("BUCKET", "PRE/FIX/"); the prefix is "" or ends with one slash."""
    if not uri.startswith("s3://") or not uri[len("s3://") :].split("/")[0]:
        raise ValueError(f"{uri!r} is not an s3://BUCKET[/PREFIX] URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""
