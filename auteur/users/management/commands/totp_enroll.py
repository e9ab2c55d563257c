from __future__ import annotations

import io
from typing import Any

import qrcode
from django.core.management.base import BaseCommand, CommandError, CommandParser

from auteur.core.errors import ApplicationError
from auteur.users.models import User
from auteur.users.otp import totp_device_confirm, totp_device_start


class Command(BaseCommand):
    help = (
        "Enrol a TOTP device for the admin login of a staff EMAIL: run it to get a QR code to scan, "
        "then again with --confirm CODE. Until confirmed, the device is not asked for."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--confirm", metavar="CODE", help="a code from the app, to confirm the device")
        parser.add_argument("--name", default="authenticator", help="the device's name (default: authenticator)")

    def handle(self, *args: Any, email: str, confirm: str | None, name: str, **options: Any) -> None:
        user = User.objects.filter(email__iexact=email.strip(), is_staff=True).first()
        if user is None:
            raise CommandError(f"no staff account with the email {email!r}")
        try:
            if confirm is not None:
                totp_device_confirm(user=user, token=confirm)
                self.stdout.write(f"Confirmed: {user.email} now gives a code at the admin login.")
                return
            device = totp_device_start(user=user, name=name)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        qr = qrcode.QRCode(border=1)
        qr.add_data(device.config_url)
        ascii_code = io.StringIO()
        qr.print_ascii(out=ascii_code, invert=True)
        self.stdout.write(ascii_code.getvalue())
        self.stdout.write(f"Scan the code above, or add this URL to the app: {device.config_url}")
        self.stdout.write(f"Then: manage.py totp_enroll {user.email} --confirm <code shown by the app>")
