"""chute's version, in one place (the package and the manifests it writes both say it)."""

VERSION = "0.1.0"
