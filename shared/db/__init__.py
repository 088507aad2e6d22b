"""Run state in SQL (SQLite by default, PostgreSQL by URL) through SQLAlchemy 2.0's async ORM."""

from shared.db.models import (
    Base,
    CheckpointRecord,
    EvalRecord,
    IdempotencyRecord,
    JudgeRecord,
    RunRecord,
    StepRecord,
    TokenRecord,
)
from shared.db.session import Database

__all__ = [
    "Base",
    "CheckpointRecord",
    "Database",
    "EvalRecord",
    "IdempotencyRecord",
    "JudgeRecord",
    "RunRecord",
    "StepRecord",
    "TokenRecord",
]
