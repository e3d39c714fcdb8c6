"""Steady-load latency run of ``make bench-stream`` (step (h) of ``bench_stream.py``; issue 12's
"``demo_request`` -> ``became_hot`` p99 at a steady 2,000 events/s over 100,000 contacts, 10
minutes, consumer lag flat").

A ``leadflow worker`` (wall-clock sweeps, the default reorder window, the run's store) gets a
steady, paced load of page views and email events of contacts drawn uniformly from
``--steady-contacts`` ids at ``--steady-rate`` events/s for ``--steady-seconds`` (kafka-python
producer, 10 ms pacing slices, linger 0), and every 100 ms a ``demo_request`` of a fresh
identified contact. A listener on ``lead.alerts`` notes when each probe's ``became_hot`` arrives:
latency = received - the moment just before the probe was handed to the producer (as step (d)).

Every ``--steady-every`` seconds (10) it prints and keeps one interval: the input rate the
producer achieved, the p50 / p99 / max latency of the alerts *received* in the interval, the
probes still waiting and the oldest one's age, the worker's ``leadflow_consumer_lag`` on the
internal contact-events topic and on the source topics (on Tansu the end offsets behind it are
short after multi-record batches, so it can under-state), and the counted input backlog
(published - consumed by ingest, from ``/stats``; exact), plus the CPU (cores) of the worker, the
broker and this process (the load: producer and listener), all on the same machine.

At the end: the plot (``--plot PATH``, default ``out/bench-steady-<time>.html``; a CSV beside it)
and one summary line per figure the issue asks for: p99 over the whole run and over its second
half (by the probe's send time; a probe never alerted within ``--drain`` counts as infinite),
lag at the start and end with the slope of a least-squares fit (flat when its fitted change over
the run is within the larger of the lag's median, 0.1 s of input and 50 messages; else growing or
shrinking), and the
achieved input rate, with a warning when the producer itself could not sustain the target.

The plot is a self-contained HTML page with an inline SVG drawn by ``loadgen.svg_panels`` (the
soak benchmark's plot): three line panels need no plotting library, and matplotlib (with numpy,
pillow, fonttools) is not worth a dev dependency for them.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import bench_stream as bs
from loadgen import (
    AlertListener,
    Publisher,
    RoundTripProbe,
    cpu_seconds,
    lag_by_topic,
    percentile,
    scrape,
    svg_panels,
)

from pipeline.config.settings import Settings
from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import wait_ready, worker_process
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import free_port

PROBE_INTERVAL = 0.1  # seconds between demo_request probes
GOAL_P99_MS = 100.0
FLAT_SECONDS = 0.1  # lag counts as flat when its fitted change over the run is under this much input (or its median)


@dataclass
class Interval:
    seconds: float  # end of the interval, since the load started
    input_rate: float  # background events/s handed to the producer over the interval
    alerts: int  # probe alerts received in the interval
    p50_ms: float  # of those (nan when none)
    p99_ms: float
    max_ms: float
    pending: int  # probes sent and not alerted at the end of the interval
    oldest_pending_ms: float
    lag_contact_events: float  # leadflow_consumer_lag, internal topic
    lag_sources: float  # leadflow_consumer_lag, input topics
    backlog: int  # published - consumed by ingest (counted)
    worker_cpu: float  # cores
    broker_cpu: float
    load_cpu: float  # this process: the producer and the alerts listener
    broker_rtt_p50_ms: float  # the broker's produce round trip (RoundTripProbe) over the interval
    broker_rtt_p99_ms: float


@dataclass
class Steady:
    rate: float
    contacts: int
    seconds: float
    intervals: list[Interval]
    probes: dict[str, float]  # contact -> sent (perf_counter)
    received: dict[str, float]
    started: float  # perf_counter when the load started
    load_seconds: float
    published: int
    behind: int  # most events the producer was behind its schedule
    plot: Path
    rtt: list[float]  # the broker's produce round trips over the run (ms)
    label: str = ""  # the broker it ran on

    def latencies(self, since: float = 0.0) -> list[float]:
        """ms per probe sent at least ``since`` s into the load (inf = never alerted)."""
        return [(self.received[c] - t) * 1000 if c in self.received else math.inf
                for c, t in self.probes.items() if t - self.started >= since]

    @property
    def achieved(self) -> float:
        return self.published / self.load_seconds if self.load_seconds else 0.0


def run(base: Settings, rate: float, contacts: int, seconds: float, every: float, drain: float, plot: Path,
        workdir: Path, broker_pid: int | None, label: str = "") -> Steady:
    tag = "steady"
    settings = base.with_(sweep_clock="wall", app_id=f"{base.app_id}-{tag}", web_port=free_port(),
                          topic_prefix=f"{base.topic_prefix}{tag}.", data_dir=str(workdir / f"data-{tag}"))
    ensure_topics(settings)
    names = TopicNames.of(settings)
    probe_prefix = f"probe-{tag}"
    sources = set(names.inputs.values())
    with worker_process(settings, workdir / f"{tag}-worker.log") as process:
        wait_ready(settings.web_port, process)
        listener = AlertListener(settings.bootstrap, names.alerts, bs.PARTITIONS,
                                 wanted=lambda contact: contact.startswith(probe_prefix))
        listener.start_positioned()
        rtt = RoundTripProbe(settings.bootstrap, f"{settings.topic_prefix}bench.rtt")
        rtt.start()
        intervals: list[Interval] = []
        started = time.perf_counter()
        publisher: Publisher | None = None
        try:
            publisher = Publisher(settings.bootstrap, names.inputs, contacts, rate, intent_share=0.0,
                                  slice_seconds=0.01, probe_interval=PROBE_INTERVAL, probe_prefix=probe_prefix,
                                  linger_ms=0, batch_bytes=settings.broker.producer_batch_bytes, prefix="s", seed=12)
            publisher.start()
            while publisher.started_at is None and publisher.is_alive():
                time.sleep(0.001)
            started = publisher.started_at or started
            seen: set[str] = set()
            last = {"at": started, "published": 0, "worker": cpu_seconds(process.pid),
                    "broker": cpu_seconds(broker_pid), "own": time.process_time()}
            tick = 1
            while tick * every <= seconds + 1e-9:
                pause = started + tick * every - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                if process.poll() is not None:
                    raise RuntimeError(f"the worker exited with code {process.returncode}; see its log in {workdir}")
                if publisher.error is not None:
                    raise RuntimeError(f"the publisher failed: {publisher.error!r}")
                interval = _sample(settings, publisher, listener, rtt, seen, last, started, sources, process.pid,
                                   broker_pid)
                intervals.append(interval)
                print(_line(interval), flush=True)
                tick += 1
            _stop(publisher)
            until = time.perf_counter() + drain
            while time.perf_counter() < until and not set(publisher.probes) <= set(listener.received):
                time.sleep(0.05)
        except BaseException:
            if publisher is not None and intervals:  # keep what was sampled (Ctrl-C, a failure)
                _stop(publisher)
                write_plot(_result(rate, contacts, seconds, intervals, publisher, listener, rtt, started, plot))
                print(f"(h) stopped early; the intervals so far are in {plot}", flush=True)
            raise
        finally:
            if publisher is not None:
                _stop(publisher)
            listener.stop()
            rtt.stop()
    assert publisher is not None
    result = _result(rate, contacts, seconds, intervals, publisher, listener, rtt, started, plot)
    result.label = label
    write_plot(result)
    return result


def _stop(publisher: Publisher) -> None:
    publisher.stopping.set()
    if publisher.is_alive():
        publisher.join(30)


def _result(rate: float, contacts: int, seconds: float, intervals: list[Interval], publisher: Publisher,
            listener: AlertListener, rtt: RoundTripProbe, started: float, plot: Path) -> Steady:
    end = publisher.stopped_at or time.perf_counter()
    return Steady(rate, contacts, seconds, intervals, dict(publisher.probes), dict(listener.received), started,
                  end - started, publisher.published, publisher.behind, plot, rtt.between(started, end))


def _sample(settings: Settings, publisher: Publisher, listener: AlertListener, rtt: RoundTripProbe,
            seen: set[str], last: dict[str, float], started: float, sources: set[str], worker_pid: int,
            broker_pid: int | None) -> Interval:
    now = time.perf_counter()
    published = publisher.published
    worker, broker, own = cpu_seconds(worker_pid), cpu_seconds(broker_pid), time.process_time()
    span = max(now - last["at"], 1e-9)
    fresh = [(c, t) for c, t in list(listener.received.items()) if c not in seen]
    seen.update(c for c, _ in fresh)
    probes = dict(publisher.probes)
    values = [(t - probes[c]) * 1000 for c, t in fresh if c in probes]
    waiting = [now - t for c, t in probes.items() if c not in listener.received]
    try:
        lags = lag_by_topic(scrape(settings.web_port))
    except OSError:
        lags = {}
    _, report = bs._get(settings.web_port, "/stats")
    consumed = bs._progress(report)[0] if report else 0
    contact_events = TopicNames.of(settings).contact_events
    interval = Interval(
        seconds=round(now - started, 1),
        input_rate=(published - last["published"]) / span,
        alerts=len(values),
        p50_ms=percentile(values, 0.5), p99_ms=percentile(values, 0.99), max_ms=max(values, default=math.nan),
        pending=len(waiting), oldest_pending_ms=max(waiting, default=0.0) * 1000,
        lag_contact_events=lags.get(contact_events, 0.0),
        lag_sources=sum(v for topic, v in lags.items() if topic in sources),
        # read after /stats: never below the true backlog at that moment (at most a few ms of input above)
        backlog=publisher.published + len(publisher.probes) - consumed if report else -1,
        worker_cpu=(worker - last["worker"]) / span, broker_cpu=(broker - last["broker"]) / span,
        load_cpu=(own - last["own"]) / span,
        broker_rtt_p50_ms=percentile(round_trips := rtt.between(last["at"], now), 0.5),
        broker_rtt_p99_ms=percentile(round_trips, 0.99),
    )
    last.update(at=now, published=published, worker=worker, broker=broker, own=own)
    return interval


def _line(i: Interval) -> str:
    return (f"(h) {i.seconds:6.0f} s  input {i.input_rate:6,.0f}/s  alerts {i.alerts:3d}  p50 {i.p50_ms:6.0f}  "
            f"p99 {i.p99_ms:6.0f}  max {i.max_ms:6.0f} ms  pending {i.pending:3d} (oldest {i.oldest_pending_ms:6.0f} "
            f"ms)  lag contact-events {i.lag_contact_events:7,.0f} sources {i.lag_sources:7,.0f}  backlog "
            f"{i.backlog:7,d}  cpu worker {i.worker_cpu:.2f} broker {i.broker_cpu:.2f} load {i.load_cpu:.2f}  broker "
            f"produce rtt p50 {i.broker_rtt_p50_ms:4.0f} p99 {i.broker_rtt_p99_ms:5.0f} ms")


#: An interval is part of a delivery wave when an alert it received, or a probe still waiting at
#: its end, is at least this old: the probes are sent every 100 ms, so a healthy worker alerts
#: each within a few tens of milliseconds.
WAVE_MS = 1000.0


def waves(result: Steady) -> tuple[int, int]:
    """(intervals in a delivery wave, intervals): how often probes waited a second or more."""
    hit = sum(1 for i in result.intervals
              if (math.isfinite(i.max_ms) and i.max_ms >= WAVE_MS) or i.oldest_pending_ms >= WAVE_MS)
    return hit, len(result.intervals)


def slope_per_minute(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (seconds), per minute."""
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def summary(result: Steady) -> list[str]:
    """One line per figure of issue 12: p99 (whole run, last half), lag start/end and slope, rate."""
    everything, last_half = result.latencies(), result.latencies(since=result.load_seconds / 2)

    def ms(value: float) -> str:
        return "no probe" if math.isnan(value) else "inf (not alerted)" if math.isinf(value) else f"{value:,.0f} ms"

    def alerted(values: list[float]) -> str:
        return f"{sum(math.isfinite(v) for v in values)}/{len(values)} probes alerted"

    on = f" on {result.label}" if result.label else ""
    rows = [f"(h) steady load{on}: {result.rate:,.0f} events/s target over {result.contacts:,} contacts for "
            f"{result.seconds:g} s, a demo_request probe every {PROBE_INTERVAL * 1000:.0f} ms (goal p99 <= "
            f"{GOAL_P99_MS:.0f} ms, consumer lag flat)"]
    for name, values in (("whole run", everything), ("last half", last_half)):
        p99 = percentile(values, 0.99)
        verdict = "met" if values and p99 <= GOAL_P99_MS else "NOT met"
        rows.append(f"    p99 {name:<9}: {ms(p99)} (p50 {ms(percentile(values, 0.5))}; {alerted(values)})  {verdict}")
    if result.intervals:
        xs = [i.seconds for i in result.intervals]
        first, end = result.intervals[0], result.intervals[-1]
        for label, key in (("lag contact-events", "lag_contact_events"), ("lag sources", "lag_sources"),
                           ("counted input backlog", "backlog")):
            ys = [float(getattr(i, key)) for i in result.intervals]
            slope = slope_per_minute(xs, ys)
            rise = slope * (xs[-1] - xs[0]) / 60
            # flat: the fitted change over the run is within the lag's typical level (its median: a
            # batch or two in flight) or a tenth of a second of input, whichever is larger (min 50)
            limit = max(result.rate * FLAT_SECONDS, statistics.median(ys), 50.0)
            verdict = "flat" if abs(rise) < limit else "GROWING" if rise > 0 else "shrinking"
            rows.append(f"    {label:<21}: {getattr(first, key):,.0f} at {first.seconds:.0f} s -> "
                        f"{getattr(end, key):,.0f} at {end.seconds:.0f} s; least-squares slope {slope:+,.1f} "
                        f"messages/min, {rise:+,.0f} over the run ({verdict}; flat means within ±{limit:,.0f})")
    rtt_p50, rtt_p99 = percentile(result.rtt, 0.5), percentile(result.rtt, 0.99)
    rows.append(f"    broker produce rtt   : p50 {ms(rtt_p50)}, p99 {ms(rtt_p99)} "
                f"({len(result.rtt):,} records, one every 50 ms, acks=all): an alert needs three produce round "
                f"trips and three fetches after its event")
    share = result.achieved / result.rate if result.rate else 1.0
    rows.append(f"    achieved input rate  : {result.achieved:,.0f} events/s ({share:.1%} of the target; "
                f"{result.published:,} events + {len(result.probes):,} probes in {result.load_seconds:.1f} s; the "
                f"producer was at most {result.behind:,} events behind its schedule)")
    if share < 0.97:
        rows.append(f"    WARNING: the producer itself could not sustain {result.rate:,.0f} events/s on this "
                    f"machine; the figures above are for {result.achieved:,.0f} events/s")
    hit, of = waves(result)
    rows.append(f"    delivery waves       : {hit} of {of} intervals had a probe {WAVE_MS:,.0f} ms or more old "
                f"(alerted or still waiting)")
    rows.append(f"    plot: {result.plot}")
    return rows


