#!/usr/bin/env python3
"""Writes crates/kairos-http/src/openapi.json, the OpenAPI 3.1 document.

The document is data, kept in Python for brevity; run this after changing
an endpoint (a Rust test checks that every route in the router is listed).
"""
import json
from pathlib import Path

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def problem(description):
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


def json_response(description, schema):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


WRITE_KEY = [{"basicWriteKey": []}, {"queryWriteKey": []}, {}]
ADMIN = [{"adminToken": []}]
COLLECT_ERRORS = {
    "400": problem("The request or all of its events are invalid (the events are quarantined)"),
    "401": problem("Write key missing or unknown"),
    "413": problem("Body over limits.request_bytes_max"),
    "415": problem("Unsupported Content-Encoding"),
    "500": problem("Stored data unreadable (data_corrupt); nothing was acknowledged"),
    "503": problem("Ingest queue full (overloaded), storage I/O failure (storage_unavailable) or writer stopped (stopped); retry after Retry-After seconds"),
}


def collect_op(summary, body_schema):
    return {
        "post": {
            "summary": summary,
            "tags": ["collection"],
            "security": WRITE_KEY,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": body_schema},
                "text/plain": {"schema": {"type": "string"}}}},
            "responses": {"200": json_response("Accepted (durably) or already stored; invalid events listed in `quarantined`", ref("CollectResponse")), **COLLECT_ERRORS},
        }
    }


def admin(method, summary, response_schema, request_schema=None, status="200", params=(), extra=None):
    op = {"summary": summary, "tags": ["admin"], "security": ADMIN,
          "responses": {status: json_response(summary, response_schema), "401": problem("Admin token missing or wrong"), **(extra or {})}}
    if request_schema is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": request_schema}}}
    if params:
        op["parameters"] = list(params)
    return {method: op}


def query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_param(name, description):
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


PAGE = [query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)"),
        query("after", {"type": "string", "pattern": "^[0-9]+$"}, "The `next` cursor of the previous page"),
        query("source", {"type": "string"}, "Only this source id")]
BAD_PAGE = {"400": problem("Invalid limit or cursor")}
NOT_FOUND = {"404": problem("No such resource")}

paths = {}
for name in ["track", "identify", "page", "screen", "group", "alias"]:
    paths[f"/v1/{name}"] = collect_op(f"Collect one {name} event", ref("Event"))
    paths[f"/v1/{name[0]}"] = collect_op(f"Collect one {name} event (browser short form)", ref("Event"))
for path in ["/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch"]:
    paths[path] = collect_op("Collect a batch of events", ref("Batch"))
paths["/v1/projects/{write_key}/settings"] = {"get": {
    "summary": "Settings for @segment/analytics-next", "tags": ["collection"],
    "parameters": [path_param("write_key", "The source's write key")],
    "responses": {"200": json_response("Settings pointing the SDK at this server", {"type": "object"}), "401": problem("Unknown write key")}}}
for path in ["/sourceConfig", "/sourceConfig/"]:
    paths[path] = {"get": {
        "summary": "Source configuration for @rudderstack/analytics-js", "tags": ["collection"],
        "security": WRITE_KEY, "parameters": [query("writeKey", {"type": "string"}, "The source's write key")],
        "responses": {"200": json_response("Source configuration", {"type": "object"}), "401": problem("Write key missing or unknown")}}}
paths["/v1/admin/sources"] = {
    **admin("post", "Create a source", ref("Source"), ref("CreateSource"), status="201", extra={"400": problem("Invalid name or tracking plan")}),
    **admin("get", "List sources", {"type": "object", "properties": {"sources": {"type": "array", "items": ref("Source")}}}),
}
paths["/v1/admin/sources/{id}"] = admin("get", "One source", ref("Source"), params=[path_param("id", "Source id")], extra=NOT_FOUND)
paths["/v1/admin/sources/{id}/rotate"] = admin("post", "Issue a new write key", ref("Source"),
    {"type": "object", "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 4294967295}}, "additionalProperties": False},
    params=[path_param("id", "Source id")], extra={**NOT_FOUND, "400": problem("Invalid body")})
paths["/v1/admin/sources/{id}/identity-secret/rotate"] = admin("post", "Issue a new identity secret (in-app streams opened with tokens of the old one close)", ref("Source"),
    params=[path_param("id", "Source id")], extra=NOT_FOUND)
paths["/v1/admin/sources/{id}/tracking-plan"] = {
    **admin("put", "Set the source's tracking plan", ref("Source"), ref("TrackingPlan"), params=[path_param("id", "Source id")], extra={**NOT_FOUND, "400": problem("Invalid plan")}),
    **admin("delete", "Remove the source's tracking plan", ref("Source"), params=[path_param("id", "Source id")], extra=NOT_FOUND),
}
paths["/v1/admin/events"] = admin("get", "Accepted events in log order", {"type": "object", "properties": {
    "events": {"type": "array", "items": ref("LoggedEvent")}, "next": {"type": ["string", "null"]}}}, params=PAGE, extra=BAD_PAGE)
paths["/v1/admin/quarantine"] = admin("get", "Quarantined events with their reasons", {"type": "object", "properties": {
    "items": {"type": "array", "items": ref("QuarantineRecord")}, "next": {"type": ["string", "null"]}}}, params=PAGE, extra=BAD_PAGE)
paths["/v1/admin/quarantine/replay"] = admin("post", "Replay every quarantined event (up to 1000 per call)", {"type": "object"},
    {"type": "object", "properties": {"source_id": {"type": "string"}}, "additionalProperties": False}, extra={"400": problem("Invalid body")})
paths["/v1/admin/quarantine/{id}"] = admin("delete", "Discard a quarantined event", {"type": "object"},
    params=[path_param("id", "Quarantine record id")], extra={**NOT_FOUND, "400": problem("Invalid id")})
paths["/v1/admin/quarantine/{id}/replay"] = admin("post", "Replay one quarantined event, optionally corrected", {"type": "object"},
    {"type": "object", "properties": {"event": {"type": "object"}}, "additionalProperties": False},
    params=[path_param("id", "Quarantine record id")], extra={**NOT_FOUND, "400": problem("Invalid id or body"), "422": problem("Still invalid")})
paths["/v1/admin/tail"] = {"get": {"summary": "Live stream of accepted events (Server-Sent Events)", "tags": ["admin"], "security": ADMIN,
    "parameters": [query("source", {"type": "string"}, "Only this source id"), query("after", {"type": "integer", "minimum": 0}, "Start after this sequence number")],
    "responses": {"200": {"description": "text/event-stream of `event` messages whose data is a LoggedEvent", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                  "400": problem("Invalid parameters"), "401": problem("Admin token missing or wrong")}}}
paths["/v1/admin/test/faults"] = admin("post", "Force failures of the next collection requests (server started with --test-faults)", {"type": "object"},
    ref("FaultPlan"), extra={"400": problem("Invalid plan"), "404": problem("Test faults are off")})
IDENT = path_param("identifier", "Any identifier of the person as {type}:{value}, e.g. user_id:u1, email:ada@example.org")
paths["/v1/profiles"] = admin("get", "Profiles whose trait equals a value", {"type": "object", "properties": {"profiles": {"type": "array", "items": ref("Profile")}}},
    params=[query("trait", {"type": "string"}, "Trait name"), query("value", {"type": "string"}, "Value (strings as they are, others as JSON text)"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Most profiles returned (default 50)")],
    extra={"400": problem("Missing trait or value")})
paths["/v1/profiles/{identifier}"] = {
    **admin("get", "A profile: id, identities, traits, consent, first/last seen, merges", ref("Profile"),
            params=[IDENT], extra={**NOT_FOUND, "400": problem("Malformed identifier")}),
    **admin("delete", "Erase the person (right to erasure): profile, identities, events (keys destroyed), quarantined events; suppresses the identifiers; returns the receipt kept in the audit log",
            ref("ErasureReceipt"), params=[IDENT], extra={**NOT_FOUND, "400": problem("Malformed identifier")}),
}
paths["/v1/profiles/{identifier}/export"] = admin("get", "Everything held about the person (right of access): profile and every event on its timeline",
    {"type": "object", "properties": {"exported_at": {"type": "string"}, "profile": ref("Profile"), "events": {"type": "array", "items": ref("LoggedEvent")}}},
    params=[IDENT], extra={**NOT_FOUND, "400": problem("Malformed identifier")})
paths["/v1/profiles/{identifier}/consent"] = admin("put", "Record consent per purpose (Segment's categoryPreferences); answers the updated profile", ref("Profile"),
    {"type": "object", "required": ["categoryPreferences"], "additionalProperties": False,
     "properties": {"categoryPreferences": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "boolean"}}}},
    params=[IDENT], extra={**NOT_FOUND, "400": problem("Malformed identifier or body")})
paths["/v1/profiles/import"] = admin("post", "Bulk CRM records: traits keyed by one identifier type, applied as identify events", {"type": "object", "properties": {
    "rows": {"type": "integer"}, "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "suppressed": {"type": "integer"},
    "rejected": {"type": "array", "items": {"type": "object", "properties": {"row": {"type": "integer"}, "errors": {}}}}}},
    {"type": "object", "required": ["identifier_type", "records"], "additionalProperties": False, "properties": {
        "identifier_type": {"type": "string", "description": "user_id, anonymous_id, email, phone or a declared custom type; the column keying each record"},
        "source": {"type": "string", "description": "Name of the source the records belong to (default crm-import)"},
        "records": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "object"}}}},
    extra={"400": problem("Invalid body or identifier type")})
