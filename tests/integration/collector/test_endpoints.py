"""Every answer of a running collector, with its body, and what reached Kafka.

One collector process on the session broker serves the whole module; each test uses its own
event ids and checks exactly which of them arrived in the input topic.
"""

from __future__ import annotations

import http.client
import itertools
import re
import shutil
import socket
import subprocess
import time

import orjson
import pytest

from pipeline.collector.config import MAX_BODY_BYTES
from pipeline.config.topics import TopicNames

from .harness import ALLOWED_ORIGIN, EMAIL_KEY, WEBSITE_KEY, Collector, envelope, read_records

pytestmark = pytest.mark.integration
_ids = itertools.count(1)


def ids(n: int, prefix: str = "ev") -> list[str]:
    return [f"{prefix}-{next(_ids)}" for _ in range(n)]


def arrived(collector: Collector, wanted: set[str], source: str = "website", expect: int | None = None
            ) -> dict[str, tuple[bytes | None, dict]]:
    """The records of ``wanted`` ids in ``source``'s topic (waits for ``expect`` of them)."""
    topic = TopicNames.of(collector.settings).inputs[source]
    found: dict[str, tuple[bytes | None, dict]] = {}
    for key, value in read_records(collector.settings, topic, expect=0, quiet=0.3):
        if value["event_id"] in wanted:
            found[value["event_id"]] = (key, value)
    if expect is not None and len(found) < expect:  # not all there yet: read again, waiting this time
        records = read_records(collector.settings, topic, expect=len(found) + 1, timeout=10)
        found = {v["event_id"]: (k, v) for k, v in records if v["event_id"] in wanted}
    return found


# -- 202 -------------------------------------------------------------------------------------


def test_one_envelope_is_published_with_context_and_keyed_by_contact(collector: Collector) -> None:
    (event_id,) = ids(1)
    event = envelope(event_id, contact_id="c-42", context={"locale": "vi-VN"})
    reply = collector.post("website", orjson.dumps(event))
    assert reply.status == 202, reply.body
    assert reply.json == {"accepted": [event_id], "rejected": []}
    key, value = arrived(collector, {event_id}, expect=1)[event_id]
    assert key == b"c-42"
    assert value["context"]["locale"] == "vi-VN"
    assert value["context"]["ip"] == "127.0.0.0"  # truncated to /24 by default
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", value["context"]["received_at"])
    assert {k: v for k, v in value.items() if k != "context"} == {k: v for k, v in event.items() if k != "context"}


def test_a_batch_gets_per_event_results_and_only_valid_events_are_published(collector: Collector) -> None:
    good1, good2, bad_type, wrong_family = ids(4)
    batch = [
        envelope(good1),
        envelope(bad_type, event_type="teleported"),
        envelope(good2, "form_submit", properties={"form_id": "demo"}),
        envelope(wrong_family, "email_opened", properties={"campaign_id": "spring"}),
        {"event_type": "page_view"},
    ]
    reply = collector.post("website", orjson.dumps(batch))
    assert reply.status == 202
    assert reply.json["accepted"] == [good1, good2]
    rejected = reply.json["rejected"]
    assert [(r["index"], r["event_id"], r["error_code"]) for r in rejected] == [
        (1, bad_type, "unknown_event_type"),
        (3, wrong_family, "wrong_source"),
        (4, None, "missing_identity"),
    ]
    assert all(r["detail"].startswith("$") for r in rejected)
    found = arrived(collector, {good1, good2, bad_type, wrong_family}, expect=2)
    assert set(found) == {good1, good2}


def test_ndjson_keeps_each_contacts_order(collector: Collector) -> None:
    event_ids = ids(30)
    lines = [orjson.dumps(envelope(i, contact_id=f"c-{n % 3}")) for n, i in enumerate(event_ids)]
    reply = collector.post("website", b"\n".join(lines) + b"\n", "application/x-ndjson")
    assert reply.status == 202 and reply.json["accepted"] == event_ids
    topic = TopicNames.of(collector.settings).inputs["website"]
    records = [v for _, v in read_records(collector.settings, topic, expect=30) if v["event_id"] in set(event_ids)]
    for contact in ("c-0", "c-1", "c-2"):
        theirs = [v["event_id"] for v in records if v["contact_id"] == contact]
        assert theirs == [i for n, i in enumerate(event_ids) if f"c-{n % 3}" == contact]


