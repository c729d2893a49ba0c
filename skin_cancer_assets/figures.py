"""Pictures for MLflow (linked from the Dagster UI): learning curves, the confusion matrix, the test curves."""

from skin_cancer_contract.data import CLASSES


def learning_curves(history: dict[str, list[float]], title: str):
    """Training and validation loss and AUC per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, metric in zip(axes, ("loss", "auc")):
        epochs = range(1, len(history.get(metric, [])) + 1)
        axis.plot(epochs, history.get(metric, []), marker="o", label="train")
        axis.plot(epochs, history.get(f"val_{metric}", []), marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix(metrics: dict, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [[metrics["true_negatives"], metrics["false_positives"]], [metrics["false_negatives"], metrics["true_positives"]]]
    figure, axis = plt.subplots(figsize=(3.6, 3.2))
    axis.imshow(counts, cmap="Blues")
    for row in range(2):
        for col in range(2):
            axis.text(col, row, counts[row][col], ha="center", va="center", fontsize=14)
    axis.set_xticks([0, 1], CLASSES)
    axis.set_yticks([0, 1], CLASSES)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def close(figure) -> None:
    """Free a figure once it is logged: pyplot keeps every open figure alive."""
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_curves(labels, probs, operating_points: dict[str, float], title: str):
    """ROC, precision-recall and calibration on the test images, the operating points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    figure, (roc, pr, calibration) = plt.subplots(1, 3, figsize=(12, 3.6))
    false_positive_rate, recall, _ = roc_curve(labels, probs)
    roc.plot(false_positive_rate, recall)
    roc.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc.set(xlabel="1 - specificity", ylabel="malignant recall", title="ROC")
    precision, pr_recall, _ = precision_recall_curve(labels, probs)
    pr.plot(pr_recall, precision)
    pr.set(xlabel="malignant recall", ylabel="precision", title="precision-recall")
    for name, threshold in operating_points.items():
        called = probs >= threshold
        tpr, fpr = called[labels == 1].mean(), called[labels == 0].mean()
        roc.scatter([fpr], [tpr], zorder=3, label=f"{name} ({threshold:.3f})")
        pr.scatter([tpr], [labels[called].mean() if called.any() else 1.0], zorder=3)
    roc.legend(fontsize=8, loc="lower right")
    observed, predicted = calibration_curve(labels, probs, n_bins=10, strategy="quantile")
    calibration.plot(predicted, observed, marker="o")
    calibration.plot([0, 1], [0, 1], linestyle=":", color="grey")
    calibration.set(xlabel="predicted probability (deciles)", ylabel="share malignant", title="calibration")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
