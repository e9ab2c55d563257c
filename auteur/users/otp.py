"""Enrolling a staff member's TOTP device for the admin's second factor (django-otp).

A device starts unconfirmed, which the admin login ignores; it counts once a code from the
authenticator app proves the secret was scanned. So a half-done enrolment never locks anyone out.
"""

from __future__ import annotations

from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from auteur.users.errors import TotpEnrollmentMissing, TotpTokenInvalid
from auteur.users.models import User


@transaction.atomic
def totp_device_start(*, user: User, name: str = "authenticator") -> TOTPDevice:
    """A new unconfirmed device (its config_url is what the app scans); replaces unconfirmed ones."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device: TOTPDevice = TOTPDevice.objects.create(user=user, name=name, confirmed=False)
    return device


@transaction.atomic
def totp_device_confirm(*, user: User, token: str) -> TOTPDevice:
    """Confirm the user's pending device with a code from it; from then on the admin asks for one."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        raise TotpEnrollmentMissing("No enrolment is pending for this user: start one first.")
    if not device.verify_token(token.strip()):
        raise TotpTokenInvalid("The code does not match this device (or it was used already).")
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return device
