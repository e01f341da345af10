"""Config validation: each error is one line naming the connector id and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transom.config import bind_connectors, load_config, parse_config
from transom.errors import ConfigError
from transom.plugins import PluginHost

SECRET = "s" * 40

ENTRA = """
[[connectors]]
id = "acme-entra"
type = "azure_ad"
account = "acme"
  [connectors.settings]
  tenant_id = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
  client_id = "app"
  client_secret = { env = "ACME_ENTRA_SECRET" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "transom.toml"
    path.write_text(f'[server]\nsession_secret = "{SECRET}"\ndatabase_url = "sqlite:///{tmp_path}/t.db"\n' + text)
    return path


def check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_") and k != "ACME_ENTRA_SECRET"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "transom.cli", "--config", str(path), "check-config"],
                          capture_output=True, text=True, env=full_env)


def full_check(path: Path) -> None:
    config = load_config(path)
    plugins = PluginHost.load(config.enabled_types)
    bind_connectors(config, plugins.types)


def test_valid_config_passes_check_config(tmp_path: Path) -> None:
    result = check(write(tmp_path, ENTRA), {"ACME_ENTRA_SECRET": "x"})
    assert result.returncode == 0, result.stderr
    assert "config ok: 1 connector(s), types: azure_ad" in result.stdout


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (ENTRA, {}, "connector 'acme-entra' settings.client_secret: environment variable ACME_ENTRA_SECRET is not set"),
        (ENTRA.replace('type = "azure_ad"', 'type = "azure_add"'), {"ACME_ENTRA_SECRET": "x"},
         "connector type 'azure_add' is not installed"),
        (ENTRA.replace('client_id = "app"', 'client_id = "app"\n  tenant = "typo"'), {"ACME_ENTRA_SECRET": "x"},
         "connector 'acme-entra': settings.tenant: unknown key"),
        (ENTRA.replace('tenant_id = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"', ""), {"ACME_ENTRA_SECRET": "x"},
         "connector 'acme-entra': settings.tenant_id: Field required"),
        (ENTRA + ENTRA, {"ACME_ENTRA_SECRET": "x"}, "connector 'acme-entra': duplicate connector id"),
        (ENTRA + "  [connectors.provisioning]\n  update_profile_on_login = \"sometimes\"\n", {"ACME_ENTRA_SECRET": "x"},
         "connector 'acme-entra': provisioning.update_profile_on_login:"),
    ],
    ids=["unset-secret", "unknown-type", "unknown-key", "missing-key", "duplicate-id", "bad-provisioning"],
)
def test_config_errors_are_one_line_naming_connector_and_key(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    result = check(write(tmp_path, text), env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_settings_are_validated_by_the_plugin_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_ENTRA_SECRET", "x")
    path = write(tmp_path, ENTRA.replace('tenant_id = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"', 'tenant_id = "common"'))
    with pytest.raises(ConfigError, match=r"connector 'acme-entra': settings: .*allowed_tenants"):
        full_check(path)


def test_unknown_settings_keys_are_refused_by_every_builtin_type(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = PluginHost.load(["azure_ad", "okta", "generic_saml"])
    for name, ct in plugins.types.items():
        assert ct.settings_model.model_config.get("extra") == "forbid", name


def test_environment_overrides_server_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "")
    monkeypatch.setenv("TRANSOM_DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("TRANSOM_BASE_URL", "https://sso.acme.example/")
    config = load_config(path)
    assert config.server.database_url == "sqlite:///elsewhere.db"
    assert config.server.base_url == "https://sso.acme.example"
    assert config.server.cookies_secure is True


@pytest.mark.parametrize("weak", ["changeme", "short-secret", "secret"])
def test_weak_session_secrets_are_refused(weak: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.session_secret"):
        parse_config({"server": {"session_secret": weak}})


def test_secret_reference_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    config = parse_config({"server": {"session_secret": {"file": str(secret_file)}}})
    assert config.server.session_secret is not None
    assert config.server.session_secret.get_secret_value() == SECRET


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_server_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.base_ur: unknown key"):
        parse_config({"server": {"base_ur": "http://x"}})
