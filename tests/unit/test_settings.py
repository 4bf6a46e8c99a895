import pytest

from shared.settings import DEFAULT_JWT_SECRET, Settings, SettingsError, setting_names

STRONG = "x" * 40


def test_defaults_work_locally():
    settings = Settings.from_env({})
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27017"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert (settings.registry_port, settings.evaluation_port, settings.fund_port) == (8001, 8002, 8003)
    assert settings.region_prefix == "上海市浦东新区" and settings.area_code == "310115"
    assert settings.topic("registry") == "registry.organizations.v1"


def test_environment_overrides_and_types():
    settings = Settings.from_env({"REGISTRY_PORT": "9001", "SOCORG_CONSUMER_BACKOFF_SECONDS": "0.5",
                                  "SOCORG_KAFKA_NAMESPACE": "staging.", "MONGODB_URI": "mongodb://db:27017"})
    assert settings.registry_port == 9001
    assert settings.consumer_backoff_seconds == 0.5
    assert settings.mongodb_uri == "mongodb://db:27017"
    assert settings.topic("fund") == "staging.fund.ledger.v1"
    assert settings.consumer_group("fund") == "staging.socorg-fund"


def test_a_malformed_number_names_the_setting():
    with pytest.raises(SettingsError, match="REGISTRY_PORT"):
        Settings.from_env({"REGISTRY_PORT": "eighty"})


def production(**extra):
    return {"SOCORG_ENV": "production", "MONGODB_URI": "mongodb://db", "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "SOCORG_JWT_SECRET": STRONG, **extra}


def test_production_accepts_explicit_settings():
    assert Settings.from_env(production()).production


@pytest.mark.parametrize("missing", ["MONGODB_URI", "KAFKA_BOOTSTRAP_SERVERS", "SOCORG_JWT_SECRET"])
def test_production_names_a_missing_setting(missing):
    environ = production()
    del environ[missing]
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(environ)


@pytest.mark.parametrize("secret", [DEFAULT_JWT_SECRET, "short"])
def test_production_refuses_default_or_short_secret(secret):
    with pytest.raises(SettingsError, match="SOCORG_JWT_SECRET"):
        Settings.from_env(production(SOCORG_JWT_SECRET=secret))


def test_setting_names_lists_every_environment_variable():
    names = setting_names()
    assert {"MONGODB_URI", "KAFKA_BOOTSTRAP_SERVERS", "SOCORG_JWT_SECRET", "REGISTRY_PORT"} <= set(names)
    assert len(names) == len(set(names))
