"""xfer_utils: the thin helper package of the xfer study kit."""
__version__ = "0.1.0"
