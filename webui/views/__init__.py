"""Web pages. One module per area; urls.py imports from these modules directly."""