paths["/v1/admin/matching/run"] = admin("post", "Run the probabilistic matcher over every profile: merge pairs above the threshold, keep the review band as suggestions", {"type": "object", "properties": {
    "profiles_compared": {"type": "integer"}, "candidate_pairs": {"type": "integer"}, "threshold_bits": {"type": "number"}, "match_share": {"type": "number"},
    "links": {"type": "integer"}, "merge_events": {"type": "integer"}, "suggestions": {"type": "integer"}, "seconds": {"type": "number"}}})
paths["/v1/admin/matching/suggestions"] = admin("get", "Pairs of profiles just below the match threshold, for review", {"type": "object", "properties": {
    "suggestions": {"type": "array", "items": ref("Suggestion")}}})
paths["/v1/admin/matching/suggestions/{id}"] = admin("delete", "Reject a suggestion", {"type": "object"},
    params=[path_param("id", "Suggestion id")], extra=NOT_FOUND)
paths["/v1/admin/matching/suggestions/{id}/accept"] = admin("post", "Accept a suggestion: merge the two profiles", {"type": "object"},
    params=[path_param("id", "Suggestion id")], extra=NOT_FOUND)
AUDIENCE = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "definition": {"type": "string"},
    "json": {"type": ["object", "null"]}, "created_at": {"type": "string"}, "size": {"type": ["integer", "null"]}}}
paths["/v1/audiences"] = {
    **admin("post", "Create an audience from a definition in the audience language (docs/audiences.md); memberships are backfilled from the log before the answer",
            AUDIENCE, {"type": "object", "required": ["name", "definition"], "additionalProperties": False,
                       "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}, "definition": {"type": "string"}}},
            status="201", extra={"400": problem("Invalid name or definition (line, column and message)"), "409": problem("Name taken (name_taken): another of its kind has this name")}),
    **admin("get", "Every audience with its size", {"type": "object", "properties": {"audiences": {"type": "array", "items": AUDIENCE}}}),
}
paths["/v1/audiences/{id}"] = {
    **admin("get", "An audience (by id or name) with its size", AUDIENCE, params=[path_param("id", "Audience id or name")], extra=NOT_FOUND),
    **admin("put", "Change an audience's definition; memberships are backfilled from the log before the answer", AUDIENCE,
            {"type": "object", "required": ["definition"], "additionalProperties": False, "properties": {"definition": {"type": "string"}}},
            params=[path_param("id", "Audience id or name")], extra={**NOT_FOUND, "400": problem("Invalid definition (line, column and message)")}),
    **admin("delete", "Delete an audience", {"type": "object"}, params=[path_param("id", "Audience id or name")],
            extra={**NOT_FOUND, "409": problem("Another definition, a journey or an audience sync refers to it (definition_in_use)")}),
}
paths["/v1/audiences/{id}/members"] = admin("get", "Members of an audience, in profile order", {"type": "object", "properties": {
    "audience": {"type": "string"}, "next": {"type": ["string", "null"]},
    "members": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "identities": {"type": "array"}}}}}},
    params=[path_param("id", "Audience id or name"), query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)"),
            query("after", {"type": "string"}, "The `next` of the previous page")], extra={**NOT_FOUND, "400": problem("Invalid parameters")})
paths["/v1/audiences/{id}/sizes"] = admin("get", "An audience's size over time (a point a minute, and when definitions change or the manual clock moves), oldest first",
    {"type": "object", "properties": {"audience": {"type": "string"}, "sizes": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "string"}, "size": {"type": "integer"}}}}}},
    params=[path_param("id", "Audience id or name"), query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "Most points (default 1000)")],
    extra={**NOT_FOUND, "400": problem("Invalid limit")})
paths["/v1/audiences/preview"] = admin("post", "A draft definition's size and first members now, from the stored history, without saving it", {"type": "object", "properties": {
    "size": {"type": "integer"}, "sample": {"type": "array"}, "profiles_evaluated": {"type": "integer"}, "events_read": {"type": "integer"}, "seconds": {"type": "number"}}},
    {"type": "object", "required": ["definition"], "additionalProperties": False,
     "properties": {"definition": {"type": "string"}, "sample": {"type": "integer", "minimum": 0, "maximum": 100}}},
    extra={"400": problem("Invalid definition (line, column and message)")})
COMPUTED_TRAIT = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "definition": {"type": "string"},
    "json": {"type": ["object", "null"]}, "created_at": {"type": "string"}}}
paths["/v1/computed-traits"] = {
    **admin("post", "Create a computed trait from a value definition (docs/audiences.md, Computed traits); values are backfilled from the log before the answer",
            COMPUTED_TRAIT, {"type": "object", "required": ["name", "definition"], "additionalProperties": False,
                             "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_]+$"}, "definition": {"type": "string"}}},
            status="201", extra={"400": problem("Invalid name or definition (line, column and message)"), "409": problem("Name taken (name_taken): another of its kind has this name")}),
    **admin("get", "Every computed trait", {"type": "object", "properties": {"computed_traits": {"type": "array", "items": COMPUTED_TRAIT}}}),
}
paths["/v1/computed-traits/{id}"] = {
    **admin("get", "A computed trait (by id or name)", COMPUTED_TRAIT, params=[path_param("id", "Computed trait id or name")], extra=NOT_FOUND),
    **admin("put", "Change a computed trait's definition; values are backfilled from the log before the answer", COMPUTED_TRAIT,
            {"type": "object", "required": ["definition"], "additionalProperties": False, "properties": {"definition": {"type": "string"}}},
            params=[path_param("id", "Computed trait id or name")], extra={**NOT_FOUND, "400": problem("Invalid definition (line, column and message)")}),
    **admin("delete", "Delete a computed trait", {"type": "object"}, params=[path_param("id", "Computed trait id or name")],
            extra={**NOT_FOUND, "409": problem("A definition or a journey refers to it (definition_in_use)")}),
}
paths["/v1/computed-traits/{id}/values"] = admin("get", "Every profile's value of a computed trait, in profile order", {"type": "object", "properties": {
    "computed_trait": {"type": "string"}, "next": {"type": ["string", "null"]},
    "values": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "identities": {"type": "array"}, "value": {}}}}}},
    params=[path_param("id", "Computed trait id or name"), query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)"),
            query("after", {"type": "string"}, "The `next` of the previous page")], extra={**NOT_FOUND, "400": problem("Invalid parameters")})
