"""kopf wiring: thin handlers that call the reconcile core (filled in by the DialogueModel issue)."""
