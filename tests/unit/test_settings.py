"""Start-up configuration: defaults, flags over variables, and errors that name the setting."""

import argparse
from pathlib import Path

import pytest

from image_gate.app.settings import Settings, SettingsError, add_run_arguments
from image_gate.clouds.quota import Rate


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