paths["/v1/computed-traits/preview"] = admin("post", "A draft computed trait's values now, from the stored history, without saving it", {"type": "object", "properties": {
    "with_value": {"type": "integer"}, "sample": {"type": "array"}, "profiles_evaluated": {"type": "integer"}, "events_read": {"type": "integer"}, "seconds": {"type": "number"}}},
    {"type": "object", "required": ["definition"], "additionalProperties": False,
     "properties": {"definition": {"type": "string"}, "sample": {"type": "integer", "minimum": 0, "maximum": 100}}},
    extra={"400": problem("Invalid definition (line, column and message)")})
DESTINATION = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "type": {"type": "string"},
    "url": {"type": "string"}, "created_at": {"type": "string"}, "disabled": {"type": ["string", "null"]}}}
MESSAGE = {"type": "object", "properties": {"id": {"type": "string"}, "destination": {"type": "string"}, "journey": {"type": "string"},
    "identifier": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "delivered", "dead"]}, "attempts": {"type": "integer"},
    "next_attempt_at": {"type": ["string", "null"]}, "last_error": {"type": ["string", "null"]}, "created_at": {"type": "string"},
    "delivered_at": {"type": ["string", "null"]}, "event_seq": {"type": "integer"}}}
paths["/v1/destinations"] = {
    **admin("post", "Create a webhook or email destination; a webhook's answer carries its whsec_ signing secret, shown this once", {**DESTINATION, "properties": {**DESTINATION["properties"], "secret": {"type": "string"}}},
            {"type": "object", "required": ["type", "name", "url"], "additionalProperties": False,
             "properties": {"type": {"type": "string", "enum": ["webhook", "email", "in_app"]}, "name": {"type": "string", "minLength": 1, "maxLength": 200},
                            "url": {"type": "string", "maxLength": 2000, "description": "webhook: http(s)://...; email: smtp://host:port, smtp://host:587?tls=starttls or smtps://host:465; public addresses only unless [delivery] allow_private_networks"},
                            "from": {"type": "string", "description": "email: the sender"}}},
            status="201", extra={"400": problem("Invalid type, name or URL, or a URL whose host is a private address (address_not_allowed)"), "409": problem("Name taken (name_taken): another of its kind has this name")}),
    **admin("get", "Every destination (never its secret)", {"type": "object", "properties": {"destinations": {"type": "array", "items": DESTINATION}}}),
}
DESTINATION_ID = path_param("id", "Destination id or name")
DESTINATION_DETAIL = {**DESTINATION, "properties": {**DESTINATION["properties"],
    "headers": {"type": "array", "items": {"type": "string"}, "description": "Names of the extra headers (values are not shown)"},
    "previous_secret_valid_until": {"type": ["string", "null"], "description": "During a rotation's overlap: until when the old secret signs too"},
    "dead_letters": {"type": "integer"}}}
DESTINATION_EDIT = {"type": "object", "additionalProperties": False, "properties": {
    "url": {"type": "string", "maxLength": 2000}, "from": {"type": "string"},
    "headers": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 1000}, "maxProperties": 20,
                "description": "Webhooks: extra request headers; replaces every earlier one ({} removes them)"},
    "rotate_secret": {"type": "boolean", "description": "A new signing secret, answered once as `secret`"},
    "secret_overlap": {"type": "string", "description": "How long the old secret signs too (both signatures in webhook-signature): default 24h, at most 30d"},
    "enabled": {"type": "boolean", "enum": [True], "description": "Resume deliveries after a 410 disabled the destination"}}}
EDIT_ERRORS = {**NOT_FOUND, "400": problem("Invalid URL, headers or overlap (what is wrong and how to fix it)")}
paths["/v1/destinations/{id}"] = {
    **admin("get", "A destination: its header names, the secret rotation under way, dead letters waiting", DESTINATION_DETAIL, params=[DESTINATION_ID], extra=NOT_FOUND),
    **admin("patch", "Edit a destination: URL, sender, headers, secret rotation with an overlap, re-enable after 410", {**DESTINATION_DETAIL, "properties": {**DESTINATION_DETAIL["properties"], "secret": {"type": "string"}}},
            DESTINATION_EDIT, params=[DESTINATION_ID], extra=EDIT_ERRORS),
    **admin("put", "The same as PATCH", {**DESTINATION_DETAIL, "properties": {**DESTINATION_DETAIL["properties"], "secret": {"type": "string"}}},
            DESTINATION_EDIT, params=[DESTINATION_ID], extra=EDIT_ERRORS),
    **admin("delete", "Delete a destination", {"type": "object"}, params=[DESTINATION_ID],
            extra={**NOT_FOUND, "409": problem("A journey or audience sync sends to it")}),
}
paths["/v1/destinations/{id}/dead-letters/replay"] = admin("post", "Queue every dead letter of the destination again (same ids), oldest first, to its address now; at most 10,000 per call (`more`)",
    {"type": "object", "properties": {"destination": {"type": "string"}, "replayed": {"type": "integer"}, "ids": {"type": "array", "items": {"type": "string"}}, "more": {"type": "boolean"}}},
    params=[DESTINATION_ID], extra={**NOT_FOUND, "409": problem("The destination is disabled: re-enable it first")})
JOURNEY = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "trigger": {"type": "object"}, "steps": {"type": "array"}, "created_at": {"type": "string"}}}
paths["/v1/journeys"] = {
    **admin("post", "Create a journey: a trigger (event with filters or unusual values, not followed by, audience entered or exited, a condition becoming true) and steps (send, wait, wait_until, wait_for, branch, set_trait, add_to_list) — docs/journeys.md", JOURNEY,
            {"type": "object", "required": ["name", "trigger", "steps"],
             "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}, "trigger": {"type": "object"}, "steps": {"type": "array", "items": {"type": "object"}}}},
            status="201", extra={"400": problem("Invalid journey (what is wrong and how to fix it)"), "409": problem("Name taken (name_taken): another of its kind has this name")}),
    **admin("get", "Every journey", {"type": "object", "properties": {"journeys": {"type": "array", "items": JOURNEY}}}),
}
OFFER = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"},
    "category": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "placements": {"type": "array", "items": {"type": "string"}}, "content": {"type": "object"},
    "value": {"type": "number"}, "lever": {"type": "number"}, "eligibility": {"type": "string"},
    "limits": {"type": "object"}, "exclusive_group": {"type": "string"}, "conversion_event": {"type": "string"},
    "purpose": {"type": "string"}, "propensity": {"type": "object"},
    "stats": {"type": "object", "additionalProperties": {"type": "object"}},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}
OFFER_BODY = {"type": "object", "required": ["name", "content"], "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 200}, "content": {"type": "object"},
    "category": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "placements": {"type": "array", "items": {"type": "string"}}, "value": {"type": "number", "minimum": 0},
    "lever": {"type": "number", "minimum": 0}, "valid_from": {"type": "string"}, "valid_until": {"type": "string"},
    "eligibility": {"type": "string"}, "propensity": {"type": "object"}, "limits": {"type": "object"},
    "exclusive_group": {"type": "string"}, "conversion_event": {"type": "string"}, "purpose": {"type": "string"},
    "items": {"type": "object", "additionalProperties": False, "properties": {
        "strategy": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 20},
        "categories": {"type": "array", "items": {"type": "string"}}},
        "description": "Recommended items the offer shows (docs/recommendations.md); without any for the person it does not apply"},
    "experiment": {"type": "object", "required": ["name", "variants"], "properties": {
        "name": {"type": "string"}, "variants": {"type": "object", "additionalProperties": {"type": "object"}}},
        "description": "The experiment whose arms pick the content shown: content per channel for each arm"}}}
