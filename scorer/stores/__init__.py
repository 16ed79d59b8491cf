"""Where users and events live: one interface (`Store`), one implementation per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scorer.errors import SettingsError
from scorer.stores.base import EventRead, Names, Selection, Store, UserPage
from scorer.stores.sql import SqlStore

if TYPE_CHECKING:
    from scorer.settings import Settings

__all__ = ["EventRead", "Names", "Selection", "SqlStore", "Store", "UserPage", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store the settings select: ``DATABASE_URL`` → SQL."""
    if settings.database_url is None:
        raise SettingsError(
            "no data store configured",
            hint="set DATABASE_URL (e.g. sqlite:///leads.db or a Supabase postgresql:// connection string)",
        )
    return SqlStore(settings.require_database(), names=settings.names())
