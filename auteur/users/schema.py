"""Tells drf-spectacular how our bearer JWT authentication looks in the OpenAPI schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "auteur.users.authentication.JWTAuthentication"
    match_subclasses = True  # DeferredAccountJWTAuthentication takes the same tokens
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
