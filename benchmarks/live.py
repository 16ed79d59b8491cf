"""What live evaluation costs (issue 22, item 7): one cohort against one training read, k cohorts in one pass
against k passes, and the daily run's live check against the run itself. In-process, on the benchmark's data
(`benchmarks.data.build`), one backend per call::

    python -m benchmarks.live --users 100000 --backend sqlite --workdir /tmp/live-bench
    python -m benchmarks.live --users 1000000 --backend postgresql --pg-url postgresql://… --workdir /tmp/lb

Prints one JSON object (seconds, medians of ``--repeat``); ``--out FILE`` writes it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import data

HORIZON = 30


def _median(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.live")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-url", help="a PostgreSQL database the benchmark may fill (postgresql backend)")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="reuse the data already in --workdir / --pg-url")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)

    from models import FeatureCatalog
    from registry import Registry
    from scorer.app import LiveOptions, run_scoring
    from scorer.cohorts import midnight, score_cohorts
    from scorer.compare import pooled_pair
    from scorer.edge import run_options, train_options
    from scorer.live import evaluate_matured, sample_rate
    from scorer.settings import load_settings
    from scorer.stores.sql import SqlStore
    from scorer.trainer import build_training_set, train_model

    a.workdir.mkdir(parents=True, exist_ok=True)
    url = a.pg_url if a.backend == "postgresql" else f"sqlite:///{a.workdir / 'live.db'}"
    out: dict[str, Any] = {"users": a.users, "backend": a.backend, "repeat": a.repeat}
    if not a.reuse:
        out["build"] = data.build(url, a.users)
    tracking = f"sqlite:///{a.workdir / 'mlflow.db'}"
    settings = load_settings(
        database_url=url,
        mlflow_tracking_uri=tracking,
        model_name=f"live_bench_{a.backend}",
        population="everyone",
        select="all",
        batch_size=5_000,
    )
    now = datetime.now(UTC)
    as_of = midnight(now - timedelta(days=2 * HORIZON))  # first honest day = the last matured one: one is due
    trained = train_model(
        train_options(settings, as_of=as_of, horizon_days=HORIZON, promote=True),
        artifact_location=(a.workdir / "artifacts").as_uri(),
    )
    reg = Registry(tracking_uri=tracking, model_name=settings.model_name)
    resolved = reg.resolve(pin=trained.version.version)
    model = reg.load(resolved)
    catalog = FeatureCatalog()
    types = trained.event_types
    day = as_of + timedelta(days=HORIZON)
    weekly = [day - timedelta(days=7 * k) for k in range(9)]  # 9 weekly cohorts: the default 90-day window
    with SqlStore(url) as store:
        out["training_read_s"] = _median(
            lambda: build_training_set(
                store, as_of=day, horizon_days=HORIZON, event_types=types, catalog=catalog, batch_size=5_000
            ),
            a.repeat,
        )
        for k in (1, 4, 9):
            out[f"cohorts_{k}_one_pass_s"] = _median(
                lambda k=k: score_cohorts(
                    store, days=weekly[:k], horizon_days=HORIZON, models={"v": model}, catalog=catalog
                ),
                a.repeat,
            )
        out["cohorts_4_separate_passes_s"] = _median(
            lambda: [
                score_cohorts(store, days=[d], horizon_days=HORIZON, models={"v": model}, catalog=catalog)
                for d in weekly[:4]
            ],
            a.repeat,
        )
        users = store.count_users(data_selector())
        # Auto-promotion's comparison (issue 23): two versions on the default 9 weekly cohorts in one pass, on the
        # daily check's default sample (the work of `scorer.compare.compare_pair`; the same model
        # twice: the features are computed once for both, and predicting is a small part of it).
        sample = sample_rate(users)
        out["auto_compare_9_cohorts_default_sample_s"] = _median(
            lambda: pooled_pair(
                score_cohorts(
                    store,
                    days=weekly,
                    horizon_days=HORIZON,
                    models={"a": model, "b": model},
                    catalog=catalog,
                    sample=sample,
                )
            ),
            a.repeat,
        )
        # The check's sample: the defaults (at most 10,000 users and 5 % of them), 10 %, and every lead.
        for label, max_users, share in (
            ("default", 10_000, 0.05),
            ("share_10pct", a.users, 0.10),
            ("whole", a.users, 1.0),
        ):
            out[f"daily_check_{label}_s"] = _median(
                lambda max_users=max_users, share=share: evaluate_matured(
                    store,
                    registry=_NoAnnotations(reg),
                    version=resolved,
                    model=model,
                    now=now,
                    catalog=catalog,
                    users=users,
                    max_users=max_users,
                    max_share=share,
                ),
                a.repeat,
            )
    # The daily run itself (every user rescored: the first run's work), without its live check.
    options = run_options(settings)
    options = type(options)(**{**options.__dict__, "live": LiveOptions(every_days=0)})
    runs = []
    for _ in range(a.repeat):
        data.reset_scores(url)
        runs.append(run_scoring(options).duration_s)
    out["daily_run_all_users_s"] = statistics.median(runs)
    out["daily_check_share_of_run"] = out["daily_check_default_s"] / out["daily_run_all_users_s"]
    out["auto_compare_share_of_run"] = out["auto_compare_9_cohorts_default_sample_s"] / out["daily_run_all_users_s"]
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return out


def data_selector() -> Any:
    from scorer.stores.base import Selector

    return Selector(select="all", leads_only=False)


class _NoAnnotations:
    """The registry for `evaluate_matured`, without writing live tags (each repeat measures the same work)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def annotate(self, *args: Any, **kwargs: Any) -> None:
        return None


if __name__ == "__main__":
    main()
