"""Settings, read once at the edge (the CLI), which builds the library's options from them (`scorer.edge`).

Sources, highest first: command-line flags, environment variables, a ``.env`` file.
``DATABASE_URL`` and ``MLFLOW_TRACKING_URI`` keep their conventional names; everything
else is ``LEAD_SCORER_<NAME>``.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lead_errors import SettingsError
from scorer.contract import Names, validate_identifier

__all__ = ["Settings", "load_settings", "openable_tracking_uri"]

PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEAD_SCORER_", env_file=".env", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "LEAD_SCORER_DATABASE_URL")
    )
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    supabase_url: str | None = Field(default=None, validation_alias=AliasChoices("SUPABASE_URL"))
    supabase_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY")
    )
    supabase_max_rows: Annotated[int, Field(gt=0)] = 1_000  # the project's db-max-rows
    supabase_url_budget: Annotated[int, Field(ge=1_000, le=16_000)] = 6_000  # bytes per request URL
    supabase_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # Bounded waits on a SQL database (PostgreSQL: connect, statement and lock timeouts; SQLite: busy wait).
    db_connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    db_statement_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    db_lock_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    git_commit: str | None = Field(
        default=None, validation_alias=AliasChoices("LEAD_SCORER_GIT_COMMIT", "RENDER_GIT_COMMIT")
    )

    model_name: str = "lead_scoring_pipeline"
    model_version: str | None = None  # an explicit pin; otherwise alias, then stage
    select: Literal["unscored", "stale", "all"] = "stale"
    batch_size: Annotated[int, Field(gt=0, le=100_000)] = 2_000
    #: The memory the job may use (the Render plan's: starter 512 MB); it caps the effective batch size.
    memory_mb: Annotated[int, Field(ge=400, le=1_048_576)] = 512
    limit: PositiveInt | None = None
    dry_run: bool = False
    #: A rescored user whose score moved less than this (same model) is not rewritten.
    score_tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.001
    #: leads: open leads only (users with no converted_at); everyone: customers too.
    population: Literal["leads", "everyone"] = "leads"
    history: bool = False  # append every changed score to lead_score_history
    allow_pickle: bool = False  # load pickle-serialized model versions (runs their code)
    # Types a skops model may ask to trust, on top of the registry's defaults (sklearn's tree internals).
    skops_trusted_types: list[str] = Field(default_factory=list)
    hot_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    warm_threshold: Annotated[float, Field(ge=0, lt=1)] = 0.2
    mlflow_run_id: str | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_RUN_ID"))
    scoring_experiment: str = "lead-scorer/scoring"
    training_experiment: str = "lead-scorer/training"
    evaluation_experiment: str = "lead-scorer/evaluation"
    #: The daily run evaluates production's newest matured cohort every this many days (0: never).
    live_every_days: Annotated[int, Field(ge=0, le=366)] = 7
    #: Degraded: the live AUC's upper bound below the holdout AUC minus this.
    live_auc_drop: Annotated[float, Field(ge=0, le=1)] = 0.05
    #: Above this many users the daily check evaluates a systematic sample of about this many.
    live_max_users: Annotated[int, Field(ge=1_000)] = 10_000

    db_schema: str = "public"
    users_table: str = "users"
    events_table: str = "events"
    user_id_column: str = "user_id"
    visitor_id_column: str = "visitor_id"
    converted_at_column: str = "converted_at"
    event_type_column: str = "event_type"
    created_at_column: str = "created_at"

    @field_validator(
        "db_schema",
        "users_table",
        "events_table",
        "user_id_column",
        "visitor_id_column",
        "converted_at_column",
        "event_type_column",
        "created_at_column",
    )
    @classmethod
    def _identifier(cls, v: str) -> str:
        validate_identifier(v, what="name")
        return v

    @field_validator(
        "database_url",
        "mlflow_tracking_uri",
        "git_commit",
        "supabase_url",
        "supabase_key",
        "mlflow_run_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, v: Any) -> Any:
        # A secret left blank in a dashboard arrives as "", which means "not set", not "set to nothing".
        if isinstance(v, str) and not v.strip():
            return None
        return v

    @field_validator("model_version", mode="before")
    @classmethod
    def _blank_version(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("model_version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and not v.strip().isdigit():
            raise ValueError("must be a registered version number such as 3")
        return v.strip() if v else None

    @field_validator("warm_threshold")
    @classmethod
    def _tiers(cls, v: float, info: Any) -> float:
        hot = info.data.get("hot_threshold")
        if hot is not None and v >= hot:
            raise ValueError("must be below hot_threshold")
        return v

    def names(self) -> Names:
        return Names(
            schema=self.db_schema,
            users=self.users_table,
            events=self.events_table,
            user_id=self.user_id_column,
            visitor_id=self.visitor_id_column,
            converted_at=self.converted_at_column,
            event_visitor_id=self.visitor_id_column,
            event_type=self.event_type_column,
            created_at=self.created_at_column,
        )

    def require_database(self) -> str:
        if self.database_url is None or not self.database_url.get_secret_value().strip():
            raise SettingsError(
                "no database configured",
                hint="set DATABASE_URL (e.g. sqlite:///leads.db or postgresql://user:pass@host:5432/postgres)",
            )
        return self.database_url.get_secret_value()

    def require_tracking(self) -> str:
        if not self.mlflow_tracking_uri:
            raise SettingsError(
                "no MLflow tracking server configured",
                hint="set MLFLOW_TRACKING_URI (e.g. http://mlflow:5000 or sqlite:///mlflow.db)",
            )
        return openable_tracking_uri(self.mlflow_tracking_uri)


def openable_tracking_uri(uri: str) -> str:
    """``uri``, if this installation can open it; a local store needs the full MLflow install."""
    if not uri.startswith(("http://", "https://", "databricks")) and importlib.util.find_spec("alembic") is None:
        # The image carries mlflow-skinny, which talks to a tracking server but has no local store.
        raise SettingsError(
            "MLFLOW_TRACKING_URI is a local store, which this installation (the Docker image: mlflow-skinny) "
            "cannot open",
            hint="point MLFLOW_TRACKING_URI at an http(s) MLflow server; local stores (sqlite:///mlflow.db) "
            "need the full install: `python3 dev.py demo`",
        )
    return uri


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``.env``, with ``overrides`` (flags) on top; None means unset."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            # Never echo the offending input: it may be a secret.
            problems.append(f"{where}: {err['msg']}")
        raise SettingsError(
            "invalid settings: " + "; ".join(problems),
            hint="fix the environment variable (LEAD_SCORER_<NAME>) or flag named above",
        ) from None  # pydantic's error quotes the input, which may be a secret (test_cli_never_prints_secrets)
