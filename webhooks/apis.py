"""Account webhooks: create (the secret is in this answer only), list, read, delete, test, and
each one's delivery log. Scoped to the caller: another user's webhook is a 404
`webhook_not_found`, exactly like one that does not exist."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    paginated_response,
    request_member_id,
    request_user,
)
from auteur.core.schema import raises
from auteur.users.workspace_context import balances_shown
from webhooks.models import ALL_EVENT_TYPES, NoticeKind, WebhookEventType
from webhooks.selectors import delivery_list, notice_list, payload_as_seen, webhook_get, webhook_list
from webhooks.services import (
    ROTATION_KEEP_MAX_SECONDS,
    signing_secret_get,
    signing_secret_rotate,
    webhook_create,
    webhook_delete,
    webhook_secret_rotate,
    webhook_test,
)
from webhooks.ssrf import MAX_URL_LENGTH

URL_HELP = ("https only, to a public address (private, loopback and link-local addresses are refused); "
            "redirects are not followed.")


def event_types_field(**kwargs: object) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEventType.choices), min_length=1, max_length=len(WebhookEventType),
        help_text="`start`, `progress`, `completed` (every terminal state: completed, failed, canceled); an account "
                  "webhook's may add `spend_cap` (a threshold of a spend cap crossed), `batch` (every item of a "
                  "batch ended: `batch.completed`, once a batch) and `review_hold` (the account's generative "
                  "requests held for staff review, or the hold lifted: `account.review_hold`).",
        **kwargs,  # type: ignore[arg-type]
    )


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEventType.choices))
    description = serializers.CharField(allow_blank=True)
    enabled = serializers.BooleanField()
    disabled_at = serializers.DateTimeField(allow_null=True)
    disabled_reason = serializers.CharField(allow_blank=True,
                                            help_text="Why it stopped being sent to (it then stays off).")
    failing_since = serializers.DateTimeField(allow_null=True,
                                              help_text="First failed attempt since the last success; 24 hours "
                                                        "of failures disable it.")
    created_at = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(help_text="`whsec_...`: verifies the signatures. Shown in this answer only.")


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no answer (see `error`)")
    error = serializers.CharField(allow_blank=True)
    latency_ms = serializers.IntegerField()
    response_body = serializers.CharField(allow_blank=True, help_text="The first 1 KB of the answer")
    created_at = serializers.DateTimeField()


class DeliverySerializer(serializers.Serializer):
    webhook_id = serializers.CharField(source="message_id", help_text="The `webhook-id` header, the same on retries")
    event_type = serializers.CharField()
    job_id = serializers.UUIDField(allow_null=True)
    payload = serializers.DictField()
    state = serializers.ChoiceField(choices=["pending", "succeeded", "failed"])
    attempt_count = serializers.IntegerField(source="attempts")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    attempts = AttemptSerializer(many=True, source="attempt_log.all")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        shown: dict[str, Any] = super().to_representation(instance)
        # The log's reader is the request's caller, not the webhook's maker (an API key with
        # webhooks:read and without credits:read sees no balance in it).
        shown["payload"] = payload_as_seen(shown["payload"], credits=balances_shown())
        return shown


class NoticeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=NoticeKind.choices)
    message = serializers.CharField()
    webhook_id = serializers.UUIDField(allow_null=True)
    job_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class WebhookListApi(ApiView):
    """The caller's account webhooks, newest first (`?page=`, `?page_size=`). POST creates one:
    its answer carries the signing `secret`, which is never shown again. 400
    `invalid_webhook_url` (`details.reason`) for a URL that is not https or not public; 409
    `webhook_limit_reached` past 20 webhooks."""

    workspace_actions = {"GET": "webhooks.view", "POST": "webhooks.manage"}

    pagination_class = KeyedPagination.of("webhooks")

    class InputSerializer(StrictSerializer):
        url = serializers.CharField(max_length=MAX_URL_LENGTH, help_text=URL_HELP)
        event_types = event_types_field(required=False, default=list(ALL_EVENT_TYPES))
        description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)

    @extend_schema(parameters=[PageQuerySerializer], responses=WebhookOutputSerializer(many=True),
                   summary="List webhooks", operation_id="webhooks_list", tags=["webhooks"])
    def get(self, request: Request) -> Response:
        PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        return paginated_response(request, self, webhook_list(owner=request_user(request)), WebhookOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: WebhookCreatedSerializer},
                   summary="Create a webhook", operation_id="webhooks_create", tags=["webhooks"])
    @raises("invalid_webhook_url", "webhook_limit_reached")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        webhook, secret = webhook_create(owner=request_user(request), member_id=request_member_id(request),
                                         **data.validated_data)
        body = {**WebhookOutputSerializer(webhook).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailApi(ApiView):
    """One account webhook (without its secret); DELETE removes it and its delivery log."""

    workspace_actions = {"GET": "webhooks.view", "DELETE": "webhooks.manage"}

    @extend_schema(responses=WebhookOutputSerializer, summary="Get a webhook", operation_id="webhooks_retrieve",
                   tags=["webhooks"])
    def get(self, request: Request, webhook_id: str) -> Response:
        return Response(WebhookOutputSerializer(webhook_get(owner=request_user(request), webhook_id=webhook_id)).data)

    @extend_schema(responses={204: None}, summary="Delete a webhook", operation_id="webhooks_destroy",
                   tags=["webhooks"])
    def delete(self, request: Request, webhook_id: str) -> Response:
        webhook_delete(webhook=webhook_get(owner=request_user(request), webhook_id=webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmptyInputSerializer(StrictSerializer):
    """No fields; a body, if any, must be `{}`."""


class WebhookTestApi(ApiView):
    """Send a `webhook.test` message to the webhook now, once (202); its answer shows in the
    delivery log. 429 `webhook_backlog_full` (with Retry-After) while 3 test messages are still
    waiting or in flight for it, or 100 deliveries of any kind are pending."""

    workspace_actions = {"POST": "webhooks.manage"}

    @extend_schema(request=EmptyInputSerializer, responses={202: DeliverySerializer}, summary="Test a webhook",
                   operation_id="webhooks_test", tags=["webhooks"])
    @raises("webhook_backlog_full")
    def post(self, request: Request, webhook_id: str) -> Response:
        webhook = webhook_get(owner=request_user(request), webhook_id=webhook_id)
        EmptyInputSerializer(data=request.data or {}).is_valid(raise_exception=True)
        delivery = webhook_test(webhook=webhook)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListApi(ApiView):
    """The webhook's deliveries, newest first, each with its attempts (status or error, latency,
    the first 1 KB of the answer)."""

    workspace_actions = {"GET": "webhooks.view"}

    pagination_class = KeyedPagination.of("deliveries")

    @extend_schema(parameters=[PageQuerySerializer], responses=DeliverySerializer(many=True),
                   summary="List a webhook's deliveries", operation_id="webhooks_deliveries_list", tags=["webhooks"])
    def get(self, request: Request, webhook_id: str) -> Response:
        PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        webhook = webhook_get(owner=request_user(request), webhook_id=webhook_id)
        return paginated_response(request, self, delivery_list(webhook=webhook), DeliverySerializer)


class WebhookNoticeListApi(ApiView):
    """What the account should know about its webhooks, newest first: a webhook (an account one,
    or a job's own) disabled after 24 hours of failed deliveries."""

    workspace_actions = {"GET": "webhooks.view"}

    pagination_class = KeyedPagination.of("notices")

    @extend_schema(parameters=[PageQuerySerializer], responses=NoticeSerializer(many=True),
                   summary="List webhook notices", operation_id="webhooks_notices_list", tags=["webhooks"])
    def get(self, request: Request) -> Response:
        PageQuerySerializer(data=request.query_params).is_valid(raise_exception=True)
        return paginated_response(request, self, notice_list(owner=request_user(request)), NoticeSerializer)


class RotateInputSerializer(StrictSerializer):
    keep_previous_seconds = serializers.IntegerField(
        min_value=0, max_value=ROTATION_KEEP_MAX_SECONDS, default=86400,
        help_text="How long the old secret keeps signing beside the new one (messages carry both signatures "
                  "meanwhile); 0 ends it at once, for a secret that leaked or that a removed member knew.")


class WebhookSecretApi(ApiView):
    """Rotate the webhook's signing secret: the new one is in this answer only. Every attempt from
    now on is signed with it, and also with the old one until `previous_valid_until` (null: not at
    all), so receivers switch without missing a message."""

    workspace_actions = {"POST": "webhooks.manage"}

    @extend_schema(request=RotateInputSerializer,
                   responses=inline_serializer("WebhookSecretRotated", {
                       "secret": serializers.CharField(), "previous_valid_until": serializers.DateTimeField(
                           allow_null=True)}),
                   summary="Rotate a webhook's secret", operation_id="webhooks_secret_rotate", tags=["webhooks"])
    def post(self, request: Request, webhook_id: str) -> Response:
        webhook = webhook_get(owner=request_user(request), webhook_id=webhook_id)
        data = RotateInputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        secret, until = webhook_secret_rotate(webhook=webhook,
                                              keep_previous_seconds=data.validated_data["keep_previous_seconds"])
        return Response({"secret": secret, "previous_valid_until": until})


class SigningSecretApi(ApiView):
    """The secret that signs the webhooks given with job submissions (`webhook`), the same for
    every job of the account. POST rotates it, as a webhook's secret rotates."""

    workspace_actions = {"GET": "webhooks.manage", "POST": "webhooks.manage"}

    @extend_schema(responses=inline_serializer("WebhookSigningSecret", {"key": serializers.CharField()}),
                   summary="Get the jobs' webhook signing secret",
                   operation_id="webhooks_default_secret", tags=["webhooks"])
    def get(self, request: Request) -> Response:
        return Response({"key": signing_secret_get(owner=request_user(request))})

    @extend_schema(request=RotateInputSerializer,
                   responses=inline_serializer("WebhookSigningSecretRotated", {
                       "key": serializers.CharField(), "previous_valid_until": serializers.DateTimeField(
                           allow_null=True)}),
                   summary="Rotate the jobs' webhook signing secret",
                   operation_id="webhooks_default_secret_rotate", tags=["webhooks"])
    def post(self, request: Request) -> Response:
        data = RotateInputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        key, until = signing_secret_rotate(owner=request_user(request),
                                           keep_previous_seconds=data.validated_data["keep_previous_seconds"])
        return Response({"key": key, "previous_valid_until": until})
