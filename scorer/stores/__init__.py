"""Where users and events live: one interface (`Store`), one implementation per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scorer.errors import SettingsError
from scorer.stores.base import EventRead, Names, Selection, Store, UserPage
from scorer.stores.sql import SqlStore, Waits

if TYPE_CHECKING:
    from scorer.settings import Settings

__all__ = ["EventRead", "Names", "Selection", "SqlStore", "Store", "UserPage", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store the settings select: ``SUPABASE_URL`` + a key → REST; ``DATABASE_URL`` → SQL; not both."""
    rest = settings.supabase_url is not None or settings.supabase_key is not None
    if rest and settings.database_url is not None:
        raise SettingsError(
            "both DATABASE_URL and SUPABASE_URL/SUPABASE_SERVICE_ROLE_KEY are set; the job uses one store",
            hint="unset DATABASE_URL to use the Supabase REST API, or unset SUPABASE_URL and the key",
        )
    if rest:
        if settings.supabase_url is None or settings.supabase_key is None:
            missing = "SUPABASE_URL" if settings.supabase_url is None else "SUPABASE_SERVICE_ROLE_KEY"
            raise SettingsError(f"{missing} is not set", hint="the REST store needs SUPABASE_URL and the service key")
        if not settings.supabase_url.startswith(("https://", "http://")):
            raise SettingsError("SUPABASE_URL must start with https://", hint="e.g. https://<project>.supabase.co")
        from scorer.stores.rest import RestStore

        return RestStore(
            settings.supabase_url,
            key=settings.supabase_key.get_secret_value(),
            names=settings.names(),
            max_rows=settings.supabase_max_rows,
            url_budget=settings.supabase_url_budget,
            timeout_s=settings.supabase_timeout_s,
        )
    if settings.database_url is None:
        raise SettingsError(
            "no data store configured",
            hint="set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or DATABASE_URL (sqlite:///leads.db, postgresql://…)",
        )
    waits = Waits(
        connect_s=settings.db_connect_timeout_s,
        statement_s=settings.db_statement_timeout_s,
        lock_s=settings.db_lock_timeout_s,
    )
    return SqlStore(settings.require_database(), names=settings.names(), waits=waits)
