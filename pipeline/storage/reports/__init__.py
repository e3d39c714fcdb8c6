"""Read models of the lifecycle history, apart from any storage backend.

:mod:`.types` holds what the history store's reads return (the contact timeline, stored alerts,
the funnel report); :mod:`.text` and :mod:`.html` render them. Nothing here knows SQL.
"""
