"""Settings: read once, validated, every failure names its setting; the docs list exactly what is read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from relay.errors import SettingsError
from relay.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM_NUMBER": "+14155550100",
    "RELAY_SIGNING_KEY": "k" * 40,
    "RELAY_ACCESS_CODE": "code",
}


def test_defaults() -> None:
    s = Settings.from_mapping(BASE)
    assert s.mqtt_topic_prefix == "sms"
    assert s.conversation_ttl_hours == 4
    assert s.relay_store == ".data/relay.sqlite3"
    assert s.allowed_countries == frozenset({"US"})
    assert s.our_side == "+14155550100"
    assert "token" not in repr(s)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TWILIO_FROM_NUMBER", "4155550100"),
        ("TWILIO_FROM_NUMBER", "+1 415 555 0100"),
        ("TWILIO_ACCOUNT_SID", "not-a-sid"),
        ("TWILIO_MESSAGING_SERVICE_SID", "AC" + "a" * 32),
        ("MQTT_URL", "http://broker:1883"),
        ("MQTT_URL", "mqtt://:99999"),
        ("MQTT_BROWSER_URL", "mqtt://127.0.0.1:1883"),
        ("PUBLIC_BASE_URL", "relay.example.org"),
        ("TWILIO_API_BASE_URL", "ftp://x"),
        ("CONVERSATION_TTL_HOURS", "four"),
        ("CONVERSATION_TTL_HOURS", "-1"),
        ("RELAY_SIGNING_KEY", "short"),
        ("ALLOWED_COUNTRIES", "US,XX"),
        ("RELAY_INBOUND_MODE", "sometimes"),
        ("MQTT_TOPIC_PREFIX", "sms/#"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_values_fail_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping({**BASE, name: value})
    assert failed.value.name == name
    assert str(failed.value).startswith(name)


@pytest.mark.parametrize(
    "missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "RELAY_SIGNING_KEY", "RELAY_ACCESS_CODE"]
)
def test_required_settings(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping(env)
    assert failed.value.name == missing


def test_a_messaging_service_alone_needs_allowed_countries() -> None:
    env = {k: v for k, v in BASE.items() if k != "TWILIO_FROM_NUMBER"}
    env["TWILIO_MESSAGING_SERVICE_SID"] = "MG" + "b" * 32
    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping(env)
    assert failed.value.name == "ALLOWED_COUNTRIES"
    s = Settings.from_mapping({**env, "ALLOWED_COUNTRIES": "us, ca"})
    assert s.allowed_countries == frozenset({"US", "CA"})
    assert s.our_side == "MG" + "b" * 32


def test_on_azure_an_unset_store_fails_instead_of_writing_to_the_read_only_app_dir() -> None:
    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping({**BASE, "WEBSITE_INSTANCE_ID": "abc"})
    assert failed.value.name == "RELAY_STORE"
    azure = {**BASE, "WEBSITE_INSTANCE_ID": "abc", "WEBSITE_HOSTNAME": "app.azurewebsites.net"}
    s = Settings.from_mapping({**azure, "RELAY_STORE": "UseDevelopmentStorage=true"})
    assert s.relay_store == "UseDevelopmentStorage=true"


def test_local_settings_fill_only_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {**BASE, "MQTT_TOPIC_PREFIX": "fromfile", "LOG_LEVEL": "DEBUG"}}))
    s = Settings.load({"MQTT_TOPIC_PREFIX": "fromenv"}, local_settings=path)
    assert s.mqtt_topic_prefix == "fromenv"
    assert s.log_level == "DEBUG"
    assert s.twilio_account_sid == BASE["TWILIO_ACCOUNT_SID"]


def test_settings_are_frozen() -> None:
    s = Settings.from_mapping(BASE)
    with pytest.raises(AttributeError):
        s.mqtt_topic_prefix = "other"  # type: ignore[misc]


def _read_names() -> set[str]:
    source = (ROOT / "relay" / "settings.py").read_text()
    return set(re.findall(r'r\.\w+\(\s*"([A-Z_]+)"', source)) | {"WEBSITE_INSTANCE_ID"}


def test_docs_and_example_list_every_setting_the_code_reads() -> None:
    read = _read_names() - {"WEBSITE_INSTANCE_ID", "WEBSITE_HOSTNAME"}  # Azure sets these itself
    example = set(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "docs" / "configuration.md").read_text(), re.M))
    host_only = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}
    assert read == documented
    assert read == example - host_only


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"RELAY_DESKS": "Reception=R,Billing=R"}, "RELAY_DESKS"),
        ({"RELAY_DESKS": "Unrouted"}, "RELAY_DESKS"),
        ({"RELAY_ADMIN_CODE": "short"}, "RELAY_ADMIN_CODE"),
        ({"RELAY_ADMIN_CODE": "the-same-code-twice", "RELAY_ACCESS_CODE": "the-same-code-twice"}, "RELAY_ADMIN_CODE"),
        (
            {
                "RELAY_AUTH": "appservice",
                "WEBSITE_INSTANCE_ID": "a",
                "RELAY_STORE": "x.db",
                "WEBSITE_HOSTNAME": "x.net",
            },
            "RELAY_AUTH",
        ),
    ],
)
def test_desks_admin_code_and_app_service_refuse_bad_values_by_name(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_mapping({**BASE, **env})
    assert refused.value.name == name


def test_default_desks_and_app_service_with_authentication_on() -> None:
    s = Settings.from_mapping(BASE)
    assert [(d.id, d.name, d.alias) for d in s.relay_desks] == [
        ("reception", "Reception", "R"),
        ("billing", "Billing", "B"),
    ]
    azure = {
        "RELAY_AUTH": "appservice",
        "WEBSITE_INSTANCE_ID": "abc",
        "RELAY_STORE": "x.db",
        "WEBSITE_HOSTNAME": "x.net",
    }
    assert Settings.from_mapping({**BASE, **azure, "WEBSITE_AUTH_ENABLED": "True"}).relay_auth == "appservice"


def test_on_azure_the_hosts_webhooks_may_name_must_be_known() -> None:
    azure = {**BASE, "WEBSITE_INSTANCE_ID": "abc", "RELAY_STORE": "UseDevelopmentStorage=true"}
    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping(azure)
    assert failed.value.name == "WEBHOOK_HOSTS"
    assert Settings.from_mapping({**azure, "PUBLIC_BASE_URL": "https://relay.example.org"}).webhook_hosts == set()
    on_azure = Settings.from_mapping({**azure, "WEBSITE_HOSTNAME": "App.azurewebsites.net", "WEBHOOK_HOSTS": "x.org"})
    assert on_azure.webhook_hosts == {"app.azurewebsites.net", "x.org"}
    with pytest.raises(SettingsError, match="WEBHOOK_HOSTS"):
        Settings.from_mapping({**BASE, "WEBHOOK_HOSTS": "https://relay.example.org/"})


RABBITMQ = {
    "MQTT_BROKER_ACCESS": "rabbitmq",
    "MQTT_URL": "mqtt://n1:1883, mqtt://n2:1883",
    "MQTT_BROWSER_URL": "wss://n2:15676/ws,wss://n3:15676/ws",
    "MQTT_USERNAME": "relay-service",
    "MQTT_PASSWORD": "secret",
    "RABBITMQ_MANAGEMENT_URL": "http://n1:15672,http://n2:15672",
    "RABBITMQ_MANAGEMENT_USERNAME": "relay-admin",
    "RABBITMQ_MANAGEMENT_PASSWORD": "secret2",
}


def test_rabbitmq_mode_takes_url_lists_and_needs_its_management_settings() -> None:
    settings = Settings.from_mapping({**BASE, **RABBITMQ})
    assert settings.mqtt_urls == ("mqtt://n1:1883", "mqtt://n2:1883")
    assert settings.mqtt_browser_url == "wss://n2:15676/ws,wss://n3:15676/ws"
    assert settings.rabbitmq_management_urls == ("http://n1:15672", "http://n2:15672")
    assert "secret2" not in repr(settings)
    for name in ("MQTT_PASSWORD", "RABBITMQ_MANAGEMENT_URL", "RABBITMQ_MANAGEMENT_PASSWORD"):
        with pytest.raises(SettingsError) as refused:
            Settings.from_mapping({**BASE, **RABBITMQ, name: ""})
        assert refused.value.name == name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MQTT_URL", "mqtt://n1:1883,ws://n2:15675/ws"),
        ("MQTT_URL", "mqtt://n1:1883,http://n2"),
        ("MQTT_BROWSER_URL", "wss://n2/ws,mqtt://n3:1883"),
        ("RABBITMQ_MANAGEMENT_URL", "ftp://n1"),
    ],
)
def test_a_bad_url_in_a_list_names_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_mapping({**BASE, **RABBITMQ, name: value})
    assert refused.value.name == name
