"""The console: a few browser pages for sales and operators, served by aiohttp, no build step.

*Hot leads* (open ``became_hot`` alerts by ``respond_by``, live), *Contact* (a timeline), *Funnel*
(the stored HTML report, filterable) and *Pipeline* (rates, dead letters, lag and latency from the
processes' own ``/metrics``). Live parts are server-sent events. The only thing that changes state
is the documented "answered" action, which records ``lead_contacted`` through the collector's
``sales`` source when that event family exists. Layout: :mod:`.config` (settings and access
rules), :mod:`.access` (authentication and same-origin checks), :mod:`.health` (metrics scraping),
:mod:`.answer` (the action), :mod:`.app` (routes and the live feed), ``static/`` (the pages).
"""

from __future__ import annotations

from pipeline.console.config import ConsoleConfig, ConsoleConfigError

__all__ = ["ConsoleConfig", "ConsoleConfigError"]