def test_beacon_text_plain_with_the_key_in_the_query_and_an_allowed_origin(collector: Collector) -> None:
    (event_id,) = ids(1)
    reply = collector.request("POST", f"/v1/events/website?write_key={WEBSITE_KEY}", orjson.dumps([envelope(event_id)]),
                              {"Content-Type": "text/plain;charset=UTF-8", "Origin": ALLOWED_ORIGIN})
    assert reply.status == 202 and reply.json["accepted"] == [event_id]
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert reply.headers["vary"] == "Origin"
    assert event_id in arrived(collector, {event_id}, expect=1)


def test_another_source_has_its_own_key_and_topic(collector: Collector) -> None:
    (event_id,) = ids(1)
    event = envelope(event_id, "email_opened", properties={"campaign_id": "spring"}, contact_id="c-1")
    del event["anonymous_id"]
    assert collector.post("email", orjson.dumps(event), key=WEBSITE_KEY).status == 401
    reply = collector.post("email", orjson.dumps(event), key=EMAIL_KEY)
    assert reply.status == 202, reply.body
    assert event_id in arrived(collector, {event_id}, source="email", expect=1)


# -- 4xx -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"", "application/json", "invalid_json"),
        (b"[{\"event_id\": ", "application/json", "invalid_json"),
        (b"{\"event_id\": \"\xff\"}", "application/json", "invalid_encoding"),
        (b"[]", "application/json", "schema_violation"),
    ],
)
def test_400_unreadable_body(collector: Collector, body: bytes, content_type: str, code: str) -> None:
    reply = collector.post("website", body, content_type)
    assert reply.status == 400
    assert reply.json["error_code"] == code and reply.json["detail"].startswith("$")


def test_400_one_invalid_envelope_names_the_rule(collector: Collector) -> None:
    (event_id,) = ids(1)
    reply = collector.post("website", orjson.dumps(envelope(event_id, properties={"title": "no url"})))
    assert reply.status == 400
    assert reply.json["error_code"] == "schema_violation"
    assert reply.json["detail"] == "$.properties.url: required for page_view"
    assert reply.json["accepted"] == [] and reply.json["rejected"][0]["event_id"] == event_id
    assert not arrived(collector, {event_id})


def test_400_a_batch_without_any_valid_event(collector: Collector) -> None:
    first, second = ids(2)
    batch = [envelope(first, occurred_at="yesterday"), envelope(second, event_type="email_opened")]
    reply = collector.post("website", orjson.dumps(batch))
    assert reply.status == 400
    assert reply.json["error_code"] == "invalid_events"
    assert [r["error_code"] for r in reply.json["rejected"]] == ["schema_violation", "wrong_source"]
    assert not arrived(collector, {first, second})


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer pk_wrong_key_000", f"Basic {WEBSITE_KEY}"])
def test_401_missing_or_wrong_key(collector: Collector, authorization: str | None) -> None:
    (event_id,) = ids(1)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    reply = collector.request("POST", "/v1/events/website", orjson.dumps(envelope(event_id)), headers)
    assert reply.status == 401
    assert reply.json["error_code"] == "unauthorized"
    assert reply.headers["www-authenticate"] == 'Bearer realm="leadflow"'


def test_401_source_without_keys_and_wrong_query_key(collector: Collector) -> None:
    body = orjson.dumps(envelope(ids(1)[0], "order_completed"))
    assert collector.post("purchase", body, key=WEBSITE_KEY).status == 401  # no purchase key configured
    reply = collector.request("POST", "/v1/events/website?write_key=nope-nope", body, {"Content-Type": "text/plain"})
    assert reply.status == 401


