"""Parsing at the edge: MatchWatcher specs and MLCD_* / run-once environment variables."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.config import (
    ConfigError,
    Settings,
    load_run_once,
    load_service,
    load_settings,
)
from controller.core.errors import InvalidSpec
from controller.core.model import DEFAULT_FOGIS_BASE_URL, WebhookSpec, parse_spec

BASE: dict[str, Any] = {
    "schedule": "0 * * * *",
    "source": {"fogis": {"credentialsSecretRef": {"name": "creds"}}},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.time_zone == "UTC"
    assert spec.suspend is False
    assert spec.starting_deadline_seconds is None
    assert spec.fogis.base_url == DEFAULT_FOGIS_BASE_URL
    assert (spec.fogis.days_back, spec.fogis.days_ahead) == (7, 365)
    assert spec.webhook is None


def test_full_spec() -> None:
    spec = parse_spec(
        with_(
            timeZone="Europe/Stockholm",
            suspend=True,
            startingDeadlineSeconds=600,
            source={
                "fogis": {
                    "baseUrl": "http://127.0.0.1:9/mdk/",
                    "credentialsSecretRef": {"name": "creds"},
                    "daysBack": 0,
                    "daysAhead": 30,
                }
            },
            webhook={
                "url": "https://hook/x",
                "secretRef": {"name": "h"},
                "maxAttempts": 2,
                "format": "cloudevents",
            },
        )
    )
    assert spec.fogis.base_url == "http://127.0.0.1:9/mdk"  # trailing slash dropped
    assert (spec.fogis.days_back, spec.fogis.days_ahead) == (0, 30)
    assert spec.webhook == WebhookSpec("https://hook/x", "h", 15.0, 2, "cloudevents")
    assert spec.starting_deadline_seconds == 600


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"source": BASE["source"]}, "spec.schedule is required"),
        (with_(schedule="  "), "spec.schedule"),
        (with_(source={}), "credentialsSecretRef.name is required"),
        (with_(source={"fogis": {"credentialsSecretRef": {}}}), "credentialsSecretRef.name"),
        (with_(source="fogis"), "spec.source must be an object"),
        (with_(suspend="yes"), "spec.suspend"),
        (with_(startingDeadlineSeconds=-1), "startingDeadlineSeconds"),
        (with_(startingDeadlineSeconds=True), "startingDeadlineSeconds"),
        (
            with_(source={"fogis": {"credentialsSecretRef": {"name": "c"}, "daysBack": "7"}}),
            "daysBack",
        ),
        (
            with_(source={"fogis": {"credentialsSecretRef": {"name": "c"}, "baseUrl": "ftp://x"}}),
            "baseUrl must be an http(s) URL",
        ),
        (with_(webhook={"url": "file:///etc/passwd"}), "spec.webhook.url"),
        (with_(webhook={}), "webhook needs url"),
        (with_(webhook={"url": "http://x", "timeoutSeconds": 0}), "timeoutSeconds"),
        (with_(webhook={"url": "http://x", "maxAttempts": 0}), "maxAttempts"),
        (with_(webhook={"url": "http://x", "format": "xml"}), "spec.webhook.format"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(spec)
    assert fragment in caught.value.message


def test_settings_defaults_and_overrides() -> None:
    assert load_settings({}) == Settings()
    settings = load_settings(
        {
            "MLCD_METRICS_PORT": "0",
            "MLCD_FOGIS_TIMEOUT_SECONDS": "2.5",
            "MLCD_FOGIS_LOGINS_PER_SECOND": "0.5",
            "MLCD_ALLOW_SECONDS_SCHEDULES": "yes",
            "MLCD_LEASE_NAME": "mlcd",
            "MLCD_SHARDS": "3",
            "MLCD_SHARD_INDEX": "2",
            "OTHER": "ignored",
        }
    )
    assert settings.metrics_port == 0
    assert settings.fogis_timeout_seconds == 2.5
    assert settings.fogis_logins_per_second == 0.5
    assert settings.allow_seconds_schedules is True
    assert (settings.lease_name, settings.shards, settings.shard_index) == ("mlcd", 3, 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", frozenset()),
        ("fogis.svenskfotboll.se", frozenset({"fogis.svenskfotboll.se"})),
        (" A.example , b.example,,", frozenset({"a.example", "b.example"})),
    ],
)
def test_allowed_fogis_hosts(value: str, expected: frozenset[str]) -> None:
    assert load_settings({"MLCD_FOGIS_ALLOWED_HOSTS": value}).allowed_fogis_hosts == expected


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MLCD_METRICS_PORTT": "1"}, "unknown setting MLCD_METRICS_PORTT"),
        ({"MLCD_METRICS_PORT": "http"}, "MLCD_METRICS_PORT='http' is not a valid int"),
        ({"MLCD_METRICS_PORT": "70000"}, "port number"),
        ({"MLCD_HEALTH_PORT": "0"}, "liveness probe"),
        ({"MLCD_KUBE_WORKERS": "0"}, "MLCD_KUBE_WORKERS must be greater than 0"),
        ({"MLCD_FOGIS_TIMEOUT_SECONDS": "nan"}, "not a valid float"),
        ({"MLCD_FOGIS_MAX_CONCURRENT_PER_HOST": "0"}, "PER_HOST must be greater than 0"),
        ({"MLCD_FOGIS_LOGINS_PER_SECOND": "-1"}, "PER_SECOND must be greater than 0"),
        ({"MLCD_FOGIS_LOGINS_PER_SECOND": "inf"}, "not a valid float"),
        ({"MLCD_ALLOW_SECONDS_SCHEDULES": "maybe"}, "not a valid bool"),
        ({"MLCD_SHARDS": "0"}, "MLCD_SHARDS must be greater than 0"),
        ({"MLCD_SHARDS": "2", "MLCD_SHARD_INDEX": "2"}, "SHARD_INDEX must be at least 0 and less"),
        ({"MLCD_SHARD_INDEX": "-1"}, "SHARD_INDEX must be at least 0"),
        ({"MLCD_MAX_CONCURRENT_RUNS": "0"}, "MLCD_MAX_CONCURRENT_RUNS must be greater than 0"),
        ({"MLCD_LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_settings_fail_with_the_variable_name(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert fragment in str(caught.value)


# What the kubelet injects for a Service named mlcd-match-list-change-detector (ports metrics 8080,
# health 8081), captured from a pod on the local node.
SERVICE_LINKS = {
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_SERVICE_HOST": "198.19.0.42",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_SERVICE_PORT": "8080",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_SERVICE_PORT_METRICS": "8080",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_PORT": "tcp://198.19.0.42:8080",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_PORT_8080_TCP": "tcp://198.19.0.42:8080",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_PORT_8080_TCP_PROTO": "tcp",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_PORT_8080_TCP_PORT": "8080",
    "MLCD_MATCH_LIST_CHANGE_DETECTOR_PORT_8080_TCP_ADDR": "198.19.0.42",
    "MLCD_X_PORT_53_UDP": "udp://[fd00::a]:53",
    # A Service named just `mlcd`.
    "MLCD_SERVICE_HOST": "198.19.0.7",
    "MLCD_PORT": "tcp://198.19.0.7:80",
}


def test_service_link_variables_are_not_settings() -> None:
    settings = load_settings({**SERVICE_LINKS, "MLCD_METRICS_PORT": "9090"})
    assert settings.metrics_port == 9090


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MLCD_METRIC_PORT", "9090"),  # a typo of MLCD_METRICS_PORT, not a link (no tcp://)
        ("MLCD_X_SERVICE_HOST", "receiver.example"),
        ("MLCD_X_SERVICE_PORT", "http"),
        ("MLCD_X_SERVICE_PORT", "70000"),
        ("MLCD_X_PORT", "http://198.19.0.1:80"),
        ("MLCD_X_PORT_80_TCP", "tcp://host:80"),
        ("MLCD_X_PORT_80_TCP_PROTO", "http"),
        ("MLCD_X_PORT_80_TCP_ADDR", "999.1.1.1"),
    ],
)
def test_near_service_links_are_still_unknown_settings(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown setting {key}"):
        load_settings({key: value})


def test_run_once_settings() -> None:
    settings = load_run_once(
        {
            "FOGIS_USERNAME": "anna",
            "FOGIS_PASSWORD": "pw-value",
            "DAYS_BACK": "3",
            "WEBHOOK_URL": "http://127.0.0.1:1/hook",
            "WEBHOOK_HMAC_KEY": "k",
            "WEBHOOK_PREVIOUS_HMAC_KEY": "old-k",
            "WEBHOOK_FORMAT": "cloudevents",
            "WEBHOOK_CA_FILE": "/etc/ca.pem",
        }
    )
    assert (settings.days_back, settings.days_ahead) == (3, 365)
    assert settings.webhook_format == "cloudevents"
    assert settings.webhook_ca_file == "/etc/ca.pem"
    assert "old-k" not in repr(settings)
    assert settings.base_url == DEFAULT_FOGIS_BASE_URL
    assert settings.previous_matches_file == "previous_matches.json"
    assert "pw-value" not in repr(settings)
    assert "'k'" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "FOGIS_USERNAME and FOGIS_PASSWORD must be set"),
        ({"FOGIS_USERNAME": "a"}, "FOGIS_PASSWORD must be set"),
        ({"FOGIS_USERNAME": "a", "FOGIS_PASSWORD": "p", "DAYS_AHEAD": "x"}, "DAYS_AHEAD"),
        ({"FOGIS_USERNAME": "a", "FOGIS_PASSWORD": "p", "DAYS_BACK": "-1"}, "DAYS_BACK"),
        ({"FOGIS_USERNAME": "a", "FOGIS_PASSWORD": "p", "WEBHOOK_URL": "x"}, "WEBHOOK_URL"),
        ({"FOGIS_USERNAME": "a", "FOGIS_PASSWORD": "p", "FOGIS_BASE_URL": "x"}, "FOGIS_BASE_URL"),
        ({"FOGIS_USERNAME": "a", "FOGIS_PASSWORD": "p", "WEBHOOK_FORMAT": "x"}, "WEBHOOK_FORMAT"),
    ],
)
def test_run_once_settings_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_run_once(env)
    assert fragment in str(caught.value)


LOGIN = {"FOGIS_USERNAME": "anna", "FOGIS_PASSWORD": "pw-value"}


def test_service_settings_default_to_the_seeds() -> None:
    settings = load_service(LOGIN)
    assert settings.schedule == "0 * * * *"
    assert (settings.health_host, settings.health_port) == ("0.0.0.0", 8080)  # noqa: S104 - the seed's
    assert settings.data_dir == "/app/data"
    assert settings.run.previous_matches_file == "/app/data/previous_matches.json"
    assert settings.run.time_zone == "Europe/Stockholm"
    assert (settings.language, settings.log_level, settings.notify_urls) == ("sv", "INFO", ())
    assert settings.operator == Settings()


def test_service_settings_from_the_environment() -> None:
    settings = load_service(
        {
            **LOGIN,
            "RUN_MODE": "service",
            "CRON_SCHEDULE": "*/5 * * * *",
            "HEALTH_SERVER_PORT": "9090",
            "HEALTH_SERVER_HOST": "127.0.0.1",
            "DATA_DIR": "/srv/state",
            "PREVIOUS_MATCHES_FILE": "seed.json",
            "LOG_LEVEL": "debug",
            "LANGUAGE": "en",
            "NOTIFY_URLS": "ntfy://ntfy.sh/topic-one\n  tgram://bot-token/42 ",
            "TRIGGER_WAIT_SECONDS": "2.5",
            "MLCD_WEBHOOK_ALLOWED_HOSTS": "hooks.example.se",
        }
    )
    assert settings.schedule == "*/5 * * * *"
    assert (settings.health_host, settings.health_port) == ("127.0.0.1", 9090)
    assert settings.run.previous_matches_file == "/srv/state/seed.json"
    assert (settings.language, settings.log_level) == ("en", "DEBUG")
    assert settings.notify_urls == ("ntfy://ntfy.sh/topic-one", "tgram://bot-token/42")
    assert settings.trigger_wait_seconds == 2.5
    assert settings.operator.allowed_webhook_hosts == {"hooks.example.se"}
    assert "bot-token" not in repr(settings)
    assert "pw-value" not in repr(settings)


def test_an_absolute_previous_matches_file_stays_where_it_is() -> None:
    settings = load_service({**LOGIN, "PREVIOUS_MATCHES_FILE": "/elsewhere/p.json"})
    assert settings.run.previous_matches_file == "/elsewhere/p.json"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "FOGIS_USERNAME and FOGIS_PASSWORD must be set"),
        ({"CRON_SCHEDULE": "every hour"}, "CRON_SCHEDULE: schedule 'every hour' is not"),
        ({"CRON_SCHEDULE": "*/5 * * * * *"}, "CRON_SCHEDULE"),  # seconds: a test hook only
        ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE: unknown time zone 'Mars/Olympus'"),
        ({"HEALTH_SERVER_PORT": "http"}, "HEALTH_SERVER_PORT='http' is not an integer"),
        ({"HEALTH_SERVER_PORT": "0"}, "HEALTH_SERVER_PORT must be >= 1"),
        ({"HEALTH_SERVER_PORT": "65536"}, "HEALTH_SERVER_PORT must be a port number"),
        ({"LANGUAGE": "de"}, "LANGUAGE='de' must be one of sv, en"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='LOUD' must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"TRIGGER_WAIT_SECONDS": "0"}, "TRIGGER_WAIT_SECONDS must be greater than 0"),
        ({"SHUTDOWN_TIMEOUT_SECONDS": "soon"}, "SHUTDOWN_TIMEOUT_SECONDS='soon' is not a number"),
        ({"DAYS_AHEAD": "x"}, "DAYS_AHEAD"),
        ({"MLCD_FOGIS_ALLOWED_HOST": "x"}, "unknown setting MLCD_FOGIS_ALLOWED_HOST"),
    ],
)
def test_service_settings_errors_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_service({**(LOGIN if env else {}), **env})
    assert fragment in str(caught.value)


def test_seconds_schedules_pass_with_the_test_hook() -> None:
    env = {**LOGIN, "CRON_SCHEDULE": "*/5 * * * * *", "MLCD_ALLOW_SECONDS_SCHEDULES": "true"}
    assert load_service(env).schedule == "*/5 * * * * *"
