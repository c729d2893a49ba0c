"""The inference page: upload lesion images, ask serving, and read each answer with the model behind it;
and the Production page: links to the day's monitoring figures in Dagster, plots of serving's recent answers.

Run with `streamlit run streamlit_app/app.py`; serving is found at $SERVING_URL, the Dagster UI that
the Production page links to at $DAGSTER_UI_URL. With $SERVING_FEEDBACK_TOKEN (serving's), each
result offers to confirm its diagnosis; the Production page reads serving's recent predictions with
$SERVING_MONITORING_TOKEN, else $SERVING_FEEDBACK_TOKEN (as serving does).

Each result shows serving's heat map of where the image drives the answer (POST /explain,
occlusion sensitivity) beside the image, and its label at either operating point: the served one
(malignant recall first) or the accuracy-maximising one the version reports; the page shows the
version's model card.

Streamlit reruns this script on every interaction, so what does not change between reruns is
cached: one HTTP client per serving URL, serving's limits, its status and model card for a few
seconds, each upload's thumbnail (decoded and resized once, by its file id) and each upload's
heat map per model version. The status panel refreshes itself every STATUS_REFRESH_S seconds.
"""

import io
import os
import re

import streamlit as st
from PIL import Image

from skin_cancer_contract.api import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_SERVING_URL
from skin_cancer_contract.data import CLASSES, MALIGNANT, label_name
from skin_cancer_contract.evaluation import METRIC_LABELS as LABEL_OF_METRIC
from skin_cancer_contract.imaging import ImageDecodeError, open_image
from streamlit_app.client import Explanation, FileRejected, Limits, Readiness, ServingClient, ServingError
from streamlit_app.monitoring import asset_links, recent_figures
from streamlit_app.results import prediction_rows, to_csv, to_json

DISCLAIMER = (
    "**Research demo, not a medical diagnosis.** The classifier was trained on a small public "
    "data set of dermoscopy images and is often wrong. Show any skin lesion that worries you "
    "to a dermatologist."
)
METRIC_LABELS = {f"test_{name}": label for name, label in LABEL_OF_METRIC.items()}
THUMBNAIL_WIDTH = 160
STATUS_TTL_S = 5
STATUS_REFRESH_S = 10
THUMBNAIL_MAX_PIXELS = DEFAULT_MAX_IMAGE_PIXELS  # serving's default: larger uploads get no preview
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"  # make dev's Dagster webserver (DAGSTER_UI_URL)
SERVED_POINT = "Served: malignant recall first"
ACCURACY_POINT = "Accuracy-maximising (reported)"


@st.cache_resource
def serving_client(base_url: str) -> ServingClient:
    """One client, and so one pool of kept-alive connections, per serving URL for every session."""
    return ServingClient(base_url)


@st.cache_data(ttl=60, show_spinner=False)
def serving_limits(base_url: str) -> Limits:
    """Serving's upload limits; errors are not cached, so a down server is asked again."""
    return serving_client(base_url).limits()


@st.cache_data(ttl=STATUS_TTL_S, show_spinner=False)
def serving_status(base_url: str) -> tuple[Readiness, dict | None]:
    """Readiness and, when ready, the model card; errors are not cached, so a down server is asked again."""
    client = serving_client(base_url)
    readiness = client.readiness()
    return readiness, client.model_card() if readiness.ready else None


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(file_id: str, _data: bytes) -> bytes | None:
    """A PNG preview of an upload, made once per file; None when it is not a readable JPEG or PNG."""
    try:
        with open_image(_data, THUMBNAIL_MAX_PIXELS) as image:
            image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
    except (ImageDecodeError, OSError):
        return None
    return buffer.getvalue()


@st.cache_data(max_entries=256, show_spinner="Computing the heat map (50 model calls)")
def explanation(base_url: str, file_id: str, model_version: str, _upload_name: str, _data: bytes, _mime_type: str | None) -> Explanation:
    """Serving's heat map of one upload, asked once per file and model version (50 model calls each);
    errors are not cached."""
    return serving_client(base_url).explain(_upload_name, _data, _mime_type)


def heat_map_over(image_png: bytes, heat_map_png: bytes) -> bytes:
    """The heat map (the model's square input) stretched over the image, as serving squeezed the image."""
    with Image.open(io.BytesIO(image_png)) as image, Image.open(io.BytesIO(heat_map_png)) as heat_map:
        laid = Image.alpha_composite(image.convert("RGBA"), heat_map.convert("RGBA").resize(image.size, Image.Resampling.BILINEAR))
    buffer = io.BytesIO()
    laid.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def accuracy_threshold_of(row: dict, card: dict | None) -> float | None:
    """The accuracy-maximising threshold of the version that answered `row`, from serving's model card;
    None when that version reports none or serving holds another one now."""
    if card and str(card.get("version")) == row["model_version"]:
        return card.get("accuracy_threshold")
    return None


