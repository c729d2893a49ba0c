"""The contract that the pipeline, serving and the app share, in one place.

Model name and alias, classes and labels, splits and their folder layout, metric names,
image decoding and evaluation. It imports neither Dagster nor TensorFlow nor MLflow, so
serving and the Streamlit app can depend on it without the pipeline's weight.
"""
