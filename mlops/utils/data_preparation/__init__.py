"""Cleaning, feature engineering, selection, splitting and encoding of NYC taxi trips."""