OFFER_ID = path_param("id", "Offer id or name")
paths["/v1/offers"] = {
    **admin("post", "Create an offer: content per channel (templates), value, eligibility (audience language), limits, exclusivity — docs/decisions.md", OFFER,
            OFFER_BODY, status="201", extra={"400": problem("Invalid offer (with line and column for templates and conditions)"), "409": problem("Name taken (name_taken), or the catalog is full")}),
    **admin("get", "Every offer with its response counts per placement", {"type": "object", "properties": {"offers": {"type": "array", "items": OFFER}}}),
}
paths["/v1/offers/{id}"] = {
    **admin("get", "An offer with its response counts per placement", OFFER, params=[OFFER_ID], extra=NOT_FOUND),
    **admin("put", "Replace an offer's definition: a new version (the name stays)", OFFER, OFFER_BODY, params=[OFFER_ID],
            extra={**NOT_FOUND, "400": problem("Invalid offer")}),
    **admin("delete", "Delete an offer (its counts and past decisions stay)", {"type": "object"}, params=[OFFER_ID], extra=NOT_FOUND),
}
paths["/v1/offers/{id}/evaluate"] = {
    **admin("post", "Off-policy evaluation of an incentive's uplift policy from its randomized decisions (IPW, SNIPW, DM, DR, ...) — docs/decisions.md", {"type": "object"},
            {"type": "object", "required": ["uplift_score"], "additionalProperties": False, "properties": {"uplift_score": {"type": "string"}}},
            params=[OFFER_ID], extra={**NOT_FOUND, "400": problem("Not an incentive, or the model does not fit the log"), "422": problem("Not enough finished decisions (not_enough_history)")}),
}
ITEM = {"type": "object", "required": ["id"], "additionalProperties": False, "properties": {
    "id": {"type": "string", "minLength": 1, "maxLength": 200}, "name": {"type": "string", "maxLength": 500},
    "category": {"type": "string"}, "price": {"type": "number", "minimum": 0},
    "available": {"type": "boolean", "default": True}, "stock": {"type": "integer", "minimum": 0},
    "attributes": {"type": "object", "description": "At most 4,096 bytes of JSON; read as traits by rules"},
    "image_url": {"type": "string"}, "url": {"type": "string", "description": "The item's page (widgets link to it)"}}}
