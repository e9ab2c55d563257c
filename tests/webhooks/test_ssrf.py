"""The SSRF guard and one attempt's HTTP: what is refused (before any connection), and that a
send goes to the address that was checked, with the name for Host and TLS, following no redirect.

Name resolution is faked (webhooks.ssrf.lookup); the only server is the loopback receiver."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook as Verifier

from webhooks import sender, ssrf
from webhooks.keys import secret_new

REFUSED = [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1",
    "240.0.0.1", "100.64.0.1", "198.18.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2001:db8::1",
    # IPv6 forms that carry or reach an IPv4 address are refused whole, a public one's too.
    "64:ff9b::a00:1", "64:ff9b::5db8:d822", "64:ff9b:1::a00:1", "64:ff9b:1:2::5db8:d822",  # NAT64
    "2002:a00:1::1", "2002:5db8:d822::1",  # 6to4 (of 10.0.0.1, of a public address)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::a00:1",  # Teredo
    "::ffff:5db8:d822", "::5db8:d822", "::a00:1", "::ffff:0:5db8:d822",  # mapped, compatible, translated
]
# What each of those IPv6 forms is refused as.
EMBEDDED = [
    ("64:ff9b::5db8:d822", "NAT64 address"), ("64:ff9b:1::a00:1", "NAT64 address"),
    ("2002:5db8:d822::1", "6to4 address"), ("2002:a00:1::1", "6to4 address"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo address"),
    ("::ffff:5db8:d822", "IPv4-mapped address"), ("::ffff:10.0.0.1", "IPv4-mapped address"),
    ("::5db8:d822", "IPv4-compatible address"), ("::ffff:0:5db8:d822", "IPv4-translated address"),
]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection attempt is recorded and refused."""
    attempts: list[Any] = []

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"connected to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def strict(settings: Any) -> None:
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = False


