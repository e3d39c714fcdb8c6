"""The pure lifecycle core: a declarative model and the engine that applies it.

Nothing in this package reads the clock, generates random ids or does I/O beyond loading a model
file: the same events and model always give the same transitions, alerts and ids.

    model = builtin_model()                       # or load_model("my-model.toml")
    decision = decide(None, event, model)         # a new contact's first event
    decision = expire(decision.state, now, model) # cooling that is due by `now`
"""

from __future__ import annotations

from pipeline.state_machine.engine import Deadline, Decision, decide, expire, next_deadline, snapshot
from pipeline.state_machine.errors import LifecycleError, ModelError
from pipeline.state_machine.events import EVENT_TYPES, KNOWN_EVENT_TYPES, REFERRAL_CONVERTED, SOURCES, Event
from pipeline.state_machine.loader import BUILTIN_MODELS, builtin_model, load_model, parse_model, resolve_model
from pipeline.state_machine.model import Model
from pipeline.state_machine.records import Alert, AlertReason, ContactSnapshot, FirstTouch, Transition
from pipeline.state_machine.state import ContactState, decode_state, encode_state

__all__ = [
    "BUILTIN_MODELS",
    "EVENT_TYPES",
    "KNOWN_EVENT_TYPES",
    "REFERRAL_CONVERTED",
    "SOURCES",
    "Alert",
    "AlertReason",
    "ContactSnapshot",
    "ContactState",
    "Deadline",
    "Decision",
    "Event",
    "FirstTouch",
    "LifecycleError",
    "Model",
    "ModelError",
    "Transition",
    "builtin_model",
    "decide",
    "decode_state",
    "encode_state",
    "expire",
    "load_model",
    "next_deadline",
    "parse_model",
    "resolve_model",
    "snapshot",
]
