"""Security of the answers (cookies, HSTS, framing, the Content-Security-Policy) and of the admin's
login (lockouts, one-time passwords)."""

from __future__ import annotations

from datetime import timedelta

from auteur.settings.environment import DEBUG, env

# ---- Security
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
# HSTS on HTTPS answers: browsers then refuse plain HTTP to this host for that long. On by default
# in production (a year), off in debug; 0 turns it off.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# Pages served with the strict Content-Security-Policy (auteur/middleware.py): the HTML ones.
AUTEUR_CSP_PATH_PREFIXES = ("/admin/", "/api/docs/")

# ---- Admin login (auteur/users/admin_site.py). Passwords are checked through django-axes: after
# AUTEUR_ADMIN_LOGIN_FAILURE_LIMIT failures from one client address, or for one account, further
# attempts are refused (429) for AUTEUR_ADMIN_LOCKOUT_MINUTES. Attempts and lockouts are rows in
# Postgres, shared by every API process and listed in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AUTEUR_ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AUTEUR_ADMIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_USERNAME_FORM_FIELD = "username"  # the admin form's field (it holds the email)
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "auteur.users.admin_site.client_ip"
AXES_VERBOSE = False
# Staff with a confirmed TOTP device give its code at the admin login; with this on, every staff
# member must (enrol with `manage.py totp_enroll <email>` or in the admin's TOTP devices).
AUTEUR_ADMIN_REQUIRE_OTP = env.bool("AUTEUR_ADMIN_REQUIRE_OTP", default=False)
OTP_TOTP_ISSUER = "Auteur"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # a device's secret is shown once, by totp_enroll, never in the admin
