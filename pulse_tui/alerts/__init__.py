"""Alert rules: condition parsing (conditions.py), dataclasses (models.py), evaluation (engine.py)."""
