from django.urls import path

from webhooks.apis import (
    SigningSecretApi,
    WebhookDeliveryListApi,
    WebhookDetailApi,
    WebhookListApi,
    WebhookNoticeListApi,
    WebhookSecretApi,
    WebhookTestApi,
)

# The fixed names come before `<webhook_id>`, which would otherwise match them.
urlpatterns = [
    path("webhooks", WebhookListApi.as_view(), name="webhook-list"),
    path("webhooks/notices", WebhookNoticeListApi.as_view(), name="webhook-notices"),
    path("webhooks/default/secret", SigningSecretApi.as_view(), name="webhook-default-secret"),
    path("webhooks/<str:webhook_id>", WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<str:webhook_id>/test", WebhookTestApi.as_view(), name="webhook-test"),
    path("webhooks/<str:webhook_id>/secret", WebhookSecretApi.as_view(), name="webhook-secret"),
    path("webhooks/<str:webhook_id>/deliveries", WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
]
