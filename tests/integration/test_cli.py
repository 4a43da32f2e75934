"""The ``glimpse`` operator commands, run in process against a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glimpse.cli.main import main


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in [n for n in os.environ if n.startswith("GLIMPSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GLIMPSE_DATA_DIR", str(tmp_path / "data"))
    before = dict(os.environ)
    yield tmp_path / "data"
    # The commands export their settings for the worker processes; keep them from later tests.
    os.environ.clear()
    os.environ.update(before)


def test_db_check_then_upgrade(environ: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "check"]) == 1
    assert "glimpse-server db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert (environ / "glimpse.sqlite").exists()
    assert main(["db", "check"]) == 0
    assert "matches the models" in capsys.readouterr().out


def test_config_file_and_errors(environ: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "glimpse.conf"
    config.write_text("[DEFAULT]\nenabled_backends = fast:file, fast:file\n")
    assert main(["db", "upgrade", "--config", str(config)]) == 2
    assert "twice" in capsys.readouterr().err
    assert main(["db", "upgrade", "--config", str(tmp_path / "missing.conf")]) == 2


def test_serve_refuses_bad_policy_file(
    environ: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('get_image: "role:admin and ("\n')
    monkeypatch.setenv("GLIMPSE_OSLO_POLICY__POLICY_FILE", str(policy))
    monkeypatch.setenv("GLIMPSE_BIND_PORT", "1")  # never reached: the policy is checked first
    assert main(["serve"]) == 2
    assert "get_image" in capsys.readouterr().err


BAD_FILTER = "[import_filtering_opts]\nallowed_ports = 80, htp\n"


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_typo_in_the_configuration_stops_the_start(
    environ: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(BAD_FILTER)
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "configuration error: [import_filtering_opts] allowed_ports: 'htp' is not a port number" in err
    assert not environ.exists()  # stopped before preparing anything


def test_the_server_process_exits_2_on_a_typo(environ: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text("[image_format]\ndisk_formats = [raw, qcow2\n")
    done = subprocess.run(
        [sys.executable, "-m", "glimpse.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert done.returncode == 2, done.stderr
    assert "[image_format] disk_formats = '[raw, qcow2' has an unmatched bracket" in done.stderr


def test_the_server_refuses_a_bad_property_protection_file(environ: Path, tmp_path: Path) -> None:
    protections = tmp_path / "property-protections.conf"
    protections.write_text("[^x_.*]\ncreate = admin\nread = admin\nupdate = admin\n")
    config = tmp_path / "glimpse.conf"
    config.write_text(f"[DEFAULT]\nproperty_protection_file = {protections}\nbind_port = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "glimpse.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert done.returncode == 2, done.stderr
    assert (
        f"configuration error: property_protection_file {protections}: [^x_.*] has no 'delete' option"
    ) in done.stderr


def test_serve_refuses_protections_naming_an_undefined_policy_rule(
    environ: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    protections = tmp_path / "property-protections.conf"
    protections.write_text("[.*]\ncreate = glance_creator\nread = @\nupdate = @\ndelete = @\n")
    monkeypatch.setenv("GLIMPSE_PROPERTY_PROTECTION_FILE", str(protections))
    monkeypatch.setenv("GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT", "policies")
    monkeypatch.setenv("GLIMPSE_BIND_PORT", "1")  # never reached
    assert main(["serve"]) == 2
    assert "names the policy rule(s) glance_creator, which the policy does not define" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unknown_import_plugin_stops_the_start(
    environ: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    config = tmp_path / "plugins.conf"
    config.write_text("[image_import_opts]\nimage_import_plugins = image_decompression, image_convertion\n")
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        "[image_import_opts] image_import_plugins: unknown plugin 'image_convertion'; "
        "the plugins are image_conversion, image_decompression, no_op"
    ) in err


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_conversion_without_qemu_img_stops_the_start(
    environ: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    monkeypatch.setenv("GLIMPSE_IMAGE_IMPORT_OPTS__IMAGE_IMPORT_PLUGINS", "image_conversion")
    monkeypatch.setenv("GLIMPSE_BIND_PORT", "1")  # never reached
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-img there
    assert main([command]) == 2
    assert "image_conversion, which runs qemu-img, but qemu-img is not on the PATH" in capsys.readouterr().err
