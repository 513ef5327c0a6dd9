"""Pluggable judges. Every judgement they produce carries the judge's name: ``official`` for the
benchmark's own tools, ``ocr-<engine>`` for the CPU OCR stand-ins (NOT official)."""
