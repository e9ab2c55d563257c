"""API keys: how a program acts in a workspace without a person's token.

A key's text is `auteur_sk_` followed by 43 base62 characters of a 256-bit random secret and a
6-character base62 CRC-32 of everything before it: the prefix lets secret scanners find a leaked
key, and the checksum lets a typo or a truncated key be refused before any row is read. The
database keeps the SHA-256 of the text and its first 16 characters (`ApiKey.prefix`).

A request sends it as `Authorization: Bearer auteur_sk_...`. It acts in the key's workspace
(an `Auteur-Workspace` header, if sent, must name that workspace), as a service member whose id is
the key's and whose permissions are its scopes (auteur/users/roles.py): its jobs, comments and
uploads name the key as the member who made them, its charges count on the key's spend caps, its
rate limit is its own. A key revoked or past its expiry is refused at its next request (each
request reads the key's row), and the event streams it opened close within a second.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

KEY_PREFIX = "auteur_sk_"
_ALPHABET = string.digits + string.ascii_letters
SECRET_CHARS = 43  # 256 bits in base62
CHECKSUM_CHARS = 6
KEY_LENGTH = len(KEY_PREFIX) + SECRET_CHARS + CHECKSUM_CHARS
VISIBLE_CHARS = len(KEY_PREFIX) + 6  # ApiKey.prefix: what lists and logs show of a key
# A key's "last used" is written when it changes address or at most this often.
LAST_USED_EVERY = timedelta(minutes=1)


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_CHARS)


def key_generate() -> str:
    """A new key's text."""
    body = KEY_PREFIX + _base62(secrets.randbits(256), SECRET_CHARS)
    return body + _checksum(body)


def looks_like_key(text: str) -> bool:
    """Whether a bearer credential is meant as an API key (else it is a JWT)."""
    return text.startswith(KEY_PREFIX)


def well_formed(text: str) -> bool:
    """Whether the text is a key this service could have made: its length, alphabet and checksum."""
    if len(text) != KEY_LENGTH or not looks_like_key(text):
        return False
    if any(char not in _ALPHABET for char in text[len(KEY_PREFIX):]):
        return False
    body, checksum = text[:-CHECKSUM_CHARS], text[-CHECKSUM_CHARS:]
    return secrets.compare_digest(_checksum(body), checksum)


def key_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def visible_part(text: str) -> str:
    return text[:VISIBLE_CHARS]


@dataclass(frozen=True)
class FoundKey:
    """A key's row as authentication reads it."""

    id: uuid.UUID
    user_id: uuid.UUID
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    rate_limit_per_minute: int | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


_BY_SECRET = ("SELECT id, user_id, scopes, expires_at, revoked_at, last_used_at, host(last_used_ip), "
              "rate_limit_per_minute FROM auteur_api_key(%s)")


def key_find(text: str) -> FoundKey | None:
    """The key whose text this is (None for none): found by its hash alone, through the database
    function that lets the API's role read exactly that row and no other."""
    if not well_formed(text):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_BY_SECRET, [key_hash(text)])
        row = cursor.fetchone()
    if row is None:
        return None
    key_id, user_id, scopes, expires_at, revoked_at, last_used_at, last_used_ip, rate_limit = row
    return FoundKey(key_id, user_id, frozenset(scopes), expires_at, revoked_at, last_used_at, last_used_ip,
                    rate_limit)


def key_mark_used(key: FoundKey, ip: str | None) -> None:
    """Record the key's use (time and address), at most once a minute per address. Runs as the key's
    workspace (its row is the account's)."""
    now = timezone.now()
    if key.last_used_ip == ip and key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return
    from auteur.users.models import ApiKey

    ApiKey.objects.filter(pk=key.id).update(last_used_at=now, last_used_ip=ip)
