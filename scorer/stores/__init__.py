"""Where users and events live: what a scoring run and training ask of a source (`ScoringSource`,
`TrainingSource`), one implementation per backend. Stores are context managers: whoever opens one closes it."""

from __future__ import annotations

from scorer.stores.base import EventRead, ScoringSource, Selection, Source, TrainingSource, UserPage
from scorer.stores.sql import SqlStore, Waits

__all__ = ["EventRead", "ScoringSource", "Selection", "Source", "SqlStore", "TrainingSource", "UserPage", "Waits"]
