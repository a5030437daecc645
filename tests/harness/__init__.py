"""Offline test harness for the nanoclaw.provision collection.

Standard library only: it runs before the project virtualenv exists.
"""
