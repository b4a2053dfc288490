"""A demo LLM application under test: `python -m demo_app [--host H --port P]`."""