ITEM_ID = path_param("id", "Item id")
paths["/v1/items"] = {
    **admin("post", "Create or replace items: one item, or {\"items\": [...]} (at most 1,000; all or nothing) — docs/recommendations.md",
            {"type": "object", "properties": {"stored": {"type": "integer"}, "items": {"type": "integer"}}},
            {"oneOf": [ITEM, {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": ITEM, "maxItems": 1000}}}]},
            extra={"400": problem("An invalid item (the detail starts with items[N] in a bulk request)")}),
    **admin("get", "Items in id order", {"type": "object", "properties": {"items": {"type": "array", "items": ITEM}, "total": {"type": "integer"}, "next_after": {"type": ["string", "null"]}}},
            params=[query("after", {"type": "string"}, "List after this item id"), query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Items per page (100)")]),
}
paths["/v1/items/{id}"] = {
    **admin("get", "One item", ITEM, params=[ITEM_ID], extra=NOT_FOUND),
    **admin("patch", "Change some fields of an item (null removes one), e.g. {\"stock\": 0}", ITEM, {"type": "object"}, params=[ITEM_ID], extra={**NOT_FOUND, "400": problem("Invalid field")}),
    **admin("delete", "Delete an item: never recommended again", {"type": "object"}, status="204", params=[ITEM_ID], extra=NOT_FOUND),
}
RECOMMENDED = {"allOf": [ITEM, {"type": "object", "properties": {"score": {"type": "number"}, "reason": {"type": "object", "properties": {
    "strategy": {"type": "string"}, "from_items": {"type": "array", "items": {"type": "string"}},
    "neighbours": {"type": "array", "items": {"type": "integer"}}, "text": {"type": "string"}}}}}]}
STRATEGIES = ["auto", "next", "viewed_together", "bought_together", "recently_viewed", "buy_again", "popular", "trending"]
paths["/v1/recommendations"] = admin(
    "get", "Items for a person (or anyone), reflecting every event acknowledged before the call, with business rules and a reason per item — docs/recommendations.md",
    {"type": "object", "properties": {"profile": {"type": ["string", "null"]}, "known": {"type": "boolean"}, "strategy": {"type": "string"}, "items": {"type": "array", "items": RECOMMENDED}}},
    params=[query("profile", {"type": "string"}, "{type}:{value}; without it, recommendations for anyone (popular, trending, the context item's)"),
            query("strategy", {"type": "string", "enum": STRATEGIES}, "Where items come from (auto: next, filled by popular)"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Items (10)"),
            query("context_item", {"type": "string"}, "The item on the page (never recommended; appended to the session)"),
            query("category", {"type": "string"}, "Only these categories (comma separated)"),
            query("exclude_category", {"type": "string"}, "Not these categories (comma separated)"),
            query("min_price", {"type": "number"}, "Price band"), query("max_price", {"type": "number"}, "Price band"),
            query("max_per_category", {"type": "integer", "minimum": 1}, "Diversity: at most this many of one category"),
            query("include_purchased", {"type": "boolean"}, "Keep items the person bought (false)"),
            query("include_cart", {"type": "boolean"}, "Keep items in the person's cart (false)"),
            query("exclude_viewed", {"type": "boolean"}, "Leave out the session's own items (false: next reminds of them)")],
    extra={"400": problem("An unknown or invalid parameter (the detail names it)"),
           "409": problem("Recommendations are switched off ([recommendations] enabled = false); the detail says how to switch them on")})
PAGE_ITEM = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "category": {"type": "string"}, "price": {"type": "number"},
    "image_url": {"type": "string"}, "url": {"type": "string"}, "score": {"type": "number"}, "reason": {"type": "string"}}}
paths["/v1/in-app/recommendations"] = {"get": {
    "summary": "A page's recommendations for its own visitor, with the write key (CORS): as its anonymous id (nothing that shows what the person viewed or bought), or as a signed-in person with an identity token — docs/recommendations.md",
    "tags": ["collection"], "security": WRITE_KEY,
    "parameters": [{"name": "identifier", "in": "query", "required": True, "schema": {"type": "string"}, "description": "{type}:{value} of who is on the page"},
                   {"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"}, "description": "A source's write key"},
                   {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}, "description": "Identity token (hex HMAC-SHA256 of the identifier under the source's identity secret); required for every identifier but anonymous_id"},
                   query("strategy", {"type": "string", "enum": STRATEGIES}, "Where items come from"),
                   query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Items (10)"),
                   query("context_item", {"type": "string"}, "The item on the page"),
                   query("category", {"type": "string"}, "Only these categories (comma separated)"),
                   query("exclude_category", {"type": "string"}, "Not these categories"),
                   query("min_price", {"type": "number"}, "Price band"), query("max_price", {"type": "number"}, "Price band"),
                   query("max_per_category", {"type": "integer", "minimum": 1}, "Diversity"),
                   query("exclude_viewed", {"type": "boolean"}, "Leave out the session's own items")],
    "responses": {"200": json_response("Items with their public fields", {"type": "object", "properties": {"items": {"type": "array", "items": PAGE_ITEM}}}),
                  "400": problem("An invalid parameter, or one only the admin token may use"),
                  "401": problem("Write key missing or unknown"),
                  "403": problem("Identity token missing or wrong (identity_token_invalid)")}}}
RULE = {"type": "object", "required": ["when", "weight"], "additionalProperties": False, "properties": {
    "when": {"type": "string", "description": "Audience-language condition on the item: trait <field or attribute> ..."},
    "weight": {"type": "number", "minimum": 0, "description": ">1 boosts, <1 buries, 0 never recommends"}}}
RULES = {"type": "object", "required": ["rules"], "properties": {"rules": {"type": "array", "items": RULE, "maxItems": 50}}}
paths["/v1/recommendations/rules"] = {
    **admin("get", "The boost and bury rules", RULES),
    **admin("put", "Replace the boost and bury rules", RULES, RULES, extra={"400": problem("Invalid condition (with line and column) or weight")}),
}
ACTION = {"type": "object", "properties": {
    "offer": {"type": "string"}, "offer_id": {"type": "string"}, "version": {"type": "integer"}, "rank": {"type": "integer"},
    "score": {"type": "number"}, "propensity": {"type": "number"}, "channel": {"type": "string"}, "content": {},
    "category": {"type": "string"},
    "experiment": {"type": "object", "properties": {"name": {"type": "string"}, "group": {"type": "string"}}},
    "items": {"type": "array", "items": {"type": "object"}}}}
paths["/v1/decide"] = {
    **admin("post", "The next best actions for a person in a placement, after every event acknowledged before the call; explain says why each offer ranked or was dropped — docs/decisions.md",
            {"type": "object", "properties": {"decision_id": {"type": "string"}, "placement": {"type": "string"},
                                              "actions": {"type": "array", "items": ACTION},
                                              "explanation": {"type": "array", "items": {"type": "object"}}}},
            {"type": "object", "required": ["profile", "placement"], "additionalProperties": False, "properties": {
                "profile": {"type": "string", "description": "type:value"}, "placement": {"type": "string", "minLength": 1, "maxLength": 200},
                "context": {"type": "object"}, "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                "explain": {"type": "boolean"}, "explore": {"type": "boolean"},
                "channel": {"type": "string", "enum": ["web", "in_app", "email", "webhook"]},
                "diversity": {"type": "object", "properties": {"max_per_category": {"type": "integer", "minimum": 1}}}}},
            extra={"400": problem("Invalid request (what is wrong and how to fix it)")}),
}
paths["/v1/in-app/decide"] = {"post": {
    "summary": "A page's decision for its visitor, with the write key: as its own anonymous id, or with the identity token of a user_id (content without traits when there is no token) — docs/decisions.md",
    "security": WRITE_KEY,
    "requestBody": {"required": True, "content": {"application/json": {"schema": {**paths["/v1/decide"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        "properties": {**paths["/v1/decide"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"], "token": {"type": "string"}}}}}},
    "responses": {"200": paths["/v1/decide"]["post"]["responses"]["200"], "400": problem("Invalid request"),
                  "401": problem("Write key missing or unknown"), "403": problem("Identity token missing or wrong (identity_token_invalid)")}}}
COUNT_MAP = {"type": "object", "additionalProperties": {"type": "integer"}}
paths["/v1/journeys/{id}"] = {
    **admin("get", "A journey with its counts: entered, goal reached, exited (finished), per step (waiting there now, messages by status, blocked by reason)",
            {**JOURNEY, "properties": {**JOURNEY["properties"], "counts": {"type": "object", "properties": {
                "entered": {"type": "integer"}, "goal_reached": {"type": "integer"}, "exited": {"type": "integer"}, "waiting": {"type": "integer"},
                "messages": COUNT_MAP, "blocked": COUNT_MAP}},
                "steps": {"type": "array", "items": {"type": "object", "properties": {
                    "step": {"type": "integer"}, "path": {"type": "string"}, "kind": {"type": "string"}, "waiting": {"type": "integer"},
                    "messages": COUNT_MAP, "blocked": COUNT_MAP}}}}},
            params=[path_param("id", "Journey id or name")], extra=NOT_FOUND),
    **admin("delete", "Delete a journey (messages already decided are still delivered)", {"type": "object"},
            params=[path_param("id", "Journey id or name")], extra=NOT_FOUND),
}
paths["/v1/destinations/{id}/test"] = admin("post", "A test message now, through the same path as every delivery (signed webhook, or email to `to`), not stored", {"type": "object", "properties": {
    "delivered": {"type": "boolean"}, "took_ms": {"type": "number"}, "error": {"type": "string"}}},
    {"type": "object", "additionalProperties": False, "properties": {"to": {"type": "string"}}},
    params=[path_param("id", "Destination id or name")], extra={**NOT_FOUND, "400": problem("In-app destination, or an email test without `to`")})
paths["/v1/journeys/{id}/pause"] = admin("post", "Pause a journey: nobody enters, nothing is sent; runs hold at their next step", JOURNEY,
    params=[path_param("id", "Journey id or name")], extra=NOT_FOUND)
paths["/v1/journeys/{id}/resume"] = admin("post", "Resume a journey: entries start again; runs held while paused go on at once", JOURNEY,
    params=[path_param("id", "Journey id or name")], extra=NOT_FOUND)
MODEL = {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "integer"}, "format": {"type": "string"},
    "inputs": {"type": "array", "items": {"type": "string"}}, "mode": {"type": "string", "enum": ["active", "shadow", "retired"]}, "created_at": {"type": "string"}}}
MODEL_NAME = path_param("name", "Model name")
paths["/v1/models"] = {
    **admin("post", "Register a model version (ONNX in base64, or Kairos' JSON: gbm, logistic, propensity, uplift, bgnbd) with its input features; shadow unless mode is active — docs/models.md",
            {**MODEL, "properties": {**MODEL["properties"], "outputs": {"type": "array", "items": {"type": "string"}}}},
            {"type": "object", "required": ["name", "format", "model", "inputs"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100}, "format": {"type": "string"}, "model": {},
                "inputs": {"type": "array", "items": {"type": "string"}}, "mode": {"type": "string", "enum": ["active", "shadow"]}}},
            status="201", extra={"400": problem("Invalid name, format, model or feature")}),
    **admin("get", "Every model version, and the features models can read", {"type": "object", "properties": {
        "models": {"type": "array", "items": MODEL}, "features": {"type": "array", "items": {"type": "object"}}}}),
}
paths["/v1/models/{name}"] = admin("delete", "Delete every version of a model", {"type": "object"}, params=[MODEL_NAME],
    extra={**NOT_FOUND, "409": problem("An audience, computed trait or journey reads one of its scores (model_in_use)")})
paths["/v1/models/{name}/score"] = admin("post", "Score explicit input rows with a version (the active one by default); null is a missing value",
    {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "integer"}, "scores": {"type": "array", "items": {"type": "object"}}}},
    {"type": "object", "required": ["rows"], "additionalProperties": False, "properties": {
        "rows": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "array", "items": {"type": ["number", "null"]}}},
        "version": {"type": "integer", "minimum": 1}}},
    params=[MODEL_NAME], extra={**NOT_FOUND, "400": problem("Rows of the wrong length")})
ROW_SPEC_PROPERTIES = {
    "features": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "label": {"type": "object", "required": ["event", "within"], "additionalProperties": False,
              "properties": {"event": {"type": "string", "minLength": 1}, "within": {"type": "string", "pattern": "^[0-9]+[smhdw]$"}}},
    "at": {"type": "array", "items": {"type": "string"}}}
ROW_SPEC = {"type": "object", "required": ["features", "label"], "additionalProperties": False, "properties": ROW_SPEC_PROPERTIES}
training_rows = admin("post", "Training rows from stored history: the features as serving computed them at each `at` event, and whether `label.event` followed within `label.within` (CSV; counts in Kairos-Rows, Kairos-Positive-Rows, Kairos-Censored-Rows) — docs/models.md",
    {"type": "string"}, ROW_SPEC, extra={"400": problem("Unknown feature, a trait/computed feature (its past is not kept), or a bad duration")})
training_rows["post"]["responses"]["200"] = {"description": "One row per moment: profile, at, the features, label (0/1)",
                                             "content": {"text/csv": {"schema": {"type": "string"}}}}
paths["/v1/training-rows"] = training_rows
paths["/v1/models/{name}/train"] = admin("post", "Train on stored history and register a new version: propensity (features + label; every choice by cross-validation), churn (BG/NBD over every person's orders) or uplift (an incentive offer's randomized decisions) — docs/models.md, docs/decisions.md",
    {**MODEL, "properties": {**MODEL["properties"], "training": {"type": "object"}}},
    {"type": "object", "additionalProperties": False, "properties": {
        "insight": {"type": "string", "enum": ["propensity", "churn", "uplift"]}, "offer": {"type": "string"},
        **ROW_SPEC_PROPERTIES, "mode": {"type": "string", "enum": ["active", "shadow"]}, "search": {"type": "string", "enum": ["quick", "thorough"]},
        "horizon_weeks": {"type": "number", "exclusiveMinimum": 0, "maximum": 520}}},
    status="201", params=[MODEL_NAME], extra={"400": problem("Invalid name, feature or duration"), "422": problem("Not enough history to train on")})
for action, summary in [("promote", "Make this version the active one (the previous active version retires)"), ("retire", "Stop scoring with this version")]:
    paths[f"/v1/models/{{name}}/versions/{{version}}/{action}"] = admin("post", summary, MODEL,
        params=[MODEL_NAME, {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295}}], extra=NOT_FOUND)
LIST_NAME = path_param("name", "List name: letters, digits, -, _ or .")
paths["/v1/lists"] = admin("get", "Every list of identifiers and its size", {"type": "object", "properties": {
    "lists": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}}}})
