"""Example keyword handlers, loadable by name from KEYWORD_HANDLERS."""
