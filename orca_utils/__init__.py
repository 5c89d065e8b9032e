"""orca_utils: the helper package behind the orca-notebooks notebooks."""
__version__ = "0.1.0"
