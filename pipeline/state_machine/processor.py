"""Many contacts at once: contact states, a deadline index and the event-time clock.

:class:`LifecycleProcessor` is the engine's runtime-independent driver, shared by the offline
replay, the streaming worker (per partition) and the tests. It keeps an index of every contact's
next deadline, so firing the cooling that is due costs in proportion to the contacts that are due,
never a scan of all contacts. Before an event at time t is applied, every deadline <= t fires,
in deadline order (ties by contact), so results do not depend on when a sweep runs.

Identities (:mod:`.identity`): an event that links an anonymous id to its contact first merges the
anonymous contact's history into the contact; the sealed anonymous state (``merged_into``) stays in
``states`` under its own key as the id's alias, and later events carrying only that anonymous id
are applied to the contact it was merged into.

A partitioned runtime (``owns`` given, ``merge_identities=True``) resolves a link in three steps,
each on the partition that owns the state it changes:

1. the contact's partition gets the link event (events are keyed by contact). If the anonymous
   key is one of the contact's ``aliases``, it is applied at once. Otherwise the contact starts
   *awaiting* that key: the event is held in its state and sent to be claimed
   (``Outcome.to_claim``), and every later event of the contact is held behind it (durably: the
   held events are part of the state the changelog stores), with its cooling paused;
2. the partition owning ``anon:X`` claims it (:func:`~.identity.claim_anonymous`: seal and export,
   or say it is linked already, unknown, or another contact's) and hands a :class:`ClaimedLink`
   back (``Outcome.claimed``);
3. the contact's partition merges and applies the link event, then the held events in arrival
   order (:meth:`LifecycleProcessor.apply_claimed`).

So a contact's events are applied in the order they reached its partition, whatever the merge's
round trip costs, and each step is idempotent under redelivery.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field

import msgspec

from pipeline.state_machine.engine import Decision, decide, expire
from pipeline.state_machine.events import REFERRAL_CONVERTED, Event
from pipeline.state_machine.identity import CONFLICT, LINKED, claim_anonymous, decide_linked
from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, Transition
from pipeline.state_machine.state import ContactState, new_contact


class DeadlineIndex:
    """Each contact's next deadline, in a heap with lazy deletion (stale entries are skipped)."""

    def __init__(self) -> None:
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def get(self, contact: str) -> int | None:
        return self._due.get(contact)

    def set(self, contact: str, at: int | None) -> None:
        """Record ``contact``'s next deadline (``None``: nothing pending)."""
        if at is None:
            self._due.pop(contact, None)
            return
        if self._due.get(contact) == at:
            return
        self._due[contact] = at
        heapq.heappush(self._heap, (at, contact))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(due, c) for c, due in self._due.items()]
            heapq.heapify(self._heap)

    def earliest(self) -> int | None:
        """The earliest pending deadline, or None."""
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: int) -> Iterator[tuple[int, str]]:
        """Yield ``(deadline, contact)`` for every deadline <= now, earliest first, removing each."""
        heap = self._heap
        while heap:
            at, contact = heap[0]
            if self._due.get(contact) != at:
                heapq.heappop(heap)
                continue
            if at > now:
                return
            heapq.heappop(heap)
            del self._due[contact]
            yield at, contact


