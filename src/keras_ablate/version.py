"""The package's version, in a module of its own so that training records it without importing the
package's public API (keras_ablate/__init__.py)."""

__version__ = "0.1.0"
