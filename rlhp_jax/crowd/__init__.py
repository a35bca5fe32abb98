"""Crowd labels: clip storage (local / S3), the Toloka gatherer, crowd-kit aggregation, the
project setup as code, and a local Toloka stand-in for offline tests."""
