"""Every write of the credits app: `ledger` (balances and their ledger rows) and `subscriptions`
(plans, subscriptions, their allowances)."""
