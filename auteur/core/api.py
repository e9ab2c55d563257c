"""Small helpers shared by every app's API modules."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, NoReturn

from django.utils.cache import patch_vary_headers
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auteur.core.throttling import count_unauthenticated
from auteur.users.authentication import TokenSubject
from auteur.users.models import User
from auteur.users.workspace_context import WORKSPACE_META_KEY, seat_of


def request_user(request: Request) -> User:
    """The authenticated caller. Every API view requires authentication (the default permission)."""
    assert isinstance(request.user, User)
    return request.user


def request_member_id(request: Request) -> uuid.UUID:
    """The signed-in person who makes the request: a team workspace's member acting as its
    account, or the owner of the personal workspace (auteur/users/workspace_context.py)."""
    seat = seat_of(request._request)
    return seat.member_id if seat is not None else uuid.UUID(str(request.user.pk))


def request_subject(request: Request) -> TokenSubject:
    """The caller of a view that authenticates with DeferredAccountJWTAuthentication."""
    assert isinstance(request.user, TokenSubject)
    return request.user


class StrictSerializer(serializers.Serializer):
    """Input serializer that refuses fields it does not know, instead of silently dropping them.

    A client that sends `credit_cost` or misspells `media_id` learns it at once (400 with the
    field named) rather than getting a default it did not ask for.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ApiView(APIView):
    """Base of every API view: a request answered 401 still counts against its client's limit,
    and a method the view does not have is a 405 before any permission is asked.

    DRF checks throttles only after authentication and permissions, so a request with no token or
    a forged one would be answered 401 without ever counting: token guessing would be unlimited.
    The authenticator counts refused tokens (JWTAuthentication); a request without any is
    counted here, where DRF turns the permission's refusal into that 401.
    """

    def check_permissions(self, request: Request) -> None:
        # DRF looks for the handler only after the permissions, so `TRACE` on a view whose
        # permission checks the server's configuration would be answered by that check (a 503
        # telling what is not configured) rather than by what the method is: not allowed here.
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            self.http_method_not_allowed(request)
        super().check_permissions(request)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(self, "acts_in_workspace", True) and WORKSPACE_META_KEY in request.META:
            # The same URL answers for each workspace a request names: no cache may mix them. (Only
            # where one is named: a single user's answers stay exactly what they were; none of the
            # API's answers is cacheable, as each is to a request with credentials.)
            patch_vary_headers(response, ("Auteur-Workspace",))
        return response

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        if request.authenticators and not request.successful_authenticator:
            count_unauthenticated(request)
        super().permission_denied(request, message=message, code=code)


class PageQuerySerializer(serializers.Serializer):
    """`?page=` and `?page_size=` of a list endpoint; list filters subclass it. Not strict: a query
    string may carry parameters meant for caches or proxies."""

    page = serializers.IntegerField(min_value=1, required=False)
    page_size = serializers.IntegerField(min_value=1, required=False)


class KeyedPagination(PageNumberPagination):
    """`?page=` / `?page_size=` (max 100) pages as `{<key>: [...], "count", "next", "previous"}`.

    Every list the API answers has this shape: the list under a named key (`projects`,
    `transactions`...) beside its count and links. A list view names its key once, with
    `pagination_class = KeyedPagination.of("projects")`: the page and the OpenAPI schema
    (`get_paginated_response_schema`) are both built from it.
    `?page=` / `?page_size=` below 1 or not numbers are a 400 `validation_error`, on every list;
    a page past the end is a 404 `not_found` with the envelope, like any missing resource.
    """

    key: ClassVar[str] = "results"
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    @classmethod
    def of(cls, key: str) -> type[KeyedPagination]:
        return type(f"{key.title()}Pagination", (cls,), {"key": key, "__module__": cls.__module__})

    def paginate_queryset(self, queryset: Any, request: Request, view: APIView | None = None) -> Any:
        PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        return super().paginate_queryset(queryset, request, view=view)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters

    def get_paginated_response(self, data: Any) -> Response:
        assert self.page is not None
        return Response(
            {
                self.key: data,
                "count": self.page.paginator.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": [self.key, "count", "next", "previous"],
            "properties": {self.key: schema, "count": {"type": "integer"}, "next": link, "previous": link},
        }


def paginated_response(
    request: Request, view: APIView, queryset: Any, serializer_class: type[serializers.BaseSerializer]
) -> Response:
    """One page of `queryset`, by the view's `pagination_class` (a `KeyedPagination.of(key)`)."""
    pagination_class = getattr(view, "pagination_class", None)
    assert pagination_class is not None and issubclass(pagination_class, KeyedPagination), view
    paginator = pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