@dataclass(slots=True)
class Outcome:
    """Outputs of one step of the processor, in the order they happened."""

    transitions: list[Transition] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    duplicate: bool = False
    referrals_applied: int = 0
    routed: list[Event] = field(default_factory=list)  # credit for contacts another processor owns
    #: The event carried only an anonymous id already merged into a contact: applied to that contact.
    forwarded: bool = False
    #: The event linked an anonymous id: identity.MERGE, LINK, LINKED or CONFLICT (then ``owner`` is
    #: the contact the id stays with), or UNRESOLVED (identities are resolved by another runtime).
    link: str | None = None
    owner: str | None = None
    #: Claimed links whose contact another processor owns: deliver each to it (apply_claimed).
    claimed: list[ClaimedLink] = field(default_factory=list)
    #: The event itself went to another processor (routed or claimed): it was not applied here.
    handed_off: bool = False
    #: Link events to claim on the processor owning their anonymous contact (Event.links).
    to_claim: list[Event] = field(default_factory=list)
    #: The event was held: its contact awaits the claim of a link (applied when it comes back).
    held: bool = False
    #: Input events this step applied, and skipped as duplicates: the event itself, plus any held
    #: events a resolved claim released (referral credit is not counted here).
    applied: int = 0
    duplicates: int = 0
    #: Speed to lead: what each applied ``lead_contacted`` meant (engine.CONTACT_OUTCOMES), in order.
    contact_outcomes: list[str] = field(default_factory=list)


