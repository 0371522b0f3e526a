"""Pure variant and canary state machine for compressed-variant rollouts."""
