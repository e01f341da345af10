"""`transom check-config`: each thing serve (or the first login) would trip on is one line
naming the connector and the key; any error exits 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ops_support import clean_env, run_cli, write_config
from sqlalchemy import create_engine

from transom import directory
from transom.checks import check_config
from transom.db import Database
from transom.testing.saml import FakeSamlIdp, SigningKey

SECRET = {"env": "OPS_SECRET"}
GOOD_SECRET = "s" * 40


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_SECRET", GOOD_SECRET)
    for name in ("TRANSOM_LOG_LEVEL", "TRANSOM_SESSION_SECRET", "TRANSOM_CONFIG", "TRANSOM_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def with_account(database_url: str, name: str = "acme") -> None:
    db = Database(database_url)
    try:
        with db.transaction() as session:
            directory.create_account(session, name=name)
    finally:
        db.dispose()


def saml_connector(**settings: Any) -> dict[str, Any]:
    base = {"idp_entity_id": "https://idp.example.test/md", "idp_sso_url": "https://idp.example.test/sso"}
    return {"id": "acme-saml", "type": "generic_saml", "account": "acme", "settings": {**base, **settings}}


def lines(report: Any) -> list[str]:
    return [f.line() for f in report.findings]


def test_a_good_config_has_no_findings(tmp_path: Path, database_url: str) -> None:
    with_account(database_url)
    cert = tmp_path / "idp.pem"
    cert.write_text(SigningKey.generate().certificate_pem)
    path = write_config(tmp_path / "t.toml", {"session_secret": SECRET, "database_url": database_url},
                        [saml_connector(idp_certificate_file=str(cert))])
    report = check_config(path)
    assert report.findings == []
    assert list(report.connectors) == ["acme-saml"]


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    report = check_config(tmp_path / "absent.toml")
    assert lines(report) == [f"error: {tmp_path / 'absent.toml'}: config file not found (serve needs one; see "
                             "docs/configuration.md)"]


def test_missing_and_weak_session_secret(tmp_path: Path) -> None:
    missing = check_config(write_config(tmp_path / "a.toml", {"database_url": "sqlite:///:memory:"}))
    assert [f.where for f in missing.errors] == ["server.session_secret"]
    assert "not set" in missing.errors[0].message
    weak = check_config(write_config(tmp_path / "b.toml", {"session_secret": {"env": "WEAK"}}))
    assert [f.line() for f in weak.errors] == ["error: server.session_secret: environment variable WEAK is not set"]


def test_weak_literal_secret_is_an_error_and_a_plain_text_warning(tmp_path: Path) -> None:
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": "changeme"}))
    assert [(f.level, f.where) for f in report.findings] == [
        ("warning", "server.session_secret"), ("error", "server.session_secret")]
    assert "at least 32 characters" in report.errors[0].message


def test_invalid_server_value_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSOM_LOG_LEVEL", "CHATTY")
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": SECRET, "log_format": "xml"}))
    assert sorted(f.where for f in report.errors) == ["TRANSOM_LOG_LEVEL (server.log_level)", "server.log_format"]


def test_plain_text_connector_secret_is_a_warning(tmp_path: Path) -> None:
    connector = {"id": "acme-okta", "type": "okta", "account": "acme",
                 "settings": {"issuer": "https://acme.okta.test", "client_id": "c", "client_secret": "hunter2"}}
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": SECRET}, [connector]),
                          check_database=False)
    assert [f.line() for f in report.warnings] == [
        "warning: connector 'acme-okta': settings.client_secret: secret written in the file; use "
        '{ env = "NAME" } or { file = "PATH" }']
    assert "hunter2" not in json.dumps(report.as_json())


def test_unreadable_and_non_pem_certificate_files(tmp_path: Path) -> None:
    not_pem = tmp_path / "key.pem"
    not_pem.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    connectors = [
        {**saml_connector(idp_certificate_file=str(tmp_path / "absent.pem")), "id": "a"},
        {**saml_connector(idp_certificate_file=str(not_pem)), "id": "b"},
        {**saml_connector(idp_certificate_file=str(garbage)), "id": "c"},
    ]
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": SECRET}, connectors),
                          check_database=False)
    assert lines(report) == [
        f"error: connector 'a': settings.idp_certificate_file: cannot read {tmp_path / 'absent.pem'}: "
        "No such file or directory",
        "error: connector 'b': settings.idp_certificate_file: PEM block is not a CERTIFICATE (a key or a request?)",
        "error: connector 'c': settings.idp_certificate_file: not a PEM certificate",
    ]


def test_expired_certificate_is_an_error_and_expiring_one_a_warning(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = SigningKey.generate("Old IdP", not_valid_before=now - timedelta(days=400),
                                  not_valid_after=now - timedelta(days=3))
    soon = SigningKey.generate("Soon IdP", not_valid_after=now + timedelta(days=10))
    later = SigningKey.generate("Fine IdP", not_valid_after=now + timedelta(days=200))
    report = check_config(write_config(
        tmp_path / "t.toml", {"session_secret": SECRET},
        [saml_connector(idp_certificates=[expired.certificate_pem, soon.certificate_pem, later.certificate_pem])]),
        check_database=False)
    assert [(f.level, f.where) for f in report.findings] == [
        ("error", "connector 'acme-saml': settings.idp_certificates[0]"),
        ("warning", "connector 'acme-saml': settings.idp_certificates[1]"),
    ]
    assert "certificate 'CN=Old IdP' expired on" in report.findings[0].message
    assert "certificate 'CN=Soon IdP' expires on" in report.findings[1].message
    assert "(in 9 days)" in report.findings[1].message or "(in 10 days)" in report.findings[1].message


def test_metadata_file_unreadable_invalid_and_with_expired_certificate(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = FakeSamlIdp(key=SigningKey.generate(not_valid_before=now - timedelta(days=90),
                                              not_valid_after=now - timedelta(days=1)))
    good_meta = tmp_path / "expired-md.xml"
    good_meta.write_text(old.metadata_xml())
    bad_meta = tmp_path / "bad-md.xml"
    bad_meta.write_text("<html>login page</html>")
    connectors = [
        {"id": "a", "type": "generic_saml", "account": "acme", "settings": {"idp_metadata_file": str(good_meta)}},
        {"id": "b", "type": "generic_saml", "account": "acme", "settings": {"idp_metadata_file": str(bad_meta)}},
        {"id": "c", "type": "generic_saml", "account": "acme",
         "settings": {"idp_metadata_file": str(tmp_path / "none.xml")}},
        {"id": "d", "type": "generic_saml", "account": "acme",
         "settings": {"idp_metadata_url": "http://idp.example.test/md"}},
    ]
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": SECRET}, connectors),
                          check_database=False)
    got = lines(report)
    assert len(got) == 4, got
    assert got[0].startswith("error: connector 'a': settings.idp_metadata_file: certificate 'CN=Transom Fake IdP' "
                             "expired on")
    assert got[1].startswith(f"error: connector 'b': settings.idp_metadata_file: {bad_meta}: not valid SAML metadata")
    assert got[2] == (f"error: connector 'c': settings.idp_metadata_file: cannot read {tmp_path / 'none.xml'}: "
                      "No such file or directory")
    assert got[3] == ("error: connector 'd': settings.idp_metadata_url: must be an https URL (it carries the keys "
                      "we trust)")


def test_account_named_by_a_connector_must_exist(tmp_path: Path, database_url: str) -> None:
    with_account(database_url, "acme")
    cert = SigningKey.generate().certificate_pem
    connectors = [saml_connector(idp_certificates=[cert]),
                  {**saml_connector(idp_certificates=[cert]), "id": "ghost-saml", "account": "ghost"}]
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": SECRET, "database_url": database_url},
                                       connectors))
    assert lines(report) == ["error: connector 'ghost-saml': account: account 'ghost' does not exist in the database; "
                             "create it with: transom accounts create ghost"]


def test_unreachable_database_is_an_error_and_a_missing_sqlite_file_a_warning(tmp_path: Path) -> None:
    unreachable = check_config(write_config(tmp_path / "a.toml", {
        "session_secret": SECRET, "database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}))
    assert [f.line() for f in unreachable.errors] == ["error: server.database_url: cannot connect: OperationalError"]
    missing = check_config(write_config(tmp_path / "b.toml", {
        "session_secret": SECRET, "database_url": f"sqlite:///{tmp_path / 'nope.db'}"}))
    assert [f.where for f in missing.warnings] == ["server.database_url"]
    assert not (tmp_path / "nope.db").exists()  # the check never creates a database


def test_unknown_type_and_bad_settings_name_connector_and_key(tmp_path: Path) -> None:
    connectors = [
        {"id": "x", "type": "no_such_type", "account": "acme"},
        {"id": "y", "type": "okta", "account": "acme", "settings": {"issuer": "https://o.test", "client_id": "c",
                                                                    "colour": "blue"}},
        {"id": "y", "type": "okta", "account": "acme"},
    ]
    report = check_config(write_config(tmp_path / "t.toml", {"session_secret": SECRET}, connectors),
                          check_database=False)
    got = lines(report)
    assert got[0] == "error: connector 'y': duplicate connector id"
    assert got[1].startswith("error: connector type 'no_such_type': connector type 'no_such_type' is not installed")
    assert got[2] == "error: connector 'y': settings.colour: unknown key"


def test_cli_prints_one_line_per_problem_and_exits_1(tmp_path: Path, database_url: str) -> None:
    engine = create_engine(database_url)
    engine.dispose()
    path = write_config(tmp_path / "t.toml", {"session_secret": "short"},
                        [saml_connector(idp_certificate_file=str(tmp_path / "absent.pem"))])
    result = run_cli("check-config", "--config", str(path),
                     env=clean_env(TRANSOM_LOG_LEVEL="CHATTY", TRANSOM_DATABASE_URL=database_url))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: server.session_secret: must be a random value of at least 32 characters",
        "error: TRANSOM_LOG_LEVEL (server.log_level): must be one of critical, error, warning, info, debug, trace",
        f"error: connector 'acme-saml': settings.idp_certificate_file: cannot read {tmp_path / 'absent.pem'}: "
        "No such file or directory",
    ]
    assert result.stdout.splitlines() == [
        'warning: server.session_secret: written in the file; use { env = "TRANSOM_SESSION_SECRET" } '
        'or { file = "/run/secrets/..." }', "3 error(s), 1 warning(s)"]


def test_cli_json_and_config_after_the_subcommand(tmp_path: Path, database_url: str) -> None:
    with_account(database_url)
    cert = SigningKey.generate().certificate_pem
    path = write_config(tmp_path / "t.toml", {"session_secret": SECRET, "database_url": database_url},
                        [saml_connector(idp_certificates=[cert])])
    result = run_cli("check-config", "--json", "--config", str(path), env=clean_env(OPS_SECRET=GOOD_SECRET))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == {"ok": True, "connectors": ["acme-saml"], "types": ["generic_saml"], "findings": []}
    text = run_cli("check-config", "--config", str(path), env=clean_env(OPS_SECRET=GOOD_SECRET))
    assert text.stdout.strip() == "config ok: 1 connector(s), types: generic_saml"


def test_cli_without_a_config_file_fails(tmp_path: Path) -> None:
    result = subprocess_in(tmp_path, "check-config")
    assert result.returncode == 1
    assert "transom.toml: config file not found" in result.stderr


def subprocess_in(cwd: Path, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "transom.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