class ClaimedLink(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A link event claimed on the anonymous side, for the side that owns its contact: what
    :func:`~.identity.claim_anonymous` said (``outcome``, ``owner``) and the exported history."""

    event: Event
    outcome: str
    owner: str
    exported: ContactState | None = None


#: ``Outcome.link`` when this processor does not resolve identities (see ``merge_identities``).
UNRESOLVED = "unresolved"
#: ``Outcome.link`` when the link event was handed to the processor owning its anonymous contact.
ROUTED = "routed"


class LifecycleProcessor:
    """Applies events and time to a set of contacts with one model.

    ``states`` may be any mutable mapping (a dict, or a table of a streaming worker). ``owns``
    says whether a contact belongs to this processor; referral credit for a contact it does not
    own is returned in ``Outcome.routed`` for the caller to deliver (a streaming partition).

    ``fire_on_event``: before applying an event at t, fire every contact's deadlines <= t (the
    offline replay, whose input is one time-ordered history). When false, an event fires only its
    own contact's deadlines and everything else waits for :meth:`advance_to` (a streaming sweep):
    a contact's result then depends only on its own events and the sweeps, never on how other
    contacts' events were interleaved with it.

    ``merge_identities`` (default: only when ``owns`` is None, i.e. one processor holds every
    contact): resolve links here. A partitioned runtime must route a link across partitions
    (claim on the anonymous side, merge on the known side, see :mod:`.identity`); until it does,
    a link event is applied to its contact as a normal event and reported as ``UNRESOLVED``.
    """

    def __init__(
        self,
        model: Model,
        states: MutableMapping[str, ContactState] | None = None,
        deadlines: DeadlineIndex | None = None,
        owns: Callable[[str], bool] | None = None,
        fire_on_event: bool = True,
        merge_identities: bool | None = None,
    ) -> None:
        self.model = model
        self.merge_identities = owns is None if merge_identities is None else merge_identities
        self.owns = owns
        self.fire_on_event = fire_on_event
        self.states: MutableMapping[str, ContactState] = {} if states is None else states
        self.deadlines = DeadlineIndex() if deadlines is None else deadlines
        self.clock: int | None = None  # the latest event time or advance_to time seen

    def track(self, state: ContactState) -> None:
        """(Re)index a contact's next deadline, e.g. after loading states from storage (none while
        it awaits a claimed link: its cooling resumes when the claim is back)."""
        self.deadlines.set(state.contact, None if state.awaiting is not None else state.due)

    def advance_to(self, now: int, outcome: Outcome | None = None) -> Outcome:
        """Fire every deadline <= ``now`` across all contacts, earliest first."""
        outcome = Outcome() if outcome is None else outcome
        if self.clock is None or now > self.clock:
            self.clock = now
        states, model, deadlines = self.states, self.model, self.deadlines
        for _, contact in deadlines.pop_due(now):
            state = states.get(contact)
            if state is None or state.awaiting is not None:
                continue
            expired = expire(state, now, model)
            state = states[contact] = expired.state
            if expired.transitions:
                outcome.transitions.extend(expired.transitions)
            if expired.alerts:
                outcome.alerts.extend(expired.alerts)
            if state.due is not None:  # track(): a popped contact has no deadline left to clear
                deadlines.set(contact, state.due)
        return outcome

    def apply(self, event: Event) -> Outcome:
        """Fire what is due by the event's time, then apply the event and any referral credit."""
        outcome = Outcome()
        at = event.occurred_at
        if self.fire_on_event and (self.clock is None or at > self.clock):  # _fire_before, inline
            earliest = self.deadlines.earliest()
            if earliest is not None and earliest <= at:
                self.advance_to(at, outcome)
            self.clock = at
        if event.identified and not event.anonymous_id:  # the common case: no identity to resolve
            state = self.states.get(event.contact)
            if state is None or state.awaiting is None:
                decision = decide(state, event, self.model)
                if decision.duplicate or decision.referrals or event.event_type == REFERRAL_CONVERTED:
                    return self._follow(decision, outcome, event)
                outcome.applied = 1
                self._record(decision, outcome)
                return outcome
        return self._follow(self._decide(event, outcome), outcome, event)

    def apply_claimed(self, link: ClaimedLink) -> Outcome:
        """The known side of a link the anonymous side claimed (another processor): merge the
        exported history (MERGE, LINK) and apply the link event, or apply it as a normal event
        (LINKED, CONFLICT); then apply, in order, the contact's events held while the claim was
        in flight. Redelivery is a no-op: the contact remembers the link event."""
        outcome = Outcome(link=link.outcome, owner=link.owner)
        event = link.event
        self._fire_before(event.occurred_at, outcome)
        known = self.states.get(event.contact)
        rest: tuple[Event, ...] = ()
        if known is not None and known.awaiting is not None:
            held = known.held
            if known.awaiting != event.links or not held or held[0].event_id != event.event_id:
                outcome.duplicate = True  # a redelivered claim of a link resolved before
                outcome.duplicates += 1
                return outcome
            known, rest = msgspec.structs.replace(known, awaiting=None, held=()), held[1:]
            self.states[event.contact] = known
        if link.outcome == CONFLICT or link.outcome == LINKED:
            decision = decide(known, event, self.model)
        else:
            decision = decide_linked(known, link.exported, event, self.model)
        self._follow(decision, outcome, event)
        for later in rest:  # released in arrival order; a later link may start a new claim
            _absorb(outcome, self.apply(later))
        state = self.states.get(event.contact)
        if state is not None:
            self.track(state)
        return outcome

    def _fire_before(self, at: int, outcome: Outcome) -> None:
        if self.fire_on_event and (self.clock is None or at > self.clock):
            earliest = self.deadlines.earliest()
            if earliest is not None and earliest <= at:
                self.advance_to(at, outcome)
            self.clock = at

    def _follow(self, decision: Decision | None, outcome: Outcome, event: Event) -> Outcome:
        """Record a decision, then the referral credit it caused (routed when owned elsewhere)."""
        if decision is None:
            return outcome
        if decision.duplicate:
            outcome.duplicate = True
            outcome.duplicates += 1
            return outcome
        if event.event_type != REFERRAL_CONVERTED:
            outcome.applied += 1
        self._record(decision, outcome)
        pending = decision.referrals
        while pending:  # referral credit: applied to the referrer at the same time
            credit = pending.pop(0)
            if self.owns is not None and not self.owns(credit.contact):
                outcome.routed.append(credit)
                continue
            decision = decide(self.states.get(credit.contact), credit, self.model)
            if not decision.duplicate:
                outcome.referrals_applied += 1
                self._record(decision, outcome)
                pending.extend(decision.referrals)
        return outcome

    def _decide(self, event: Event, outcome: Outcome) -> Decision | None:
        """Apply ``event`` where it belongs, merging a linked anonymous history first (None: the
        event was routed to another processor)."""
        states, model, owns = self.states, self.model, self.owns
        if not event.identified:
            alias = states.get(event.contact)
            if alias is None or alias.merged_into is None:
                return self._decide_for(alias, event, outcome)
            event = msgspec.structs.replace(event, contact=alias.merged_into)
            outcome.forwarded = True
            if owns is not None and not owns(event.contact):
                outcome.routed.append(event)
                outcome.handed_off = True
                return None
            return self._decide_for(states.get(event.contact), event, outcome)
        anon_key = event.links
        if anon_key is None or anon_key == event.contact:
            return self._decide_for(states.get(event.contact), event, outcome)
        if not self.merge_identities:
            outcome.link = UNRESOLVED
            return decide(states.get(event.contact), event, model)
        if owns is None or owns(event.contact):
            known = states.get(event.contact)
            if known is not None and known.awaiting is not None:
                return self._hold(known, event, outcome)
            if owns is not None and not owns(anon_key):
                if known is not None and anon_key in known.aliases:
                    outcome.link = LINKED  # linked here before: no claim needed
                    return decide(known, event, model)
                # Claim on the anonymous side; hold this contact's events until the claim is back.
                waiting = known if known is not None else new_contact(event.contact, True, event.occurred_at)
                states[event.contact] = msgspec.structs.replace(waiting, awaiting=anon_key, held=(event,))
                self.deadlines.set(event.contact, None)
                outcome.to_claim.append(event)
                outcome.link, outcome.held = ROUTED, True
                return None
        elif not owns(anon_key):  # neither side is ours: to the contact's owner
            outcome.routed.append(event)
            outcome.handed_off = True
            return None
        claim = claim_anonymous(states.get(anon_key), event, model)
        outcome.link, outcome.owner = claim.outcome, claim.owner
        if claim.transitions:
            outcome.transitions.extend(claim.transitions)
        if claim.state is not states.get(anon_key):
            states[anon_key] = claim.state
            self.deadlines.set(anon_key, claim.state.due)
        if self.owns is not None and not self.owns(event.contact):
            outcome.claimed.append(ClaimedLink(event, claim.outcome, claim.owner, claim.exported))
            outcome.handed_off = True
            return None
        known = states.get(event.contact)
        if claim.outcome == CONFLICT or claim.outcome == LINKED:
            return decide(known, event, model)
        return decide_linked(known, claim.exported, event, model)

    def _decide_for(self, state: ContactState | None, event: Event, outcome: Outcome) -> Decision | None:
        """``decide``, unless the contact awaits a claim: then the event is held (None)."""
        if state is not None and state.awaiting is not None:
            return self._hold(state, event, outcome)
        return decide(state, event, self.model)

    def _hold(self, state: ContactState, event: Event, outcome: Outcome) -> Decision | None:
        """Keep ``event`` in its contact's state until the awaited claim is back (a redelivered
        held event is a duplicate)."""
        if any(held.event_id == event.event_id for held in state.held):
            outcome.duplicate = True
            outcome.duplicates += 1
            return None
        self.states[state.contact] = msgspec.structs.replace(state, held=(*state.held, event))
        outcome.held = True
        return None

    def _record(self, decision: Decision, outcome: Outcome) -> None:
        state = decision.state
        contact = state.contact
        self.states[contact] = state
        deadlines = self.deadlines
        if deadlines.get(contact) != state.due:
            deadlines.set(contact, state.due)
        if decision.transitions:
            outcome.transitions.extend(decision.transitions)
        if decision.alerts:
            outcome.alerts.extend(decision.alerts)
        if decision.contact_outcome is not None:
            outcome.contact_outcomes.append(decision.contact_outcome)


def _absorb(total: Outcome, step: Outcome) -> None:
    """Add a later step's outputs and counts to ``total`` (events released by a resolved claim)."""
    total.transitions.extend(step.transitions)
    total.alerts.extend(step.alerts)
    total.referrals_applied += step.referrals_applied
    total.routed.extend(step.routed)
    total.claimed.extend(step.claimed)
    total.to_claim.extend(step.to_claim)
    total.contact_outcomes.extend(step.contact_outcomes)
    total.applied += step.applied
    total.duplicates += step.duplicates
