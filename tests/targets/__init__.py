"""Tests of the `targets` package."""
