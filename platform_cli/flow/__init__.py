"""Flows: planning (plan, graph: pure) and running them locally (run, runner: side effects)."""
