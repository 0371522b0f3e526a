"""The dialogue gateway: OpenAI-compatible front door with session-affinity routing.

Run it with `python -m dialogue_runtime.gateway`. Layers, from pure to I/O:

- pure: `conversation_key`, `balancer` (CHWBL and least load), `variants`, `history`, `auth`, `validation`,
  `resources` (DialogueModel/Pod dicts -> records), `errors`, `settings`;
- in-memory state: `registry` (models, endpoints, in-flight counts, the routing decision), `metrics`;
- I/O: `proxy` (upstream attempts, hold at zero, retry), `server` and `sessions_api` (aiohttp handlers),
  `sessions` (memory and Redis stores), `static` and `discovery` (endpoints from flags or from Kubernetes),
  `app` (wiring).
"""
