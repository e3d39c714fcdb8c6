"""The pure lifecycle core: a declarative model and the engine that applies it.

Nothing in this package reads the clock, generates random ids or does I/O beyond loading a model
file: the same events and model always give the same transitions, alerts and ids.

    model = builtin_model()                       # or load_model("my-model.toml")
    decision = decide(None, event, model)         # a new contact's first event
    decision = expire(decision.state, now, model) # cooling that is due by `now`

    # identity (an event with contact_id C and anonymous_id X), see pipeline.state_machine.identity:
    claim = claim_anonymous(anonymous_state, event, model)     # on anon:X: seal it, export its history
    decision = decide_linked(known_state, claim.exported, event, model)  # on C: merge, then apply
"""

from __future__ import annotations

from pipeline.state_machine.engine import Deadline, Decision, decide, expire, next_deadline, snapshot
from pipeline.state_machine.errors import LifecycleError, ModelError, SealedContactError
from pipeline.state_machine.events import (
    ANONYMOUS_PREFIX,
    EVENT_TYPES,
    KNOWN_EVENT_TYPES,
    REFERRAL_CONVERTED,
    SOURCES,
    Event,
)
from pipeline.state_machine.identity import (
    CONFLICT,
    LINK,
    LINKED,
    MERGE,
    Claim,
    IdentityError,
    claim_anonymous,
    decide_linked,
    merge_identity,
    owner_of,
)
from pipeline.state_machine.loader import BUILTIN_MODELS, builtin_model, load_model, parse_model, resolve_model
from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, AlertReason, ContactSnapshot, FirstTouch, Transition
from pipeline.state_machine.state import ContactState, decode_state, encode_state

__all__ = [
    "ANONYMOUS_PREFIX",
    "BUILTIN_MODELS",
    "CONFLICT",
    "EVENT_TYPES",
    "KNOWN_EVENT_TYPES",
    "LINK",
    "LINKED",
    "MERGE",
    "REFERRAL_CONVERTED",
    "SOURCES",
    "Alert",
    "AlertReason",
    "Claim",
    "ContactSnapshot",
    "ContactState",
    "Deadline",
    "Decision",
    "Event",
    "FirstTouch",
    "IdentityError",
    "LifecycleError",
    "Model",
    "ModelError",
    "SealedContactError",
    "Transition",
    "builtin_model",
    "claim_anonymous",
    "decide",
    "decide_linked",
    "decode_state",
    "encode_state",
    "expire",
    "load_model",
    "merge_identity",
    "next_deadline",
    "owner_of",
    "parse_model",
    "resolve_model",
    "snapshot",
]