def test_403_origin_not_in_the_allow_list_and_cors_preflight(collector: Collector) -> None:
    (event_id,) = ids(1)
    reply = collector.post("website", orjson.dumps(envelope(event_id)), Origin="https://evil.example.net")
    assert reply.status == 403 and reply.json["error_code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in reply.headers
    preflight = {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,authorization"}
    ok = collector.request("OPTIONS", "/v1/events/website", headers=preflight)
    assert ok.status == 204
    assert ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert ok.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert set(ok.headers["access-control-allow-headers"].lower().split(", ")) == {"authorization", "content-type"}
    denied = collector.request("OPTIONS", "/v1/events/website", headers={**preflight, "Origin": "https://evil.example"})
    assert denied.status == 403 and "access-control-allow-origin" not in denied.headers
    assert not arrived(collector, {event_id})


def test_404_unknown_source(collector: Collector) -> None:
    reply = collector.post("crm", orjson.dumps(envelope("x")))
    assert reply.status == 404
    assert reply.json == {"error_code": "unknown_source",
                          "detail": "no source 'crm'; use one of website, email, purchase, sales"}


def test_413_announced_length_is_refused_before_the_body_is_read(collector: Collector) -> None:
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/events/website HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {WEBSITE_KEY}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        response = http.client.HTTPResponse(sock)
        response.begin()  # answered although not one byte of the body was sent
        assert response.status == 413
        assert orjson.loads(response.read())["error_code"] == "too_large"


def test_413_chunked_body_is_counted_while_reading(collector: Collector) -> None:
    chunk = b" " * 65_536
    chunks = [b"["] + [chunk] * (MAX_BODY_BYTES // len(chunk)) + [b"{}]"]
    connection = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
    try:
        connection.request("POST", "/v1/events/website", body=iter(chunks), encode_chunked=True,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {WEBSITE_KEY}"})
        response = connection.getresponse()
        assert response.status == 413
        assert "bytes" in orjson.loads(response.read())["detail"]
    finally:
        connection.close()


def test_a_body_cut_short_by_the_client_publishes_nothing(collector: Collector) -> None:
    (event_id,) = ids(1)
    before = collector.request("GET", "/metrics").body.decode()
    partial = orjson.dumps([envelope(event_id)])
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/events/website HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {WEBSITE_KEY}\r\nContent-Length: {len(partial) + 100}\r\n\r\n".encode()
            + partial
        )
    route = "/v1/events/{source}"
    deadline = time.monotonic() + 10
    after = before
    while metric(after, "leadflow_collector_requests_total", route=route, status="400") == metric(
        before, "leadflow_collector_requests_total", route=route, status="400") and time.monotonic() < deadline:
        time.sleep(0.1)
        after = collector.request("GET", "/metrics").body.decode()
    assert metric(after, "leadflow_collector_requests_total", route=route, status="400") == metric(
        before, "leadflow_collector_requests_total", route=route, status="400") + 1
    assert metric(after, "leadflow_collector_requests_total", route=route, status="500") == 0
    assert not arrived(collector, {event_id})


def test_413_more_than_500_events(collector: Collector) -> None:
    batch = [envelope(i) for i in ids(501)]
    reply = collector.post("website", orjson.dumps(batch))
    assert reply.status == 413
    assert reply.json == {"error_code": "too_large", "detail": "$: 501 events in one request; the limit is 500"}


@pytest.mark.parametrize("content_type", ["application/xml", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1", None])
def test_415_wrong_content_type(collector: Collector, content_type: str | None) -> None:
    headers = {"Authorization": f"Bearer {WEBSITE_KEY}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    reply = collector.request("POST", "/v1/events/website", orjson.dumps(envelope("x")), headers)
    assert reply.status == 415
    assert reply.json["error_code"] == "unsupported_media_type"


# -- the other endpoints ---------------------------------------------------------------------


def test_tracker_script_with_etag(collector: Collector) -> None:
    reply = collector.request("GET", "/v1/tracker.js")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/javascript")
    assert b"leadflow.track" in reply.body and b"sendBeacon" in reply.body
    again = collector.request("GET", "/v1/tracker.js", headers={"If-None-Match": reply.headers["etag"]})
    assert again.status == 304 and again.body == b""


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$" if labels else rf"^{name} (\S+)$",
                      text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_health_readiness_and_metrics(collector: Collector) -> None:
    assert collector.request("GET", "/healthz").json == {"alive": True}
    ready = collector.request("GET", "/readyz")
    assert ready.status == 200
    assert ready.json["ready"] is True and ready.json["problems"] == []
    before = collector.request("GET", "/metrics").body.decode()
    good, bad = ids(2)
    batch = [envelope(good), envelope(bad, event_type="email_opened")]
    assert collector.post("website", orjson.dumps(batch)).status == 202
    assert collector.post("website", b"{}", key="pk_wrong_key_000").status == 401
    after = collector.request("GET", "/metrics").body.decode()

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    route = "/v1/events/{source}"
    assert delta("leadflow_collector_requests_total", route=route, status="202") == 1
    assert delta("leadflow_collector_requests_total", route=route, status="401") == 1
    assert delta("leadflow_collector_events_accepted_total", source="website") == 1
    assert delta("leadflow_collector_events_rejected_total", source="website", error_code="wrong_source") == 1
    assert delta("leadflow_collector_publish_seconds_count") == 1
    assert metric(after, "leadflow_collector_broker_up") == 1
    assert metric(after, "leadflow_collector_requests_total", route="/healthz", status="200") >= 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package 'prometheus'"
    lint = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True, text=True)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
