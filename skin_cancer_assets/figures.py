"""Pictures for MLflow (linked from the Dagster UI): learning curves and the confusion matrix."""

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
