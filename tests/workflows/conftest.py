from tests.cli.conftest import cli
from tests.code.api_helpers import cheap_passwords  # autouse: argon2 would dominate logins

__all__ = ["cheap_passwords", "cli"]
