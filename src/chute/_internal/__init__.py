"""Plumbing, not API: process-safe locks, clean-up of what dead processes left, signals, optional imports."""
