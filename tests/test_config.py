"""Settings: defaults, environment, .env, URL normalisation, and the documented table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from ymera.cli.config import (
    TABLE_BEGIN,
    TABLE_END,
    SettingInfo,
    current_value,
    reference_table,
    setting_infos,
)
from ymera.config import Settings, normalise_database_url

REPO = Path(__file__).resolve().parents[1]
DOCUMENTED_IN = [REPO / "docs" / "configuration.md", REPO / "README.md"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No YMERA_* variable from the caller, and a working directory without a .env."""
    for name in list(os.environ):
        if name.startswith("YMERA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_work_on_a_laptop(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8000
    assert settings.data_dir == Path(".ymera")
    assert settings.database_url is None
    expected_db = (tmp_path / ".ymera" / "ymera.db").resolve()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected_db}"
    assert settings.is_sqlite
    assert settings.redis_url is None
    assert settings.auth.secret_key is None
    assert settings.auth.access_token_ttl == 900
    assert settings.log.json_format is True


def test_environment_overrides_top_level_and_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YMERA_SERVER__PORT", "9100")
    monkeypatch.setenv("YMERA_AUTH__ACCESS_TOKEN_TTL", "60")
    monkeypatch.setenv("YMERA_AUTH__SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("YMERA_REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("YMERA_DATA_DIR", "/srv/ymera")
    monkeypatch.setenv("YMERA_LOG__JSON", "false")

    settings = Settings()

    assert settings.server.port == 9100
    assert settings.server.host == "127.0.0.1"  # the rest of the section keeps its defaults
    assert settings.auth.access_token_ttl == 60
    assert settings.auth.secret_key is not None
    assert settings.auth.secret_key.get_secret_value() == "from-the-environment"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.resolved_database_url == "sqlite+aiosqlite:////srv/ymera/ymera.db"
    assert settings.log.json_format is False


def test_log_format_accepts_the_field_name_too() -> None:
    assert Settings(log={"json_format": False}).log.json_format is False  # type: ignore[arg-type]
    assert Settings(log={"json": False}).log.json_format is False  # type: ignore[arg-type]


def test_dotenv_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "YMERA_SERVER__PORT=9200\n"
        "YMERA_AUTH__ACCESS_TOKEN_TTL=120\n"
        "YMERA_DATABASE_URL=postgresql://app:pw@db.internal/ymera\n"
    )
    monkeypatch.setenv("YMERA_AUTH__ACCESS_TOKEN_TTL", "300")  # the environment wins

    settings = Settings()

    assert settings.server.port == 9200
    assert settings.auth.access_token_ttl == 300
    assert settings.resolved_database_url == "postgresql+asyncpg://app:pw@db.internal/ymera"
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///rel/path.db", "sqlite+aiosqlite:///rel/path.db"),
        ("sqlite+aiosqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected
    assert Settings(database_url=given).resolved_database_url == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("YMERA_SERVER__PORT", "70000"),
        ("YMERA_SERVER__PORT", "eighty"),
        ("YMERA_AUTH__ACCESS_TOKEN_TTL", "5"),
        ("YMERA_AUTH__JWT_ALGORITHM", "none"),
        ("YMERA_ENVIRONMENT", "staging"),
    ],
)
def test_invalid_values_are_rejected_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    field = variable.removeprefix("YMERA_").split("__")[-1].lower()
    assert field in str(info.value)


# --- the documented table ------------------------------------------------------------


def _leaf_count() -> int:
    count = 0
    for field in Settings.model_fields.values():
        section = field.annotation
        is_section = isinstance(section, type) and hasattr(section, "model_fields")
        count += len(section.model_fields) if is_section else 1  # type: ignore[union-attr]
    return count


def _other_value(info: SettingInfo) -> tuple[str, Any]:
    """An environment value for ``info`` different from its default, and what it parses to."""
    if info.secret:
        return "a-secret-from-the-environment", "a-secret-from-the-environment"
    if " / " in info.type:  # a choice
        choices = info.type.split(" / ")
        choice = next(c for c in choices if c != info.default)
        return choice, choice
    kind = info.type
    if kind == "bool":
        flipped = info.default != "true"
        return str(flipped).lower(), flipped
    if kind == "int":
        return str(int(info.default) + 7), int(info.default) + 7
    if kind == "float":
        return str(float(info.default) + 0.5), float(info.default) + 0.5
    if kind == "path":
        return "/var/lib/ymera-test", Path("/var/lib/ymera-test")
    return "some-value/second", "some-value/second"


def test_every_setting_is_listed_once() -> None:
    infos = setting_infos()
    assert len(infos) == _leaf_count()
    assert len({i.env for i in infos}) == len(infos)


def test_every_setting_has_a_description() -> None:
    """The description is the documentation of the setting (README, docs, `ymera config`)."""
    undocumented = [i.env for i in setting_infos() if not i.description]
    assert not undocumented, f"add Field(description=...) in src/ymera/config.py: {undocumented}"


@pytest.mark.parametrize("info", setting_infos(), ids=lambda i: i.env)
def test_each_documented_variable_sets_its_setting(
    monkeypatch: pytest.MonkeyPatch, info: SettingInfo
) -> None:
    raw, expected = _other_value(info)
    monkeypatch.setenv(info.env, raw)
    value = current_value(Settings(), info)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    assert value == expected, f"{info.env}={raw!r} gave {value!r}"


@pytest.mark.parametrize("path", DOCUMENTED_IN, ids=lambda p: p.name)
def test_documented_table_is_the_generated_one(path: Path) -> None:
    text = path.read_text()
    assert TABLE_BEGIN in text
    assert TABLE_END in text
    documented = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    hint = f"regenerate it: .venv/bin/ymera config reference --update {path.relative_to(REPO)}"
    for info in setting_infos():
        assert f"`{info.env}`" in documented, f"{info.env} missing from {path.name}; {hint}"
    assert documented == reference_table(), f"{path.name} is out of date; {hint}"
