"""A feature family added in one place (tests/test_feature_definitions.py's `EXTENDED`) reaches Spark's
executors with the catalog, and `lead-scorer spark run` scores with it what the PostgreSQL statement computes."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pandas as pd
import pytest

from scorer.edge import run_options
from scorer.stores.base import FeatureRequest
from scorer.stores.sql import SqlStore
from tests.support import make_product, snapshot
from tests.test_feature_definitions import EXTENDED, NEW, extended_model  # noqa: F401  (a fixture)
from tests.test_spark import spark, tcp_pg  # noqa: F401  (fixtures)

pytestmark = pytest.mark.spark


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_scores_with_an_added_feature_what_postgresql_computes(tcp_pg, spark, extended_model, mlflow_local):  # noqa: F811
    from scorer.spark import SparkOptions, run_spark

    model_name, model = extended_model
    assert set(NEW) <= set(model.input_names)
    url = tcp_pg.new_database()
    make_product(url, users=300, seed=9)
    settings = mlflow_local.settings(url, model_name=model_name)
    visitors = sorted({str(v) for v in snapshot(url)["visitor_id"].dropna()})

    summary = run_spark(
        run_options(settings), SparkOptions(partitions=2, group_users=100), spark=spark, catalog=EXTENDED
    )

    assert summary.exit_code == 0 and summary.batches >= 2
    after = snapshot(url)
    after = after[after["visitor_id"].notna()]
    assert after["lead_score"].notna().all()
    # The same features from the generated PostgreSQL statement, at the Spark run's own time.
    (scored_at,) = set(after["lead_scored_at"])
    as_of = pd.Timestamp(scored_at).tz_convert(UTC).to_pydatetime()
    store = SqlStore(url)
    store.open().check()
    request = FeatureRequest(catalog=EXTENDED, names=model.input_names)
    read = store.read_events(visitors, since=EXTENDED.since(as_of), as_of=as_of, features=request)
    store.close()
    assert read.features is not None  # computed by the statement, not the grain
    features = read.features_for(request, visitor_ids=visitors, as_of=as_of)
    assert features["visits_3d"].max() >= 2 and features["burst_2d"].sum() > 0  # the data exercised them
    position = {v: i for i, v in enumerate(visitors)}
    want = model.predict_scores(features.iloc[[position[str(v)] for v in after["visitor_id"]]].reset_index(drop=True))
    np.testing.assert_allclose(after["lead_score"].to_numpy(float), want, rtol=0, atol=1e-12)
