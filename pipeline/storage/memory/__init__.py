"""The in-memory adapter of the history store: the same port and semantics as SQL, no database.

``memory://`` is a private store (gone when closed); ``memory://NAME`` a store shared by name
within this process, created by ``upgrade_database`` (``leadflow db upgrade``) like a database.
For the tests, the offline replay and demos; nothing survives the process.
"""
