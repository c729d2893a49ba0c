"""The running app in a real Chromium: upload a real image, press Predict, read the answer, its heat map,
the other operating point and the model card."""

import httpx
import pytest
from skin_cancer_contract.data import label_name
from tests.streamlit_app.app_services import MONITORING_TOKEN, start_streamlit
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

TIMEOUT_MS = 120_000


def upload_and_predict(page, url: str, image) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name="Skin lesion classifier")).to_be_visible(timeout=TIMEOUT_MS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(image))
    predict = page.get_by_role("button", name="Predict")
    expect(predict).to_be_enabled(timeout=TIMEOUT_MS)
    predict.click()


def test_prediction_in_the_browser(page, app_url, serving_url, smoke_champion, benign_image, save_screenshot):
    expected = httpx.post(
        f"{serving_url}/predict", files=[("file", (benign_image.name, benign_image.read_bytes(), "image/jpeg"))], timeout=120
    ).json()["predictions"][0]
    card = httpx.get(f"{serving_url}/model").json()

    upload_and_predict(page, app_url, benign_image)

    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("Done: 1 image(s)")).to_be_visible(timeout=TIMEOUT_MS)
    expect(main.get_by_text(f"Prediction: {expected['label']}")).to_be_visible()
    expect(main.get_by_text(f"Probability of malignant: {expected['probability_malignant']:.1%}")).to_be_visible()
    expect(
        main.get_by_text(f"Answered by {smoke_champion['model_name']} version {smoke_champion['version']}")
    ).to_be_visible()
    expect(main.get_by_role("button", name="Download JSON")).to_be_visible(timeout=TIMEOUT_MS)
    expect(main.get_by_role("button", name="Download CSV")).to_be_visible()
    expect(main.get_by_text("Heat map (occlusion): red speaks for malignant")).to_be_visible()
    expect(main.get_by_test_id("stImage")).to_have_count(2)  # the upload and, beside it, its heat map
    heat_map = main.get_by_test_id("stImage").nth(1).locator("img")
    assert heat_map.evaluate("image => image.complete && image.naturalWidth") > 0

    main.get_by_test_id("stRadioGroup").get_by_text("Accuracy-maximising (reported)").click()
    at_accuracy = label_name(expected["probability_malignant"], card["accuracy_threshold"])
    expect(main.get_by_text(f"Prediction at the accuracy-maximising point: {at_accuracy}")).to_be_visible(timeout=TIMEOUT_MS)
    expect(main.get_by_text(f"called malignant from {card['accuracy_threshold']:.1%}")).to_be_visible()

    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Serving is ready")).to_be_visible()
    expect(page.get_by_text("not a medical diagnosis")).to_be_visible()
    save_screenshot(page, "prediction", docs="streamlit-prediction.png")

    main.get_by_text(f"Model card: {card['name']} version {card['version']}").click()
    expect(main.get_by_role("heading", name="Intended use")).to_be_visible(timeout=TIMEOUT_MS)
    expect(main.get_by_text("It is not a diagnosis", exact=False)).to_be_visible()
    save_screenshot(page, "model-card")


def test_serving_stopped_in_the_browser(page, stopped_serving_url, benign_image, tmp_path, save_screenshot):
    service, url = start_streamlit(stopped_serving_url, tmp_path / "streamlit.log")
    try:
        upload_and_predict(page, url, benign_image)
        message = f"Cannot reach the prediction service at {stopped_serving_url}"
        expect(page.get_by_test_id("stMain").get_by_text(message)).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("stSidebar").get_by_text(message)).to_be_visible()
        expect(page.get_by_test_id("stMain").get_by_test_id("stImage")).to_have_count(1)
        expect(page.get_by_text("Traceback")).to_have_count(0)
        save_screenshot(page, "serving-stopped")
    finally:
        service.stop()


def test_production_view_in_the_browser(page, app_url, serving_url, benign_image, save_screenshot):
    """The Production page: links to the monitoring assets in the Dagster UI, serving's counts and plots."""
    files = [("file", (benign_image.name, benign_image.read_bytes(), "image/jpeg"))] * 3
    assert httpx.post(f"{serving_url}/predict", files=files, timeout=120).status_code == 200
    answer = httpx.get(f"{serving_url}/monitoring/recent", headers={"Authorization": f"Bearer {MONITORING_TOKEN}"}).json()

    page.goto(f"{app_url}/production")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Production")).to_be_visible(timeout=TIMEOUT_MS)
    for asset in ("production_predictions", "production_drift", "production_performance"):
        expect(main.get_by_role("link", name=asset)).to_have_attribute("href", f"http://127.0.0.1:3000/assets/{asset}")
    expect(main.get_by_test_id("stMetricValue").first).to_have_text(str(answer["predictions"]), timeout=TIMEOUT_MS)
    expect(main.get_by_test_id("stMetricLabel").filter(has_text="Latency p95")).to_be_visible()
    expect(main.get_by_test_id("stVegaLiteChart")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    save_screenshot(page, "production", docs="streamlit-production.png")
