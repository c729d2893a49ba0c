"""The data vocabulary: folder layout, S3 URIs, labels."""

import pytest

from skin_cancer_contract.data import label_name, layout, parse_s3_uri


def test_layout_lists_every_split_and_class_folder():
    assert [folder for _, _, folder in layout()] == ["train/benign", "train/malignant", "test/benign", "test/malignant"]


@pytest.mark.parametrize(
    "uri, expected",
    [("s3://bucket", ("bucket", "")), ("s3://bucket/", ("bucket", "")), ("s3://bucket/data", ("bucket", "data/")),
     ("s3://bucket//a/b/", ("bucket", "a/b/"))],
)
def test_s3_uris_split_into_bucket_and_prefix(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["/tmp/data", "s3://", "s3:///data", "http://bucket/data"])
def test_anything_else_is_not_an_s3_uri(uri):
    with pytest.raises(ValueError, match="is not an s3://BUCKET"):
        parse_s3_uri(uri)


def test_the_threshold_itself_is_called_malignant():
    assert label_name(0.3, 0.3) == "malignant"
    assert label_name(0.2999, 0.3) == "benign"
