"""The chat tests create several users each: hash their passwords cheaply."""

from tests.code.api_helpers import cheap_passwords  # noqa: F401  (autouse fixture)
