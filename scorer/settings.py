"""Settings, read once at the edge (the CLI), which builds the library's options from them (`scorer.edge`).

Sources, highest first: command-line flags, environment variables, a ``.env`` file (``LEAD_SCORER_ENV_FILE``
names another; empty reads none).
``DATABASE_URL`` and ``MLFLOW_TRACKING_URI`` keep their conventional names; everything
else is ``LEAD_SCORER_<NAME>``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from lead_errors import SettingsError
from scorer.contract import Names, validate_identifier

__all__ = ["ENV_FILE_VARIABLE", "Settings", "load_settings", "openable_tracking_uri"]

PositiveInt = Annotated[int, Field(gt=0)]
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9.-]*)(?:\+[A-Za-z0-9_.-]+)?:(?P<rest>.+)$", re.DOTALL)
#: What MLflow opens: a server, Databricks, a database-backed or a file store.
_TRACKING_SCHEMES = frozenset(
    {"http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql", "mysql", "mssql", "file"}
)

#: The variable that names the dotenv file `load_settings` also reads (default ``.env``, in the working
#: directory); empty reads none. The test suite sets it empty, so a developer's ``.env`` never reaches a test.
ENV_FILE_VARIABLE = "LEAD_SCORER_ENV_FILE"


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
    # PostgreSQL counts these in whole milliseconds and reads 0 as "no timeout": below 1 ms is refused, not
    # rounded to 0 (0.0004 s used to turn the bound off).
    db_statement_timeout_s: Annotated[float, Field(ge=0.001, le=3600)] = 60.0
    db_lock_timeout_s: Annotated[float, Field(ge=0.001, le=3600)] = 10.0
    git_commit: str | None = Field(
        default=None, validation_alias=AliasChoices("LEAD_SCORER_GIT_COMMIT", "RENDER_GIT_COMMIT")
    )

    model_name: str = "lead_scoring_pipeline"
    model_version: str | None = None  # an explicit pin; otherwise alias, then stage
    #: The alias of the version each run shadow-scores beside production (docs/champion-challenger.md).
    challenger_alias: str = "challenger"
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
    #: The daily check's sample: at most this many users, and at most this share of them (at least 2,000).
    live_max_users: Annotated[int, Field(ge=1_000)] = 10_000
    live_max_share: Annotated[float, Field(gt=0, le=1)] = 0.05
    #: A verdict on live data (registry compare, promote, auto-promotion) needs at least this many conversions.
    min_conversions: Annotated[int, Field(ge=1)] = 100
    #: The daily run promotes the challenger when it ranks leads significantly better on live data.
    auto_promote: bool = False

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

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: SecretStr | None) -> SecretStr | None:
        # libpq and SQLAlchemy end the password at its first "@": the rest became the host name, quoted in
        # every connection error (half the password printed). Refused here, before anything connects.
        if v is not None and urlsplit(v.get_secret_value().strip()).netloc.count("@") > 1:
            raise ValueError(
                "the password contains an unencoded @: percent-encode it as %40 (and : / ? # as %3A %2F %3F %23)"
            )
        return v

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking_uri(cls, v: str | None) -> str | None:
        # MLflow takes a scheme-less value as a local folder, so a typo (`https//host`) became a bug's
        # traceback (exit 70) instead of a setting error. The value is not echoed: it may hold a password.
        if v is None:
            return v
        split = _URI.match(v.strip())
        if split is None or split["scheme"].lower() not in _TRACKING_SCHEMES:
            raise ValueError(
                "must be a URI with a scheme: http(s)://host:port for an MLflow server, sqlite:///mlflow.db, "
                "postgresql://… or file:///path for a local store"
            )
        if split["scheme"].lower() in ("http", "https") and not split["rest"].startswith("//"):
            raise ValueError("an http(s) MLflow server is written http(s)://host:port")
        return v.strip()

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

    @field_validator("challenger_alias")
    @classmethod
    def _challenger_alias(cls, v: str) -> str:
        v = v.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", v) or v.lower() in ("latest", "production"):
            raise ValueError("must be an MLflow alias other than production and latest, such as challenger")
        return v

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
                # The image (mlflow-skinny) refuses a local store: suggest one only where it opens.
                hint="set MLFLOW_TRACKING_URI (e.g. http://mlflow:5000"
                + (" or sqlite:///mlflow.db)" if _local_stores_open() else "; this image needs an http(s) server)"),
            )
        return openable_tracking_uri(self.mlflow_tracking_uri)


def _local_stores_open() -> bool:
    """Whether this installation opens a local tracking store (sqlite:///…): the full mlflow, not the image's
    mlflow-skinny, which lacks its migrations (alembic)."""
    return importlib.util.find_spec("alembic") is not None


def openable_tracking_uri(uri: str) -> str:
    """``uri``, if this installation can open it; a local store needs the full MLflow install."""
    if not uri.startswith(("http://", "https://", "databricks")) and not _local_stores_open():
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
    env_file = os.environ.get(ENV_FILE_VARIABLE, ".env") or None
    try:
        return Settings(_env_file=env_file, **given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            # Never echo the offending input: it may be a secret.
            problems.append(f"{where} ({variable(field)}): {err['msg']}" if field else f"{where}: {err['msg']}")
        raise SettingsError(
            "invalid settings: " + "; ".join(problems),
            hint="fix the environment variable or flag named above",
        ) from None  # pydantic's error quotes the input, which may be a secret (test_cli_never_prints_secrets)
    except SourceError as exc:
        # A list or dict setting whose value is not JSON: pydantic-settings fails before validating anything.
        found = re.search(r'field "([^"]+)"', str(exc))
        name = variable(found.group(1)) if found else "a LEAD_SCORER_ setting"
        raise SettingsError(
            f"invalid settings: {name} is not valid JSON",
            hint=f"write {name} as a JSON list, e.g. {name}='[\"sklearn.tree._tree.Tree\"]'",
        ) from None


def variable(field: str) -> str:
    """The environment variable that sets ``field``: its first alias, else ``LEAD_SCORER_<FIELD>``.

    >>> variable("batch_size"), variable("database_url")
    ('LEAD_SCORER_BATCH_SIZE', 'DATABASE_URL')
    """
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and alias.choices and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    return f"LEAD_SCORER_{field.upper()}"
