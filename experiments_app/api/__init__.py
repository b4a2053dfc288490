"""The REST API of SPEC §8: thin viewsets that parse, check access, call one action and answer.

Viewsets live in catalog.py, experiments.py and runs.py; urls.py routes them.
"""
