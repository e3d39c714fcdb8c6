"""Errors of the webhook deliverer: one base class, precise subclasses with messages to act on."""

from __future__ import annotations


class WebhookError(Exception):
    """Base class of every error raised by ``pipeline.webhooks``."""


class ConfigError(WebhookError):
    """The subscriptions file cannot be used. ``problems`` lists every ``file: field: what to fix``."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(f"{path}: {count} problem{'s' if count != 1 else ''} in the webhook subscriptions:\n{lines}")


class SignatureError(WebhookError, ValueError):
    """A ``Leadflow-Signature`` header does not prove that Leadflow sent this exact body."""


class MalformedSignature(SignatureError):
    """The header is missing, or has no ``t=`` timestamp or no ``v1=`` signature."""


class StaleTimestamp(SignatureError):
    """The signed timestamp is further from now than the tolerance (a replayed or delayed request)."""


class SignatureMismatch(SignatureError):
    """No ``v1`` signature matches the body and timestamp under the secret (tampered or wrong secret)."""
