"""Signing secrets: `whsec_` + base64 of 32 random bytes (the Standard Webhooks form), kept
sealed in the database (Fernet, with a key derived from DJANGO_SECRET_KEY) so that a database
dump or an admin page does not hand them out. Rotating DJANGO_SECRET_KEY makes existing secrets
unreadable: their webhooks must then be created again."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet
from django.conf import settings

PREFIX = "whsec_"


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"auteur.webhooks.secret:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def secret_new() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def secret_open(sealed: str) -> str:
    return _fernet().decrypt(sealed.encode()).decode()