def literal(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


@pytest.mark.parametrize("address", REFUSED)
def test_ip_literals_that_are_not_public_are_refused(strict, no_connections, address):
    with pytest.raises(ssrf.WebhookUrlRefused) as refused:
        ssrf.target_check(literal(address))
    assert refused.value.code == "invalid_webhook_url" and refused.value.details["reason"] == "address"
    assert no_connections == []


@pytest.mark.parametrize("address", REFUSED)
def test_a_name_resolving_to_a_refused_address_is_refused_before_any_connection(strict, fake_dns, no_connections,
                                                                                 address):
    fake_dns({"hooks.example.test": [address]})
    outcome = sender.send(url="https://hooks.example.test/hook", secret=secret_new(), message_id="msg_1", body="{}")
    assert outcome.status_code is None and outcome.error.startswith("refused:")
    assert no_connections == []


@pytest.mark.parametrize(("address", "kind"), EMBEDDED)
def test_ipv6_forms_that_lead_to_an_ipv4_address_are_refused_whatever_they_carry(strict, fake_dns, no_connections,
                                                                                   address, kind):
    """6to4 of 10.0.0.1 passed as a global address, and a NAT64 or mapped form of a public IPv4
    would be judged on an address other than the one reached: each is refused, by its name."""
    fake_dns({"hooks.example.test": ["93.184.216.34", address]})
    with pytest.raises(ssrf.WebhookUrlRefused) as refused:
        ssrf.target_check("https://hooks.example.test/")
    assert refused.value.details["reason"] == "address" and kind in refused.value.message
    assert no_connections == []


def test_public_ipv6_and_ipv4_addresses_are_still_accepted(strict, fake_dns):
    fake_dns({"v6.example.test": ["2606:2800:220:1:248:1893:25c8:1946"], "v4.example.test": ["93.184.216.34"]})
    assert str(ssrf.target_check("https://v6.example.test/").address) == "2606:2800:220:1:248:1893:25c8:1946"
    assert str(ssrf.target_check("https://v4.example.test/").address) == "93.184.216.34"


def test_one_private_address_among_public_ones_refuses_the_name(strict, fake_dns, no_connections):
    fake_dns({"hooks.example.test": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(ssrf.WebhookUrlRefused):
        ssrf.target_check("https://hooks.example.test/")
    assert no_connections == []


def test_a_public_name_is_accepted_and_pinned_to_its_address(strict, fake_dns):
    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    target = ssrf.target_check("https://Hooks.Example.Test./in?x=1")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "hooks.example.test", 443, "/in?x=1")
    assert str(target.address) == "93.184.216.34" and target.host_header == "hooks.example.test"


@pytest.mark.parametrize(("url", "reason"), [
    ("http://hooks.example.test/", "scheme"),
    ("ftp://hooks.example.test/", "scheme"),
    ("hooks.example.test/path", "scheme"),
    ("https://user:pw@hooks.example.test/", "credentials"),
    ("https:///nohost", "malformed"),
    ("https://hooks.example.test/#frag", "malformed"),
    ("https://hooks.example.test/a b", "malformed"),
    ("https://hooks.example.test:99999/", "malformed"),
    ("https://unknown.example.test/", "unresolvable"),
    ("https://hooks.example.test/" + "a" * 2000, "length"),
])
def test_malformed_or_non_https_urls_are_refused(strict, fake_dns, no_connections, url, reason):
    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    with pytest.raises(ssrf.WebhookUrlRefused) as refused:
        ssrf.target_check(url)
    assert refused.value.details["reason"] == reason
    assert no_connections == []


def test_loopback_and_http_only_where_the_setting_allows_and_only_to_loopback(settings, fake_dns):
    fake_dns({"public.example.test": ["93.184.216.34"], "local.example.test": ["127.0.0.1"]})
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = True
    assert str(ssrf.target_check("http://127.0.0.1:8080/x").address) == "127.0.0.1"
    assert str(ssrf.target_check("http://local.example.test/x").address) == "127.0.0.1"
    with pytest.raises(ssrf.WebhookUrlRefused):  # plain http is for a local receiver only
        ssrf.target_check("http://public.example.test/x")
    with pytest.raises(ssrf.WebhookUrlRefused):  # private stays refused
        ssrf.target_check("https://10.0.0.1/x")
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = False
    with pytest.raises(ssrf.WebhookUrlRefused):
        ssrf.target_check("https://127.0.0.1/x")


def test_a_send_goes_to_the_checked_address_with_the_name_as_host(receiver, fake_dns):
    looked_up = fake_dns({"hooks.example.test": ["127.0.0.1"]})
    secret = secret_new()
    body = '{"type":"job.start","data":{}}'
    outcome = sender.send(url=f"http://hooks.example.test:{receiver.port}/in?k=v", secret=secret,
                          message_id="msg_abc", body=body)
    assert outcome.succeeded, outcome
    assert looked_up == ["hooks.example.test"]  # resolved once, by the guard: the connection used that answer
    [got] = receiver.received
    assert got.path == "/in?k=v" and got.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert got.headers["webhook-id"] == "msg_abc"
    assert Verifier(secret).verify(got.body, got.headers) == {"type": "job.start", "data": {}}


def _self_signed(name: str, tmp_path: Any) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_uses_the_name_for_sni_and_verifies_the_certificate(settings, fake_dns, tmp_path):
    """A TLS server on loopback with a certificate no CA signed: the client names the host in
    SNI, and refuses the certificate (the attempt fails as a TLS error, nothing is sent)."""
    settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK = True
    fake_dns({"tls.example.test": ["127.0.0.1"]})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed("tls.example.test", tmp_path))
    seen: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    requests_seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                requests_seen.append(tls.recv(100))
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    outcome = sender.send(url=f"https://tls.example.test:{port}/hook", secret=secret_new(), message_id="m", body="{}")
    thread.join(5)
    listener.close()
    assert seen == ["tls.example.test"]
    assert outcome.status_code is None and outcome.error.startswith("TLS error"), outcome
    assert requests_seen == []


@pytest.mark.parametrize("location", [
    "http://169.254.169.254/latest/meta-data",  # a refused address
    "https://internal.example.test/admin",  # a name resolving to a private address
    "https://nowhere.example.test/",  # a name that does not resolve
    "https://public.example.test/",  # a name resolving to a public address
    "/relative/path",
    None,  # no Location at all
])
def test_a_redirect_is_a_failed_attempt_that_says_nothing_of_where_it_pointed(receiver, fake_dns, location):
    """Every 3xx reads the same, and its Location is never resolved: the delivery log cannot be
    used to learn which names our resolver knows, or which of them it would refuse."""
    from tests.webhooks.conftest import Answer

    looked_up = fake_dns({"internal.example.test": ["10.0.0.7"], "public.example.test": ["93.184.216.34"]})
    receiver.default = Answer(status=302, body=b"moved", headers={"Location": location} if location else {})
    outcome = sender.send(url=receiver.url(), secret=secret_new(), message_id="m", body="{}")
    assert not outcome.succeeded
    assert outcome.status_code == 302 and outcome.error == sender.REDIRECT_ERROR == "redirect not followed"
    assert looked_up == []  # the receiver is an IP literal; the Location's host was never resolved
    assert len(receiver.received) == 1


@pytest.fixture
def hung_resolver(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Any:
    """socket.getaddrinfo never answers (until the test ends); resolution is given 0.2 s."""
    settings.AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS = 0.2
    release = threading.Event()
    calls: list[str] = []

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield calls
    release.set()


def _resolver_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "webhook-resolve")


def test_a_hung_resolver_refuses_the_url_clearly_instead_of_holding_the_caller(strict, hung_resolver,
                                                                                 no_connections):
    with pytest.raises(ssrf.WebhookUrlRefused) as refused:
        ssrf.target_check("https://slow-dns.example.test/hook")
    assert refused.value.code == "invalid_webhook_url"
    assert refused.value.details == {"reason": "resolution_timeout"}
    assert refused.value.message == "The webhook URL's host did not resolve within 0.2 s."
    assert hung_resolver == ["slow-dns.example.test"]  # through the real lookup, in its thread
    # An attempt meets the same refusal as a failed attempt, and connects nowhere.
    outcome = sender.send(url="https://slow-dns.example.test/hook", secret=secret_new(), message_id="m", body="{}")
    assert outcome.status_code is None and outcome.error == f"refused: {refused.value.message}"
    assert no_connections == []


def test_hung_lookups_hold_at_most_a_bounded_number_of_threads(strict, hung_resolver, settings):
    settings.AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS = 0.05
    before = _resolver_threads()
    for n in range(ssrf.MAX_RESOLVER_THREADS + 4):
        with pytest.raises(ssrf.WebhookUrlRefused) as refused:
            ssrf.target_check(f"https://slow-{n}.example.test/")
        assert refused.value.details["reason"] == "resolution_timeout"
    # The lookups past the bound waited for a free thread (and were refused) instead of adding one.
    assert _resolver_threads() - before <= ssrf.MAX_RESOLVER_THREADS
    assert len(hung_resolver) <= ssrf.MAX_RESOLVER_THREADS


def test_a_resolver_error_through_the_thread_is_unresolvable(strict, monkeypatch, no_connections):
    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ssrf.WebhookUrlRefused) as refused:
        ssrf.target_check("https://unknown.example.test/")
    assert refused.value.details == {"reason": "unresolvable"}
    assert no_connections == []


