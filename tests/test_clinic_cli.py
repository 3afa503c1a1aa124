"""``skinscan serve``, ``skinscan serve adduser`` and ``skinscan bench serve``."""

from __future__ import annotations

import io
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from device import cli
from device.records.export import generate_clinic_keypair

pytest.importorskip("flask")
pytest.importorskip("waitress")
pytest.importorskip("argon2")

PASSWORD = "correct horse battery"


def test_serve_is_a_subcommand_and_its_module_imports_nothing_heavy():
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--clinic-key", "k", "--data-dir", "d"])
    assert args._module == "clinic.cli"
    assert (args.host, args.port) == ("127.0.0.1", 8080)  # localhost unless told otherwise
    code = (
        "import sys, device.cli as c; c.build_parser(); "
        "heavy = {'flask', 'waitress', 'argon2', 'werkzeug', 'nacl'} & set(sys.modules); "
        "sys.exit(','.join(sorted(heavy)) or 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _adduser(monkeypatch, data, name, password=PASSWORD):
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    return cli.main(["serve", "adduser", "--data-dir", str(data), name, "--password-stdin"])


def test_adduser_creates_an_argon2_account(tmp_path, monkeypatch, capsys):
    from clinic.auth import verify_login
    from clinic.store import ClinicStore

    assert _adduser(monkeypatch, tmp_path / "clinic", "alice") == 0
    assert "created user alice" in capsys.readouterr().out
    with ClinicStore(tmp_path / "clinic") as store:
        stored = store.password_hash("alice")
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        assert verify_login(store, "alice", PASSWORD)
        assert not verify_login(store, "alice", PASSWORD + "x")
    assert _adduser(monkeypatch, tmp_path / "clinic", "alice") == 2
    assert "exists already" in capsys.readouterr().err
    assert _adduser(monkeypatch, tmp_path / "clinic", "bob", "short") == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert _adduser(monkeypatch, tmp_path / "clinic", "Bob Smith") == 2


def test_serve_needs_a_private_clinic_key(tmp_path, capsys):
    assert cli.main(["serve", "--data-dir", str(tmp_path / "c")]) == 2
    assert "--clinic-key" in capsys.readouterr().err
    _, public = generate_clinic_keypair(tmp_path / "keys")
    assert cli.main(["serve", "--clinic-key", str(public), "--data-dir", str(tmp_path / "c")]) == 2
    assert "not a private key" in capsys.readouterr().err


def test_serve_runs_waitress_on_localhost_and_warns_for_other_addresses(
    tmp_path, monkeypatch, caplog
):
    import waitress

    calls = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.append((app, kw)))
    private, _ = generate_clinic_keypair(tmp_path / "keys")
    base = ["serve", "--clinic-key", str(private), "--data-dir", str(tmp_path / "c")]
    assert cli.main(base) == 0
    ((app, options),) = calls
    assert (options["host"], options["port"]) == ("127.0.0.1", 8080)
    assert app.config["SESSION_COOKIE_HTTPONLY"] and not app.config["SESSION_COOKIE_SECURE"]
    with caplog.at_level(logging.WARNING):
        assert cli.main([*base, "--host", "0.0.0.0", "--port", "9000", "--secure-cookies"]) == 0
    assert "TLS reverse proxy" in caplog.text
    assert calls[1][1]["host"] == "0.0.0.0" and calls[1][0].config["SESSION_COOKIE_SECURE"]


def test_bench_serve_measures_a_loopback_server():
    from clinic.bench import run_bench

    figures = run_bench(uploads=2, requests=8, clients=4)
    assert figures["uploads"] == 2 and figures["retakes"] == 0
    assert figures["page_requests"] == 8 and figures["page_errors"] == 0
    assert 0 < figures["upload_to_result_median_ms"] <= figures["upload_to_result_p95_ms"]
    assert figures["scan_page_requests_per_s"] > 0 and figures["clients"] == 4


def test_device_never_imports_the_clinic_app_or_flask():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "device"
    offenders = []
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                module = words[1].split(".")[0]
                if module in ("flask", "flask_wtf", "waitress", "werkzeug", "argon2") or words[
                    1
                ].startswith("clinic"):
                    offenders.append(f"{path.relative_to(root)}:{number}")
    assert offenders == []


