"""refimpl: reference implementation of severity and ordered-representation losses.

Hand-written forward and backward passes in NumPy, portable to CuPy and to any
Array-API namespace through :mod:`refimpl.backend`. The documentation (docs/) has the map.
"""
__version__ = "0.1.0"