def test_a_hanging_receiver_times_out_and_only_1_kb_of_an_answer_is_kept(receiver, settings):
    from tests.webhooks.conftest import Answer

    settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.script = [Answer(hang_seconds=2), Answer(status=500, body=b"x" * 5000)]
    hung = sender.send(url=receiver.url(), secret=secret_new(), message_id="m", body="{}")
    assert hung.status_code is None and hung.error == "timed out after 0.5 s"
    failed = sender.send(url=receiver.url(), secret=secret_new(), message_id="m", body="{}")
    assert failed.status_code == 500 and failed.error == "HTTP 500" and failed.response_body == "x" * 1024


@pytest.mark.parametrize(("extra", "expected"), [
    ({}, "False"),  # production
    ({"DJANGO_DEBUG": "1"}, "True"),
    ({"AUTEUR_WEBHOOK_ALLOW_LOOPBACK": "1"}, "True"),
    ({"DJANGO_DEBUG": "1", "AUTEUR_WEBHOOK_ALLOW_LOOPBACK": "0"}, "False"),
])
def test_loopback_targets_are_allowed_only_in_debug_unless_set(extra, expected):
    from tests.auteur.test_settings import PROD_ENV, load_settings

    result = load_settings({**PROD_ENV, **extra}, show="settings.AUTEUR_WEBHOOK_ALLOW_LOOPBACK")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("value", ["0", "31", "120"])
def test_an_attempt_deadline_that_could_outlast_the_tasks_soft_limit_is_refused_at_startup(value):
    from tests.auteur.test_settings import PROD_ENV, load_settings

    result = load_settings({**PROD_ENV, "AUTEUR_WEBHOOK_TIMEOUT_SECONDS": value})
    assert result.returncode != 0 and "AUTEUR_WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most 30" in result.stderr
