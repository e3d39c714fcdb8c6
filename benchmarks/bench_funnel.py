"""Benchmark: the funnel report over 1M transitions on PostgreSQL.

Generates a synthetic history (default 1,000,000 transitions of ~100,000 contacts, with alerts and
contact snapshots) into a scratch PostgreSQL database through the batched HistoryWriter, then
times ``SqlHistoryStore.funnel`` (by source, by utm_campaign, and with a 90-day window). Prints
the write rate and the funnel times; drops the database afterwards unless ``--keep``.

    python benchmarks/bench_funnel.py [--transitions 1000000] [--server postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.state_machine import builtin_model
from pipeline.state_machine.records import Alert, AlertReason, ContactSnapshot, FirstTouch, Transition
from pipeline.storage import HistoryWriter, SqlHistoryStore, upgrade_database
from pipeline.storage.database import driver_url

STAGES = builtin_model().stages
SOURCES = [("website", "google", "cpc", "spring"), ("website", "facebook", "social", "retarget"),
           ("website", "zalo", "social", None), ("email", None, None, None), ("website", None, None, None),
           ("website", "partner", "referral", "affiliates")]
BANDS = ("cold", "warm", "hot")
START = datetime(2024, 1, 1, tzinfo=UTC)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def history(total: int, seed: int) -> Iterator[tuple[list[Transition], list[Alert], ContactSnapshot]]:
    """Contacts with ~10 transitions each: stage moves up (sometimes skipping, sometimes cooling
    down) interleaved with temperature moves; a became_hot alert for about one contact in three."""
    rng = random.Random(seed)
    made = 0
    n = 0
    while made < total:
        n += 1
        contact = f"c{n:07d}"
        touch = FirstTouch(*rng.choice(SOURCES))
        at = START + timedelta(seconds=rng.randrange(365 * 86400))
        stage, band, out = 0, 0, []
        for _ in range(min(rng.randint(6, 14), total - made)):
            at += timedelta(seconds=rng.randrange(3600, 40 * 86400))
            if rng.random() < 0.45:
                new_band = 1 - band if band < 2 else 1
                kind, frm, to, up = "temperature", BANDS[band], BANDS[new_band], new_band > band
                band = new_band
            else:
                if stage > 0 and rng.random() < 0.25:
                    new = stage - 1
                elif stage + 1 < len(STAGES):
                    new = min(len(STAGES) - 1, stage + (2 if rng.random() < 0.1 else 1))
                else:
                    new = stage - 1
                kind, frm, to, up = "stage", STAGES[stage], STAGES[new], new > stage
                skipped = tuple(STAGES[stage + 1 : new]) if up else ()
                stage = new
            out.append(Transition(
                transition_id=str(uuid.UUID(int=rng.getrandbits(128))), contact_id=contact, kind=kind, from_=frm,
                to=to, direction="advance" if up else "regress", reason="bench",
                skipped=skipped if kind == "stage" else (),
                trigger_event_id=f"{contact}-{len(out)}" if up else None, occurred_at=_iso(at), stage=STAGES[stage],
                temperature=("cold", "warm", "hot")[band], score=round(rng.random() * 60, 3), model="default@1"))
        made += len(out)
        alerts = []
        if rng.random() < 0.33:
            raised = START + timedelta(seconds=rng.randrange(365 * 86400))
            alerts.append(Alert(
                alert_id=str(uuid.UUID(int=rng.getrandbits(128))), type="became_hot", contact_id=contact,
                stage=STAGES[stage], score=55.0, occurred_at=_iso(raised), respond_by=_iso(raised + timedelta(hours=1)),
                reasons=(AlertReason(f"{contact}-x", "demo_request", 30.0),), first_touch=touch, model="default@1"))
        snapshot = ContactSnapshot(
            contact_id=contact, stage=STAGES[stage], temperature=("cold", "warm", "hot")[band], score=10.0,
            stage_entered_at=_iso(at), last_event_at=_iso(at), core_orders=0, referrals_converted=0,
            events_applied=len(out) * 2, first_touch=touch, referred_by=None, model="default@1")
        yield out, alerts, snapshot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an existing database on the server, used to create and drop the scratch one")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    admin = create_engine(driver_url(args.server), isolation_level="AUTOCOMMIT")
    name = f"leadflow_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(driver_url(args.server)).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        started = time.perf_counter()
        contacts = alerts = 0
        with HistoryWriter(url, batch_size=args.batch_size) as writer:
            for transitions, contact_alerts, snapshot in history(args.transitions, args.seed):
                writer.add_transitions(transitions)
                writer.add_alerts(contact_alerts)
                writer.add_contacts((snapshot,))
                contacts += 1
                alerts += len(contact_alerts)
        wrote = time.perf_counter() - started
        total = writer.counts.transitions
        print(f"wrote {total:,} transitions, {alerts:,} alerts, {contacts:,} contacts in {wrote:.1f} s "
              f"({total / wrote:,.0f} transitions/s, {writer.counts.batches} batches of {args.batch_size})")
        bench_engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with bench_engine.connect() as connection:
            connection.execute(text("VACUUM ANALYZE"))
        bench_engine.dispose()
        model = builtin_model()
        with SqlHistoryStore(url) as store:
            for label, kwargs in (
                ("by source", {"by": "source"}),
                ("by utm_campaign", {"by": "utm_campaign"}),
                ("by source, 90-day window",
                 {"since": START + timedelta(days=120), "until": START + timedelta(days=210)}),
            ):
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    report = store.funnel(model, **kwargs)  # type: ignore[arg-type]
                    times.append(time.perf_counter() - t0)
                print(f"funnel {label}: median {statistics.median(times):.3f} s, best {min(times):.3f} s "
                      f"over {args.repeat} runs ({report.total.contacts:,} contacts, {len(report.groups)} groups, "
                      f"reached {[s.reached for s in report.total.stages]})")
    finally:
        if not args.keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"kept {url}")
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
