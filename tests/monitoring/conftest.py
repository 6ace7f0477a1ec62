from tests.db.conftest import empty_database_url

__all__ = ["empty_database_url"]
