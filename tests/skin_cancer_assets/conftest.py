import mlflow
import pytest

from tests.skin_cancer_assets.pipeline import champion_alias_restored


@pytest.fixture
def keep_champion_alias(smoke_champion):
    """Tests that elect synthetic champions give the alias back to the smoke champion."""
    with champion_alias_restored(mlflow.MlflowClient(smoke_champion["tracking_uri"])):
        yield