paths["/v1/lists/{name}"] = admin("get", "A list's members in identifier order", {"type": "object", "properties": {
    "name": {"type": "string"}, "next_after": {"type": ["string", "null"]},
    "members": {"type": "array", "items": {"type": "object", "properties": {"identifier": {"type": "string"}, "added_at": {"type": "string"}, "reason": {"type": "string"}}}}}},
    params=[LIST_NAME, query("after", {"type": "string"}, "The `next_after` of the previous page"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 100)")],
    extra={"400": problem("Invalid list name or limit")})
paths["/v1/lists/{name}/members"] = admin("post", "Add identifiers to a list (a suppression list stops every send to them)", {"type": "object", "properties": {
    "name": {"type": "string"}, "added": {"type": "integer"}, "already_members": {"type": "integer"}}},
    {"type": "object", "required": ["identifiers"], "additionalProperties": False, "properties": {
        "identifiers": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "string"}}, "reason": {"type": "string"}}},
    params=[LIST_NAME], extra={"400": problem("Invalid list name or identifier")})
paths["/v1/lists/{name}/members/{identifier}"] = admin("delete", "Remove an identifier from a list", {"type": "object"},
    params=[LIST_NAME, path_param("identifier", "{type}:{value}")], extra={**NOT_FOUND, "400": problem("Invalid list name or identifier")})
SYNC = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "audience": {"type": "string"}, "destination": {"type": "string"},
    "batch_size": {"type": "integer"}, "max_wait_seconds": {"type": "integer"}, "created_at": {"type": "string"}, "changes_waiting": {"type": "integer"}}}
