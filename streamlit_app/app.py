"""The inference page: upload lesion images, ask serving, and read each answer with the model behind it.

Run with `streamlit run streamlit_app/app.py`; serving is found at $SERVING_URL.
"""

import os

import streamlit as st

from skin_cancer_contract.data import CLASSES, MALIGNANT
from skin_cancer_contract.evaluation import METRIC_LABELS as LABEL_OF_METRIC
from skin_cancer_contract.api import DEFAULT_SERVING_URL
from streamlit_app.client import FileRejected, ServingClient, ServingError
from streamlit_app.results import prediction_rows, to_csv, to_json

DISCLAIMER = (
    "**Research demo, not a medical diagnosis.** The classifier was trained on a small public "
    "data set of dermoscopy images and is often wrong. Show any skin lesion that worries you "
    "to a dermatologist."
)
METRIC_LABELS = {f"test_{name}": label for name, label in LABEL_OF_METRIC.items()}
THUMBNAIL_WIDTH = 160


def metric_line(name: str, value: float) -> str:
    """`Accuracy: 0.912`; other metrics (confusion counts) by their plain name and value."""
    if name in METRIC_LABELS:
        return f"{METRIC_LABELS[name]}: {value:.3f}"
    return f"{name.removeprefix('test_').replace('_', ' ').capitalize()}: {value:g}"


def show_serving_status(client: ServingClient) -> None:
    """Sidebar: whether serving is ready, and the model it holds with its test metrics."""
    sidebar = st.sidebar
    sidebar.header("Prediction service")
    sidebar.caption(client.base_url)
    sidebar.button("Refresh status")
    try:
        readiness = client.readiness()
        if not readiness.ready:
            sidebar.warning(f"Serving is up but not ready: {readiness.reason}")
            return
        card = client.model_card()
    except ServingError as error:
        sidebar.error(str(error))
        return
    sidebar.success("Serving is ready")
    sidebar.subheader("Model")
    sidebar.markdown(
        f"**{card.get('name')}** version **{card.get('version')}**  \n"
        f"class `{card.get('model_class')}` · input {card.get('image_size')} px  \n"
        f"called malignant from {card.get('threshold', 0.5):.1%}"
    )
    metrics = card.get("metrics") or {}
    names = [name for name in METRIC_LABELS if name in metrics] + sorted(set(metrics) - set(METRIC_LABELS))
    lines = [f"- {metric_line(name, metrics[name])}" for name in names if isinstance(metrics[name], (int, float))]
    if lines:
        sidebar.caption("Test-set metrics")
        sidebar.markdown("\n".join(lines))
    if card.get("loaded_at"):
        sidebar.caption(f"Loaded at {card['loaded_at']}")
    reload = card.get("reload") or {}
    if reload.get("state") == "loading":
        sidebar.info("A new model version is loading; this one answers until it is ready.")
    elif reload.get("state") == "failed":
        sidebar.warning(f"The last model reload failed, this version still answers: {reload.get('error')}")


def show_image(container, data: bytes) -> None:
    """A thumbnail; a file the browser cannot show still gets its prediction or rejection."""
    try:
        container.image(data, width=THUMBNAIL_WIDTH)
    except Exception:  # noqa: BLE001 - any undecodable upload only loses its preview
        container.caption("(no preview: not a readable image)")


def predict_all(client: ServingClient, uploads: list) -> list[dict]:
    """One request per file, so the bar advances and one bad file does not sink the others.

    Returns one outcome per upload, {"row": ...} or {"error": ...}; raises ServingError when
    serving itself cannot answer.
    """
    bar = st.progress(0.0, text="Starting predictions")
    outcomes = []
    for index, upload in enumerate(uploads):
        bar.progress(index / len(uploads), text=f"Predicting {upload.name} ({index + 1} of {len(uploads)})")
        try:
            answer = client.predict(upload.name, upload.getvalue(), upload.type)
            outcomes.append({"row": prediction_rows(answer)[0]})
        except FileRejected as error:
            outcomes.append({"error": str(error)})
        except ServingError:
            bar.empty()
            raise
    bar.progress(1.0, text=f"Done: {len(uploads)} image(s)")
    return outcomes


def show_outcome(upload, outcome: dict) -> None:
    image_column, text_column = st.columns([1, 3])
    show_image(image_column, upload.getvalue())
    text_column.markdown(f"**{upload.name}**")
    if "error" in outcome:
        text_column.error(outcome["error"])
        return
    row = outcome["row"]
    colour = "red" if row["label"] == CLASSES[MALIGNANT] else "green"
    probability = row["probability_malignant"]
    text_column.markdown(f"Prediction: :{colour}[**{row['label']}**]")
    text_column.progress(
        min(max(probability, 0.0), 1.0),
        text=f"Probability of malignant: {probability:.1%} (called malignant from {row['threshold']:.1%})",
    )
    text_column.caption(f"Answered by {row['model_name']} version {row['model_version']} ({row['model_class']})")


def show_downloads(rows: list[dict]) -> None:
    st.dataframe(rows, hide_index=True)
    json_column, csv_column = st.columns(2)
    json_column.download_button(
        "Download JSON", to_json(rows), file_name="predictions.json", mime="application/json", on_click="ignore"
    )
    csv_column.download_button(
        "Download CSV", to_csv(rows), file_name="predictions.csv", mime="text/csv", on_click="ignore"
    )


def forget_outcomes() -> None:
    st.session_state.pop("outcomes", None)


def main() -> None:
    st.set_page_config(page_title="Skin lesion classifier", page_icon="🔬", layout="wide")
    st.set_option("client.showErrorDetails", "none")  # a bug must not show users a traceback
    st.set_option("client.toolbarMode", "viewer")
    client = ServingClient(os.environ.get("SERVING_URL", DEFAULT_SERVING_URL))
    st.title("Skin lesion classifier")
    st.warning(DISCLAIMER)
    show_serving_status(client)

    uploads = st.file_uploader(
        "Dermoscopy images (JPEG or PNG)",
        type=["jpg", "jpeg", "png"],
        accept_multiple_files=True,
        on_change=forget_outcomes,
    )
    if st.button("Predict", type="primary", disabled=not uploads):
        try:
            st.session_state["outcomes"] = predict_all(client, uploads)
        except ServingError as error:
            forget_outcomes()
            st.error(str(error))

    outcomes = st.session_state.get("outcomes")
    if uploads and outcomes and len(outcomes) == len(uploads):
        st.subheader("Results")
        for upload, outcome in zip(uploads, outcomes):
            show_outcome(upload, outcome)
        rows = [outcome["row"] for outcome in outcomes if "row" in outcome]
        if rows:
            show_downloads(rows)
    elif uploads:
        columns = st.columns(4)
        for index, upload in enumerate(uploads):
            show_image(columns[index % 4], upload.getvalue())
            columns[index % 4].caption(upload.name)


main()
