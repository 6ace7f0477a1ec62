from tests.fixtures.process import processes

__all__ = ["processes"]
