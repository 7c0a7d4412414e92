"""Start-up configuration: defaults, flags over variables, and errors that name the setting."""

import argparse
import dataclasses
from pathlib import Path

import pytest

from image_gate.app.cli import main
from image_gate.app.options import options_of
from image_gate.app.settings import Settings, SettingsError, add_run_arguments, run_options
from image_gate.clouds import aliyun, huawei
from image_gate.clouds.quota import Rate
from image_gate.facts.resolver import CacheSettings


def settings(*argv: str, **env: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return Settings.from_arguments(parser.parse_args(list(argv)), environ=env)


def test_defaults() -> None:
    s = settings()
    assert (s.port, s.health_port, s.deadline, s.log_format, s.log_level) == (9443, 8443, 3.0, "json", "INFO")
    assert s.exempt_namespaces == {"kube-system"}
    assert s.hss_rate == Rate(5, 60.0)


def test_flags_win_over_variables_and_own_namespace_is_exempt() -> None:
    s = settings(
        "--port",
        "10443",
        IMAGE_GATE_PORT="11443",
        IMAGE_GATE_NAMESPACE="image-gate",
        IMAGE_GATE_EXEMPT_NAMESPACES="kube-system, kube-public",
        IMAGE_GATE_HSS_RATE="50/60s",
    )
    assert s.port == 10443
    assert s.exempt_namespaces == {"kube-system", "kube-public", "image-gate"}
    assert s.hss_rate == Rate(50, 60.0)


def test_registry_mapping_endpoints_apply_unless_overridden(tmp_path: Path) -> None:
    config = tmp_path / "registries.yaml"
    config.write_text("huawei:\n  endpoint: https://hss.example/\n")
    assert settings("--config", str(config)).hss_endpoint == "https://hss.example"
    assert settings("--config", str(config), IMAGE_GATE_HSS_ENDPOINT="https://other").hss_endpoint == "https://other"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ((), {"IMAGE_GATE_PORT": "http"}, "--port (IMAGE_GATE_PORT): must be a port number, not 'http'"),
        (
            ("--deadline-seconds", "45"),
            {},
            "--deadline-seconds (IMAGE_GATE_DEADLINE_SECONDS): must be positive and at most 29, not 45",
        ),
        (
            (),
            {"IMAGE_GATE_LOG_FORMAT": "xml"},
            "--log-format (IMAGE_GATE_LOG_FORMAT): must be one of json, text, not 'xml'",
        ),
        (
            ("--cert-file", "a.pem"),
            {},
            "--cert-file and --key-file (IMAGE_GATE_CERT_FILE, IMAGE_GATE_KEY_FILE) go together",
        ),
        (
            (),
            {"IMAGE_GATE_SAS_ENDPOINT": "tds.example"},
            "--sas-endpoint (IMAGE_GATE_SAS_ENDPOINT): must be an http(s) URL, not 'tds.example'",
        ),
        (
            (),
            {"IMAGE_GATE_HSS_RATE": "fast"},
            "--hss-rate (IMAGE_GATE_HSS_RATE): 'fast' is not a rate; write calls/seconds, e.g. 5/60",
        ),
        (("--port", "8443"), {}, "--port and --health-port must differ"),
        (
            ("--cloud-ca-file", "/nonexistent/ca.pem"),
            {},
            "--cloud-ca-file (IMAGE_GATE_CLOUD_CA_FILE): /nonexistent/ca.pem does not exist",
        ),
    ],
)
def test_bad_values_name_the_flag_and_the_variable(argv: tuple[str, ...], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(*argv, **env)
    assert str(caught.value) == message


def test_a_broken_registry_mapping_stops_start_up(tmp_path: Path) -> None:
    config = tmp_path / "registries.yaml"
    config.write_text("aliyun:\n  site: mars\n")
    with pytest.raises(SettingsError) as caught:
        settings("--config", str(config))
    assert (
        str(caught.value)
        == f"--config (IMAGE_GATE_CONFIG): {config}: aliyun.site: must be 'china' or 'international', not 'mars'"
    )


# --------------------------------------------------------------------------- one table of settings


def test_every_settings_field_is_a_flag_and_a_variable() -> None:
    """Adding a setting is one field: a field without its option would be a setting nobody can set."""
    options = dict(options_of(Settings))
    assert set(options) == {field.name for field in dataclasses.fields(Settings)}
    assert len({option.name for option in options.values()}) == len(options), "two fields share a flag"
    assert options["deadline"].flag == "--deadline-seconds"
    assert options["deadline"].env == "IMAGE_GATE_DEADLINE_SECONDS"
    assert options["registries"].env == "IMAGE_GATE_CONFIG"


def test_run_help_lists_every_flag_with_its_variable_and_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag: argparse wraps at hyphens otherwise
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    lines: dict[str, str] = {}  # flag -> its whole entry, on one line
    for block in capsys.readouterr().out.split("\n  --")[1:]:
        entry = " ".join(("--" + block).split())
        lines[entry.split()[0]] = entry
    for option in run_options():
        assert option.help_text.replace("%%", "%") in lines[option.flag], option.flag
    assert lines["--port"].endswith("(default 9443) [env IMAGE_GATE_PORT]")
    assert "(default 5/60) [env IMAGE_GATE_HSS_RATE]" in lines["--hss-rate"]
    assert "(default 300) [env IMAGE_GATE_TAG_TTL_SECONDS]" in lines["--tag-ttl-seconds"]
    assert "(default kube-system) [env IMAGE_GATE_EXEMPT_NAMESPACES]" in lines["--exempt-namespaces"]
    assert "(default info) [env IMAGE_GATE_LOG_LEVEL]" in lines["--log-level"]


def test_defaults_have_one_home() -> None:
    """The published HSS quota lives with the HSS client, the TTLs with the fact cache."""
    defaults, cache = Settings(), CacheSettings()
    assert defaults.hss_rate == huawei.DEFAULT_RATE == Rate(5, 60.0)
    assert defaults.sas_rate == aliyun.DEFAULT_RATE
    assert (defaults.tag_ttl, defaults.negative_ttl, defaults.max_stale) == (
        cache.tag_ttl,
        cache.negative_ttl,
        cache.max_stale,
    )


def test_check_reads_the_same_options_as_run() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, only=("config", "deadline_seconds"))
    assert Settings.from_arguments(parser.parse_args(["--deadline-seconds", "2"]), environ={}).deadline == 2.0
    with pytest.raises(ValueError, match="no option deadline"):
        add_run_arguments(argparse.ArgumentParser(), only=("deadline",))


def test_a_blank_variable_means_the_default() -> None:
    s = settings(IMAGE_GATE_PORT=" ", IMAGE_GATE_EXEMPT_NAMESPACES=" , ", IMAGE_GATE_LOG_LEVEL="Debug")
    assert (s.port, s.exempt_namespaces, s.log_level) == (9443, frozenset({"kube-system"}), "DEBUG")
