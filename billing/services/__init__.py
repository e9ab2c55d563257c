"""Every write of the billing app: `checkout` (customers, Checkout and portal sessions), `events`
(webhook events, stored once and processed), `handlers` (what each event type does) and `packs`
(credit packs paid and refunded)."""
