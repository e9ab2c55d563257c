from django.urls import path

from billing.apis import BillingCheckoutApi, BillingOverviewApi, BillingPortalApi, StripeWebhookApi

urlpatterns = [
    path("billing", BillingOverviewApi.as_view(), name="billing-overview"),
    path("billing/checkout", BillingCheckoutApi.as_view(), name="billing-checkout"),
    path("billing/portal", BillingPortalApi.as_view(), name="billing-portal"),
    path("billing/stripe-webhook", StripeWebhookApi.as_view(), name="billing-stripe-webhook"),
]
