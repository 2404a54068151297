"""Plans -> runs -> notebooks (docs/architecture.md): plan expansion, notebook parameters, cluster resources, cost
estimates, value validation, local and submitit execution, rehearsal. Imports no torch and no phase code: a run
reaches a phase only through its notebook."""