paths["/v1/audience-syncs"] = {
    **admin("post", "Send an audience's membership changes in batches to a webhook destination", SYNC,
            {"type": "object", "required": ["name", "audience", "destination"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200}, "audience": {"type": "string"}, "destination": {"type": "string"},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": 10000}, "max_wait": {"type": "string", "description": "e.g. 30s, 5m"}}},
            status="201", extra={"400": problem("Unknown audience or destination, invalid batch_size or max_wait"), "409": problem("Name taken (name_taken): another of its kind has this name")}),
    **admin("get", "Every audience sync", {"type": "object", "properties": {"audience_syncs": {"type": "array", "items": SYNC}}}),
}
paths["/v1/audience-syncs/{id}"] = admin("delete", "Delete an audience sync (batches made are still delivered)", {"type": "object"},
    params=[path_param("id", "Audience sync id or name")], extra=NOT_FOUND)
paths["/v1/profiles/{identifier}/deliveries"] = admin("get", "The messages sent about a person, newest first, with status, attempts and the last error",
    {"type": "object", "properties": {"profile_id": {"type": "string"}, "deliveries": {"type": "array", "items": MESSAGE}}},
    params=[path_param("identifier", "{type}:{value}, e.g. user_id:u1"), query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Most messages (default 100)")],
    extra={**NOT_FOUND, "400": problem("Invalid identifier or limit")})
paths["/v1/admin/dead-letters"] = admin("get", "Messages given up on, newest first", {"type": "object", "properties": {"dead_letters": {"type": "array", "items": MESSAGE}}},
    params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Most messages (default 100)")], extra={"400": problem("Invalid limit")})
paths["/v1/admin/dead-letters/{id}/replay"] = admin("post", "Deliver a dead letter again, under the same webhook-id", MESSAGE,
    params=[path_param("id", "Message id")], extra={**NOT_FOUND, "409": problem("Its destination is disabled")})
paths["/v1/in-app/stream"] = {"get": {"summary": "Server-Sent Events: the in-app messages journeys send to this person while the page is open",
    "tags": ["collection"], "security": WRITE_KEY,
    "parameters": [{"name": "identifier", "in": "query", "required": True, "schema": {"type": "string"}, "description": "{type}:{value} of who is on the page"},
                   {"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"}, "description": "A source's write key (EventSource cannot send headers)"},
                   {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}, "description": "Identity token: hex HMAC-SHA256 of the identifier under the source's identity secret, minted by the site's backend; required for every identifier but anonymous_id"}],
    "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                  "400": problem("Invalid identifier"), "401": problem("Write key missing or unknown"), "403": problem("Identity token missing or wrong")}}}
paths["/v1/admin/clock"] = admin("post", "Set the engine's manual clock (kairos serve --clock manual); answers once everything due by then has run: audience timers, journeys' waits and steps, their messages decided",
    {"type": "object", "properties": {"now": {"type": "string"}}},
    {"type": "object", "required": ["now"], "additionalProperties": False, "properties": {"now": {"type": "string", "format": "date-time"}}},
    extra={"400": problem("Invalid body or the clock would move backwards"), "409": problem("The clock is not manual"),
           "503": problem("Journeys did not catch up within 30 s (journeys_behind)")})
paths["/v1/admin/audit"] = admin("get", "Erasure receipts, newest first", {"type": "object", "properties": {"erasures": {"type": "array", "items": ref("ErasureReceipt")}}},
    params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Most receipts (default 100)")], extra={"400": problem("Invalid limit")})
paths["/v1/profiles/{identifier}/events"] = admin("get", "A profile's events, newest first by event time", {"type": "object", "properties": {
    "profile_id": {"type": "string"}, "events": {"type": "array", "items": ref("LoggedEvent")}, "next": {"type": ["string", "null"]}}},
    params=[IDENT, query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 50)"),
            query("before", {"type": "integer", "minimum": 0}, "The `next` of the previous page"),
            query("event", {"type": "string"}, "Only events of this name"),
            query("from", {"type": "string", "format": "date-time"}, "Event time at or after"),
            query("to", {"type": "string", "format": "date-time"}, "Event time before")],
    extra={**NOT_FOUND, "400": problem("Invalid parameters")})
paths["/v1/profiles/{identifier}/merges"] = admin("get", "Which profiles merged into this one, when, through which identifier", {"type": "object"},
    params=[IDENT], extra={**NOT_FOUND, "400": problem("Malformed identifier")})
paths["/healthz"] = {"get": {"summary": "Liveness", "tags": ["operations"], "responses": {"200": json_response("Up", {"type": "object"})}}}
paths["/readyz"] = {"get": {"summary": "Readiness (store open, log writer running)", "tags": ["operations"],
    "responses": {"200": json_response("Ready", {"type": "object"}), "503": problem("Not ready")}}}
paths["/metrics"] = {"get": {"summary": "Prometheus metrics (the admin token or the read-only metrics token)", "tags": ["operations"],
    "security": [{"adminToken": []}, {"metricsToken": []}],
    "responses": {"200": {"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}},
                  "401": problem("Admin or metrics token missing or wrong")}}}
paths["/openapi.json"] = {"get": {"summary": "This document", "tags": ["operations"], "responses": {"200": json_response("OpenAPI 3.1", {"type": "object"})}}}

SESSION = {"type": "object", "properties": {"csrf_token": {"type": "string"}, "csrf_header": {"type": "string"}, "expires_in_seconds": {"type": "integer"}}}
paths["/v1/console/session"] = {
    "post": {"summary": "Console login: the admin token for a session cookie (kairos_session: HttpOnly, SameSite=Strict; Secure behind an https proxy). The cookie is then accepted wherever the admin token is; unsafe methods also need X-CSRF-Token", "tags": ["console"],
             "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["token"], "additionalProperties": False, "properties": {"token": {"type": "string"}}}}}},
             "responses": {"201": json_response("Session opened (Set-Cookie); the CSRF token to send on unsafe methods", SESSION), "401": problem("Not the admin token")}},
    "get": {"summary": "The current console session's CSRF token (after a page reload)", "tags": ["console"],
            "responses": {"200": json_response("Session live", SESSION), "401": problem("No live session (session_missing)")}},
    "delete": {"summary": "Console logout (needs X-CSRF-Token)", "tags": ["console"],
               "responses": {"204": {"description": "Session ended, cookie cleared"}, "401": problem("No live session"), "403": problem("CSRF token missing or wrong")}},
}
def asset(summary, content_type, file_param=False):
    params = [{"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}] if file_param else []
    return {"get": {"summary": summary, "tags": ["web"], **({"parameters": params} if params else {}), "responses": {
        "200": {"description": "The file (gzip when accepted; strong ETag; nosniff)", "content": {content_type: {"schema": {"type": "string"}}}},
        "304": {"description": "Not modified (If-None-Match)"},
        "503": problem("This binary was built without the web assets (sdk_not_built / console_not_built): install Node.js and npm, build web/<package>, rebuild")}}}
paths["/sdk/kairos.js"] = asset("The browser SDK (docs/sdk.md); Cache-Control: public, max-age=300", "text/javascript")
paths["/"] = asset("The console (docs/console.md)", "text/html")
paths["/console/{file}"] = asset("The console's script and stylesheet (console.js, console.css)", "text/javascript", file_param=True)
paths["/demo"] = {"get": {"summary": "Redirects to /demo/", "tags": ["web"], "responses": {"308": {"description": "To /demo/"}}}}
paths["/demo/"] = asset("The demo store (docs/console.md, \"Demo store\")", "text/html")
paths["/demo/{file}"] = asset("The demo store's script and stylesheet (demo.js, demo.css), and config.json: the demo source's write key (404 without the demo)", "text/javascript", file_param=True)

schemas = {
    "Problem": {"type": "object", "description": "RFC 9457 problem details", "required": ["type", "title", "status", "detail", "code"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}, "code": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {"index": {"type": "integer"}, "field": {"type": "string"}, "message": {"type": "string"}}}}}},
    "Event": {"type": "object", "description": "A Segment Spec event", "properties": {
        "type": {"type": "string", "enum": ["track", "identify", "page", "screen", "group", "alias"]},
        "event": {"type": "string"}, "userId": {"type": ["string", "number", "null"]}, "anonymousId": {"type": ["string", "number", "null"]},
        "messageId": {"type": ["string", "number"]}, "timestamp": {"type": "string", "format": "date-time"}, "originalTimestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"}, "properties": {"type": "object"}, "traits": {"type": "object"}, "context": {"type": "object"},
        "previousId": {"type": "string"}, "groupId": {"type": "string"}, "writeKey": {"type": "string"}}, "additionalProperties": True},
    "Batch": {"type": "object", "required": ["batch"], "properties": {"batch": {"type": "array", "maxItems": 2500, "items": ref("Event")},
        "sentAt": {"type": "string", "format": "date-time"}, "writeKey": {"type": "string"}}},
    "CollectResponse": {"type": "object", "required": ["success", "accepted", "duplicates", "quarantined"], "properties": {
        "success": {"type": "boolean"}, "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
        "suppressed": {"type": "integer", "description": "Dropped: they carry an identifier of an erased person (present when not 0)"},
        "quarantined": {"type": "array", "items": {"type": "object", "properties": {"index": {"type": "integer"}, "errors": {"type": "array", "items": {"type": "object"}}}}}}},
    "LoggedEvent": {"type": "object", "description": "A normalized event as logged: seq, sourceId, messageId, type, timestamp (skew-corrected), receivedAt, and every other field as sent",
        "required": ["seq", "sourceId", "messageId", "type", "timestamp", "receivedAt"], "additionalProperties": True,
        "properties": {"seq": {"type": "integer"}, "sourceId": {"type": "string"}, "messageId": {"type": "string"}, "type": {"type": "string"},
                       "timestamp": {"type": "string"}, "receivedAt": {"type": "string"}, "violations": {"type": "array", "items": {"type": "string"}}}},
    "TrackingPlan": {"type": "object", "required": ["mode"], "additionalProperties": False, "properties": {
        "mode": {"type": "string", "enum": ["block", "flag"]}, "allow_unplanned": {"type": "boolean"},
        "events": {"type": "object", "description": "event name → JSON Schema of its properties", "additionalProperties": {"type": "object"}}}},
    "CreateSource": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200}, "tracking_plan": ref("TrackingPlan"),
        "trust": {"type": "string", "enum": ["client", "server"], "description": "client (default): a public write key; server: a back-end's"},
        "items_from_events": {"type": "boolean", "description": "Its Product Viewed / Clicked / Added events create and update catalog items (server sources only)"}}},
    "Source": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "write_key": {"type": "string"},
        "created_at": {"type": "string"}, "tracking_plan": {"oneOf": [ref("TrackingPlan"), {"type": "null"}]},
        "trust": {"type": "string", "enum": ["client", "server"]}, "identity_secret": {"type": "string", "description": "Signs identity tokens (HMAC-SHA256 of type:value, hex); keep it on the server"},
        "items_from_events": {"type": "boolean"}}},
    "QuarantineRecord": {"type": "object", "properties": {"id": {"type": "integer"}, "source_id": {"type": "string"}, "received_at": {"type": "string"},
        "index": {"type": "integer"}, "errors": {"type": "array", "items": {"type": "object"}}, "event": {}}},
    "Profile": {"type": "object", "required": ["id", "identities", "traits"], "properties": {
        "id": {"type": "string"}, "identities": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "value": {"type": "string"}}}},
        "traits": {"type": "object"}, "consent": {"type": "object"}, "first_seen": {"type": ["string", "null"]}, "last_seen": {"type": ["string", "null"]},
        "event_count": {"type": "integer"}, "merges": {"type": "array", "items": {"type": "object"}},
        "computed": {"type": "object"}, "audiences": {"type": "array"}, "scores": {"type": "object"}}},
    "ErasureReceipt": {"type": "object", "description": "Names the person only by profile id and counts; no identifier or trait value", "properties": {
        "id": {"type": "string"}, "profile_id": {"type": "string"}, "requested_at": {"type": "string"}, "completed_at": {"type": "string"},
        "identities": {"type": "object", "additionalProperties": {"type": "integer"}}, "keys_destroyed": {"type": "integer"},
        "events_erased": {"type": "integer"}, "quarantine_purged": {"type": "integer"}, "effective_after_seq": {"type": "integer"}}},
    "Suggestion": {"type": "object", "properties": {"id": {"type": "string"},
        "a": {"type": "object", "properties": {"profile_id": {"type": "string"}, "identifier": {"type": "object"}}},
        "b": {"type": "object", "properties": {"profile_id": {"type": "string"}, "identifier": {"type": "object"}}},
        "score": {"type": "number"}, "threshold": {"type": "number"}, "created_at": {"type": "string"}}},
    "FaultPlan": {"type": "object", "required": ["fail_next"], "additionalProperties": False, "properties": {
        "fail_next": {"type": "integer", "minimum": 0, "maximum": 4294967295}, "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "retry_after_seconds": {"type": "integer", "minimum": 0}, "after_commit": {"type": "boolean"}}},
}

# --- experiments (docs/decisions.md, "Experiments") ----------------------------
EXPERIMENT_DEFINITION = {"type": "object", "required": ["name", "arms", "control", "metric"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 200}, "description": {"type": "string"},
    "arms": {"type": "array", "minItems": 2, "maxItems": 32, "items": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.:=-]{1,200}$"}, "weight": {"type": "number", "exclusiveMinimum": 0}}}},
    "control": {"type": "string"},
    "metric": {"type": "object", "required": ["event"], "additionalProperties": False, "properties": {
        "event": {"type": "string", "minLength": 1, "maxLength": 200}, "value": {"type": "string", "minLength": 1, "maxLength": 200}}},
    "allocation": {"type": "string", "enum": ["fixed", "bandit"]},
    "holdout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "guardrails": {"type": "array", "maxItems": 10, "items": {"type": "object", "required": ["event", "direction"], "additionalProperties": False, "properties": {
        "event": {"type": "string", "minLength": 1, "maxLength": 200}, "direction": {"type": "string", "enum": ["increase", "decrease"]}}}}}}