def write_plot(result: Steady) -> None:
    """The plot as a self-contained HTML page (inline SVG) and the intervals as CSV beside it."""
    from loadgen import html_page

    intervals = result.intervals
    xs = [i.seconds for i in intervals]
    svg = svg_panels(xs, [
        ("demo_request -> became_hot, alerts received per interval (ms)",
         [("max", [i.max_ms for i in intervals], "#bbbbbb"), ("p99", [i.p99_ms for i in intervals], "#ff7f0e"),
          ("p50", [i.p50_ms for i in intervals], "#2ca02c"),
          ("broker produce rtt p99", [i.broker_rtt_p99_ms for i in intervals], "#17becf")]),
        ("worker consumer lag (messages)",
         [("contact-events", [i.lag_contact_events for i in intervals], "#d62728"),
          ("sources", [i.lag_sources for i in intervals], "#9467bd"),
          ("counted backlog", [float(i.backlog) for i in intervals], "#8c564b")]),
        ("achieved input rate (events/s)", [("input", [i.input_rate for i in intervals], "#1f77b4")]),
    ], x_label="s", x_scale=1.0)
    result.plot.parent.mkdir(parents=True, exist_ok=True)
    title = (f"bench-stream steady load{' on ' + result.label if result.label else ''}: "
             f"{result.rate:,.0f} events/s, {result.contacts:,} contacts, "
             f"{result.seconds:g} s ({time.strftime('%Y-%m-%d %H:%M')})")
    result.plot.write_text(html_page(title, svg, summary(result)))
    with open(result.plot.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(Interval.__dataclass_fields__))
        writer.writerows([list(asdict(i).values()) for i in intervals])
