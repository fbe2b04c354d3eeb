"""sightline.toml, the environment over it, `sightline config show`, and URLs refused at start."""

from __future__ import annotations

import json

import pytest

from handlers.config import SettingsError, apply_file, check_broker_url, check_url, mask
from tests.support import run_cli


def _show(tmp_path, toml: str | None, **env: str) -> dict:
    base = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "SIGHTLINE_CONFIG": ""}
    if toml is not None:
        (tmp_path / "sightline.toml").write_text(toml)
        base["SIGHTLINE_CONFIG"] = str(tmp_path / "sightline.toml")
    result = run_cli("config", "show", "--json", env={**base, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    out["by_name"] = {r["name"]: r for r in out["settings"]}
    return out


@pytest.mark.slow
def test_file_env_and_default_sources_with_secrets_masked(tmp_path) -> None:
    """A file value shows as 'file', an environment value wins over it as 'env', an unset
    one as 'default'; passwords in URLs and tokens never print."""
    out = _show(
        tmp_path,
        'database_url = "postgresql://app:hunter2@db.example:5432/photos"\n'
        'CELERY_BROKER_URL = "redis://127.0.0.1:6379/3"\n'
        "SIGHTLINE_BATCH_SIZE = 8\n"
        'sightline_webhook_token = "s3cr3t"\n'
        'aws_secret_access_key = "k3y"\n'
        "[sightline_broker_options]\nvisibility_timeout = 120\n",
        SIGHTLINE_BATCH_SIZE="4",
        DATABASE_URL="",
        CELERY_BROKER_URL="",
        SIGHTLINE_WEBHOOK_TOKEN="",
        SIGHTLINE_BROKER_OPTIONS="",
        AWS_SECRET_ACCESS_KEY="",
    )
    s = out["by_name"]
    assert out["file"] == str(tmp_path / "sightline.toml")
    assert s["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "value": "postgresql://app:***@db.example:5432/photos",
        "source": "file",
    }
    assert (s["SIGHTLINE_BATCH_SIZE"]["value"], s["SIGHTLINE_BATCH_SIZE"]["source"]) == ("4", "env")
    assert s["SIGHTLINE_WEBHOOK_TOKEN"]["value"] == "***"
    assert json.loads(s["SIGHTLINE_BROKER_OPTIONS"]["value"]) == {"visibility_timeout": 120}
    assert (s["SIGHTLINE_ARCH"]["value"], s["SIGHTLINE_ARCH"]["source"]) == (
        "wide_resnet50_2",
        "default",
    )
    # The file's broker options win over the derived visibility timeout; the sweep stays.
    options = out["derived"]["broker_transport_options"]
    assert options["visibility_timeout"] == 120 and options["unacked_restore_interval"] >= 1
    assert s["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "value": "***",
        "source": "file",
    }
    for secret in ("hunter2", "s3cr3t", '"k3y"'):
        assert secret not in json.dumps(out)


def test_environment_overrides_the_file(tmp_path) -> None:
    """apply_file fills only what the environment leaves unset."""
    (tmp_path / "s.toml").write_text(
        'SIGHTLINE_ARCH = "tiny"\nsightline_device = "cpu"\nsightline_x = true\n'
    )
    env = {"SIGHTLINE_CONFIG": str(tmp_path / "s.toml"), "SIGHTLINE_DEVICE": "cuda"}
    assert apply_file(env) == tmp_path / "s.toml"
    assert (env["SIGHTLINE_ARCH"], env["SIGHTLINE_DEVICE"], env["SIGHTLINE_X"]) == (
        "tiny",
        "cuda",
        "1",
    )


def test_a_key_that_is_no_setting_is_refused(tmp_path) -> None:
    """A key without its variable's prefix would be silently ignored: it is refused."""
    (tmp_path / "s.toml").write_text("batch_size = 8\n")
    with pytest.raises(SettingsError, match="unknown setting 'batch_size'"):
        apply_file({"SIGHTLINE_CONFIG": str(tmp_path / "s.toml")})


def test_lookup_order_and_none(tmp_path, monkeypatch) -> None:
    """./sightline.toml first, then $XDG_CONFIG_HOME/sightline/; SIGHTLINE_CONFIG=none: none."""
    from handlers.config import config_path

    xdg = tmp_path / "xdg" / "sightline"
    xdg.mkdir(parents=True)
    (xdg / "sightline.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config_path(env) == xdg / "sightline.toml"
    (tmp_path / "sightline.toml").write_text("")
    assert config_path(env).resolve() == (tmp_path / "sightline.toml").resolve()
    assert config_path({**env, "SIGHTLINE_CONFIG": "none"}) is None


def test_missing_or_broken_file_is_refused(tmp_path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        apply_file({"SIGHTLINE_CONFIG": str(tmp_path / "nope.toml")})
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    with pytest.raises(SettingsError, match=r"bad\.toml"):
        apply_file({"SIGHTLINE_CONFIG": str(tmp_path / "bad.toml")})
    (tmp_path / "latin.toml").write_bytes(
        b"\xff\xfe"
    )  # a UnicodeDecodeError, exit 1, no file named
    with pytest.raises(SettingsError, match=r"latin\.toml: not UTF-8 text"):
        apply_file({"SIGHTLINE_CONFIG": str(tmp_path / "latin.toml")})


def test_the_log_level_reads_in_any_case_and_refuses_others() -> None:
    """`debug` failed the Lambda's init (logging takes upper case only) and `consume sqs`."""
    from handlers.config import HandlerConfig, log_level

    assert log_level({"SIGHTLINE_LOG_LEVEL": " debug "}) == "DEBUG"
    assert log_level({}) == "INFO"
    with pytest.raises(SettingsError, match="SIGHTLINE_LOG_LEVEL must be one of DEBUG"):
        HandlerConfig.from_env({"SIGHTLINE_LOG_LEVEL": "loud"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1:6379", "CELERY_BROKER_URL=127.0.0.1:6379 is not a URL: give a scheme"),
        ("foo://bar", "CELERY_BROKER_URL: unknown scheme 'foo'"),
    ],
)
def test_broker_url_messages(value, message) -> None:
    with pytest.raises(SettingsError) as err:
        check_broker_url(value)
    assert str(err.value).startswith(message)


def test_good_urls_pass_and_passwords_are_masked() -> None:
    assert check_broker_url("amqp://svc:pw@rabbit:5672//") == "amqp://svc:pw@rabbit:5672//"
    assert check_url("DATABASE_URL", "postgresql://postgres:@/postgres?host=/tmp", ("postgresql",))
    assert (
        mask("CELERY_BROKER_URL", "amqp://svc:pw@rabbit:5672//") == "amqp://svc:***@rabbit:5672//"
    )
    assert mask("DATABASE_URL", "postgresql://h/db") == "postgresql://h/db"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "CELERY_BROKER_URL",
            "127.0.0.1:6379",
            "CELERY_BROKER_URL=127.0.0.1:6379 is not a URL: give a scheme, e.g. redis://...",
        ),
        (
            "CELERY_BROKER_URL",
            "foo://bar",
            "CELERY_BROKER_URL: unknown scheme 'foo' (one of redis, rediss, amqp, amqps, "
            "pyamqp, sqs, memory)",
        ),
        (
            "DATABASE_URL",
            "notaurl",
            "DATABASE_URL=notaurl is not a URL: give a scheme, e.g. postgresql://...",
        ),
        (
            "SIGHTLINE_BATCH_SIZE",
            "many",
            "SIGHTLINE_BATCH_SIZE must be a whole number >= 1, got 'many'",
        ),
    ],
)
def test_worker_refuses_bad_settings_in_one_line(variable, value, message) -> None:
    """A worker with a bad URL or value stops before doing anything: one line, status 2."""
    env = {
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "SIGHTLINE_CONFIG": "none",
        variable: value,
    }
    result = run_cli("worker", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"sightline: error: {message}"]
