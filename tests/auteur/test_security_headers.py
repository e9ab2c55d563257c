"""HSTS on HTTPS answers, and a strict Content-Security-Policy that the admin and docs pages live with:
no inline script runs there, and every script, style and image they use is one the policy allows."""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders

from tests.auteur.test_settings import PROD_ENV, load_settings

ONE_YEAR = 365 * 24 * 3600


class PageAssets(HTMLParser):
    """The scripts, inline styles and linked resources of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.script_srcs: list[str] = []
        self.inline_scripts: list[str] = []
        self.inline_styles: list[str] = []
        self.links: list[str] = []
        self.style_attributes: list[str] = []
        self._in: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("style"):
            self.style_attributes.append(str(attributes["style"]))
        if any(name.startswith("on") for name in attributes):
            self.inline_scripts.append(f"<{tag} on...=>")
        if tag == "script" and attributes.get("src"):
            self.script_srcs.append(str(attributes["src"]))
        elif tag in ("script", "style"):
            self._in = (tag, attributes)
        elif tag == "link" and attributes.get("href"):
            self.links.append(str(attributes["href"]))

    def handle_endtag(self, tag: str) -> None:
        if self._in is not None and tag == self._in[0]:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is None:
            return
        tag, attributes = self._in
        if tag == "style":
            self.inline_styles.append(data)
        elif attributes.get("type") != "application/json" and data.strip():  # JSON data blocks never run
            self.inline_scripts.append(data)


def policy_of(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def sha256_source(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def assert_page_lives_with_its_policy(response) -> PageAssets:
    assert response.status_code == 200
    policy = policy_of(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)
    page = PageAssets()
    page.feed(response.content.decode())
    assert page.inline_scripts == [], "an inline script would not run under script-src 'self'"
    assert page.style_attributes == [], "a style attribute would be ignored without 'unsafe-inline'"
    for block in page.inline_styles:
        assert sha256_source(block) in policy["style-src"], block
    for url in page.script_srcs + page.links:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not from this origin"
        if url.startswith(django_settings.STATIC_URL):
            assert finders.find(url.removeprefix(django_settings.STATIC_URL).split("?")[0]), f"{url} is missing"
    return page


# ---------------------------------------------------------------- HSTS


def test_hsts_is_sent_on_https_answers(client):
    assert client.get("/healthz", secure=True)["Strict-Transport-Security"] == f"max-age={ONE_YEAR}"
    # Behind Caddy the scheme comes from X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER).
    behind_proxy = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert behind_proxy["Strict-Transport-Security"] == f"max-age={ONE_YEAR}"
    assert "Strict-Transport-Security" not in client.get("/healthz")


def test_hsts_is_configurable_and_off_in_debug():
    show = "settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS"
    assert load_settings(PROD_ENV, show=show).stdout.strip() == f"{ONE_YEAR} False"
    custom = {**PROD_ENV, "DJANGO_SECURE_HSTS_SECONDS": "600", "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1"}
    assert load_settings(custom, show=show).stdout.strip() == "600 True"
    assert load_settings({**PROD_ENV, "DJANGO_DEBUG": "1"}, show=show).stdout.strip() == "0 False"


# ---------------------------------------------------------------- CSP


def test_the_api_docs_load_every_asset_under_the_policy(client):
    docs = client.get("/api/docs/")
    page = assert_page_lives_with_its_policy(docs)
    assert any("swagger-ui-bundle.js" in src for src in page.script_srcs), "the sidecar's self-hosted bundle"
    # Swagger UI's initialisation is a script file of this site, not an inline block.
    init = [src for src in page.script_srcs if "script=" in src]
    assert len(init) == 1
    script = client.get(init[0])
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content and b"/api/schema/" in script.content
    assert client.get("/api/schema/").status_code == 200  # what it fetches: connect-src 'self'


@pytest.mark.django_db
def test_the_admin_pages_live_with_the_policy(client, make_user):
    login = client.get("/admin/login/")
    assert_page_lives_with_its_policy(login)
    client.force_login(make_user(is_staff=True, is_superuser=True))
    for path in ("/admin/", "/admin/users/user/", "/admin/projects/project/", "/admin/users/user/add/"):
        assert_page_lives_with_its_policy(client.get(path))


def test_the_admin_changelist_without_actions_has_its_inline_style_allowed():
    """The one inline style block of Django's admin (a changelist without actions) is hashed."""
    from django.template.loader import get_template

    source = get_template("admin/change_list.html").template.source  # type: ignore[attr-defined]
    block = source.split("<style>", 1)[1].split("</style>", 1)[0]
    from auteur.middleware import content_security_policy

    assert sha256_source(block) in content_security_policy()


def test_the_api_answers_are_not_given_the_page_policy(client):
    assert "Content-Security-Policy" not in client.get("/healthz")