def metric_line(name: str, value: float) -> str:
    """`Accuracy: 0.912`; other metrics (confusion counts) by their plain name and value."""
    if name in METRIC_LABELS:
        return f"{METRIC_LABELS[name]}: {value:.3f}"
    return f"{name.removeprefix('test_').replace('_', ' ').capitalize()}: {value:g}"


@st.fragment(run_every=STATUS_REFRESH_S)
def show_serving_status(base_url: str) -> None:
    """Sidebar: whether serving is ready, and the model it holds with its test metrics."""
    st.header("Prediction service")
    st.caption(base_url)
    if st.button("Refresh status"):
        serving_status.clear()
    try:
        readiness, card = serving_status(base_url)
    except ServingError as error:
        st.error(str(error))
        return
    if not readiness.ready:
        st.warning(f"Serving is up but not ready: {readiness.reason}")
        return
    st.success("Serving is ready")
    st.subheader("Model")
    st.markdown(
        f"**{card.get('name')}** version **{card.get('version')}**  \n"
        f"class `{card.get('model_class')}` · input {card.get('image_size')} px  \n"
        f"called malignant from {card.get('threshold', 0.5):.1%}"
    )
    metrics = card.get("metrics") or {}
    names = [name for name in METRIC_LABELS if name in metrics] + sorted(set(metrics) - set(METRIC_LABELS))
    lines = [f"- {metric_line(name, metrics[name])}" for name in names if isinstance(metrics[name], (int, float))]
    if lines:
        st.caption("Test-set metrics")
        st.markdown("\n".join(lines))
    if card.get("loaded_at"):
        st.caption(f"Loaded at {card['loaded_at']}")
    reload = card.get("reload") or {}
    if reload.get("state") == "loading":
        st.info("A new model version is loading; this one answers until it is ready.")
    elif reload.get("state") == "failed":
        st.warning(f"The last model reload failed, this version still answers: {reload.get('error')}")


def show_image(container, upload) -> None:
    """A thumbnail; a file that is not a readable image still gets its prediction or rejection."""
    preview = thumbnail(upload.file_id, upload.getvalue())
    if preview is None:
        container.caption("(no preview: not a readable image)")
    else:
        container.image(preview, width=THUMBNAIL_WIDTH)


def request_chunks(uploads: list, limits: Limits) -> list[list]:
    """The uploads grouped into requests serving takes: at most MAX_FILES images and MAX_UPLOAD_MB together."""
    budget = limits.max_upload_mb * 1024 * 1024 * 0.95  # the multipart framing takes a little
    chunks: list[list] = [[]]
    size = 0
    for upload in uploads:
        if chunks[-1] and (len(chunks[-1]) == limits.max_files or size + upload.size > budget):
            chunks.append([])
            size = 0
        chunks[-1].append(upload)
        size += upload.size
    return chunks


def predict_all(client: ServingClient, uploads: list, limits: Limits) -> list[dict]:
    """Several uploads per request; a refused request is retried file by file, so one bad file
    does not sink the others.

    Returns one outcome per upload, {"row": ...} or {"error": ...}; raises ServingError when
    serving itself cannot answer.
    """
    bar = st.progress(0.0, text="Starting predictions")
    outcomes: list[dict] = []
    for chunk in request_chunks(uploads, limits):
        done = len(outcomes) + len(chunk)
        bar.progress(len(outcomes) / len(uploads), text=f"Predicting images {len(outcomes) + 1} to {done} of {len(uploads)}")
        try:
            outcomes += predict_chunk(client, chunk)
        except ServingError:
            bar.empty()
            raise
    bar.progress(1.0, text=f"Done: {len(uploads)} image(s)")
    return outcomes


def predict_chunk(client: ServingClient, uploads: list) -> list[dict]:
    files = [(upload.name, upload.getvalue(), upload.type) for upload in uploads]
    try:
        return [{"row": row} for row in prediction_rows(client.predict(files))]
    except FileRejected as error:
        if len(files) == 1:
            return [{"error": str(error)}]
    return [outcome for upload in uploads for outcome in predict_chunk(client, [upload])]


