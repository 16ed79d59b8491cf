"""`lead-scorer registry compare` and the live check `lead-scorer registry promote` runs: two versions on the same
honest cohorts (`scorer.compare`), with the latest shadow agreement, recorded on the version page.

The CLI's ``registry compare --json`` is ``compare_versions(compare_options(load_settings())).as_json()``; its
``registry promote`` passes ``promotion_check(options)`` to `registry.Registry.promote`, which does not import
this package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from lead_errors import SettingsError
from models import FeatureCatalog
from registry import LiveEvidence, Registry, ResolvedVersion, redact
from scorer.app import ModelSource, StoreOptions, require_temp_dir
from scorer.compare import Comparison, annotate_comparison, compare_pair
from scorer.evaluation import reading
from scorer.stores import TrainingSource

__all__ = ["CompareOptions", "compare_versions", "latest_shadow", "promotion_check"]

log = structlog.get_logger("lead_scorer")


@dataclass(frozen=True, kw_only=True)
class CompareOptions:
    """Where the comparison reads (a SQL store), which registry, where scoring runs are (for the shadow
    agreement), and how many conversions a verdict needs.

    >>> CompareOptions(store=StoreOptions(database_url="sqlite:///leads.db"),
    ...                model=ModelSource(tracking_uri="sqlite:///mlflow.db")).min_conversions
    100
    """

    store: StoreOptions
    model: ModelSource
    scoring_experiment: str = "lead-scorer/scoring"
    min_conversions: int = 100
    batch_size: int = 5_000


def latest_shadow(registry: Registry, *, experiment: str, production: str, challenger: str) -> dict[str, Any] | None:
    """The newest scoring run with ``production`` scoring and ``challenger`` shadow-scored: its ``challenger/``
    metrics (prefix dropped), its id and start; None when no run had that pair."""
    with registry.tracking_calls("reading the latest shadow comparison"):
        exp = registry.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = registry.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.model_version = '{production}' AND tags.challenger_version = '{challenger}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        return None
    run = runs[0]
    found = {k.removeprefix("challenger/"): v for k, v in run.data.metrics.items() if k.startswith("challenger/")}
    started = datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(timespec="seconds")
    return {"run_id": run.info.run_id, "started": started, **found}


def _pair(registry: Registry, a: str | None, b: str | None) -> tuple[ResolvedVersion, ResolvedVersion]:
    """A (default production) and B (default the challenger); the same version twice is refused."""
    first = registry.resolve(pin=a if a not in (None, "production") else None)
    if b in (None, "challenger"):
        second = registry.resolve_challenger()
        if second is None:
            raise SettingsError(
                f"no version carries the alias '{registry.challenger_alias}' to compare with",
                hint="name the versions (`lead-scorer registry compare 3 4`), or set a challenger "
                "(`lead-scorer registry challenge VERSION`)",
            )
    else:
        second = registry.resolve(pin=b if b != "production" else None)
    if first.version == second.version:
        raise SettingsError(f"version {first.version} against itself: nothing to compare", hint="name two versions")
    return first, second


def compare_versions(
    options: CompareOptions,
    *,
    a: str | None = None,
    b: str | None = None,
    now: datetime | None = None,
    store: TrainingSource | None = None,
    catalog: FeatureCatalog | None = None,
    record: bool = True,
) -> Comparison:
    """Version ``a`` (default production) against ``b`` (default the challenger) on the cohorts honest for both
    (every leads, not sampled), with the latest shadow agreement; recorded on ``b``'s version page unless
    ``record`` is False.

    >>> out = compare_versions(options)  # doctest: +SKIP
    >>> out.as_json()["verdict"], out.as_json()["live"]["diff_ci"]  # doctest: +SKIP
    ('a_better', [-0.66, -0.58])
    """
    catalog = catalog or FeatureCatalog()
    now = now or datetime.now(UTC)
    with reading(options.store, store) as store:
        registry = options.model.registry()
        first, second = _pair(registry, a, b)
        require_temp_dir()
        models = [registry.load(v, policy=options.model.policy) for v in (first, second)]
        for m in models:
            catalog.check(m.input_names)
        store.check(scoring=False, training=True)
        out = compare_pair(
            store,
            a=models[0],
            b=models[1],
            now=now,
            catalog=catalog,
            min_conversions=options.min_conversions,
            batch_size=options.batch_size,
        )
    shadow = latest_shadow(
        registry, experiment=options.scoring_experiment, production=first.version, challenger=second.version
    )
    out = dataclasses.replace(out, shadow=shadow)
    log.info("compared", a=first.version, b=second.version, verdict=out.verdict, positives=out.positives)
    if record:
        annotate_comparison(registry, out)
    return out


def promotion_check(
    options: CompareOptions, *, now: datetime | None = None, catalog: FeatureCatalog | None = None
) -> Callable[[ResolvedVersion, ResolvedVersion], LiveEvidence]:
    """The ``live_check`` `Registry.promote` calls with (candidate, production): the comparison of production
    (A) with the candidate (B) as `compare_versions` makes it, recorded on the candidate's page. Never raises:
    without a SQL store (none configured, or the REST API) or when the comparison fails, the evidence is
    ``unavailable`` and says why, and the holdout rule decides."""

    def check(candidate: ResolvedVersion, production: ResolvedVersion) -> LiveEvidence:
        if not options.store.database_url or options.store.supabase_url:
            return LiveEvidence(
                verdict="unavailable",
                summary="the live check could not run: it reads every event of past days from a SQL store "
                "(DATABASE_URL, not the REST API)",
            )
        try:
            out = compare_versions(options, a=production.version, b=candidate.version, now=now, catalog=catalog)
        except Exception as exc:
            return LiveEvidence(
                verdict="unavailable",
                summary=f"the live check could not run ({redact(f'{type(exc).__name__}: {exc}')[:300]})",
            )
        if not out.evidence().decided:
            return LiveEvidence(verdict=out.verdict, summary=f"{out.summary()}: {out.advice()}")
        return out.evidence()

    return check
