"""Executors (``execution.executor``): ``local`` runs the units here, ``ray`` over a Ray cluster."""
