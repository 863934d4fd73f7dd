"""Scale-out on Ray: rollout actors, grading tasks, data-parallel trainer actors and the
cluster connection.

Nothing here is imported unless a run asks for `expert.backend: ray`; the local backend
never imports ray. See docs/scaling.md.
"""