def show_outcome(client: ServingClient, upload, outcome: dict, feedback_token: str | None, card: dict | None, point: str) -> None:
    image_column, heat_map_column, text_column = st.columns([1, 1, 3])
    show_image(image_column, upload)
    text_column.markdown(f"**{upload.name}**")
    if "error" in outcome:
        text_column.error(outcome["error"])
        return
    row = outcome["row"]
    show_heat_map(heat_map_column, upload, row["model_version"])
    probability = row["probability_malignant"]
    threshold, label, at_point = row["threshold"], row["label"], ""
    if point == ACCURACY_POINT:
        accuracy_threshold = accuracy_threshold_of(row, card)
        if accuracy_threshold is None:
            text_column.caption(f"No accuracy-maximising threshold is known for version {row['model_version']}: the served label is shown.")
        else:
            threshold, label, at_point = accuracy_threshold, label_name(probability, accuracy_threshold), " at the accuracy-maximising point"
    colour = "red" if label == CLASSES[MALIGNANT] else "green"
    text_column.markdown(f"Prediction{at_point}: :{colour}[**{label}**]")
    text_column.progress(
        min(max(probability, 0.0), 1.0),
        text=f"Probability of malignant: {probability:.1%} (called malignant from {threshold:.1%})",
    )
    text_column.caption(f"Answered by {row['model_name']} version {row['model_version']} ({row['model_class']})")
    if row.get("prediction_id"):
        with text_column.expander("Confirm diagnosis"):
            confirm_diagnosis(client, row["prediction_id"], feedback_token)


def show_heat_map(container, upload, model_version: str) -> None:
    """Serving's heat map laid over the thumbnail; a failed explanation leaves the result as it is."""
    preview = thumbnail(upload.file_id, upload.getvalue())
    if preview is None:
        return
    try:
        explained = explanation(serving_url(), upload.file_id, model_version, upload.name, upload.getvalue(), upload.type)
    except ServingError as error:
        container.caption(f"No heat map: {error}")
        return
    container.image(heat_map_over(preview, explained.heat_map_png), width=THUMBNAIL_WIDTH)
    container.caption(
        f"Heat map ({explained.method}): red speaks for malignant, blue for benign; masking the strongest "
        f"region moves the probability by {explained.largest_change:.2%}"
    )


def show_model_card(card: dict | None) -> None:
    """The served version's model card (its MLflow description), folded; its headings three levels
    down, so they do not outshout the page's."""
    if not card:
        return
    with st.expander(f"Model card: {card.get('name')} version {card.get('version')}"):
        description = card.get("description") or "This version has no model card (no description in the registry)."
        st.markdown(re.sub(r"^(#+) ", r"###\1 ", description, flags=re.MULTILINE))


def confirm_diagnosis(client: ServingClient, prediction_id: str, feedback_token: str | None) -> None:
    """Send a dermatologist's confirmed diagnosis of this prediction to serving's prediction log."""
    if feedback_token is None:
        st.caption("Confirming diagnoses is off: start the app with SERVING_FEEDBACK_TOKEN (the one serving has).")
        return
    diagnosis = st.radio("Confirmed diagnosis", CLASSES, horizontal=True, key=f"diagnosis-{prediction_id}")
    if st.button("Confirm diagnosis", key=f"confirm-{prediction_id}"):
        try:
            recorded = client.confirm_diagnosis(prediction_id, diagnosis, feedback_token)
        except ServingError as error:
            st.error(str(error))
            return
        if recorded:
            st.success(f"Recorded: {diagnosis}")
        else:
            st.warning(f"Not recorded: the prediction service is too busy to keep the diagnosis ({diagnosis}) now; confirm it again later.")


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


def serving_url() -> str:
    return os.environ.get("SERVING_URL", DEFAULT_SERVING_URL)


