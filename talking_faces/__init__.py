"""talking_faces."""
__version__ = "0.1.0"
