"""What the OpenAPI document can only say once the policy is known, and the links between
operations (for clients and for stateful testing)."""

from __future__ import annotations

from typing import Any

from service.domain.policy import Policy


def _segment_schema(segments: list[str]) -> dict[str, Any]:
    return {"type": "string", "enum": segments}


_PROBLEM = {"schema": {"$ref": "#/components/schemas/ProblemOut"}}


def _problems_everywhere(operation: dict[str, Any]) -> None:
    """Every error is answered as problem details (a route that declared FastAPI's default
    `application/json` validation error gets the truth), and any operation may answer 500 or
    503 (the database unreachable)."""
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        content = response.get("content", {})
        if status[:1] in "45" and "application/json" in content:
            response["content"] = {"application/problem+json": dict(_PROBLEM)}
    for status, description in (
        ("500", "Unexpected error (logged)"),
        ("503", "The database is unreachable; `Retry-After` says when to try again"),
    ):
        responses.setdefault(
            status,
            {"description": description, "content": {"application/problem+json": dict(_PROBLEM)}},
        )


def refine(document: dict[str, Any], policy: Policy) -> None:
    """Segments become the active policy's enumeration, on `?segment=` and in PUT bodies; the
    operations get their links; errors are problem details everywhere."""
    segments = sorted(policy.segments)
    for item in document.get("paths", {}).values():
        for operation in item.values():
            _problems_everywhere(operation)
            found = LINKS.get(operation.get("operationId", ""))
            if found and "200" in operation.get("responses", {}):
                operation["responses"]["200"]["links"] = found
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "segment" and parameter["in"] == "query":
                    parameter["schema"] = _segment_schema(segments)
    change = document.get("components", {}).get("schemas", {}).get("SegmentChange")
    if change is not None:
        change["properties"]["segment"]["anyOf"] = [_segment_schema(segments), {"type": "null"}]


def _link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "description": description, "parameters": parameters}


_CUSTOMER = "$response.body#/customer_id"
_SAME_CUSTOMER = "$request.path.customer_id"
_NEXT = "$response.body#/next_cursor"

# operationId → the links of its 200 answer.
LINKS: dict[str, dict[str, Any]] = {
    "post_events": {
        "GetCustomer": _link(
            "get_customer", "The customer the event booked to", customer_id=_CUSTOMER
        ),
    },
    "put_customer": {
        "GetCustomer": _link("get_customer", "The customer just changed", customer_id=_CUSTOMER),
        "GetBalance": _link("get_balance", "Its balance", customer_id=_CUSTOMER),
        "GetDrivers": _link("get_drivers", "What moved it", customer_id=_CUSTOMER),
    },
    "get_customer": {
        "GetLedger": _link("get_ledger", "The customer's ledger", customer_id=_CUSTOMER),
    },
    "get_ledger": {
        "NextPage": _link("get_ledger", "The next page", customer_id=_SAME_CUSTOMER, cursor=_NEXT),
    },
    "get_at_risk": {
        "NextPage": _link("get_at_risk", "The next page", cursor=_NEXT),
    },
    "get_alerts": {
        "NextPage": _link("get_alerts", "The next page", cursor=_NEXT),
    },
}
