"""The same events give the same features on every store: SQLite, PostgreSQL, the REST store's database
function and its raw-event fallback, whatever the product's spelling of an event type (tabs, newlines,
no-break spaces, mixed case)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from models import DailyGrain, FeatureCatalog, day_number, normalize_event_type
from scorer.stores.sql import engine_for
from tests.support import execute, make_product

SPELLINGS = [
    "pricing_view",
    "\tpricing_view",
    "PRICING_VIEW\n",
    "\u00a0Pricing_View ",
    "pricing_view\r\n",
    "Login",
    " login\t",
]
BLANK = ["\t", "\u00a0", " \n "]  # no type at all once trimmed: dropped and counted


def _reference(rows: list[tuple[str, str | None, datetime | None]], as_of: datetime) -> DailyGrain:
    """The daily grain computed here, in Python, from the raw rows."""
    kept = [
        (v, normalize_event_type(t), day_number(c.astimezone(UTC).date()))
        for v, t, c in rows
        if normalize_event_type(t) and c is not None and c < as_of
    ]
    frame = pd.DataFrame(kept, columns=["visitor_id", "event_type", "day"]).value_counts().reset_index(name="n")
    return DailyGrain.from_arrays(
        visitor_id=frame["visitor_id"].to_numpy(dtype=object),
        event_type=frame["event_type"].to_numpy(dtype=object),
        day=frame["day"].to_numpy(dtype=np.int64),
        n=frame["n"].to_numpy(dtype=np.float64),
    )


@pytest.mark.parametrize("raw", [False, True], ids=["function", "raw-fallback"])
def test_messy_spellings_give_the_same_features_on_every_store(target, raw):
    if raw and target.rest is None:
        pytest.skip("the raw-event fallback is the REST store's")
    make_product(target.url, users=20, seed=50)
    execute(target.url, "DELETE FROM events")
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[tuple[str, str | None, datetime | None]] = []
    for i, spelling in enumerate(SPELLINGS * 3):
        rows.append((f"v{i % 4}", spelling, now - timedelta(days=i % 9, hours=i)))
    rows += [("v0", b, now - timedelta(days=1)) for b in BLANK]
    engine = engine_for(target.url)
    events = sa.Table("events", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(events), [{"visitor_id": v, "event_type": t, "created_at": c} for v, t, c in rows])
    engine.dispose()
    if raw:
        execute(target.url, "DROP FUNCTION lead_scorer_daily_events")

    catalog = FeatureCatalog()
    as_of = now + timedelta(minutes=1)
    visitors = [f"v{i}" for i in range(4)]
    store = target.store()
    read = store.read_events(visitors, since=catalog.since(as_of), as_of=as_of)
    names = catalog.feature_names(event_types=["pricing_view", "login"])

    got = catalog.features(read.grain, visitor_ids=visitors, as_of=as_of, names=names)
    want = catalog.features(_reference(rows, as_of), visitor_ids=visitors, as_of=as_of, names=names)

    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert read.dropped.get("null_type") == len(BLANK)
    assert set(read.grain.event_type) == {"pricing_view", "login"}
    assert got["evt_pricing_view_90d"].sum() == 15 and got["evt_login_90d"].sum() == 6
