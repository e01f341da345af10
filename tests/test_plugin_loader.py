"""The plugin loader: only enabled types are imported, missing and doubly-provided types stop
start-up with one line, misspelled or unmarked hooks are caught, plugin failures fail closed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from transom.connector import Connector, ProvisioningSettings
from transom.errors import ConfigError, ConnectorError
from transom.plugins import ENTRY_POINT_GROUP, PluginHost

PLUGIN_TEMPLATE = '''
from pydantic import BaseModel
from transom.connector import ConnectorType
from transom.hookspecs import hookimpl

class Settings(BaseModel):
    pass

@hookimpl
def transom_connector_type():
    return ConnectorType(name="{type_name}", protocols=("oidc",), settings_model=Settings)
{extra}
'''


def make_distribution(root: Path, dist: str, plugins: dict[str, str], extra: str = "") -> None:
    """A real installed-looking distribution: a .dist-info with entry_points.txt and one
    module per plugin, found through importlib.metadata like any installed package."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"]
    for type_name, module in plugins.items():
        lines.append(f"{type_name} = {module}")
        (root / f"{module}.py").write_text(PLUGIN_TEMPLATE.format(type_name=type_name, extra=extra))
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def entry_points_in(*roots: Path) -> list[metadata.EntryPoint]:
    eps: list[metadata.EntryPoint] = []
    for dist in metadata.distributions(path=[str(r) for r in roots]):
        eps.extend(ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)
    return eps


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_only_enabled_types_are_imported(plugin_root: Path) -> None:
    make_distribution(plugin_root, "acme_plugins", {"alpha": "zz_alpha_plugin", "beta": "zz_beta_plugin"})
    host = PluginHost.load(["alpha"], entry_points=entry_points_in(plugin_root))
    assert set(host.types) == {"alpha"}
    assert "zz_alpha_plugin" in sys.modules
    assert "zz_beta_plugin" not in sys.modules


def test_builtin_plugins_load_only_when_enabled() -> None:
    code = textwrap.dedent("""
        import sys
        from transom.plugins import PluginHost
        host = PluginHost.load(["okta"])
        print(sorted(host.types), "transom_azure_ad" in sys.modules, "transom_generic_saml" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['okta'] False False"


def test_missing_type_stops_with_one_line(plugin_root: Path) -> None:
    make_distribution(plugin_root, "acme_plugins", {"alpha": "zz_alpha2_plugin"})
    with pytest.raises(ConfigError) as err:
        PluginHost.load(["gamma"], entry_points=entry_points_in(plugin_root))
    message = str(err.value)
    assert "\n" not in message
    assert "'gamma'" in message and "is its plugin installed?" in message


def test_type_provided_by_two_packages_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    monkeypatch.syspath_prepend(str(one))
    monkeypatch.syspath_prepend(str(two))
    make_distribution(one, "first_pkg", {"alpha": "zz_first_alpha"})
    make_distribution(two, "second_pkg", {"alpha": "zz_second_alpha"})
    with pytest.raises(ConfigError) as err:
        PluginHost.load(["alpha"], entry_points=entry_points_in(one, two))
    message = str(err.value)
    assert "\n" not in message
    assert "more than one package" in message
    assert "first_pkg" in message and "second_pkg" in message
    assert "zz_first_alpha" not in sys.modules and "zz_second_alpha" not in sys.modules


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("\n@hookimpl\ndef transom_extract_claim(connector, payload):\n    return None\n", "transom_extract_claim"),
        ("\ndef transom_extract_claims(connector, payload):\n    return None\n", "without @hookimpl"),
        ("\n@hookimpl\nasync def transom_extract_claims(connector, payload):\n    return None\n", "async"),
        ("\n@hookimpl\ndef transom_extract_claims(connector, payload, extra_arg):\n    return None\n", "extra_arg"),
    ],
    ids=["typo", "unmarked", "async", "unknown-argument"],
)
def test_bad_hookimpls_are_caught(plugin_root: Path, extra: str, expected: str, request: pytest.FixtureRequest) -> None:
    module = f"zz_bad_{request.node.callspec.id.replace('-', '_')}"
    make_distribution(plugin_root, "bad_plugins", {"alpha": module}, extra=extra)
    with pytest.raises(ConfigError) as err:
        PluginHost.load(["alpha"], entry_points=entry_points_in(plugin_root))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_entry_point_name_must_match_declared_type(plugin_root: Path) -> None:
    root = plugin_root
    info = root / "liar-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: liar\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nalpha = zz_liar_plugin\n")
    (root / "zz_liar_plugin.py").write_text(PLUGIN_TEMPLATE.format(type_name="not_alpha", extra=""))
    with pytest.raises(ConfigError, match="does not declare that type"):
        PluginHost.load(["alpha"], entry_points=entry_points_in(root))


class ExplodingPlugin:
    """A plugin whose claim extraction has a bug: the host must fail closed."""

    from transom.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def transom_connector_type(self):  # type: ignore[no-untyped-def]
        from pydantic import BaseModel

        from transom.connector import ConnectorType

        class Settings(BaseModel):
            pass

        return ConnectorType(name="boom", protocols=("oidc",), settings_model=Settings)

    @_hookimpl
    def transom_extract_claims(self, connector, payload):  # type: ignore[no-untyped-def]
        if connector.type == "boom":
            raise KeyError("sub")
        return None


def test_plugin_exception_becomes_connector_error() -> None:
    host = PluginHost.load(["boom"], extra_plugins={"boom": ExplodingPlugin()})
    settings_model = host.types["boom"].settings_model
    connector = Connector(id="c1", type="boom", account="acme", name="x", email_domains=(),
                          settings=settings_model(), provisioning=ProvisioningSettings(), protocol="oidc")
    with pytest.raises(ConnectorError) as err:
        host.extract_claims(connector, {"sub": "x"})
    assert "c1" in str(err.value)
    assert "KeyError" not in str(err.value)
