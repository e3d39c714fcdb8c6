"""Leadflow: a real-time lead lifecycle pipeline.

The pure lifecycle engine lives in :mod:`pipeline.state_machine`; the wire contracts in
:mod:`pipeline.contracts`; everything that talks to the outside world (Kafka, databases, files)
sits around them and imports inward only.
"""

__version__ = "0.1.0"