def classify_page() -> None:
    """Upload images, predict, read and download the answers."""
    base_url = serving_url()
    client = serving_client(base_url)
    try:
        limits = serving_limits(base_url)
    except ServingError:
        limits = Limits()  # serving's defaults while it cannot be asked
    st.title("Skin lesion classifier")
    st.warning(DISCLAIMER)
    try:
        card = serving_status(base_url)[1]
    except ServingError:
        card = None  # the sidebar says why
    show_model_card(card)

    uploads = st.file_uploader(
        "Dermoscopy images (JPEG or PNG)",
        type=["jpg", "jpeg", "png"],
        accept_multiple_files=True,
        on_change=forget_outcomes,
        max_upload_size=max(1, int(limits.max_upload_mb)),
    )
    if st.button("Predict", type="primary", disabled=not uploads):
        try:
            st.session_state["outcomes"] = predict_all(client, uploads, limits)
        except ServingError as error:
            forget_outcomes()
            st.error(str(error))

    outcomes = st.session_state.get("outcomes")
    if uploads and outcomes and len(outcomes) == len(uploads):
        st.subheader("Results")
        point = st.radio(
            "Operating point",
            (SERVED_POINT, ACCURACY_POINT),
            horizontal=True,
            help="Serving labels at the threshold chosen for a malignant recall of 0.90; the other one, also chosen on "
            "validation images, gives the most correct calls but misses more malignant lesions (the model card has both).",
        )
        feedback_token = os.environ.get("SERVING_FEEDBACK_TOKEN") or None
        for upload, outcome in zip(uploads, outcomes):
            show_outcome(client, upload, outcome, feedback_token, card, point)
        rows = [outcome["row"] for outcome in outcomes if "row" in outcome]
        if rows:
            show_downloads(rows)
    elif uploads:
        columns = st.columns(4)
        for index, upload in enumerate(uploads):
            show_image(columns[index % 4], upload)
            columns[index % 4].caption(upload.name)


@st.cache_data(ttl=STATUS_TTL_S, show_spinner=False)
def recent_predictions(base_url: str) -> dict:
    """Serving's recent predictions; errors are not cached, so a down server is asked again."""
    return serving_client(base_url).recent_predictions(monitoring_token())


def monitoring_token() -> str | None:
    """Serving's SERVING_MONITORING_TOKEN, or its SERVING_FEEDBACK_TOKEN (what serving falls back to)."""
    return os.environ.get("SERVING_MONITORING_TOKEN") or os.environ.get("SERVING_FEEDBACK_TOKEN") or None


def production_page() -> None:
    """Links to the day's monitoring figures in Dagster, and plots of what serving answered lately."""
    base_url = serving_url()
    st.title("Production")
    dagster_ui_url = os.environ.get("DAGSTER_UI_URL", DEFAULT_DAGSTER_UI_URL)
    st.markdown(
        "The day's figures (predictions by model version, latency, dropped records, drift of the images and of "
        "the probabilities, accuracy against confirmed diagnoses) are Dagster assets, one partition per UTC day, "
        f"materialized each night by the schedule `monitor_yesterday`. Open them in the Dagster UI ({dagster_ui_url}):"
    )
    st.markdown("\n".join(f"- [{name}]({url})" for name, url in asset_links(dagster_ui_url).items()))
    if st.button("Refresh"):
        recent_predictions.clear()
    try:
        answer = recent_predictions(base_url)
    except ServingError as error:
        st.error(str(error))
        return
    st.subheader("This serving process since it started")
    st.caption(f"{base_url}, started at {answer['started_at']}; the last {len(answer['recent'])} predictions below")
    figures = recent_figures(answer["recent"])
    columns = st.columns(4)
    columns[0].metric("Predictions", answer["predictions"])
    columns[1].metric("Written to the prediction log", answer["written"])
    columns[2].metric("Dropped by the prediction log", answer["dropped"])
    columns[3].metric("Called malignant", "-" if figures["malignant_share"] is None else f"{figures['malignant_share']:.0%}")
    if not answer["recent"]:
        st.info("No predictions since serving started.")
        return
    latency = st.columns(2)
    latency[0].metric("Latency p50", f"{figures['latency_p50_ms']:.0f} ms")
    latency[1].metric("Latency p95", f"{figures['latency_p95_ms']:.0f} ms")
    st.caption("Probabilities of malignant")
    st.bar_chart(figures["histogram"], x="probability of malignant", y="predictions")
    st.caption("Latency in the server, per prediction (ms)")
    latencies = {"time": [row["time"] for row in answer["recent"]], "latency ms": [row["latency_ms"] for row in answer["recent"]]}
    st.line_chart(latencies, x="time", y="latency ms")


def main() -> None:
    st.set_page_config(page_title="Skin lesion classifier", page_icon="🔬", layout="wide")
    st.set_option("client.showErrorDetails", "none")  # a bug must not show users a traceback
    st.set_option("client.toolbarMode", "viewer")
    page = st.navigation(
        [
            st.Page(classify_page, title="Classify", icon=":material/biotech:", default=True),
            st.Page(production_page, title="Production", icon=":material/monitoring:", url_path="production"),
        ]
    )
    with st.sidebar:
        show_serving_status(serving_url())
    page.run()


main()
