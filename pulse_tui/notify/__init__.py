"""Webhooks: Standard Webhooks signing (signing.py) and the delivery queue (delivery.py)."""
