"""dialogue_operator: the control plane that turns a DialogueModel into a running chat service."""

__version__ = "0.1.0"
