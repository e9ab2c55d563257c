"""Small helpers shared by every app's API modules."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


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