EXPERIMENT = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string", "enum": ["running", "stopped"]},
    "created_at": {"type": "string"}, "stopped_at": {"type": ["string", "null"]}, "definition": EXPERIMENT_DEFINITION}}
EXPERIMENT_ID = path_param("id", "Experiment id or name")
INTERVAL = {"type": ["array", "null"], "items": {"type": "number"}}
paths["/v1/experiments"] = {
    **admin("post", "Create an experiment: arms with weights, control, metric (conversion event, or a value property summed), allocation fixed or bandit (Thompson sampling), holdout, guardrails — docs/decisions.md", EXPERIMENT,
            EXPERIMENT_DEFINITION, status="201", extra={"400": problem("Invalid experiment (experiment_invalid: what is wrong and how to fix it)"),
                                                        "409": problem("Name taken (name_taken), or too many experiments (experiments_full)")}),
    **admin("get", "Every experiment", {"type": "object", "properties": {"experiments": {"type": "array", "items": EXPERIMENT}}}),
}
SETTINGS = {"type": "object", "required": ["global_holdout"], "additionalProperties": False, "properties": {
    "global_holdout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "The fraction of all people excluded from every experiment"}}}
paths["/v1/experiments/settings"] = {
    **admin("get", "The experiments' global settings (the global holdout)", SETTINGS),
    **admin("put", "Set the global holdout: a fraction of all people excluded from every experiment (people already exposed keep their group)", SETTINGS, SETTINGS,
            extra={"400": problem("global_holdout outside [0, 1)")}),
}
paths["/v1/experiments/{id}"] = {
    **admin("get", "An experiment", EXPERIMENT, params=[EXPERIMENT_ID], extra=NOT_FOUND),
    **admin("delete", "Delete an experiment and every exposure to it", {"type": "object"}, params=[EXPERIMENT_ID], extra=NOT_FOUND),
}
paths["/v1/experiments/{id}/stop"] = admin("post", "Stop an experiment: no new exposures (new people get the control, unrecorded); outcomes of the exposed still count",
    EXPERIMENT, params=[EXPERIMENT_ID], extra=NOT_FOUND)
paths["/v1/experiments/{id}/assignment"] = admin("get", "A person's arm: stored at the first call (their exposure), the same afterwards for any of their identifiers (a merged person keeps the arm of the identity exposed first)",
    {"type": "object", "properties": {"experiment": {"type": "string"}, "profile": {"type": "string"}, "arm": {"type": ["string", "null"], "description": "null for a holdout"},
        "group": {"type": "string", "description": "The arm, (holdout) or (global holdout)"}, "exposed": {"type": "boolean"}, "new": {"type": "boolean"}, "exposed_at": {"type": "string"}}},
    params=[EXPERIMENT_ID, {"name": "profile", "in": "query", "required": True, "schema": {"type": "string"}, "description": "{type}:{value}"}],
    extra={**NOT_FOUND, "400": problem("profile missing or not {type}:{value}")})
ARM_RESULT = {"type": "object", "properties": {
    "name": {"type": "string"}, "control": {"type": "boolean"}, "exposures": {"type": "integer"}, "conversions": {"type": "integer"},
    "rate": {"type": ["number", "null"]}, "interval": INTERVAL, "mean": {"type": ["number", "null"]}, "mean_interval": INTERVAL,
    "difference": {"type": ["number", "null"]}, "difference_interval": INTERVAL, "lift": {"type": ["number", "null"]}, "lift_interval": INTERVAL,
    "sequential": {"type": ["object", "null"], "properties": {"p_value": {"type": "number"}, "significant": {"type": "boolean"}}},
    "cuped": {"type": "object"}, "probability_best": {"type": "number"}, "guardrails": {"type": "array", "items": {"type": "object"}}}}
paths["/v1/experiments/{id}/results"] = admin("get", "Per arm: exposures, conversions, rate with its Wilson interval, lift and difference against the control with intervals, the always-valid sequential test (mSPRT), CUPED-adjusted figures, guardrails; holdouts; the verdict",
    {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string"}, "control": {"type": "string"},
        "alpha": {"type": "number"}, "arms": {"type": "array", "items": ARM_RESULT}, "holdouts": {"type": "array", "items": {"type": "object"}}, "verdict": {"type": "object"}}},
    params=[EXPERIMENT_ID, query("alpha", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5}, "Significance level (default 0.05: 95 % intervals)")],
    extra={**NOT_FOUND, "400": problem("alpha outside (0, 0.5)")})

document = {
    "openapi": "3.1.0",
    "info": {"title": "Kairos", "version": "0.1.0", "description": "Real-time customer engagement hub. Errors are RFC 9457 problem details; see docs/api.md."},
    "paths": paths,
    "components": {"schemas": schemas, "securitySchemes": {
        "basicWriteKey": {"type": "http", "scheme": "basic", "description": "username = the source's write key, empty password"},
        "queryWriteKey": {"type": "apiKey", "in": "query", "name": "writeKey"},
        "adminToken": {"type": "http", "scheme": "bearer"},
        "metricsToken": {"type": "http", "scheme": "bearer", "description": "metrics_token / KAIROS_METRICS_TOKEN: opens /metrics only"}}},
}
out = Path(__file__).resolve().parent.parent / "crates/kairos-http/src/openapi.json"
out.write_text(json.dumps(document, indent=1) + "\n")
print(f"wrote {out} ({len(paths)} paths)")
