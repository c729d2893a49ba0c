"""Flat result rows from serving's answers, and their JSON and CSV downloads."""

import csv
import io
import json

COLUMNS = (
    "prediction_id",
    "filename",
    "label",
    "probability_malignant",
    "threshold",
    "model_name",
    "model_version",
    "model_class",
)


def prediction_rows(answer: dict) -> list[dict]:
    """One row per prediction in a /predict answer, with the model that made it."""
    model = answer["model"]
    return [
        {
            "prediction_id": prediction.get("prediction_id"),
            "filename": prediction["filename"],
            "label": prediction["label"],
            "probability_malignant": float(prediction["probability_malignant"]),
            "threshold": float(prediction["threshold"]),
            "model_name": model.get("name"),
            "model_version": str(prediction.get("model_version") or model.get("version")),
            "model_class": model.get("model_class"),
        }
        for prediction in answer["predictions"]
    ]


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
