"""Where users and events live: one interface (`Store`), one implementation per backend."""

from __future__ import annotations

from scorer.stores.base import EventRead, Names, Selection, Store, UserPage
from scorer.stores.sql import SqlStore, Waits

__all__ = ["EventRead", "Names", "Selection", "SqlStore", "Store", "UserPage", "Waits"]
