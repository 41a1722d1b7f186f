"""Monitoring: drift, performance on matured labels, and the tables the sensors read."""