def test_serve_trusts_forwarded_addresses_only_when_told(tmp_path, monkeypatch):
    import waitress
    from werkzeug.middleware.proxy_fix import ProxyFix

    calls = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.append((app, kw)))
    private, _ = generate_clinic_keypair(tmp_path / "keys")
    base = ["serve", "--clinic-key", str(private), "--data-dir", str(tmp_path / "c")]
    assert cli.main(base) == 0
    assert cli.main([*base, "--trusted-proxies", "1"]) == 0
    (plain, plain_options), (proxied, proxied_options) = calls
    assert not isinstance(plain.wsgi_app, ProxyFix)
    assert "clear_untrusted_proxy_headers" not in plain_options  # waitress drops the header
    assert isinstance(proxied.wsgi_app, ProxyFix) and proxied.wsgi_app.x_for == 1
    assert proxied_options["clear_untrusted_proxy_headers"] is False  # ProxyFix decides
    assert cli.main([*base, "--trusted-proxies", "-1"]) == 2


def test_unlock_lifts_a_lockout_kept_in_the_clinic_database(tmp_path, monkeypatch, capsys):
    from clinic.auth import LoginThrottle
    from clinic.store import ClinicStore

    data = tmp_path / "clinic"
    with ClinicStore(data) as store:
        throttle = LoginThrottle(max_failures=3, window_s=900).using(store)
        for _ in range(3):
            throttle.failed("alice", "127.0.0.1")
        throttle.failed("bob", "127.0.0.1")
        assert throttle.retry_after("alice") > 800 and throttle.retry_after("bob") == 0
    assert cli.main(["serve", "unlock", "--data-dir", str(data), "alice"]) == 0
    assert "3 failed login(s) forgotten" in capsys.readouterr().out
    with ClinicStore(data) as store:
        throttle = LoginThrottle(max_failures=3, window_s=900).using(store)
        assert throttle.retry_after("alice") == 0
        assert len(store.login_failures("bob", since=0)) == 1
        # Nothing of the typed name is kept in clear (it may be a mistyped password).
        conn = sqlite3.connect(data / "clinic.db")
        dump = "\n".join(conn.iterdump())
        conn.close()
        assert "bob" not in dump and "alice" not in dump


def test_behind_waitress_the_forwarded_address_reaches_the_log(tmp_path, caplog):
    """waitress drops proxy headers by default; with --trusted-proxies the app sees them."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    from clinic.app import ClinicSettings, create_app
    from clinic.server import BackgroundServer, waitress_options

    private, _ = generate_clinic_keypair(tmp_path / "keys")
    for proxies, logged in ((0, "127.0.0.1"), (1, "198.51.100.7")):
        settings = ClinicSettings(
            data_dir=tmp_path / f"c{proxies}", clinic_key=private, trusted_proxies=proxies
        )
        app = create_app(settings)
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        try:
            with BackgroundServer(app, threads=1, **waitress_options(proxies)) as server:
                page = opener.open(server.url + "/login").read().decode()
                token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
                form = {"username": "alice", "password": "wrong guess", "csrf_token": token}
                request = urllib.request.Request(
                    server.url + "/login",
                    data=urllib.parse.urlencode(form).encode(),
                    headers={"X-Forwarded-For": "198.51.100.7"},
                )
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="clinic.views"):
                    try:
                        opener.open(request)
                    except urllib.error.HTTPError as exc:
                        assert exc.code == 401
                assert f"failed login for 'alice' from {logged}" in caplog.text, caplog.text
        finally:
            app.extensions["skinscan_clinic"].store.close()


def test_admin_actions_leave_a_running_apps_uploads_alone(tmp_path, monkeypatch, capsys):
    from clinic.store import ClinicStore

    data = tmp_path / "clinic"
    with ClinicStore(data) as running:  # the app, mid-upload
        upload = running.temp_path(".jpg")
        upload.write_bytes(b"an upload being decoded")
        assert cli.main(["serve", "unlock", "--data-dir", str(data), "alice"]) == 0
        assert _adduser(monkeypatch, data, "carol") == 0
        assert upload.read_bytes() == b"an upload being decoded"


def test_data_dir_names_the_clinic_folder_and_old_data_spelling_still_works_hidden(
    capsys: pytest.CaptureFixture,
) -> None:
    parser = cli.build_parser()
    new = parser.parse_args(["serve", "--clinic-key", "k", "--data-dir", "d"])
    old = parser.parse_args(["serve", "--clinic-key", "k", "--data", "d"])
    assert new.data == old.data == Path("d")
    users = parser.parse_args(["serve", "unlock", "--data", "d", "alice"])
    assert users.user_data == Path("d")
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    help_text = capsys.readouterr().out
    assert "--data-dir DIR" in help_text and "--data " not in help_text.replace("--data-dir", "")
