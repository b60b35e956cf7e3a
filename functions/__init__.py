"""One blueprint per function: thin HTTP and timer adapters over the relay core."""
