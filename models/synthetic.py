"""A seeded synthetic product: users, months of events, conversions that depend on behaviour.

The data is deliberately messy the way real event tables are: mixed-case and padded event
types, NULL types and timestamps, a few future timestamps, users without a ``visitor_id``.

>>> data = generate(users=200, seed=42, now=datetime(2026, 11, 25, tzinfo=UTC))
>>> len(data.users), len(data.events)
(200, 3703)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = ["EVENT_TYPES", "SyntheticData", "generate"]

# (raw event type as the product logs it, base log-weight, sensitivity to purchase intent)
EVENT_TYPES: tuple[tuple[str, float, float], ...] = (
    ("page_view", 2.5, 0.0),
    ("docs_view", 1.2, 0.3),
    ("email_open", 1.0, 0.2),
    ("feature_used", 0.8, 0.6),
    ("pricing_view", 0.0, 1.0),
    ("Pricing View ", -1.5, 1.0),  # the same thing logged by an older client
    ("signup_started", -0.5, 0.8),
    ("invite_sent", -1.0, 0.9),
    ("webinar_join", -1.5, 0.5),
    ("demo_request", -2.5, 1.5),
    ("support_ticket", -1.5, -0.2),
    ("unsubscribe", -2.5, -1.0),
)


@dataclass(frozen=True)
class SyntheticData:
    users: pd.DataFrame  # user_id, visitor_id, email, signed_up_at, converted_at
    events: pd.DataFrame  # visitor_id, event_type, created_at


def generate(
    *,
    users: int = 5_000,
    seed: int = 42,
    now: datetime | None = None,
    history_days: int = 150,
    events_per_user: float = 25.0,
    conversion_days: float = 90.0,
) -> SyntheticData:
    """Users with a latent purchase intent that drives both their events and their conversion, which happens
    over the last ``conversion_days`` (a longer span gives conversions months before ``now``, so a version
    trained long ago has honest cohorts to be judged on)."""
    rng = np.random.default_rng(seed)
    now = now or datetime.now(UTC)
    n = users
    intent = rng.normal(size=n)
    activity = rng.normal(size=n)
    user_id = np.arange(1, n + 1, dtype=np.int64)
    visitor = np.array([f"v{seed:x}-{i:08x}" for i in range(n)], dtype=object)
    no_visitor = rng.random(n) < 0.04
    visitor[no_visitor] = None

    # Conversions happen over the last `conversion_days`; likelier with intent and activity.
    p_convert = 1.0 / (1.0 + np.exp(-(-1.8 + 1.6 * intent + 0.4 * activity)))
    converted = rng.random(n) < p_convert
    convert_age = rng.uniform(0, conversion_days, size=n)
    now_s = int(now.timestamp())

    def ago(days: np.ndarray) -> pd.DatetimeIndex:
        return pd.to_datetime(now_s - np.round(days * 86_400).astype(np.int64), unit="s", utc=True)

    converted_at = ago(convert_age).where(converted)

    signed_up_age = rng.uniform(1, history_days, size=n)
    users_df = pd.DataFrame(
        {
            "user_id": user_id,
            "visitor_id": visitor,
            "email": [f"user{i}@example.com" for i in user_id],
            "signed_up_at": ago(signed_up_age),
            "converted_at": converted_at,
        }
    )

    has_events = ~no_visitor & (rng.random(n) > 0.05)
    rate = events_per_user * np.exp(0.6 * activity + 0.3 * intent - 0.5)
    counts = np.where(has_events, rng.poisson(rate), 0)
    owner = np.repeat(np.arange(n), counts)
    m = len(owner)
    names = np.array([t[0] for t in EVENT_TYPES], dtype=object)
    base = np.array([t[1] for t in EVENT_TYPES])
    sens = np.array([t[2] for t in EVENT_TYPES])
    logits = base[None, :] + sens[None, :] * intent[owner][:, None]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    choice = (rng.random(m)[:, None] > cdf).sum(axis=1).clip(0, len(names) - 1)
    etype = names[choice]

    # Intent pulls events towards the recent past; nobody acts before signing up.
    skew = np.exp(0.5 * intent[owner])
    age_days = signed_up_age[owner] * rng.random(m) ** skew
    # Buyers evaluate before they convert: a burst of buying signals in the three weeks before.
    burst = np.where(converted & has_events, rng.poisson(6, size=n), 0)
    b_owner = np.repeat(np.arange(n), burst)
    b_types = np.array(["pricing_view", "demo_request", "signup_started", "invite_sent", "page_view"], dtype=object)
    b_type = b_types[rng.integers(0, len(b_types), size=len(b_owner))]
    b_age = convert_age[b_owner] + rng.uniform(0.5, 21, size=len(b_owner))
    owner = np.concatenate([owner, b_owner])
    etype = np.concatenate([etype, b_type])
    created = ago(np.concatenate([age_days, b_age]))
    m = len(owner)
    events_df = pd.DataFrame({"visitor_id": visitor[owner], "event_type": etype, "created_at": created})

    # The mess real tables have.
    noise = rng.random(m)
    events_df.loc[noise < 0.004, "event_type"] = None
    events_df.loc[(noise >= 0.004) & (noise < 0.006), "created_at"] = pd.NaT
    future = (noise >= 0.006) & (noise < 0.008)
    events_df.loc[future, "created_at"] = ago(-rng.uniform(1, 30, int(future.sum())))
    events_df.loc[(noise >= 0.008) & (noise < 0.010), "event_type"] = "  LEGACY_Click "
    return SyntheticData(users=users_df, events=events_df)
