"""Configuration every process shares: settings from the environment, broker profiles and the
names of every topic."""
