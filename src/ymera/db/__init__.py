from ymera.db.base import Base
from ymera.db.database import Database

__all__ = ["Base", "Database"]
