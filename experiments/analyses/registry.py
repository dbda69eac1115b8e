"""The analysis registry (apart from the package so analysis modules can import it)."""

from jaxdl.registry import Registry

ANALYSES = Registry("analysis")
