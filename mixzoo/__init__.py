"""mixzoo: a zoo of interchangeable sequence mixers behind one registry."""
__version__ = "0.1.0"
