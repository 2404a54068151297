"""The study's phases (docs/architecture.md): intermediate, target and retrieval, each a function of a typed
parameter object that mirrors its notebook's ``parameters`` cell, and the distributed launch of a phase."""
